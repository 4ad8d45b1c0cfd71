//! The fault harness's failpoint hook, in every child.
//!
//! Every child's entry point takes a [`Setup`] (its board, incarnation,
//! slot, …) and installs the hook from it ([`install`]). Its `at` picks
//! the fault: at the N-th hit of failpoint NAME, the process stamps its
//! death in the board and sends itself `SIGKILL` ([`Action::Kill`]), or
//! stamps its stop and sends itself `SIGSTOP` ([`Action::Stop`]: the
//! parent sees the stamp, waits until the process is really stopped, and
//! sends `SIGCONT` after the pause it chose). Its `consumer` makes a queue
//! consumer write the sequence number of every record it copies out into
//! its in-flight word of the chaos ledger, as the chaos harness's hook
//! does. A role may add an *observer* that sees every failpoint first
//! ([`set_observer`]).
//!
//! Roles call [`point`] at their own protocol points (`faults.*`), which
//! take part in the same choice.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::faults::board::{now_ns, Board, IncWord};
use crate::ledger::Ledger;
use crate::wire::{CodecError, Field};
use crate::{decode, die, in_flight_tag};

/// What to do at the chosen failpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `SIGKILL` to itself.
    Kill,
    /// `SIGSTOP` to itself; the parent continues it.
    Stop,
}

impl Field for Action {
    fn put(&self, out: &mut Vec<u8>) {
        (*self == Action::Stop).put(out);
    }

    fn take(input: &mut &[u8]) -> Result<Action, CodecError> {
        Ok(if bool::take(input)? {
            Action::Stop
        } else {
            Action::Kill
        })
    }
}

crate::wire_struct! {
    /// What a fault child is told about itself (an argument of every
    /// child's entry point, before its role's own).
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Setup {
        /// The board file.
        pub board: PathBuf,
        /// The chaos ledger file (queue scenarios count messages there).
        pub ledger: PathBuf,
        /// This process's incarnation number.
        pub inc: u64,
        /// Its slot in its scenario (producer, consumer or worker number).
        pub slot: usize,
        /// The parent's pid: a child whose parent is gone stops.
        pub parent: u32,
        /// How long the child may live at most (seconds): its watchdog
        /// aborts a child the parent lost track of.
        pub limit_s: u64,
        /// `(NAME, N, action)`: the fault at the N-th hit of failpoint NAME.
        pub at: Option<(String, u64, Action)>,
        /// The queue consumer identity whose in-flight word the hook writes.
        pub consumer: Option<usize>,
    }
}

/// A failpoint observer (see [`set_observer`]).
pub type Observer = fn(name: &'static str, context: &[u8]);

struct Config {
    board: Board,
    inc: u64,
    target: Option<(String, u64, Action)>,
    ledger: Ledger,
    consumer: Option<usize>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static OBSERVER: OnceLock<Observer> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// What a child knows about itself: the board, its incarnation and slot,
/// the chaos ledger (queue scenarios), its parent.
#[derive(Debug)]
pub struct Me {
    /// The board, mapped once more for the role.
    pub board: Board,
    /// The board's file (for a bystander this child starts).
    pub board_path: PathBuf,
    /// This process's incarnation.
    pub inc: u64,
    /// Its slot in its scenario.
    pub slot: usize,
    /// The parent's pid.
    pub parent: u32,
    ledger: Ledger,
}

impl Me {
    /// Stamps this process's death in the board and kills it.
    pub fn die(&self) -> ! {
        self.board.stamp_death(self.inc);
        die()
    }

    /// The chaos ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }
}

/// Maps the board and the ledger and installs the hook `setup`
/// describes; records this process's pid in its entry.
///
/// # Panics
///
/// When a file cannot be mapped.
pub fn install(setup: &Setup) -> Me {
    let config = Config {
        board: Board::open(&setup.board).expect("open board"),
        inc: setup.inc,
        target: setup.at.clone(),
        ledger: Ledger::open(&setup.ledger).expect("open chaos ledger"),
        consumer: setup.consumer,
    };
    // ORDERING: Release — the parent reads it after the spawn anyway.
    config
        .board
        .inc(setup.inc, IncWord::Pid)
        .store(u64::from(std::process::id()), Ordering::Release);
    let _ = CONFIG.set(config);
    shmring::core::failpoint::set_hook(Some(hook));
    Me {
        board: Board::open(&setup.board).expect("open board"),
        board_path: setup.board.clone(),
        inc: setup.inc,
        slot: setup.slot,
        parent: setup.parent,
        ledger: Ledger::open(&setup.ledger).expect("open chaos ledger"),
    }
}

/// Adds an observer that sees every failpoint before the hook acts (one per
/// process; later calls are ignored).
pub fn set_observer(observer: Observer) {
    let _ = OBSERVER.set(observer);
}

/// A role's own failpoint.
pub fn point(name: &'static str) {
    hook(name, &[]);
}

/// The failpoint hook.
pub fn hook(name: &'static str, context: &[u8]) {
    if let Some(observe) = OBSERVER.get() {
        observe(name, context);
    }
    let Some(config) = CONFIG.get() else { return };
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
    let Some((target, n, action)) = &config.target else {
        return;
    };
    // ORDERING: Relaxed — a counter this process alone uses.
    if target != name || HITS.fetch_add(1, Ordering::Relaxed) + 1 != *n {
        return;
    }
    match action {
        Action::Kill => {
            config.board.stamp_death(config.inc);
            die();
        }
        // Not while the round ends: the parent may already have stopped
        // looking for stops (it still catches one that slips through).
        Action::Stop if config.board.stopping() => {}
        Action::Stop => {
            // ORDERING: Release — the parent's Acquire load sees it, then
            // waits until the process is really stopped before continuing it.
            config
                .board
                .inc(config.inc, IncWord::StoppedSince)
                .store(now_ns(), Ordering::Release);
            // SAFETY: raise has no memory-safety preconditions; SIGSTOP
            // stops the whole process until the parent's SIGCONT.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Message;

    #[test]
    fn setups_round_trip() {
        let setup = Setup {
            board: "/dev/shm/board".into(),
            ledger: "/dev/shm/ledger".into(),
            inc: 41,
            slot: 2,
            parent: 1234,
            limit_s: 324,
            at: Some(("mpmc.cas-done".into(), 3, Action::Stop)),
            consumer: Some(1),
        };
        let mut bytes = Vec::new();
        setup.encode(&mut bytes).unwrap();
        assert_eq!(Setup::decode(&bytes).unwrap(), setup);
        let kill = Setup {
            at: Some(("a:b".into(), 1, Action::Kill)),
            consumer: None,
            ..setup
        };
        bytes.clear();
        kill.encode(&mut bytes).unwrap();
        assert_eq!(Setup::decode(&bytes).unwrap(), kill);
    }
}
