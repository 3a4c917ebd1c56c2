//! Watching a bundle on disk: any change under it, or to the directory that holds it (editors
//! save by rename, Kubernetes swaps a `..data` symlink), is debounced into one reload signal.

use std::path::Path;
use std::time::Duration;

use notify_debouncer_full::notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use tokio::sync::mpsc;

/// Keeps the watch alive; dropping it stops watching.
pub struct BundleWatch {
    _debouncer: Debouncer<notify_debouncer_full::notify::RecommendedWatcher, RecommendedCache>,
}

/// Watches `path` (a bundle directory or archive) and sends `()` on `changes` after each burst
/// of changes has been quiet for `debounce`.
pub fn watch(
    path: &Path,
    debounce: Duration,
    changes: mpsc::Sender<()>,
) -> notify_debouncer_full::notify::Result<BundleWatch> {
    let mut debouncer = new_debouncer(debounce, None, move |result: DebounceEventResult| {
        let relevant = match result {
            Ok(events) => events.iter().any(|e| !e.kind.is_access()),
            // A watcher error may mean missed events: reload to be safe.
            Err(_) => true,
        };
        if relevant {
            // A full channel already holds a pending reload, which covers this change too.
            let _ = changes.try_send(());
        }
    })?;
    if path.is_dir() {
        debouncer.watch(path, RecursiveMode::Recursive)?;
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        debouncer.watch(parent, RecursiveMode::NonRecursive)?;
    } else if !path.is_dir() {
        debouncer.watch(Path::new("."), RecursiveMode::NonRecursive)?;
    }
    Ok(BundleWatch { _debouncer: debouncer })
}
