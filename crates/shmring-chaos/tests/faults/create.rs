//! Creators killed mid-create, and a name created, dropped and opened by
//! three processes at once.
//!
//! **Creators** (two processes, three names each, every facade kind at
//! random, some of them megabytes so that `posix_fallocate` takes a while,
//! half of them on the library's fallback path: a private name, then
//! `link`)
//! create, hold briefly and drop, and are killed at random times and at
//! every step of a create (`segment.create.*`, where the library has
//! them). After each death the parent creates each of the dead creator's
//! names at once: every one must be creatable (no `AlreadyExists` lockout,
//! no `CreatorDied`), and a file found under one must be a complete
//! segment (a half-made one must never carry the name).
//!
//! **Names** (two cyclers creating and dropping, one opener opening, two
//! names of two kinds, all stopped and now and then killed): a process
//! holding a segment checks again and again that `/dev/shm/<name>` still
//! leads to the file it has mapped (same inode). A live segment that loses
//! its name while held is a *name lost*. Expected answers: `AlreadyExists`
//! to a create (somebody holds it), `NotFound` to an open; anything else
//! is an unexpected error.

use std::any::Any;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::dict::Dict;
use shmring::lock::{Lock, RLock};
use shmring::pipe::Pipe;
use shmring::process::{Entry, EntryResult, Process};
use shmring::queue::{JoinableQueue, Queue, SimpleQueue};
use shmring::{CreateError, OpenError, Segment, SegmentError};
use shmring_chaos::faults::board::Word;
use shmring_chaos::faults::hook::{Action, Me, Setup};
use shmring_testkit::{shm_exists, shm_path, unique_name};

use crate::child::{begin, should_stop, unexpected};
use crate::fleet::{Fate, Fleet, Gone, Proc, Rng};
use crate::tally::Tally;

const KINDS: usize = 9;
const NAMES_PER_CREATOR: usize = 3;
const CREATORS: usize = 2;
/// Board slots of the creators' state (for the messages).
const CREATE_SLOT: usize = 12;

const CREATE_POINTS: [&str; 7] = [
    "segment.create.staged",
    "segment.create.sized",
    "segment.create.header-written",
    "segment.create.attached",
    "segment.create.initialised",
    "segment.create.published",
    "segment.create.named",
];

/// Creates a named object of kind `k` (0..KINDS); `big` makes the sizeable
/// kinds a few megabytes.
fn create_kind(name: &str, k: usize, big: bool) -> Result<Box<dyn Any>, CreateError> {
    let ring = if big { 1 << 20 } else { 4096 };
    Ok(match k {
        0 => Box::new(
            Queue::<u64>::builder()
                .maxsize(8)
                .max_message(256)
                .ring_bytes(ring)
                .producers(4)
                .create(name)?,
        ),
        1 => Box::new(
            JoinableQueue::<u64>::builder()
                .maxsize(8)
                .max_message(256)
                .ring_bytes(ring)
                .producers(4)
                .create(name)?,
        ),
        2 => Box::new(
            SimpleQueue::<u64>::builder()
                .max_message(256)
                .ring_bytes(ring)
                .producers(4)
                .create(name)?,
        ),
        3 => Box::new(Pipe::builder().ring_bytes(ring).create(name)?),
        4 => Box::new(Dict::<u64, u64>::builder().create(name)?),
        5 => Box::new(Lock::builder().create(name)?),
        6 => Box::new(RLock::builder().create(name)?),
        7 => Box::new(
            shmring::mpmc::ByteQueue::builder()
                .producers(4)
                .ring_bytes(ring)
                .max_message(256)
                .maxsize(0)
                .create(name)?,
        ),
        _ => Box::new(
            shmring::spsc::Ring::builder()
                .ring_bytes(ring)
                .max_message(256)
                .create(name)?,
        ),
    })
}

fn creator_name(prefix: &str, creator: usize, j: usize) -> String {
    format!("{prefix}-{creator}-{j}")
}

/// A creator: the prefix of its names.
pub static CREATOR: Entry<(Setup, String)> = shmring::entry!(creator);

/// The library's own switch to its fallback create path (a private name,
/// then `link`), which a creator is started with or without.
const CREATE_FALLBACK_VAR: &str = "SHMRING_TEST_CREATE_FALLBACK";

/// A creator: creates, holds and drops its own names, forever.
fn creator((setup, prefix): (Setup, String)) -> EntryResult {
    let (_dog, me) = begin(&setup, "creator");
    let me = &me;
    let c = me.slot;
    let mut rng = Rng(me.inc.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let state = |w| me.board.slot(CREATE_SLOT + c, w);
    while !should_stop(me) {
        let j = rng.below(NAMES_PER_CREATOR as u64) as usize;
        let k = rng.below(KINDS as u64) as usize;
        let name = creator_name(&prefix, c, j);
        // ORDERING: Release (state words) — the parent reads them after our
        // death, for its messages.
        state(1).store(j as u64, Ordering::Release);
        state(2).store(k as u64, Ordering::Release);
        state(0).store(1, Ordering::Release);
        match create_kind(&name, k, rng.chance(3)) {
            Ok(object) => {
                state(0).store(2, Ordering::Release);
                if rng.chance(2) {
                    std::thread::sleep(Duration::from_micros(rng.below(1000)));
                }
                state(0).store(3, Ordering::Release);
                drop(object);
            }
            Err(e) => {
                unexpected(me, &format!("creating {name} (kind {k}): {e}"));
                me.board.add(Word::CreatorLockouts, 1);
            }
        }
        state(0).store(0, Ordering::Release);
    }
    Ok(())
}

/// After a creator's death: each of its names must be creatable at once,
/// and whatever file carries one must be a complete segment.
fn check_names(tally: &mut Tally, prefix: &str, c: usize, why: &str) {
    for j in 0..NAMES_PER_CREATOR {
        let name = creator_name(prefix, c, j);
        if shm_exists(&name) {
            match shmring::segment::inspect(&name) {
                Ok(info) if info.header.is_some() => {}
                Ok(info) => {
                    eprintln!(
                        "faults: HALF-MADE: {name} ({why}) carries a segment in state {:?}",
                        info.state
                    );
                    tally.half_made += 1;
                }
                Err(SegmentError::NotFound { .. }) => {}
                Err(e) => {
                    eprintln!("faults: HALF-MADE: {name} ({why}) carries a file: {e}");
                    tally.half_made += 1;
                }
            }
        }
        match create_kind(&name, 5, false) {
            Ok(object) => drop(object),
            Err(e) => {
                eprintln!("faults: LOCKOUT: {name} cannot be created after {why}: {e}");
                tally.lockouts += 1;
                let _ = std::fs::remove_file(shm_path(&name));
            }
        }
        if shm_exists(&name) {
            eprintln!("faults: {name} still exists after its only holder dropped it");
            tally.notes.push(format!("{name} outlived its last drop"));
            tally.lockouts += 1;
            let _ = std::fs::remove_file(shm_path(&name));
        }
    }
}

fn creator_fate(rng: &mut Rng) -> Fate {
    if rng.chance(2) {
        Fate::Kill(rng.millis(1, 25))
    } else {
        Fate::At(rng.pick(&CREATE_POINTS), 1 + rng.below(20), Action::Kill)
    }
}

/// Runs the creators for `budget`.
pub fn run_creators(fleet: &mut Fleet, tally: &mut Tally, budget: Duration) {
    let before = tally.snapshot(fleet);
    let prefix = unique_name("faults-create");
    fleet.board.word(Word::Stop).store(0, Ordering::Release);
    let lockouts_before = tally.lockouts;
    // Half the creators build under a private name and `link` it (the path
    // taken where `O_TMPFILE` is missing), half in an unnamed file.
    let spawn = |fleet: &mut Fleet, c: usize| {
        let f = creator_fate(&mut fleet.rng);
        let fallback = if fleet.rng.chance(2) { "1" } else { "0" };
        let prefix = prefix.clone();
        fleet.spawn("creator", c, f, |setup| {
            Process::new(&CREATOR, (setup, prefix)).env(CREATE_FALLBACK_VAR, fallback)
        })
    };
    let mut creators: Vec<_> = (0..CREATORS).map(|c| spawn(fleet, c)).collect();
    let started = Instant::now();
    let mut deaths = 0u64;
    while started.elapsed() < budget {
        for p in creators.iter_mut() {
            match fleet.poll(p, &mut |_| Fate::Never) {
                None => continue,
                Some(Gone::Killed(how)) => {
                    deaths += 1;
                    // ORDERING: Acquire — the creator is reaped.
                    let state = |w| {
                        fleet
                            .board
                            .slot(CREATE_SLOT + p.slot, w)
                            .load(Ordering::Acquire)
                    };
                    let why = format!(
                        "creator {} was killed ({how}; state {}, name {}, kind {})",
                        p.inc,
                        state(0),
                        state(1),
                        state(2)
                    );
                    check_names(tally, &prefix, p.slot, &why);
                }
                Some(gone) => fleet.unexpected(p, &gone),
            }
            *p = spawn(fleet, p.slot);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    fleet.board.word(Word::Stop).store(1, Ordering::Release);
    let mut all: Vec<&mut Proc> = creators.iter_mut().collect();
    let gones = fleet.end_all(&mut all, Duration::from_secs(30));
    for (p, gone) in creators.iter().zip(gones) {
        match gone {
            Some(Gone::Exited(s)) if s.success() => {}
            Some(Gone::Killed(_)) | None => {}
            Some(gone) => fleet.unexpected(p, &gone),
        }
        check_names(tally, &prefix, p.slot, "the end of the run");
    }
    let own = fleet.board.get(Word::CreatorLockouts);
    tally.lockouts += own;
    fleet
        .board
        .word(Word::CreatorLockouts)
        .store(0, Ordering::Release);
    tally.phase_line(
        fleet,
        "creators",
        &before,
        format!(
            "{deaths} creators killed, {} lockouts, {} half-made files",
            tally.lockouts - lockouts_before,
            tally.half_made
        ),
    );
}

/// The inode of the file mapped at `addr` in this process.
fn mapped_inode(addr: usize) -> Option<u64> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (lo, hi) = fields.next()?.split_once('-')?;
        let (lo, hi) = (
            usize::from_str_radix(lo, 16).ok()?,
            usize::from_str_radix(hi, 16).ok()?,
        );
        if !(lo..hi).contains(&addr) {
            return None;
        }
        // perms, offset, device, then the inode.
        fields.nth(3)?.parse().ok()
    })
}

/// A held object of the name scenario.
enum Held {
    Lock(Lock),
    Queue(Box<JoinableQueue<u64>>),
}

impl Held {
    fn segment(&self) -> &Segment {
        match self {
            Held::Lock(l) => l.segment(),
            Held::Queue(q) => q.segment(),
        }
    }
}

/// Why a create or an open of the name scenario failed.
#[derive(Debug)]
enum Failed {
    Create(CreateError),
    Open(OpenError),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::Create(e) => e.fmt(f),
            Failed::Open(e) => e.fmt(f),
        }
    }
}

/// Whether `err` is the answer a create or an open may give while others
/// come and go.
fn expected(err: &Failed) -> bool {
    matches!(
        err,
        Failed::Create(CreateError::Segment(SegmentError::AlreadyExists { .. }))
            | Failed::Open(OpenError::Segment(SegmentError::NotFound { .. }))
    )
}

/// A cycler of the name scenario (creates and drops): the two names.
pub static NAME_CYCLER: Entry<(Setup, String, String)> = shmring::entry!(name_cycler);
/// The opener of the name scenario (opens and drops): the two names.
pub static NAME_OPENER: Entry<(Setup, String, String)> = shmring::entry!(name_opener);

fn name_cycler((setup, name0, name1): (Setup, String, String)) -> EntryResult {
    let (_dog, me) = begin(&setup, "name-user");
    name_user(&me, [name0, name1], false);
    Ok(())
}

fn name_opener((setup, name0, name1): (Setup, String, String)) -> EntryResult {
    let (_dog, me) = begin(&setup, "name-user");
    name_user(&me, [name0, name1], true);
    Ok(())
}

/// A cycler or (`opening`) the opener of the name scenario.
fn name_user(me: &Me, names: [String; 2], opening: bool) {
    let mut rng = Rng(me.inc.wrapping_mul(0xD6E8_FEB8_6659_FD93) | 1);
    while !should_stop(me) {
        let i = rng.below(2) as usize;
        let name = &names[i];
        let got = match (i, opening) {
            (0, false) => Lock::builder()
                .create(name)
                .map(Held::Lock)
                .map_err(Failed::Create),
            (0, true) => Lock::open(name).map(Held::Lock).map_err(Failed::Open),
            (_, false) => JoinableQueue::builder()
                .create(name)
                .map(|q| Held::Queue(Box::new(q)))
                .map_err(Failed::Create),
            (_, true) => JoinableQueue::open(name)
                .map(|q| Held::Queue(Box::new(q)))
                .map_err(Failed::Open),
        };
        let held = match got {
            Ok(held) => held,
            Err(e) if expected(&e) => {
                me.board.add(Word::NameBusy, 1);
                std::thread::yield_now();
                continue;
            }
            Err(e) => {
                unexpected(
                    me,
                    &format!("{} {name}: {e}", if opening { "open" } else { "create" }),
                );
                continue;
            }
        };
        me.board.add(Word::NameHolds, 1);
        let Some(inode) = mapped_inode(held.segment().object_ptr().as_ptr() as usize) else {
            unexpected(me, "the held segment is not in /proc/self/maps");
            continue;
        };
        let hold = Duration::from_micros(rng.below(3000));
        let until = Instant::now() + hold;
        loop {
            let on_disk = std::fs::metadata(shm_path(name)).map(|m| m.ino());
            if on_disk.as_ref().ok() != Some(&inode) {
                eprintln!(
                    "faults: NAME LOST: incarnation {} holds {name} (inode {inode}) but the name \
                     leads to {on_disk:?}",
                    me.inc
                );
                me.board.add(Word::NamesLost, 1);
                break;
            }
            if Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_micros(300));
        }
        drop(held);
    }
}

fn name_fate(rng: &mut Rng) -> Fate {
    match rng.below(8) {
        0 => Fate::Kill(rng.millis(5, 60)),
        1 => Fate::At(
            rng.pick(&["segment.drop.row-released", "segment.create.named"]),
            1 + rng.below(30),
            Action::Kill,
        ),
        2..=4 => Fate::Stop(rng.millis(5, 60)),
        _ => Fate::Never,
    }
}

fn name_after_stop(rng: &mut Rng) -> Fate {
    match rng.below(6) {
        0 => Fate::Kill(rng.millis(5, 60)),
        1 | 2 => Fate::Stop(rng.millis(20, 100)),
        _ => Fate::Never,
    }
}

/// Runs the name scenario for `budget`.
pub fn run_names(fleet: &mut Fleet, tally: &mut Tally, budget: Duration) {
    let before = tally.snapshot(fleet);
    let names = [
        unique_name("faults-name-lock"),
        unique_name("faults-name-jq"),
    ];
    let lost_before = fleet.board.get(Word::NamesLost);
    let holds_before = fleet.board.get(Word::NameHolds);
    fleet.board.word(Word::Stop).store(0, Ordering::Release);
    // Slots 0 and 1 cycle, slot 2 opens.
    let spawn = |fleet: &mut Fleet, i: usize, f: Fate| {
        let entry = if i == 2 { &NAME_OPENER } else { &NAME_CYCLER };
        let (name0, name1) = (names[0].clone(), names[1].clone());
        fleet.spawn("name-user", i, f, |setup| {
            Process::new(entry, (setup, name0, name1))
        })
    };
    let mut users: Vec<_> = (0..3)
        .map(|i| {
            let f = name_fate(&mut fleet.rng);
            spawn(fleet, i, f)
        })
        .collect();
    let started = Instant::now();
    while started.elapsed() < budget {
        for p in users.iter_mut() {
            let mut after = name_after_stop;
            match fleet.poll(p, &mut after) {
                None => {
                    if !p.stopped() && fleet.rng.chance(200) {
                        let f = name_fate(&mut fleet.rng);
                        if matches!(f, Fate::Kill(_) | Fate::Stop(_)) {
                            fleet.refate(p, f);
                        }
                    }
                    continue;
                }
                Some(Gone::Killed(_)) => {}
                Some(gone) => fleet.unexpected(p, &gone),
            }
            let f = name_fate(&mut fleet.rng);
            *p = spawn(fleet, p.slot, f);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    fleet.board.word(Word::Stop).store(1, Ordering::Release);
    let mut all: Vec<&mut Proc> = users.iter_mut().collect();
    let gones = fleet.end_all(&mut all, Duration::from_secs(30));
    for (p, gone) in users.iter().zip(gones) {
        match gone {
            Some(Gone::Exited(s)) if s.success() => {}
            Some(Gone::Killed(_)) | None => {}
            Some(gone) => fleet.unexpected(p, &gone),
        }
    }
    for name in &names {
        // Left by a killed last holder: nobody holds it now.
        let _ = std::fs::remove_file(shm_path(name));
    }
    let lost = fleet.board.get(Word::NamesLost) - lost_before;
    tally.names_lost += lost;
    tally.phase_line(
        fleet,
        "names",
        &before,
        format!(
            "{} holds, {lost} names lost",
            fleet.board.get(Word::NameHolds) - holds_before
        ),
    );
}
