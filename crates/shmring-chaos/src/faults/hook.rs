//! The fault harness's failpoint hook, in every child.
//!
//! From the environment: [`AT_VAR`] = `NAME:N:kill` or `NAME:N:stop` picks
//! the fault (at the N-th hit of failpoint NAME, the process stamps its
//! death in the board and sends itself `SIGKILL`, or stamps its stop and
//! sends itself `SIGSTOP`: the parent sees the stamp, waits until the
//! process is really stopped, and sends `SIGCONT` after the pause it
//! chose). [`CONSUMER_VAR`] makes a queue consumer write the sequence
//! number of every record it copies out into its in-flight word of the
//! chaos ledger, as the chaos harness's hook does. A role may add an
//! *observer* that sees every failpoint first ([`set_observer`]).
//!
//! Roles call [`point`] at their own protocol points (`faults.*`), which
//! take part in the same choice.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use crate::faults::board::{now_ns, Board, IncWord};
use crate::ledger::Ledger;
use crate::{decode, die, in_flight_tag};

/// Environment: the board file.
pub const BOARD_VAR: &str = "SHMRING_FAULTS_BOARD";
/// Environment: this process's incarnation number.
pub const INC_VAR: &str = "SHMRING_FAULTS_INC";
/// Environment: `NAME:N:kill` or `NAME:N:stop`.
pub const AT_VAR: &str = "SHMRING_FAULTS_AT";
/// Environment: the chaos ledger (queue scenarios).
pub const LEDGER_VAR: &str = crate::LEDGER_VAR;
/// Environment: the consumer identity whose in-flight word the hook writes.
pub const CONSUMER_VAR: &str = crate::CONSUMER_VAR;

/// What to do at the chosen failpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `SIGKILL` to itself.
    Kill,
    /// `SIGSTOP` to itself; the parent continues it.
    Stop,
}

impl Action {
    /// The environment form.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Kill => "kill",
            Action::Stop => "stop",
        }
    }
}

/// A failpoint observer (see [`set_observer`]).
pub type Observer = fn(name: &'static str, context: &[u8]);

struct Config {
    board: Board,
    inc: u64,
    target: Option<(String, u64, Action)>,
    ledger: Option<Ledger>,
    consumer: Option<usize>,
}

static CONFIG: OnceLock<Config> = OnceLock::new();
static OBSERVER: OnceLock<Observer> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// What a child knows about itself: the board, its incarnation, the chaos
/// ledger (queue scenarios).
#[derive(Debug)]
pub struct Me {
    /// The board, mapped once more for the role.
    pub board: Board,
    /// This process's incarnation.
    pub inc: u64,
    /// The chaos ledger, when the parent passed one.
    pub ledger: Option<Ledger>,
}

impl Me {
    /// Stamps this process's death in the board and kills it.
    pub fn die(&self) -> ! {
        self.board.stamp_death(self.inc);
        die()
    }

    /// The chaos ledger.
    ///
    /// # Panics
    ///
    /// When the parent passed none.
    pub fn ledger(&self) -> &Ledger {
        self.ledger.as_ref().expect("a chaos ledger for this role")
    }
}

fn parse_target(v: &str) -> Option<(String, u64, Action)> {
    let (rest, action) = v.rsplit_once(':')?;
    let (name, n) = rest.rsplit_once(':')?;
    let action = match action {
        "kill" => Action::Kill,
        "stop" => Action::Stop,
        _ => return None,
    };
    Some((name.to_string(), n.parse().ok()?, action))
}

/// Maps the board (and the ledger, if given) and installs the hook from the
/// environment; records this process's pid in its entry.
///
/// # Panics
///
/// When a variable is missing or malformed, or a file cannot be mapped.
pub fn install() -> Me {
    let board_path = std::env::var(BOARD_VAR).expect("board variable");
    let inc: u64 = std::env::var(INC_VAR)
        .ok()
        .and_then(|v| v.parse().ok())
        .expect("incarnation variable");
    let open_ledger = || {
        std::env::var(LEDGER_VAR)
            .ok()
            .map(|p| Ledger::open(Path::new(&p)).expect("open chaos ledger"))
    };
    let config = Config {
        board: Board::open(board_path.as_ref()).expect("open board"),
        inc,
        target: std::env::var(AT_VAR).ok().and_then(|v| parse_target(&v)),
        ledger: open_ledger(),
        consumer: std::env::var(CONSUMER_VAR)
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    // ORDERING: Release — the parent reads it after the spawn anyway.
    config
        .board
        .inc(inc, IncWord::Pid)
        .store(u64::from(std::process::id()), Ordering::Release);
    let _ = CONFIG.set(config);
    shmring::core::failpoint::set_hook(Some(hook));
    Me {
        board: Board::open(board_path.as_ref()).expect("open board"),
        inc,
        ledger: open_ledger(),
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
    if let (Some(c), Some(ledger), false) = (config.consumer, &config.ledger, context.is_empty()) {
        if let Some(tag) = decode(context) {
            // ORDERING: Release — the tag must be in the ledger before the
            // CAS that takes the record (the next protocol step).
            ledger
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

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("mpmc.cas-done:3:stop"),
            Some(("mpmc.cas-done".into(), 3, Action::Stop))
        );
        assert_eq!(
            parse_target("a:b:1:kill"),
            Some(("a:b".into(), 1, Action::Kill))
        );
        assert_eq!(parse_target("x:1:maybe"), None);
        assert_eq!(parse_target("x:kill"), None);
    }
}
