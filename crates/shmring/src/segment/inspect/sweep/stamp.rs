//! The stamp: the small per-user file in `/dev/shm` that spaces the
//! automatic sweeps out (its head: when the last one started) and keeps the
//! sweeper's notes and cursor (its body), as the parent module describes.
//!
//! Layout (native byte order):
//!
//! ```text
//! offset size field
//!      0    8 magic          b"SHMSWEEP"
//!      8    8 format         1
//!     16    8 last_sweep     CLOCK_MONOTONIC ns when the last automatic sweep started (0: never)
//!     24    8 sweeps         automatic sweeps so far
//!     32    8 body_sum       FNV-1a of the body
//!     40    8 body_len       length of the body
//!     48    .. body          cursor length (8), cursor, note count (8), notes (32 bytes each:
//!                            inode, newest attach, first seen, holds data)
//! ```
//!
//! Everything read from it is checked: a head with another magic or format
//! marks a file that is not a stamp (never written), a body whose checksum
//! or lengths do not match reads as "no notes".

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::time::Duration;

use super::{nanos, MAX_NOTES, STAMP_PREFIX};
use crate::segment::inspect::SHM_DIR;
use crate::sys::{self, lock, shm};

/// A user's stamp file, open (and, once claimed, locked) by this process.
pub(super) struct Stamp {
    file: File,
    /// The head as read under the lock (all zero for a new stamp).
    head: Head,
}

/// What [`Stamp::claim`] found.
pub(super) enum Claim {
    /// A sweep is due, and this process holds the stamp and has claimed
    /// the period.
    Due(Stamp),
    /// The last sweep is recent; the next is due in this many nanoseconds.
    NotDue { due_in: u64 },
    /// Another process holds the stamp (sweeping right now).
    Busy,
    /// No usable stamp (see the module docs).
    Unusable,
}

/// The stamp's fixed head: magic, format, when the last automatic sweep
/// started, how many there were, and the checksum and length of the body.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Head {
    last_sweep: u64,
    sweeps: u64,
    body_sum: u64,
    body_len: u64,
}

const STAMP_MAGIC: [u8; 8] = *b"SHMSWEEP";
const STAMP_FORMAT: u64 = 1;
const HEAD_LEN: usize = 48;
/// Cursor length (8) + cursor (up to 255) + note count (8) + notes.
const MAX_BODY: usize = 8 + 255 + 8 + MAX_NOTES * NOTE_LEN;

impl Head {
    fn encode(&self) -> [u8; HEAD_LEN] {
        let mut b = [0u8; HEAD_LEN];
        b[..8].copy_from_slice(&STAMP_MAGIC);
        let fields = [
            STAMP_FORMAT,
            self.last_sweep,
            self.sweeps,
            self.body_sum,
            self.body_len,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    /// `None`: not a stamp (another format, or somebody else's file).
    fn decode(b: &[u8; HEAD_LEN]) -> Option<Head> {
        let field = |i: usize| {
            let at = 8 + 8 * i;
            u64::from_ne_bytes(b[at..at + 8].try_into().unwrap_or([0; 8]))
        };
        (b[..8] == STAMP_MAGIC && field(0) == STAMP_FORMAT).then(|| Head {
            last_sweep: field(1),
            sweeps: field(2),
            body_sum: field(3),
            body_len: field(4),
        })
    }
}

impl Stamp {
    /// Opens (creating it if need be) this user's stamp, and reads its
    /// head. `None` when it cannot be opened, is not a regular file owned
    /// by us, or holds something else than a stamp.
    pub(super) fn open(scope: &str) -> Option<Stamp> {
        let uid = shm::geteuid();
        let path = match scope {
            "" => format!("{SHM_DIR}/{STAMP_PREFIX}{uid}"),
            scope => format!("{SHM_DIR}/{STAMP_PREFIX}{uid}.{scope}"),
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
            .ok()?;
        let st = shm::stat(&file).ok()?;
        if st.mode & libc::S_IFMT != libc::S_IFREG || st.uid != uid {
            return None;
        }
        let head = read_head(&file)?;
        Some(Stamp { file, head })
    }

    /// Claims the period if a sweep is due (see [`Claim`]).
    pub(super) fn claim(scope: &str, period: u64) -> Claim {
        let Some(mut stamp) = Stamp::open(scope) else {
            return Claim::Unusable;
        };
        let now = sys::now().0;
        if let Some(due_in) = stamp.due_in(now, period) {
            return Claim::NotDue { due_in };
        }
        match lock::try_lock_byte(stamp.file.as_fd(), 0) {
            Ok(true) => {}
            Ok(false) => return Claim::Busy,
            Err(_) => return Claim::Unusable,
        }
        // Under the lock: a sweep that just ended may have claimed it.
        let Some(head) = read_head(&stamp.file) else {
            return Claim::Unusable;
        };
        stamp.head = head;
        if let Some(due_in) = stamp.due_in(now, period) {
            return Claim::NotDue { due_in };
        }
        stamp.head.last_sweep = now;
        stamp.head.sweeps = stamp.head.sweeps.wrapping_add(1);
        if stamp.file.write_all_at(&stamp.head.encode(), 0).is_err() {
            return Claim::Unusable;
        }
        Claim::Due(stamp)
    }

    /// `None` when a sweep is due at `now`, else in how many nanoseconds.
    /// A last sweep in the future (a clock of another time namespace) makes
    /// one due, so that a confused stamp cannot stop sweeping.
    fn due_in(&self, now: u64, period: u64) -> Option<u64> {
        let last = self.head.last_sweep;
        if last == 0 || last > now {
            return None;
        }
        let due = last.saturating_add(period);
        (due > now).then(|| due - now)
    }

    /// Takes the stamp's lock, waiting up to `wait`.
    pub(super) fn lock_within(&mut self, wait: Duration) -> bool {
        let start = sys::now().0;
        loop {
            match lock::try_lock_byte(self.file.as_fd(), 0) {
                Ok(true) => break,
                Ok(false) if sys::now().0.saturating_sub(start) < nanos(wait) => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                _ => return false,
            }
        }
        match read_head(&self.file) {
            Some(head) => {
                self.head = head;
                true
            }
            None => false,
        }
    }

    /// The notes and the cursor (call with the lock held). `None`: none
    /// yet, or a torn or damaged body.
    pub(super) fn read_state(&mut self) -> Option<State> {
        let len = usize::try_from(self.head.body_len).ok()?;
        if len == 0 || len > MAX_BODY {
            return None;
        }
        let mut body = vec![0u8; len];
        self.file.read_exact_at(&mut body, HEAD_LEN as u64).ok()?;
        if checksum(&body) != self.head.body_sum {
            return None;
        }
        State::decode(&body)
    }

    /// Writes the notes and the cursor (call with the lock held). Errors
    /// are ignored: the notes are an optimisation of caution only.
    pub(super) fn write_state(&mut self, state: &State) {
        let body = state.encode();
        self.head.body_sum = checksum(&body);
        self.head.body_len = body.len() as u64;
        // Body first: a process killed in between leaves a head whose
        // checksum does not match, read as "no notes".
        if self.file.write_all_at(&body, HEAD_LEN as u64).is_ok() {
            let _ = self.file.write_all_at(&self.head.encode(), 0);
            let _ = self.file.set_len((HEAD_LEN + body.len()) as u64);
        }
    }
}

/// The head of a stamp; all zero for an empty file; `None` for a file that
/// is not a stamp (it is never written then).
fn read_head(file: &File) -> Option<Head> {
    let mut b = [0u8; HEAD_LEN];
    let mut got = 0;
    while got < HEAD_LEN {
        match file.read_at(&mut b[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    match got {
        0 => Some(Head::default()),
        HEAD_LEN => Head::decode(&b),
        _ => None,
    }
}

/// FNV-1a, 64 bits: detects a torn write, not an adversary.
fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a sweep remembers of a segment it found without a live peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Note {
    /// The file's inode number.
    ino: u64,
    /// The newest attach time in its peer table when noted: another value
    /// means another attach (or another segment), and the note starts over.
    last_attach: u64,
    /// `CLOCK_MONOTONIC` nanoseconds when a sweep first found it so.
    pub(super) first_seen: u64,
    /// A removal found it holding data.
    pub(super) holds_data: bool,
}

const NOTE_LEN: usize = 32;

/// The notes and the cursor of a stamp.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct State {
    /// The last name the previous automatic sweep examined (no `/`).
    pub(super) cursor: Vec<u8>,
    pub(super) notes: HashMap<u64, Note>,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        let cursor = &self.cursor[..self.cursor.len().min(255)];
        let mut out = Vec::with_capacity(16 + cursor.len() + self.notes.len() * NOTE_LEN);
        out.extend_from_slice(&(cursor.len() as u64).to_ne_bytes());
        out.extend_from_slice(cursor);
        let notes = self.notes.values().take(MAX_NOTES);
        out.extend_from_slice(&(notes.len() as u64).to_ne_bytes());
        for n in notes {
            for v in [n.ino, n.last_attach, n.first_seen, u64::from(n.holds_data)] {
                out.extend_from_slice(&v.to_ne_bytes());
            }
        }
        out
    }

    /// `None` for a body that does not decode (lengths out of range).
    fn decode(body: &[u8]) -> Option<State> {
        let mut reader = Reader { body, at: 0 };
        let cursor_len = usize::try_from(reader.u64()?).ok().filter(|&l| l <= 255)?;
        let cursor = reader.bytes(cursor_len)?.to_vec();
        let count = usize::try_from(reader.u64()?)
            .ok()
            .filter(|&c| c <= MAX_NOTES)?;
        let mut notes = HashMap::with_capacity(count);
        for _ in 0..count {
            let note = Note {
                ino: reader.u64()?,
                last_attach: reader.u64()?,
                first_seen: reader.u64()?,
                holds_data: reader.u64()? != 0,
            };
            notes.insert(note.ino, note);
        }
        Some(State { cursor, notes })
    }

    /// The note of a segment found without a live peer now: the one kept,
    /// or a new one if there was none or its peer table changed. `None`
    /// when the notes are full (the segment waits for room).
    pub(super) fn note(&mut self, ino: u64, last_attach: u64, now: u64) -> Option<&mut Note> {
        let stale = self
            .notes
            .get(&ino)
            .is_some_and(|n| n.last_attach != last_attach);
        if stale {
            self.notes.remove(&ino);
        }
        if !self.notes.contains_key(&ino) && self.notes.len() >= MAX_NOTES {
            return None;
        }
        let note = self.notes.entry(ino).or_insert(Note {
            ino,
            last_attach,
            first_seen: now,
            holds_data: false,
        });
        // A time in the future (another time namespace) counts from now.
        note.first_seen = note.first_seen.min(now);
        Some(note)
    }
}

/// Reads a stamp's body front to back; `None` past its end.
struct Reader<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, len: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(len)?;
        let b = self.body.get(self.at..end)?;
        self.at = end;
        Some(b)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_ne_bytes(self.bytes(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_damage_reads_as_none() {
        let mut state = State {
            cursor: b"shmring-x".to_vec(),
            notes: HashMap::new(),
        };
        for ino in 1..5 {
            state.note(ino, ino * 10, 1_000);
        }
        state.notes.get_mut(&2).unwrap().holds_data = true;
        let body = state.encode();
        assert_eq!(State::decode(&body), Some(state.clone()));
        assert_eq!(State::decode(&body[..body.len() - 1]), None);
        let mut huge = body.clone();
        huge[..8].copy_from_slice(&1000u64.to_ne_bytes());
        assert_eq!(State::decode(&huge), None);
        assert_eq!(State::decode(&[]), None);
    }

    #[test]
    fn a_changed_peer_table_starts_a_note_over() {
        let mut state = State::default();
        assert_eq!(state.note(7, 100, 1_000).unwrap().first_seen, 1_000);
        assert_eq!(state.note(7, 100, 5_000).unwrap().first_seen, 1_000);
        assert_eq!(state.note(7, 200, 6_000).unwrap().first_seen, 6_000);
        // A first sighting "in the future" counts from now.
        state.notes.get_mut(&7).unwrap().first_seen = u64::MAX;
        assert_eq!(state.note(7, 200, 7_000).unwrap().first_seen, 7_000);
    }

    #[test]
    fn heads_round_trip_and_foreign_files_are_not_stamps() {
        let head = Head {
            last_sweep: 5,
            sweeps: 6,
            body_sum: 7,
            body_len: 8,
        };
        assert_eq!(Head::decode(&head.encode()), Some(head));
        let mut foreign = head.encode();
        foreign[0] = b'X';
        assert_eq!(Head::decode(&foreign), None);
    }

    #[test]
    fn due_in_counts_from_the_last_sweep() {
        let stamp = |last_sweep| Stamp {
            file: tempfile(),
            head: Head {
                last_sweep,
                ..Head::default()
            },
        };
        assert_eq!(stamp(0).due_in(1_000, 100), None, "never swept");
        assert_eq!(stamp(950).due_in(1_000, 100), Some(50));
        assert_eq!(stamp(900).due_in(1_000, 100), None);
        assert_eq!(stamp(2_000).due_in(1_000, 100), None, "a future time");
    }

    fn tempfile() -> File {
        File::open("/dev/null").unwrap()
    }
}
