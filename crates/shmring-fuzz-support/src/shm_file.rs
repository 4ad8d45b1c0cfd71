//! Segment files with given bytes in `/dev/shm`, for the engine harnesses.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicU64, Ordering};

/// A file in `/dev/shm` holding given bytes, removed on drop.
#[derive(Debug)]
pub(crate) struct ShmFile {
    /// The segment name (`/name` form).
    pub(crate) name: String,
}

/// A fresh segment name, unique in this process and across processes.
pub(crate) fn fresh_name(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — a counter; only uniqueness matters.
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("/shmring-fuzz-{what}-{}-{n}", std::process::id())
}

impl ShmFile {
    /// Writes `bytes` as a new segment file (`O_EXCL`, mode 0600).
    pub(crate) fn new(bytes: &[u8]) -> std::io::Result<ShmFile> {
        let name = fresh_name("bytes");
        let mut file: File = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(format!("/dev/shm{name}"))?;
        let file_ok = file.write_all(bytes);
        let shm = ShmFile { name };
        file_ok.map(|()| shm)
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        // The segment may have unlinked itself already (its unlink policy).
        let _ = std::fs::remove_file(format!("/dev/shm{}", self.name));
    }
}
