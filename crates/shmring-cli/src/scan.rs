//! Reading `/dev/shm` for `ls` and `gc`: the segments, the shmring files
//! that fail validation, and a count of what was skipped and why.
//!
//! `/dev/shm` is shared by every user of the host, and any of them can
//! fill it with files this user cannot read. Those cannot be told apart
//! from segments, but one warning per file on every run drowns what
//! matters; they are counted, summarised in one line, and listed only with
//! `--verbose` (JSON always lists them). Files that are readable and not
//! shmring's (no magic, not regular files, symbolic links, names no segment
//! can have) are nobody's business here and are skipped silently.

use std::ffi::OsString;

use shmring::segment::{self, SegmentInfo};
use shmring::SegmentError;

use crate::json::{self, Object};
use crate::{escape, Failure};

/// How many inspection errors are shown without `--verbose`.
pub const ERRORS_SHOWN: usize = 10;

/// What a read of `/dev/shm` found.
#[derive(Default)]
pub struct Scan {
    /// Segments that passed validation (or are being created), by name.
    pub segments: Vec<SegmentInfo>,
    /// Files with the magic that could not be inspected: a header that
    /// fails validation, an I/O error.
    pub errors: Vec<SegmentError>,
    /// Names of files this user may not read (raw: escape to print).
    pub unreadable: Vec<String>,
    /// Names of regular files whose name is not UTF-8, escaped (JSON cannot
    /// carry them raw): no segment can be created or opened under such a
    /// name.
    pub non_utf8: Vec<String>,
}

/// Whether `e` says the file could not be read for lack of permission.
pub fn is_permission(e: &SegmentError) -> bool {
    match e {
        SegmentError::PermissionDenied { .. } => true,
        SegmentError::Io { source, .. } => source.kind() == std::io::ErrorKind::PermissionDenied,
        _ => false,
    }
}

impl Scan {
    /// Files one [`segment::inspect`] result at a time.
    fn add(&mut self, name: &str, found: Result<SegmentInfo, SegmentError>) {
        match found {
            Ok(info) => self.segments.push(info),
            // Not shmring's, or gone since the directory was read.
            Err(SegmentError::NotShmring { .. })
            | Err(SegmentError::NotFound { .. })
            | Err(SegmentError::InvalidName { .. }) => {}
            Err(e) if is_permission(&e) => self.unreadable.push(name.to_owned()),
            Err(e) => self.errors.push(e),
        }
    }

    /// Every file of `/dev/shm`.
    ///
    /// # Errors
    ///
    /// `/dev/shm` itself cannot be read.
    pub fn all() -> Result<Scan, Failure> {
        let dir = std::fs::read_dir(segment::SHM_DIR).map_err(|source| SegmentError::Io {
            op: "read_dir",
            name: segment::SHM_DIR.into(),
            source,
        })?;
        let mut scan = Scan::default();
        for entry in dir.flatten() {
            let file_name: OsString = entry.file_name();
            let Some(body) = file_name.to_str() else {
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    scan.non_utf8
                        .push(format!("/{}", escape::os_name(&file_name)));
                }
                continue;
            };
            let name = format!("/{body}");
            scan.add(&name, segment::inspect(&name));
        }
        scan.segments.sort_by(|a, b| a.name.cmp(&b.name));
        scan.unreadable.sort();
        scan.non_utf8.sort();
        Ok(scan)
    }

    /// On stderr: one line per error (the first [`ERRORS_SHOWN`] unless
    /// `verbose`) and one line per kind of skipped file (every name with
    /// `verbose`).
    pub fn warn(&self, verbose: bool) {
        let shown = if verbose { usize::MAX } else { ERRORS_SHOWN };
        for e in self.errors.iter().take(shown) {
            eprintln!("shmring: warning: {}", escape::text(&e.to_string()));
        }
        if self.errors.len() > shown {
            eprintln!(
                "shmring: warning: {} more files with the shmring magic could not be \
                 inspected; --verbose lists them",
                self.errors.len() - shown
            );
        }
        let unreadable: Vec<String> = self.unreadable.iter().map(|n| escape::name(n)).collect();
        let groups = [
            (&unreadable, "permission denied"),
            (
                &self.non_utf8,
                "name not UTF-8 (no segment can have such a name)",
            ),
        ];
        for (names, why) in groups {
            if names.is_empty() {
            } else if verbose {
                for name in names {
                    eprintln!("shmring: skipped {name}: {why}");
                }
            } else {
                let files = if names.len() == 1 { "file" } else { "files" };
                eprintln!(
                    "shmring: {} {files} skipped: {why}; --verbose lists them",
                    names.len()
                );
            }
        }
    }

    /// The `"errors"` and `"skipped"` fields of the JSON output.
    pub fn json_fields(&self, obj: Object) -> Object {
        let errors = self
            .errors
            .iter()
            .map(|e| json::string(&escape::text(&e.to_string())));
        let skipped = self
            .unreadable
            .iter()
            .map(|n| (n, "permission-denied"))
            .chain(self.non_utf8.iter().map(|n| (n, "name-not-utf8")))
            .map(|(name, why)| Object::new().str("name", name).str("why", why).finish());
        obj.raw("errors", json::array(errors))
            .raw("skipped", json::array(skipped))
    }
}
