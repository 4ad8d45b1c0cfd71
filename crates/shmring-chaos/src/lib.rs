//! The kill -9 chaos harness of shmring (issue 5, DESIGN.md "Contracts").
//!
//! Producers, consumers, lock holders, dict writers and pipe writers run in
//! separate processes (the test binary `tests/chaos.rs` re-executing itself
//! with a role). The parent kills them with `SIGKILL` at random times, or
//! has them kill themselves at the N-th hit of a chosen failpoint
//! ([`shmring::core::failpoint`], compiled in by this crate's dependency on
//! `shmring/failpoints`; the Dict's own `SHMRING_DICT_FAILPOINT`), restarts
//! them, and at the end accounts for every message:
//!
//! * every payload carries its producer, its sequence number and a checksum
//!   ([`message`], [`decode`]): a wrong one is *torn*;
//! * a consumer marks each delivery in a shared bitmap ([`ledger::Ledger`]):
//!   a bit already set is a *duplicate*;
//! * a producer writes, before each push, the sequence number it is pushing;
//!   its successor marks that one *in doubt* (delivered once or never);
//! * a consumer's failpoint hook writes the sequence number of every record
//!   it copies out into its *in-flight* word, cleared once recorded, so a
//!   consumer killed after taking a record and before recording it names
//!   the one message it lost (*in-flight lost*, allowed by the contract);
//! * at the end the parent drains the queue: any sequence number below a
//!   producer's last that is neither delivered, nor in doubt, nor named by a
//!   dead consumer's in-flight word is *lost*.
//!
//! Run: `cargo test -p shmring-chaos --test chaos` (short mode, 2,000 kills
//! by default); long mode: `SHMRING_CHAOS_KILLS=100000 cargo test --release
//! -p shmring-chaos --test chaos`. See `tests/chaos.rs` for every knob.
#![warn(missing_docs)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

pub mod ledger;
pub mod roles;

use ledger::{Ledger, PipeWord};

/// Environment: the ledger file.
pub const LEDGER_VAR: &str = "SHMRING_CHAOS_LEDGER";
/// Environment: `NAME:N`, die at the N-th hit of failpoint NAME.
pub const FAILPOINT_VAR: &str = "SHMRING_CHAOS_FAILPOINT";
/// Environment: the consumer identity whose in-flight word the hook writes.
pub const CONSUMER_VAR: &str = "SHMRING_CHAOS_CONSUMER";
/// Environment: set in pipe writers, whose hook records the time of death.
pub const PIPE_WRITER_VAR: &str = "SHMRING_CHAOS_PIPE_WRITER";

/// A payload: producer (u32), sequence number (u32), checksum (u64), then
/// `seq % 16` filler bytes derived from the checksum.
pub fn message(producer: u32, seq: u32, out: &mut Vec<u8>) {
    let sum = checksum(producer, seq);
    out.clear();
    out.extend_from_slice(&producer.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&sum.to_le_bytes());
    out.extend((0..seq % 16).map(|i| (sum >> (i % 8 * 8)) as u8 ^ i as u8));
}

fn checksum(producer: u32, seq: u32) -> u64 {
    ((u64::from(producer) << 32) | u64::from(seq)).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED
}

/// `(producer, seq)` of an intact payload; `None` for a torn one.
pub fn decode(buf: &[u8]) -> Option<(u32, u32)> {
    let producer = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?);
    let seq = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    let mut expect = Vec::with_capacity(buf.len());
    message(producer, seq, &mut expect);
    (expect == buf).then_some((producer, seq))
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
    pipe_writer: bool,
    ledger: Ledger,
}

static HOOK: OnceLock<HookConfig> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Maps the ledger and installs the failpoint hook from the environment.
/// Returns the ledger (mapped once more for the caller).
///
/// # Panics
///
/// When the ledger variable is missing or the file cannot be mapped.
pub fn install_hook() -> Ledger {
    let path = std::env::var(LEDGER_VAR).expect("ledger variable");
    let target = std::env::var(FAILPOINT_VAR).ok().and_then(|v| {
        let (name, n) = v.rsplit_once(':')?;
        Some((name.to_string(), n.parse().ok()?))
    });
    let config = HookConfig {
        target,
        consumer: std::env::var(CONSUMER_VAR)
            .ok()
            .and_then(|v| v.parse().ok()),
        pipe_writer: std::env::var_os(PIPE_WRITER_VAR).is_some(),
        ledger: Ledger::open(path.as_ref()).expect("open ledger"),
    };
    let _ = HOOK.set(config);
    shmring::core::failpoint::set_hook(Some(hook));
    Ledger::open(path.as_ref()).expect("open ledger")
}

/// The failpoint hook; roles also call it at their own points.
pub fn hook(name: &'static str, context: &[u8]) {
    let Some(config) = HOOK.get() else { return };
    if let (Some(c), false) = (config.consumer, context.is_empty()) {
        if let Some((p, seq)) = decode(context) {
            // ORDERING: Release — the tag must be in the ledger before the
            // CAS that takes the record (the next protocol step).
            config
                .ledger
                .in_flight(c)
                .store(in_flight_tag(p, seq), Ordering::Release);
        }
    }
    let Some((target, n)) = &config.target else {
        return;
    };
    // ORDERING: Relaxed — a counter this process alone uses.
    if target == name && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n {
        if config.pipe_writer {
            // ORDERING: Release — read by the pipe reader after its EOF.
            config
                .ledger
                .pipe(PipeWord::DiedAt)
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
