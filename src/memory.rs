//! Giving memory back after the few operations that free a lot of it at once.
//!
//! Start-up frees sled's cache of everything it read and the records it parsed, and a reload
//! frees a whole directory and bundle: tens of megabytes at 100,000 principals. The `iamd`
//! binary allocates with mimalloc, which keeps a thread's freed pages for that thread to reuse,
//! so memory freed on a thread that then sleeps would stay resident. The binary installs a
//! function that makes its allocator release them; the library forbids `unsafe` and leaves the
//! choice of allocator to the binary, so it only knows when to call it.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Installs the function that returns the calling thread's freed memory to the system. The
/// first one installed stays.
pub fn install_release(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Called on the thread that just freed a lot of memory.
pub(crate) fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}
