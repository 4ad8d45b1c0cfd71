//! Pipe handover episodes: long messages (many fragments) through a named
//! pipe whose writer and reader ends are killed, stopped, taken over by new
//! processes and handed to children in the middle of messages (the parent's
//! side is `tests/chaos/pipe.rs`). What the library promises (DESIGN.md,
//! "Handover"; `shmring::pipe`, "Framing"): a reader returns only whole
//! messages, each written by one writer, whoever dies, stalls, closes,
//! re-opens or hands an end over.
//!
//! # How it is checked
//!
//! * Every message names its writer (the writer incarnation, 1, 2, … in
//!   the episode) and sequence number, its length, a checksum of that head
//!   and one of its body ([`long_message`]). A message without a valid head
//!   is *torn* (the tail of one returned as a message); one with a valid
//!   head but the wrong length or body is *spliced* (two messages, or two
//!   writers', run together) ([`verdict`]). Both must never happen.
//! * The readers, one after the other, record the last message they saw
//!   ([`HandoverWord::LastSeen`]): each message must come after it (a new
//!   writer starts only once the old one is dead, so writer numbers only
//!   grow). Anything else is *reordered* (a duplicate included).
//! * Each writer records the messages it finished sending, each reader the
//!   messages it received per writer; the parent computes the messages
//!   *lost* and checks them against what the faults allow: one per reader
//!   killed or end handed over with part of a message (a writer's death
//!   costs only the message it had not finished, which it never counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmring::pipe::{Connection, RecvError, SendError, TryRecvError};

use crate::hook;
use crate::ledger::{Counter, HandoverWord, HandoverWriterWord, Ledger, HANDOVER_WRITERS};
use crate::roles::throttle;

/// Bytes of a message's head: writer, sequence number, length, head
/// checksum (u32 each), body checksum (u64).
const HEAD: usize = 24;
/// Longest message: more than the episode's 4 KiB ring, so that some are
/// streamed fragment by fragment.
pub const LONGEST: usize = 6_000;

/// splitmix64's finaliser.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The length of message `seq` of writer `writer`: 24 to [`LONGEST`] bytes,
/// most of them several 256-byte fragments.
pub fn length_of(writer: u32, seq: u32) -> usize {
    let h = mix((u64::from(writer) << 32) | u64::from(seq));
    match h % 8 {
        0 => HEAD + (h >> 8) as usize % 64,
        _ => HEAD + (h >> 8) as usize % (LONGEST - HEAD + 1),
    }
}

/// Message `seq` of writer `writer`, into `out` (see the module docs).
pub fn long_message(writer: u32, seq: u32, out: &mut Vec<u8>) {
    let len = length_of(writer, seq);
    out.clear();
    out.extend_from_slice(&writer.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    let head_sum = mix(u64::from_le_bytes(out[..8].try_into().expect("8 bytes")) ^ len as u64);
    out.extend_from_slice(&(head_sum as u32).to_le_bytes());
    let body_at = out.len() + 8;
    out.resize(len, 0);
    let seed = head_sum;
    for (i, chunk) in out[body_at..].chunks_mut(8).enumerate() {
        let v = mix(seed.wrapping_add(i as u64)).to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let body_sum = out[body_at..]
        .iter()
        .fold(0xCBF2_9CE4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        });
    out[16..24].copy_from_slice(&body_sum.to_le_bytes());
}

/// What a received message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly message `seq` of writer `writer`.
    Whole {
        /// Its writer's number.
        writer: u32,
        /// Its sequence number.
        seq: u32,
    },
    /// No valid head: not the beginning of any message.
    Torn,
    /// A valid head, the wrong length or body.
    Spliced,
}

/// Judges a received message (see the module docs).
pub fn verdict(buf: &[u8]) -> Verdict {
    if buf.len() < HEAD {
        return Verdict::Torn;
    }
    let word = |i: usize| u32::from_le_bytes(buf[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let (writer, seq, len) = (word(0), word(1), word(2) as usize);
    let head_sum = mix(u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")) ^ len as u64);
    if word(3) != head_sum as u32 || len != length_of(writer, seq) {
        return Verdict::Torn;
    }
    let mut expect = Vec::with_capacity(len);
    long_message(writer, seq, &mut expect);
    if expect == buf {
        Verdict::Whole { writer, seq }
    } else {
        Verdict::Spliced
    }
}

fn writer_word(ledger: &Ledger, writer: u32, w: HandoverWriterWord) -> &AtomicU64 {
    ledger.handover_writer(writer, w)
}

/// What readers record of what they receive (a reader process, or the
/// parent while it holds the reading end before handing it on).
pub struct ReadCheck<'a> {
    ledger: &'a Ledger,
}

impl<'a> ReadCheck<'a> {
    /// Checks against what the episode's earlier readers recorded.
    pub fn new(ledger: &'a Ledger) -> ReadCheck<'a> {
        ReadCheck { ledger }
    }

    /// Records one received message.
    pub fn got(&mut self, buf: &[u8]) {
        let l = self.ledger;
        let (writer, seq) = match verdict(buf) {
            Verdict::Whole { writer, seq } => (writer, seq),
            Verdict::Torn => {
                eprintln!("chaos: handover: torn message of {} bytes", buf.len());
                l.add(Counter::HandoverTorn, 1);
                return;
            }
            Verdict::Spliced => {
                eprintln!("chaos: handover: spliced message of {} bytes", buf.len());
                l.add(Counter::HandoverSpliced, 1);
                return;
            }
        };
        if writer == 0 || writer as usize > HANDOVER_WRITERS {
            eprintln!("chaos: handover: message of unknown writer {writer}");
            l.add(Counter::HandoverSpliced, 1);
            return;
        }
        let last = l.handover(HandoverWord::LastSeen);
        // ORDERING: Acquire — pairs with the previous reader's Release (it
        // is dead, or handed the end over, before this one reads).
        let seen = last.load(Ordering::Acquire);
        let this = (u64::from(writer) << 32) | (u64::from(seq) + 1);
        if this <= seen {
            eprintln!(
                "chaos: handover: writer {writer} seq {seq} after writer {} seq {}",
                seen >> 32,
                (seen & 0xFFFF_FFFF).wrapping_sub(1)
            );
            l.add(Counter::HandoverReordered, 1);
            return;
        }
        // ORDERING: Relaxed on the per-writer tallies — published by the
        // Release store of `LastSeen` below (the parent reads after the
        // readers are gone, the next reader after this one is).
        writer_word(l, writer, HandoverWriterWord::Delivered).fetch_add(1, Ordering::Relaxed);
        writer_word(l, writer, HandoverWriterWord::MaxSeen)
            .fetch_max(u64::from(seq) + 1, Ordering::Relaxed);
        l.add(Counter::HandoverMessages, 1);
        // ORDERING: Release — see above.
        last.store(this, Ordering::Release);
    }

    /// Records a `TruncatedMessage` report (allowed; counted).
    pub fn truncated(&mut self) {
        self.ledger.add(Counter::HandoverTruncated, 1);
    }

    /// Records the end of file.
    pub fn done(&mut self) {
        // ORDERING: Release — the parent's Acquire after the reader exits.
        self.ledger
            .handover(HandoverWord::Done)
            .store(1, Ordering::Release);
    }
}

/// Handover writer `id` (its number in the episode, from 1) on the writing
/// end `conn` (taken over by name or inherited): sends its messages 0, 1,
/// … (blocking, so the long ones stream) until `quota` of them (`u64::MAX`:
/// until it is killed), the stop flag, or `BrokenPipe`; records each one it
/// finished.
pub fn writer(ledger: &Ledger, mut conn: Connection, id: u32, quota: u64) {
    let (sent, sending) = (
        writer_word(ledger, id, HandoverWriterWord::Sent),
        writer_word(ledger, id, HandoverWriterWord::Sending),
    );
    let mut buf = Vec::new();
    let mut seq = 0u64;
    while seq < quota && !ledger.stopping() {
        long_message(id, seq as u32, &mut buf);
        // ORDERING: Release — read by the parent after this process is gone.
        sending.store(seq + 1, Ordering::Release);
        match conn.send_bytes(&buf, 0, None) {
            Ok(()) => {
                seq += 1;
                // ORDERING: Release — as above.
                sent.store(seq, Ordering::Release);
                throttle(seq);
            }
            Err(SendError::BrokenPipe) => {
                // ORDERING: Release — as above.
                ledger
                    .handover(HandoverWord::Broken)
                    .store(1, Ordering::Release);
                return;
            }
            Err(e) => panic!("handover writer {id}: {e}"),
        }
    }
    if seq >= quota {
        // ORDERING: Release — before the close (the drop) signals the end.
        ledger
            .handover(HandoverWord::Finished)
            .store(1, Ordering::Release);
    }
}

/// What one receive came to, for [`receive`].
pub enum Received {
    /// A message was recorded, or the call found nothing yet.
    Going,
    /// End of file (recorded).
    End,
}

/// One receive on `conn`, blocking or not, recorded in `check`.
///
/// # Panics
///
/// On any error but the expected ones (a finding).
pub fn receive(conn: &mut Connection, check: &mut ReadCheck<'_>, blocking: bool) -> Received {
    let got = if blocking {
        conn.recv_bytes(None).map_err(TryRecvError::Recv)
    } else {
        conn.try_recv_bytes(None)
    };
    match got {
        Ok(buf) => {
            hook("chaos.reader-got", &[]);
            check.got(&buf);
        }
        Err(TryRecvError::Empty) => {}
        Err(TryRecvError::Recv(RecvError::TruncatedMessage)) => check.truncated(),
        Err(TryRecvError::Recv(RecvError::Eof)) => {
            check.done();
            return Received::End;
        }
        Err(e) => panic!("handover reader: {e}"),
    }
    Received::Going
}

/// A handover reader on the reading end `conn` (taken over by name or
/// inherited): receives to end of file, mixing blocking receives with
/// tries (which keep half a message across calls, chosen from `seed`),
/// checking each.
pub fn reader(ledger: &Ledger, mut conn: Connection, seed: u64) {
    let mut rng = seed | 1;
    let mut check = ReadCheck::new(ledger);
    loop {
        rng = mix(rng);
        let blocking = !rng.is_multiple_of(3);
        match receive(&mut conn, &mut check, blocking) {
            Received::End => return,
            Received::Going if !blocking => std::thread::sleep(Duration::from_micros(200)),
            Received::Going => {}
        }
    }
}

/// The losses of the episode that just ended (every process of it gone):
/// messages each writer finished sending that no reader recorded. A
/// message recorded beyond what its writer counted (it died between the
/// send and the count) does not make up for one lost.
pub fn lost(ledger: &Ledger, writers: u32) -> u64 {
    (1..=writers)
        .map(|w| {
            // ORDERING: Acquire — every writer and reader is gone.
            let load = |x| writer_word(ledger, w, x).load(Ordering::Acquire);
            let (sent, delivered, max_seen) = (
                load(HandoverWriterWord::Sent),
                load(HandoverWriterWord::Delivered),
                load(HandoverWriterWord::MaxSeen),
            );
            let beyond = u64::from(max_seen > sent);
            sent.saturating_sub(delivered - beyond.min(delivered))
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_judged() {
        let mut buf = Vec::new();
        for seq in 0..200 {
            long_message(3, seq, &mut buf);
            assert_eq!(buf.len(), length_of(3, seq));
            assert_eq!(verdict(&buf), Verdict::Whole { writer: 3, seq });
        }
        long_message(2, 7, &mut buf);
        let mut other = Vec::new();
        long_message(3, 9, &mut other);
        // Tails are torn; a head with someone else's rest is spliced.
        for cut in [1, 8, 23, 100] {
            if cut < buf.len() {
                assert_eq!(verdict(&buf[cut..]), Verdict::Torn, "cut {cut}");
            }
        }
        let mut spliced = buf[..buf.len().min(300)].to_vec();
        spliced.extend_from_slice(&other);
        assert_ne!(verdict(&spliced), Verdict::Whole { writer: 2, seq: 7 });
        assert_ne!(verdict(&spliced), Verdict::Torn);
        let mut flipped = buf.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(verdict(&flipped), Verdict::Spliced);
        assert!((0..1000).any(|s| length_of(1, s) > 4096));
        assert!((0..1000).any(|s| length_of(1, s) < 256));
    }
}
