//! The kill -9 chaos harness of shmring (issue 5, DESIGN.md "Contracts").
//!
//! Producers, consumers, lock holders, dict writers, pipe ends and SPSC ring
//! readers run in separate processes (the test binary `tests/chaos/main.rs`
//! re-executing itself to run one of its entry points, told the objects'
//! names and its [`HookSetup`] as typed arguments; see [`wire`]). The
//! parent kills them with `SIGKILL` at
//! random times, or has them kill themselves at the N-th hit of a chosen
//! failpoint ([`shmring::core::failpoint`], compiled in by this crate's
//! dependency on `shmring/failpoints`; the Dict's own
//! `SHMRING_DICT_FAILPOINT`), restarts them, and at the end accounts for
//! every message:
//!
//! * every payload carries its producer, the producer's *incarnation* (one
//!   number per process, taken after it claimed its ring), its ring, its
//!   sequence number and a checksum ([`message`], [`decode`]): a wrong one is
//!   *torn*;
//! * a consumer marks each delivery in a shared bitmap ([`ledger::Ledger`]):
//!   a bit already set is a *duplicate*;
//! * a consumer checks the order it sees ([`order::OrderCheck`]): FIFO per
//!   producer incarnation (the queue's promise), and on each ring a dead
//!   owner's records before its successor's;
//! * a producer writes, before each push, the sequence number it is pushing;
//!   its successor marks that one *in doubt* (delivered once or never);
//! * a consumer's failpoint hook writes the sequence number of every record
//!   it copies out into its *in-flight* word, cleared once recorded, so a
//!   consumer killed after taking a record and before recording it names
//!   the one message it lost (*in-flight lost*, allowed by the contract);
//! * at the end the parent drains the queue: any sequence number below a
//!   producer's last that is neither delivered, nor in doubt, nor named by a
//!   dead consumer's in-flight word is *lost*;
//! * SPSC rings and pipes whose *reader* is killed ([`channel`]) check that
//!   the writer is told (`Closed`, `BrokenPipe`) within the liveness bound and
//!   that a reader taking the dead one's place continues exactly where it
//!   stopped, less at most the one message it was receiving;
//! * pipes carrying long messages (many fragments) whose writers and
//!   readers are killed, stopped, replaced and handed to children in the
//!   middle of messages ([`pipe_faults`]) check that every message received
//!   is whole and one writer's: torn and spliced messages are counted.
//!
//! Run: `cargo test -p shmring-chaos --test chaos` (short mode, 2,000 kills
//! by default); long mode: `SHMRING_CHAOS_KILLS=100000
//! SHMRING_CHAOS_MAX_SECONDS=1800 cargo test -p shmring-chaos --test chaos`.
//! See `tests/chaos/main.rs` for every knob.
#![warn(missing_docs)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub mod channel;
pub mod faults;
pub mod ledger;
pub mod order;
pub mod pipe_faults;
pub mod roles;
pub mod wire;

use ledger::{DeathClock, Ledger};

crate::wire_struct! {
    /// What a chaos child's failpoint hook is told (an argument of every
    /// child's entry point): the ledger, and how the child is to die.
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    pub struct HookSetup {
        /// The ledger file.
        pub ledger: PathBuf,
        /// `(NAME, N)`: die (`SIGKILL`) at the N-th hit of failpoint NAME.
        pub failpoint: Option<(String, u64)>,
        /// The consumer identity whose in-flight word the hook writes.
        pub consumer: Option<usize>,
        /// The clock the hook stamps with the time just before it kills the
        /// process.
        pub died_at: Option<DeathClock>,
    }
}

/// What a payload says about itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Tag {
    /// Producer identity (queue: `0..PRODUCERS`; channels: [`channel::SENDER`]).
    pub producer: u32,
    /// The producer process's incarnation (0 for channel writers).
    pub incarnation: u32,
    /// The queue ring it was pushed into (0 for channels).
    pub ring: u32,
    /// The producer identity's sequence number.
    pub seq: u32,
}

/// Bytes before the filler: four u32 fields and the u64 checksum.
const HEAD: usize = 24;

/// A payload: producer, incarnation, ring, sequence number (u32 each), a
/// checksum of the four (u64), then `seq % 16` filler bytes derived from the
/// checksum. At most 39 bytes.
pub fn message(tag: Tag, out: &mut Vec<u8>) {
    let sum = checksum(tag);
    out.clear();
    for field in [tag.producer, tag.incarnation, tag.ring, tag.seq] {
        out.extend_from_slice(&field.to_le_bytes());
    }
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend((0..tag.seq % 16).map(|i| (sum >> (i % 8 * 8)) as u8 ^ i as u8));
}

fn checksum(tag: Tag) -> u64 {
    let a = (u64::from(tag.producer) << 32) | u64::from(tag.seq);
    let b = (u64::from(tag.incarnation) << 32) | u64::from(tag.ring);
    (a.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ b).wrapping_mul(0xD6E8_FEB8_6659_FD93) ^ 0x5EED
}

/// The [`Tag`] of an intact payload; `None` for a torn one.
pub fn decode(buf: &[u8]) -> Option<Tag> {
    if buf.len() < HEAD {
        return None;
    }
    let field = |i: usize| u32::from_le_bytes(buf[4 * i..4 * i + 4].try_into().expect("4 bytes"));
    let tag = Tag {
        producer: field(0),
        incarnation: field(1),
        ring: field(2),
        seq: field(3),
    };
    let mut expect = Vec::with_capacity(buf.len());
    message(tag, &mut expect);
    (expect == buf).then_some(tag)
}

/// The in-flight tag of `(producer, seq)`: never 0.
pub fn in_flight_tag(producer: u32, seq: u32) -> u64 {
    ((u64::from(producer) << 40) | u64::from(seq)) + 1
}

/// Inverse of [`in_flight_tag`]; `None` for 0.
pub fn split_tag(tag: u64) -> Option<(u32, u32)> {
    let v = tag.checked_sub(1)?;
    Some(((v >> 40) as u32, (v & 0xFF_FFFF_FFFF) as u32))
}

struct HookConfig {
    target: Option<(String, u64)>,
    consumer: Option<usize>,
    died_at: Option<DeathClock>,
    ledger: Ledger,
}

static HOOK: OnceLock<HookConfig> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Maps the ledger and installs the failpoint hook `setup` describes.
/// Returns the ledger (mapped once more for the caller).
///
/// # Panics
///
/// When the ledger cannot be mapped.
pub fn install_hook(setup: &HookSetup) -> Ledger {
    let config = HookConfig {
        target: setup.failpoint.clone(),
        consumer: setup.consumer,
        died_at: setup.died_at,
        ledger: Ledger::open(&setup.ledger).expect("open ledger"),
    };
    let _ = HOOK.set(config);
    shmring::core::failpoint::set_hook(Some(hook));
    Ledger::open(&setup.ledger).expect("open ledger")
}

/// The failpoint hook; roles also call it at their own points.
pub fn hook(name: &'static str, context: &[u8]) {
    let Some(config) = HOOK.get() else { return };
    if let (Some(c), false) = (config.consumer, context.is_empty()) {
        if let Some(tag) = decode(context) {
            // ORDERING: Release — the tag must be in the ledger before the
            // CAS that takes the record (the next protocol step).
            config
                .ledger
                .in_flight(c)
                .store(in_flight_tag(tag.producer, tag.seq), Ordering::Release);
        }
    }
    let Some((target, n)) = &config.target else {
        return;
    };
    // ORDERING: Relaxed — a counter this process alone uses.
    if target == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
        if let Some(clock) = config.died_at {
            // ORDERING: Release — read by the survivors after they noticed
            // the death, to time how long that took.
            config
                .ledger
                .died_at(clock)
                .store(ledger::now_ns(), Ordering::Release);
        }
        die();
    }
}

/// `SIGKILL` to this process.
pub fn die() -> ! {
    // SAFETY: getpid and kill have no memory-safety preconditions.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    unreachable!("SIGKILL returned");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_and_tears_are_seen() {
        let tag = Tag {
            producer: 2,
            incarnation: 77,
            ring: 5,
            seq: 12_345,
        };
        let mut buf = Vec::new();
        message(tag, &mut buf);
        assert_eq!(decode(&buf), Some(tag));
        for i in 0..buf.len() {
            let mut torn = buf.clone();
            torn[i] ^= 0x10;
            assert_eq!(decode(&torn), None, "flip at byte {i} unnoticed");
        }
        assert_eq!(decode(&buf[..buf.len() - 1]), None);
        assert_eq!(decode(&[]), None);
    }

    #[test]
    fn hook_setups_and_channels_round_trip() {
        use ledger::Chan;
        use wire::Message;
        let clocks = [
            None,
            Some(DeathClock::PipeWriter),
            Some(DeathClock::Reader(Chan::Spsc)),
            Some(DeathClock::Reader(Chan::Pipe)),
        ];
        for died_at in clocks {
            let setup = HookSetup {
                ledger: "/dev/shm/shmring-chaos-ledger-1".into(),
                failpoint: Some(("dict:flipped".into(), 200)),
                consumer: Some(1),
                died_at,
            };
            let mut bytes = Vec::new();
            setup.encode(&mut bytes).unwrap();
            assert_eq!(HookSetup::decode(&bytes).unwrap(), setup);
        }
        for c in [Chan::Spsc, Chan::Pipe] {
            let mut bytes = Vec::new();
            c.encode(&mut bytes).unwrap();
            assert_eq!(Chan::decode(&bytes).unwrap(), c);
        }
        assert!(Chan::decode(&[2]).is_err());
    }

    #[test]
    fn in_flight_tags_round_trip() {
        assert_eq!(split_tag(in_flight_tag(3, 99)), Some((3, 99)));
        assert_eq!(split_tag(0), None);
    }
}
