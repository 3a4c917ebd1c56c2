//! The audit log: one JSON line per decision and per admin or STS call, with CloudTrail-like
//! fields. Access key ids are recorded (they identify, they do not authenticate); secrets,
//! session tokens and passwords never are.
//!
//! Records go through a bounded channel to a writer thread. When the channel is full the record
//! is dropped and counted: a decision never waits for the disk. Records the disk refuses (full,
//! over a file size limit) are dropped and counted too, and the file is cut back to its last
//! whole line. The file rotates by size.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::eval::{Decision, MatchedStatement};

/// One audited decision or call.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// Formatted by the writer thread, not on the request's path.
    #[serde(serialize_with = "display")]
    pub event_time: jiff::Timestamp,
    /// `Authorize` for a decision, or the admin or STS operation (`CreateUser`, `AssumeRole`).
    pub event_name: &'static str,
    pub request_id: String,
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub decision: Decision,
    /// The statements that matched, when they were computed, each written as
    /// `layer:policy:statement:effect` by the writer thread rather than on the request's path.
    #[serde(serialize_with = "each_displayed")]
    pub matched_statements: Vec<MatchedStatement>,
    pub reason: Option<String>,
    pub snapshot_revision: String,
    pub source_ip: Option<String>,
    /// The access key that signed the request, when it was signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_key_id: Option<String>,
    /// AWS's error code when the call failed or was not authenticated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
}

fn display<T: std::fmt::Display, S: serde::Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn each_displayed<T: std::fmt::Display, S: serde::Serializer>(
    values: &[T],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    struct Displayed<'a, T>(&'a T);
    impl<T: std::fmt::Display> Serialize for Displayed<'_, T> {
        fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.collect_str(self.0)
        }
    }
    serializer.collect_seq(values.iter().map(Displayed))
}

/// Where and how the audit log is written.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    pub path: PathBuf,
    /// Rotate when the file exceeds this size.
    pub max_bytes: u64,
    /// Rotated files kept (`audit.jsonl.1` is the newest).
    pub keep: usize,
    /// Records buffered in memory before new ones are dropped.
    pub buffer: usize,
}

enum Message {
    Record(Box<AuditRecord>),
    /// Write out everything queued before this, then acknowledge.
    Flush(SyncSender<()>),
}

pub struct Audit {
    sender: Option<SyncSender<Message>>,
    dropped: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
    writer: Option<JoinHandle<()>>,
    /// A flush timed out: the writer is stuck on the disk, and is not waited for again.
    stuck: AtomicBool,
}

/// How long closing waits for the writer to write out what is queued.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Records written to the disk at once; the writer drains the queue in batches of this many.
const BATCH: usize = 4096;

/// How long the writer rests after writing a batch. While it rests it is not waiting on the
/// channel, so queuing a record is a plain store instead of a wake-up of this thread: under
/// load, one wake-up per record cost more CPU than writing the record. A record reaches the
/// file at most this much later.
const REST: Duration = Duration::from_millis(5);

impl Audit {
    /// Starts the writer. `None` disables auditing.
    pub fn start(config: Option<AuditConfig>) -> std::io::Result<Audit> {
        let dropped = Arc::new(AtomicU64::new(0));
        let written = Arc::new(AtomicU64::new(0));
        let Some(config) = config else {
            return Ok(Audit { sender: None, dropped, written, writer: None, stuck: AtomicBool::new(false) });
        };
        if let Some(parent) = config.path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let file = open(&config.path)?;
        let (sender, receiver) = sync_channel(config.buffer.max(1));
        let counters = (written.clone(), dropped.clone());
        let writer = std::thread::Builder::new()
            .name("iamd-audit".into())
            .spawn(move || write_loop(receiver, file, config, counters))?;
        Ok(Audit {
            sender: Some(sender),
            dropped,
            written,
            writer: Some(writer),
            stuck: AtomicBool::new(false),
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Queues a record; drops and counts it if the writer is behind.
    pub fn record(&self, record: AuditRecord) {
        if let Some(sender) = &self.sender {
            match sender.try_send(Message::Record(Box::new(record))) {
                Ok(()) => {}
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Waits until every record queued so far is written, or `timeout` passes: a writer stuck
    /// on a hung disk must not hold up shutdown. Returns whether everything was written.
    pub fn flush(&self, timeout: Duration) -> bool {
        let Some(sender) = &self.sender else {
            return true;
        };
        let deadline = Instant::now() + timeout;
        let (ack, done) = sync_channel(1);
        let mut message = Message::Flush(ack);
        let flushed = loop {
            match sender.try_send(message) {
                Ok(()) => {
                    break done.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok();
                }
                Err(TrySendError::Disconnected(_)) => break false,
                Err(TrySendError::Full(returned)) if Instant::now() < deadline => {
                    message = returned;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(TrySendError::Full(_)) => break false,
            }
        };
        if !flushed {
            self.stuck.store(true, Ordering::Relaxed);
        }
        flushed
    }

    /// Writes out what is queued and stops the writer; a writer stuck on the disk is left
    /// behind, with the records it holds.
    pub fn close(&mut self) {
        let flushed = !self.stuck.load(Ordering::Relaxed) && self.flush(CLOSE_WAIT);
        self.sender = None;
        if let Some(writer) = self.writer.take() {
            if flushed {
                let _ = writer.join();
            } else {
                tracing::warn!("the audit log could not be written out: the records still queued are lost");
            }
        }
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        self.close();
    }
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// Counts of records written and lost.
type Counters = (Arc<AtomicU64>, Arc<AtomicU64>);

/// The audit file and the records on their way to it.
struct Output {
    file: File,
    /// Bytes of whole records in the file: where it is cut back to when a write fails.
    size: u64,
    /// Lines not written yet, and how many records they hold.
    buffer: Vec<u8>,
    buffered: u64,
    /// The last write failed; the next success is logged as the end of the outage.
    failing: bool,
}

impl Output {
    /// Writes the buffered lines; false when the disk refused them: they are counted as
    /// dropped and the file is cut back so that it holds only whole lines.
    fn write_out(&mut self, path: &Path, counters: &Counters) -> bool {
        if self.buffer.is_empty() {
            return true;
        }
        let (written, dropped) = counters;
        let result = self.file.write_all(&self.buffer);
        match &result {
            Ok(()) => {
                self.size += self.buffer.len() as u64;
                written.fetch_add(self.buffered, Ordering::Relaxed);
                if std::mem::take(&mut self.failing) {
                    tracing::info!(path = %path.display(), "the audit log is written again");
                }
            }
            Err(e) => {
                dropped.fetch_add(self.buffered, Ordering::Relaxed);
                let _ = self.file.set_len(self.size);
                if !std::mem::replace(&mut self.failing, true) {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "cannot write the audit log; records are dropped and counted until it is writable"
                    );
                }
            }
        }
        self.buffer.clear();
        self.buffered = 0;
        result.is_ok()
    }
}

fn write_loop(receiver: Receiver<Message>, file: File, config: AuditConfig, counters: Counters) {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut output = Output { file, size, buffer: Vec::new(), buffered: 0, failing: false };
    // Block for one record, then drain what else is queued before writing.
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        batch.extend(receiver.try_iter().take(BATCH));
        for message in batch {
            let record = match message {
                Message::Record(record) => record,
                Message::Flush(ack) => {
                    let _ = output.write_out(&config.path, &counters);
                    let _ = ack.send(());
                    continue;
                }
            };
            let line_start = output.buffer.len();
            if serde_json::to_writer(&mut output.buffer, &record).is_err() {
                output.buffer.truncate(line_start);
                continue;
            }
            output.buffer.push(b'\n');
            output.buffered += 1;
            // Rotated only once the records are in the file: a disk that refuses them leaves the
            // file as it is.
            if output.size + output.buffer.len() as u64 >= config.max_bytes
                && output.write_out(&config.path, &counters)
            {
                rotate(&config);
                match open(&config.path) {
                    Ok(fresh) => {
                        output.file = fresh;
                        output.size = 0;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot reopen the audit log after rotation"),
                }
            }
        }
        let _ = output.write_out(&config.path, &counters);
        std::thread::sleep(REST);
    }
}

fn rotate(config: &AuditConfig) {
    let numbered = |n: usize| PathBuf::from(format!("{}.{n}", config.path.display()));
    if config.keep == 0 {
        let _ = std::fs::remove_file(&config.path);
        return;
    }
    let _ = std::fs::remove_file(numbered(config.keep));
    for n in (1..config.keep).rev() {
        let _ = std::fs::rename(numbered(n), numbered(n + 1));
    }
    let _ = std::fs::rename(&config.path, numbered(1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> AuditRecord {
        AuditRecord {
            event_time: "2026-01-01T00:00:00Z".parse().unwrap(),
            request_id: format!("r{i}"),
            principal: "arn:aws:iam::111122223333:user/alice".into(),
            action: "s3:GetObject".into(),
            resource: "arn:aws:s3:::b/k".into(),
            decision: Decision::Allow,
            matched_statements: vec![MatchedStatement {
                layer: crate::eval::Layer::Scp(1),
                policy: "guardrails".into(),
                statement: "Read".into(),
                effect: crate::policy::Effect::Allow,
            }],
            reason: None,
            snapshot_revision: "r1+1".into(),
            event_name: "Authorize",
            ..AuditRecord::default()
        }
    }

    #[test]
    fn writes_lines_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut audit =
            Audit::start(Some(AuditConfig { path: path.clone(), max_bytes: 2_000, keep: 2, buffer: 10_000 }))
                .unwrap();
        for i in 0..40 {
            audit.record(record(i));
        }
        audit.close();
        assert_eq!(audit.written() + audit.dropped(), 40);
        let rotated = std::fs::read_to_string(dir.path().join("audit.jsonl.1")).unwrap();
        let line: serde_json::Value = serde_json::from_str(rotated.lines().next().unwrap()).unwrap();
        assert_eq!(line["action"], "s3:GetObject");
        assert_eq!(line["eventTime"], "2026-01-01T00:00:00Z");
        assert_eq!(line["decision"], "Allow");
        assert_eq!(line["matchedStatements"], serde_json::json!(["scp[1]:guardrails:Read:Allow"]));
        assert!(!dir.path().join("audit.jsonl.3").exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn records_the_disk_refuses_are_counted_as_dropped() {
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        let config = AuditConfig { path: "/dev/full".into(), max_bytes: u64::MAX, keep: 1, buffer: 100 };
        let mut audit = Audit::start(Some(config)).unwrap();
        for i in 0..10 {
            audit.record(record(i));
        }
        audit.close();
        assert_eq!((audit.written(), audit.dropped()), (0, 10));
    }

    #[test]
    fn a_full_buffer_drops_instead_of_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut audit =
            Audit::start(Some(AuditConfig { path, max_bytes: u64::MAX, keep: 1, buffer: 1 })).unwrap();
        for i in 0..10_000 {
            audit.record(record(i));
        }
        audit.close();
        assert_eq!(audit.written() + audit.dropped(), 10_000);
        assert!(audit.dropped() > 0);
    }
}
