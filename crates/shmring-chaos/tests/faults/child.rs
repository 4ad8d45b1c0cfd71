//! What every child role shares: how it starts, when to stop, and how to
//! start a *bystander* (a child that inherits an object and never opens it).

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use shmring::process::{Entry, EntryResult, Process, Share};
use shmring_chaos::faults::board::{Board, Word};
use shmring_chaos::faults::hook::{install, Me, Setup};
use shmring_testkit::Watchdog;

/// The environment variable a bystander's object travels in (inherited,
/// never opened: that is what a bystander is for).
pub const HELD_VAR: &str = "SHMRING_FAULTS_HELD";

shmring_chaos::wire_struct! {
    /// A bystander's argument: the board, and its release word when the
    /// bystander was started.
    #[derive(Clone, Debug)]
    pub struct BystanderArgs {
        /// The board file.
        pub board: PathBuf,
        /// The board's release word when the bystander was started: it
        /// ends once the word moves on.
        pub release: u64,
    }
}

/// The bystander's entry point.
pub static BYSTANDER: Entry<(BystanderArgs,)> = shmring::entry!(bystander);
/// How long a bystander lives at most (it also ends when the parent bumps
/// the board's release word): well past the liveness bound, so a death it
/// hides shows as late.
pub const BYSTANDER_LIFE: Duration = Duration::from_millis(1500);

/// What every role's entry point does first: arms its watchdog (which
/// aborts a child the parent lost track of), then installs the hook its
/// `setup` describes.
pub fn begin(setup: &Setup, role: &str) -> (Watchdog, Me) {
    let dog = Watchdog::new(Duration::from_secs(setup.limit_s), role);
    (dog, install(setup))
}

/// Whether this child should finish: the parent asked, or the parent is
/// gone (then nobody would ever ask).
pub fn should_stop(me: &Me) -> bool {
    if me.board.stopping() {
        return true;
    }
    // SAFETY: getppid has no preconditions.
    let parent = unsafe { libc::getppid() };
    u32::try_from(parent).ok() != Some(me.parent)
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
    let mut cmd = bystander_command(&me.board_path, me.board.get(Word::Release));
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

/// A bystander's command (for the board at `board`, whose release word is
/// `release` now), started through the entry point machinery; the caller
/// puts the inherited object into it (a pipe's segment, say: sharing a
/// `Connection` would hand the end over). The bystander runs no failpoint
/// hook.
fn bystander_command(board: &std::path::Path, release: u64) -> Command {
    let args = BystanderArgs {
        board: board.to_path_buf(),
        release,
    };
    let mut cmd = Process::new(&BYSTANDER, (args,))
        .into_command()
        .expect("prepare a bystander");
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// The bystander: holds what it inherited (never opening it) until the
/// parent bumps the release word or its life is over. It must not keep a
/// dead holder alive.
fn bystander((BystanderArgs { board, release },): (BystanderArgs,)) -> EntryResult {
    if std::env::var(HELD_VAR).is_err() {
        return Err("a bystander without an inherited object".into());
    }
    let board = Board::open(&board)?;
    let started = Instant::now();
    while board.get(Word::Release) == release && started.elapsed() < BYSTANDER_LIFE {
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}
