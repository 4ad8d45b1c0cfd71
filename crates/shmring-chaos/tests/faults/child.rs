//! What every child role shares: its environment, when to stop, and how to
//! start a *bystander* (a child that inherits an object and never opens it).

use std::process::Command;
use std::time::{Duration, Instant};

use shmring::process::{Entry, EntryResult, Process, Share};
use shmring_chaos::faults::board::{Board, Word};
use shmring_chaos::faults::hook::{Me, AT_VAR, BOARD_VAR};

/// The environment variable a bystander's object travels in.
pub const HELD_VAR: &str = "SHMRING_FAULTS_HELD";
/// The bystander's entry point; its argument is the board's release word
/// when it was started.
pub static BYSTANDER: Entry<(u64,)> = shmring::entry!(bystander);
/// How long a bystander lives at most (it also ends when the parent bumps
/// the board's release word): well past the liveness bound, so a death it
/// hides shows as late.
pub const BYSTANDER_LIFE: Duration = Duration::from_millis(1500);

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"))
}

pub fn var_u64(name: &str) -> u64 {
    var(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

pub fn slot() -> usize {
    var_u64("SHMRING_FAULTS_SLOT") as usize
}

/// Whether this child should finish: the parent asked, or the parent is
/// gone (then nobody would ever ask).
pub fn should_stop(me: &Me) -> bool {
    if me.board.stopping() {
        return true;
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    u64::try_from(parent).ok()
        != std::env::var("SHMRING_FAULTS_PARENT")
            .ok()
            .and_then(|v| v.parse().ok())
}

/// Counts an unexpected error (the role goes on).
pub fn unexpected(me: &Me, what: &str) {
    eprintln!("faults: incarnation {}: unexpected: {what}", me.inc);
    me.board.add(Word::UnexpectedErrors, 1);
}

/// Starts a bystander that inherits `object` and never opens it, the way
/// an application hands an object to a child (`share_with_child`: an
/// entry point's arguments would open it). Returns once it runs (after
/// its `exec`): from then on it holds the inherited descriptor.
pub fn spawn_bystander(me: &Me, object: &impl Share) {
    spawn_bystander_with(me, |cmd| {
        object
            .share_with_child(cmd, HELD_VAR)
            .expect("share with a bystander");
    });
}

/// Starts a bystander whose inherited object `share` puts into the
/// command (for objects shared through their segment).
pub fn spawn_bystander_with(me: &Me, share: impl FnOnce(&mut Command)) {
    let mut cmd = bystander_command(me.board.get(Word::Release));
    share(&mut cmd);
    spawn_unwaited(&mut cmd);
    me.board.add(Word::Bystanders, 1);
}

/// Spawns a bystander and lets it go: the holder that starts one dies right
/// after (that is the point), and init reaps the bystander when it ends.
#[allow(clippy::zombie_processes)]
fn spawn_unwaited(cmd: &mut Command) {
    cmd.spawn().expect("spawn a bystander");
}

/// A bystander's command, started through the entry point machinery, for
/// objects shared through their segment (a pipe's segment: sharing a
/// `Connection` would hand the end over).
pub fn bystander_command(release: u64) -> Command {
    // The bystander runs no failpoint hook; an empty value parses as none.
    let mut cmd = Process::new(&BYSTANDER, (release,))
        .env(AT_VAR, "")
        .into_command()
        .expect("prepare a bystander");
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// The bystander: holds what it inherited (never opening it) until the
/// parent bumps the release word or its life is over. It must not keep a
/// dead holder alive.
fn bystander((release,): (u64,)) -> EntryResult {
    if std::env::var(HELD_VAR).is_err() {
        return Err("a bystander without an inherited object".into());
    }
    let board = Board::open(var(BOARD_VAR).as_ref())?;
    let started = Instant::now();
    while board.get(Word::Release) == release && started.elapsed() < BYSTANDER_LIFE {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
