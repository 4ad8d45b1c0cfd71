//! `pipe_frames`: a hostile writer feeds a pipe end arbitrary records
//! (fragments of any length, marked as continuing a message or not, in any
//! order) and scribbles on the ring; the reader must report errors, never
//! panic, hang or read out of bounds, and while the ring is untouched it
//! must deliver exactly what the framing says: whole messages only, each
//! begun by an unmarked record.

use std::collections::VecDeque;
use std::sync::Arc;

use shmring_core::error::PushError;
use shmring_core::record::Mark;
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::sync::{AtomicU64, Ordering};
use shmring_core::RingConfig;

use crate::input::Input;
use crate::shm_file::fresh_name;
use shmring::pipe::{Connection, End, Pipe, RecvError};
use shmring::segment::UnlinkPolicy;
use shmring::FutexWaiter;

/// What the reader should see, from the records the writer got in.
#[derive(Debug, Default)]
struct Model {
    /// Each record with its mark: `true` continues a message.
    records: VecDeque<(Vec<u8>, bool)>,
    fragment: usize,
    /// The ring was scribbled on: from now on, only "no panic, no hang".
    untrusted: bool,
    /// The writer closed: reads never wait.
    closed: bool,
    /// The reader gave up reading (bad message length).
    stopped: Option<RecvError>,
    duplex: bool,
}

impl Model {
    /// Whether a read would not wait: the records there end a message (a
    /// short record), or cut one off (an unmarked record after a begun
    /// one), or the writer closed.
    fn readable(&self) -> bool {
        let mut begun = false;
        for (r, continues) in &self.records {
            match (begun, continues) {
                (false, true) => continue, // skipped
                (true, false) => return true,
                _ => {}
            }
            if r.len() < self.fragment {
                return true;
            }
            begun = true;
        }
        self.closed
    }

    /// The next whole message, records consumed; `Err` at end of file, or
    /// when an unmarked record cuts the message off (left for the next
    /// read). Marked records with no message begun are skipped.
    fn message(&mut self, limit: usize) -> Result<Vec<u8>, RecvError> {
        let mut msg: Option<Vec<u8>> = None;
        loop {
            let Some((r, continues)) = self.records.front() else {
                return Err(match msg {
                    None => RecvError::Eof,
                    Some(_) => RecvError::TruncatedMessage,
                });
            };
            let (short, continues) = (r.len() < self.fragment, *continues);
            match (&msg, continues) {
                (None, true) => {
                    self.records.pop_front();
                    continue;
                }
                (Some(_), false) => return Err(RecvError::TruncatedMessage),
                _ => {}
            }
            let (r, _) = self.records.pop_front().expect("front exists");
            let got = msg.get_or_insert_with(Vec::new);
            if r.len() > limit - got.len() {
                return Err(RecvError::BadMessageLength { maxlength: limit });
            }
            got.extend_from_slice(&r);
            if short {
                return Ok(std::mem::take(got));
            }
        }
    }
}

/// Feeds the first end of a fresh pipe records and scribbles decoded from
/// `data` (a hostile writer on its incoming ring), reading in between with
/// every read path; while the ring is untouched each result must match the
/// framing. Ends by closing the writer and draining.
///
/// # Panics
///
/// When a read disagrees with the framing of intact records, or the reader
/// mishandles hostile ones (a finding).
pub fn pipe_frames(data: &[u8]) {
    let mut input = Input::new(data);
    let duplex = input.byte().is_multiple_of(2);
    let capacity = 64u64 << (input.byte() % 5);
    let fragment = 8 + u64::from(input.u16()) % (capacity - 15);
    let Ok(pipe) = Pipe::builder()
        .duplex(duplex)
        .ring_bytes(capacity)
        .fragment_bytes(fragment)
        .peer_rows(2)
        .unlink(UnlinkPolicy::OnCreatorDrop)
        .reclaim_abandoned(false)
        .create(&fresh_name("pipe"))
    else {
        return;
    };
    let mut reader = pipe.connection(End::First).expect("fresh pipe");
    let ring_config = RingConfig {
        capacity,
        max_record: fragment,
    };
    let ring_len = SpscLayout::new(&ring_config).expect("valid").total;
    let base = pipe.segment().object_ptr();
    let keep: spsc::KeepAlive = Arc::new(pipe.clone());
    // SAFETY: ring 0 (the first end's incoming ring) lies at the start of
    // the object region, `ring_len` bytes, page aligned; `keep` holds the
    // mapping; the reader uses it only through the ring protocol.
    let ring = unsafe { spsc::Ring::attach_in_place(base, ring_len, keep) }.expect("ring 0");
    let mut writer = ring.producer(FutexWaiter::new()).expect("ring 0 producer");
    let mut model = Model {
        fragment: fragment as usize,
        duplex,
        ..Model::default()
    };
    let mut seq = 0u8;
    while let Some(op) = input.op() {
        match op % 8 {
            0..=3 => {
                let len = match input.byte() % 4 {
                    0 => fragment as usize,
                    1 => 0,
                    _ => usize::from(input.u16()) % (fragment as usize + 2),
                };
                // Mostly as a pipe writes them (the first of a message
                // unmarked), sometimes not.
                let continues = match input.byte() % 4 {
                    0 => true,
                    1 => false,
                    _ => model
                        .records
                        .back()
                        .is_some_and(|(r, _)| r.len() == model.fragment),
                };
                seq = seq.wrapping_add(1);
                let record: Vec<u8> = (0..len).map(|i| seq ^ i as u8).collect();
                let mark = Mark {
                    continues,
                    more: false,
                };
                match writer.try_push_marked(&record, mark) {
                    Ok(()) => model.records.push_back((record, continues)),
                    Err(PushError::Full | PushError::TooLarge { .. } | PushError::Closed) => {}
                    Err(e) => assert!(model.untrusted, "push into an intact ring: {e:?}"),
                }
            }
            4 => {
                let at = (usize::from(input.u16()) % ring_len) & !7;
                // SAFETY: `at` < ring_len, 8-aligned, inside ring 0, which
                // is all atomic words; `ring` keeps the mapping alive.
                let word = unsafe { &*base.as_ptr().add(at).cast::<AtomicU64>() };
                // ORDERING: Relaxed — a hostile store; nothing pairs with it.
                word.store(input.u64(), Ordering::Relaxed);
                model.untrusted = true;
            }
            5 => {
                writer.close();
                model.closed = true;
            }
            _ => {
                if !model.untrusted && model.readable() {
                    read_one(&mut reader, &mut model, &mut input);
                }
            }
        }
    }
    writer.close();
    model.closed = true;
    for _ in 0..4096 {
        if !read_one(&mut reader, &mut model, &mut input) {
            break;
        }
    }
    let _ = reader.poll();
}

/// One read through a path the input picks, checked against the model
/// unless the ring was scribbled on. Returns whether to keep reading.
fn read_one(reader: &mut Connection, model: &mut Model, input: &mut Input<'_>) -> bool {
    let how = input.byte();
    let limit = match how % 4 {
        1 => usize::from(input.u16()) % 600,
        _ => usize::MAX,
    };
    let (buf_len, offset) = (usize::from(input.byte()), usize::from(input.byte() % 32));
    let (got, filled) = match how % 4 {
        0 | 1 => (reader.recv_bytes((how % 4 == 1).then_some(limit)), None),
        2 => {
            let mut buf = vec![0u8; buf_len];
            let got = reader.recv_bytes_into(&mut buf, offset);
            let filled = got.as_ref().ok().map(|&n| buf[offset..offset + n].to_vec());
            (got.map(|_| Vec::new()), filled)
        }
        _ => (reader.recv::<Vec<u8>>(), None),
    };
    let keep_going = got.is_ok()
        || matches!(
            got,
            Err(RecvError::BufferTooShort(_) | RecvError::TruncatedMessage)
        );
    if model.untrusted {
        return keep_going;
    }
    let expected = expected(model, how % 4, limit, buf_len, offset);
    match (got, filled) {
        (Ok(_), Some(bytes)) => assert_eq!(Ok(bytes), expected, "recv_bytes_into"),
        (got, _) => assert_eq!(got, expected, "read path {}", how % 4),
    }
    keep_going
}

fn expected(
    model: &mut Model,
    how: u8,
    limit: usize,
    buf_len: usize,
    offset: usize,
) -> Result<Vec<u8>, RecvError> {
    if let Some(e) = &model.stopped {
        return Err(e.clone());
    }
    if how == 2 && offset > buf_len {
        return Err(RecvError::OffsetTooLarge);
    }
    match model.message(limit) {
        Ok(msg) if how == 2 && msg.len() > buf_len - offset => Err(RecvError::BufferTooShort(msg)),
        Err(e @ RecvError::BadMessageLength { .. }) => {
            // Python's rule: a duplex end becomes write-only, a read-only
            // end is closed.
            model.stopped = Some(if model.duplex {
                RecvError::WriteOnly
            } else {
                RecvError::HandleClosed
            });
            Err(e)
        }
        other => other,
    }
}
