//! `pipe_frames`: a hostile writer feeds a pipe end arbitrary records
//! (fragments of any length, with any framing marks, in any order) and
//! scribbles on the ring; the reader must report errors, never panic, hang
//! or read out of bounds, and while the ring is untouched it must deliver
//! exactly what the framing says: whole messages only, each begun by a
//! record not marked as continuing one and ended by the first without the
//! "more" mark, whatever the records' lengths; a message half taken by a
//! try that gave up is finished by the next receive of any kind.

use std::collections::VecDeque;
use std::sync::Arc;

use shmring_core::error::PushError;
use shmring_core::record::Mark;
use shmring_core::spsc::{self, SpscLayout};
use shmring_core::sync::{AtomicU64, Ordering};
use shmring_core::RingConfig;

use crate::input::Input;
use crate::shm_file::fresh_name;
use shmring::pipe::{Connection, End, Pipe, RecvError, TryRecvError};
use shmring::segment::UnlinkPolicy;
use shmring::FutexWaiter;

/// What the reader should see, from the records the writer got in.
#[derive(Debug, Default)]
struct Model {
    /// Each record with its framing marks.
    records: VecDeque<(Vec<u8>, Mark)>,
    /// The message a try began and gave up on: its bytes, taken off the
    /// ring and kept by the connection.
    taken: Option<Vec<u8>>,
    /// The ring was scribbled on: from now on, only "no panic, no hang".
    untrusted: bool,
    /// The writer closed: reads never wait.
    closed: bool,
    /// The reader gave up reading (bad message length).
    stopped: Option<RecvError>,
    duplex: bool,
}

impl Model {
    /// Whether a read would not wait: the records there end a message (one
    /// without the "more" mark), or cut one off (an unmarked record after a
    /// begun one), or the writer closed.
    fn readable(&self) -> bool {
        let mut begun = self.taken.is_some();
        for (_, mark) in &self.records {
            match (begun, mark.continues) {
                (false, true) => continue, // skipped
                (true, false) => return true,
                _ => {}
            }
            if !mark.more {
                return true;
            }
            begun = true;
        }
        self.closed
    }

    /// What a try that finds no whole message does: takes every record
    /// there (skipping continuations of nothing) and keeps what belongs to
    /// the message it began.
    fn take_all(&mut self) {
        while let Some((r, mark)) = self.records.pop_front() {
            match &mut self.taken {
                None if mark.continues => {}
                Some(msg) => msg.extend_from_slice(&r),
                None => self.taken = Some(r),
            }
        }
    }

    /// The next whole message, records consumed; `Err` at end of file, or
    /// when an unmarked record cuts the message off (left for the next
    /// read). Marked records with no message begun are skipped.
    fn message(&mut self, limit: usize) -> Result<Vec<u8>, RecvError> {
        let mut msg = self.taken.take();
        loop {
            let Some((_, mark)) = self.records.front() else {
                return Err(match msg {
                    None => RecvError::Eof,
                    Some(_) => RecvError::TruncatedMessage,
                });
            };
            let mark = *mark;
            match (&msg, mark.continues) {
                (None, true) => {
                    self.records.pop_front();
                    continue;
                }
                (Some(_), false) => return Err(RecvError::TruncatedMessage),
                _ => {}
            }
            let (r, _) = self.records.pop_front().expect("front exists");
            let got = msg.get_or_insert_with(Vec::new);
            if got.len().saturating_add(r.len()) > limit {
                return Err(RecvError::BadMessageLength { maxlength: limit });
            }
            got.extend_from_slice(&r);
            if !mark.more {
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
        duplex,
        ..Model::default()
    };
    let fragment = fragment as usize;
    let mut seq = 0u8;
    while let Some(op) = input.op() {
        match op % 8 {
            0..=3 => {
                let len = match input.byte() % 4 {
                    0 => fragment,
                    1 => 0,
                    _ => usize::from(input.u16()) % (fragment + 2),
                };
                // Mostly as a pipe writes them (the first of a message
                // unmarked, every one but the last with "more"), sometimes
                // not: a record of any length may end a message or not.
                let continues = match input.byte() % 4 {
                    0 => true,
                    1 => false,
                    _ => model.records.back().is_some_and(|(_, mark)| mark.more),
                };
                let more = match input.byte() % 3 {
                    0 => true,
                    1 => false,
                    _ => len == fragment,
                };
                let mark = Mark { continues, more };
                seq = seq.wrapping_add(1);
                let record: Vec<u8> = (0..len).map(|i| seq ^ i as u8).collect();
                match writer.try_push_marked(&record, mark) {
                    Ok(()) => model.records.push_back((record, mark)),
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
                // A blocking read only where it would not wait; a try
                // anywhere (it never waits, even on a scribbled ring).
                let blocking = !model.untrusted && model.readable();
                read_one(&mut reader, &mut model, &mut input, blocking);
            }
        }
    }
    writer.close();
    model.closed = true;
    for _ in 0..4096 {
        if !read_one(&mut reader, &mut model, &mut input, true) {
            break;
        }
    }
    let _ = reader.poll();
}

/// The read paths: the blocking ones, then the tries.
const PATHS: u8 = 7;
const TRIES: u8 = 4;

/// One read through a path the input picks (a try, unless `blocking`
/// reads are allowed), checked against the model unless the ring was
/// scribbled on. Returns whether to keep reading.
fn read_one(
    reader: &mut Connection,
    model: &mut Model,
    input: &mut Input<'_>,
    blocking: bool,
) -> bool {
    let how = match input.byte() % PATHS {
        how if !blocking && how < TRIES => how + TRIES,
        how => how,
    };
    let limit = match how {
        1 => usize::from(input.u16()) % 600,
        _ => usize::MAX,
    };
    let (buf_len, offset) = (usize::from(input.byte()), usize::from(input.byte() % 32));
    let mut buf = vec![0u8; buf_len];
    // A receive into `buf` answers with the bytes it filled.
    let got: Result<Vec<u8>, TryRecvError> = match how {
        0 | 1 => reader
            .recv_bytes((how == 1).then_some(limit))
            .map_err(Into::into),
        2 => reader
            .recv_bytes_into(&mut buf, offset)
            .map_err(Into::into)
            .map(|n| buf[offset..offset + n].to_vec()),
        3 => reader.recv::<Vec<u8>>().map_err(Into::into),
        4 => reader.try_recv_bytes(None),
        5 => reader
            .try_recv_bytes_into(&mut buf, offset)
            .map(|n| buf[offset..offset + n].to_vec()),
        _ => reader.try_recv::<Vec<u8>>(),
    };
    let keep_going = got.is_ok()
        || matches!(
            got,
            Err(TryRecvError::Empty
                | TryRecvError::Recv(RecvError::BufferTooShort(_) | RecvError::TruncatedMessage))
        );
    if model.untrusted {
        return keep_going;
    }
    let expected = expected(model, how, limit, buf_len, offset);
    assert_eq!(got, expected, "read path {how}");
    keep_going
}

fn expected(
    model: &mut Model,
    how: u8,
    limit: usize,
    buf_len: usize,
    offset: usize,
) -> Result<Vec<u8>, TryRecvError> {
    if let Some(e) = &model.stopped {
        return Err(e.clone().into());
    }
    let into = how == 2 || how == 5;
    if into && offset > buf_len {
        return Err(RecvError::OffsetTooLarge.into());
    }
    if how >= TRIES && !model.readable() {
        model.take_all();
        return Err(TryRecvError::Empty);
    }
    match model.message(limit) {
        Ok(msg) if into && msg.len() > buf_len - offset => {
            Err(RecvError::BufferTooShort(msg).into())
        }
        Err(e @ RecvError::BadMessageLength { .. }) => {
            // Python's rule: a duplex end becomes write-only, a read-only
            // end is closed.
            model.stopped = Some(if model.duplex {
                RecvError::WriteOnly
            } else {
                RecvError::HandleClosed
            });
            Err(e.into())
        }
        other => other.map_err(Into::into),
    }
}
