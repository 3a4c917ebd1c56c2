//! Reading a bundle's files from a directory, a `.tar.gz`, or the embedded sample.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::BundleError;

/// Largest bundle accepted, all files together.
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;
/// Largest single file accepted.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Where a bundle comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BundleSource {
    Directory(PathBuf),
    TarGz(PathBuf),
    /// The sample bundle built into the binary, so `iamd serve` works with no arguments.
    Embedded,
}

impl BundleSource {
    /// A directory, or a file ending in `.tar.gz` / `.tgz`.
    pub fn from_path(path: &Path) -> BundleSource {
        let name = path.to_string_lossy();
        if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
            BundleSource::TarGz(path.to_path_buf())
        } else {
            BundleSource::Directory(path.to_path_buf())
        }
    }

    pub fn describe(&self) -> String {
        match self {
            BundleSource::Directory(path) | BundleSource::TarGz(path) => path.display().to_string(),
            BundleSource::Embedded => "embedded sample bundle".into(),
        }
    }

    /// Reads every file of the bundle into memory.
    pub fn read(&self) -> Result<BTreeMap<String, String>, BundleError> {
        match self {
            BundleSource::Directory(path) => read_directory(path),
            BundleSource::TarGz(path) => read_tar_gz(path),
            BundleSource::Embedded => Ok(embedded()),
        }
    }
}

fn io_error(path: &Path, what: &str, e: impl std::fmt::Display) -> BundleError {
    BundleError { file: path.display().to_string(), line: 0, column: 0, message: format!("{what}: {e}") }
}

/// Reads a directory tree, following symbolic links (Kubernetes mounts ConfigMap keys as links)
/// and skipping hidden entries (the `..data` indirection of a ConfigMap mount).
fn read_directory(root: &Path) -> Result<BTreeMap<String, String>, BundleError> {
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let mut pending = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = pending.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| io_error(&dir, "cannot read the bundle directory", e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, "cannot read the bundle directory", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let metadata = std::fs::metadata(&path).map_err(|e| io_error(&path, "cannot read", e))?;
            if metadata.is_dir() {
                if prefix.matches('/').count() > 4 {
                    return Err(io_error(&path, "bundle is nested too deep", "at most 5 levels"));
                }
                pending.push((path, relative));
            } else {
                total += metadata.len();
                if metadata.len() > MAX_FILE_BYTES || total > MAX_BUNDLE_BYTES {
                    return Err(io_error(
                        &path,
                        "file too large",
                        format!(
                            "files are limited to {MAX_FILE_BYTES} bytes and bundles to {MAX_BUNDLE_BYTES}"
                        ),
                    ));
                }
                let text = std::fs::read_to_string(&path).map_err(|e| io_error(&path, "cannot read", e))?;
                files.insert(relative, text);
            }
        }
    }
    Ok(files)
}

/// Reads a `.tar.gz` in memory, refusing links, absolute paths and `..`, and capping sizes.
fn read_tar_gz(path: &Path) -> Result<BTreeMap<String, String>, BundleError> {
    let file = std::fs::File::open(path).map_err(|e| io_error(path, "cannot open the bundle", e))?;
    let decoder = flate2::read::GzDecoder::new(file).take(MAX_BUNDLE_BYTES * 4);
    let mut archive = tar::Archive::new(decoder);
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    let entries = archive.entries().map_err(|e| io_error(path, "not a .tar.gz archive", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_error(path, "damaged archive", e))?;
        let kind = entry.header().entry_type();
        let name =
            entry.path().map_err(|e| io_error(path, "bad entry name", e))?.to_string_lossy().into_owned();
        let name = name.trim_start_matches("./").to_string();
        if kind.is_dir() || name.is_empty() {
            continue;
        }
        if !kind.is_file() {
            return Err(io_error(
                path,
                "archive entries must be plain files",
                format!("`{name}` is a link or device"),
            ));
        }
        if name.starts_with('/') || name.split('/').any(|part| part == "..") {
            return Err(io_error(path, "unsafe entry name", format!("`{name}` leaves the bundle")));
        }
        if name.split('/').any(|part| part.starts_with('.')) {
            continue;
        }
        let mut text = String::new();
        let read = (&mut entry)
            .take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(|e| io_error(path, &format!("cannot read `{name}`"), e))?;
        total += read as u64;
        if read as u64 > MAX_FILE_BYTES || total > MAX_BUNDLE_BYTES {
            return Err(io_error(
                path,
                "file too large",
                format!("`{name}`: files are limited to {MAX_FILE_BYTES} bytes"),
            ));
        }
        files.insert(name, text);
    }
    Ok(files)
}

macro_rules! sample {
    ($($path:literal),* $(,)?) => {
        [$(($path, include_str!(concat!("sample/", $path)))),*]
    };
}

fn embedded() -> BTreeMap<String, String> {
    sample![
        "manifest.json",
        "organization.json",
        "policies/ReportsReadOnly.json",
        "policies/DeveloperBoundary.json",
        "resource-policies/reports-bucket.json",
        "scps/DenyLeavingOrganization.json",
    ]
    .into_iter()
    .map(|(path, text)| (path.to_string(), text.to_string()))
    .collect()
}

/// A digest of a bundle's files, to notice reloads that change nothing.
pub fn digest(files: &BTreeMap<String, String>) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, &[u8], tar::EntryType)]) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new().suffix(".tar.gz").tempfile().unwrap();
        let encoder = flate2::write::GzEncoder::new(file.reopen().unwrap(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        for (name, data, kind) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                header.set_link_name("/etc/passwd").unwrap();
            }
            // `append_data` refuses `..`; write the raw name to test iamd's own check.
            let bytes = name.as_bytes();
            header.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        file
    }

    #[test]
    fn reads_a_tar_gz_in_memory() {
        let file = archive(&[
            ("./manifest.json", b"{}", tar::EntryType::Regular),
            ("policies/A.json", b"{\"Statement\": []}", tar::EntryType::Regular),
            ("policies/.hidden", b"x", tar::EntryType::Regular),
        ]);
        let source = BundleSource::from_path(file.path());
        assert!(matches!(source, BundleSource::TarGz(_)));
        let files = source.read().unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["manifest.json", "policies/A.json"]);
    }

    #[test]
    fn refuses_links_and_paths_that_leave_the_bundle() {
        let link = archive(&[("policies/A.json", b"", tar::EntryType::Symlink)]);
        let error = BundleSource::from_path(link.path()).read().unwrap_err().to_string();
        assert!(error.contains("must be plain files"), "{error}");
        let escape = archive(&[("../outside.json", b"{}", tar::EntryType::Regular)]);
        let error = BundleSource::from_path(escape.path()).read().unwrap_err().to_string();
        assert!(error.contains("leaves the bundle"), "{error}");
    }

    #[test]
    fn the_embedded_sample_compiles() {
        let files = BundleSource::Embedded.read().unwrap();
        let bundle = super::super::Bundle::compile("embedded", &files).unwrap();
        assert_eq!(bundle.revision, "sample-1");
        assert!(bundle.warnings.is_empty(), "{:?}", bundle.warnings);
    }
}
