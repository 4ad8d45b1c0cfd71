//! The pipe scenario: episodes of one writer and one reader on a simplex
//! pipe with small fragments, so that most messages span several records
//! and a fault lands in the middle of one. The writer is stopped (at
//! random, at the ring failpoints) and killed (at random, at the ring
//! failpoints, or after handing the pipe's segment to a bystander); the
//! reader is only stopped (at random, at `spsc.read` and `spsc.released`).
//!
//! Reports of a death: the reader's end of file (or truncated message)
//! while the writer had not closed, and the writer's `BrokenPipe` (the
//! reader is never killed, so that one is always false). The reader must
//! get exactly 0, 1, 2, ... whole, and at the end everything the writer
//! sent (plus the message it was sending when killed, at most).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shmring::pipe::{End, Pipe, RecvError, SendError};
use shmring::process::{Entry, EntryResult, Process};
use shmring_chaos::faults::board::{now_ns, Report, Word};
use shmring_chaos::faults::hook::{Action, Setup};
use shmring_chaos::faults::payload::{decode_long, long_message};
use shmring_chaos::roles::throttle;
use shmring_testkit::unique_name;

use crate::child::{begin, should_stop, spawn_bystander_with, HELD_VAR};
use crate::fleet::{Fate, Fleet, Gone, Proc, Rng};
use crate::tally::{Knobs, Tally};
use crate::verdict;

/// Board slot of the pipe scenario.
const PIPE_SLOT: usize = 9;
const WRITER: usize = 0;
const READER: usize = 1;
const CLOSING: usize = 2;
const SENT: usize = 3;
const SENDING: usize = 4;
const RECEIVED: usize = 5;
const DONE: usize = 6;
const VIOLATIONS: usize = 7;

const EPISODE_LIMIT: Duration = Duration::from_secs(30);

fn open(name: &str) -> Pipe {
    Pipe::open(name).expect("open pipe")
}

/// The writer: the pipe's name, how many long messages it sends (then it
/// closes), and after how many it hands the pipe's segment to a bystander
/// and kills itself (0: never).
pub static PIPE_WRITER: Entry<(Setup, String, u64, u64)> = shmring::entry!(writer);
/// The reader: the pipe's name.
pub static PIPE_READER: Entry<(Setup, String)> = shmring::entry!(reader);

/// The writer: sends `limit` long messages, then closes.
fn writer((setup, name, limit, bystander_after): (Setup, String, u64, u64)) -> EntryResult {
    let (_dog, me) = begin(&setup, "pipe-writer");
    let me = &me;
    let w = |i| me.board.slot(PIPE_SLOT, i);
    let pipe = open(&name);
    let mut conn = pipe.connection(End::Second).expect("claim the writing end");
    // ORDERING: Release (all slot stores) — read by the reader and the
    // parent.
    w(WRITER).store(me.inc, Ordering::Release);
    let mut rng = Rng(me.inc.wrapping_mul(0x2545_F491) | 1);
    let mut buf = Vec::new();
    let mut seq = 0u64;
    while seq < limit && !should_stop(me) {
        long_message(seq, me.inc, 32 + rng.below(900) as usize, &mut buf);
        w(SENDING).store(seq + 1, Ordering::Release);
        let started = now_ns();
        match conn.send_bytes(&buf, 0, None) {
            Ok(()) => {
                seq += 1;
                w(SENT).store(seq, Ordering::Release);
                throttle(seq);
            }
            Err(SendError::BrokenPipe) => {
                let reader = w(READER).load(Ordering::Acquire);
                me.board
                    .report(Report::BrokenPipe, me.inc, reader, started, seq);
                break;
            }
            Err(e) => panic!("pipe writer: {e}"),
        }
        if seq == bystander_after {
            spawn_bystander_with(me, |cmd| {
                pipe.segment()
                    .share_with_child(cmd, HELD_VAR)
                    .expect("share the pipe's segment");
            });
            me.die();
        }
    }
    w(CLOSING).store(1, Ordering::Release);
    drop(conn);
    Ok(())
}

/// The reader: receives until end of file, checking every message.
fn reader((setup, name): (Setup, String)) -> EntryResult {
    let (_dog, me) = begin(&setup, "pipe-reader");
    let me = &me;
    let w = |i| me.board.slot(PIPE_SLOT, i);
    let pipe = open(&name);
    let mut conn = pipe.connection(End::First).expect("claim the reading end");
    w(READER).store(me.inc, Ordering::Release);
    let mut expect = 0u64;
    let mut violations = 0u64;
    let mut reported = false;
    loop {
        let started = now_ns();
        let got = conn.recv_bytes(None);
        // ORDERING: Acquire — pairs with the writer's Release stores.
        let closing = w(CLOSING).load(Ordering::Acquire) != 0;
        let writer = w(WRITER).load(Ordering::Acquire);
        match got {
            Ok(buf) => {
                match decode_long(&buf) {
                    Some((seq, inc)) if seq == expect && inc == writer => expect += 1,
                    found => {
                        eprintln!(
                            "faults: pipe reader: got {found:?} ({} bytes), expected {expect} of {writer}",
                            buf.len()
                        );
                        violations += 1;
                        expect = found.map_or(expect, |(s, _)| s + 1);
                    }
                }
                w(RECEIVED).store(expect, Ordering::Release);
            }
            Err(RecvError::Eof | RecvError::TruncatedMessage) if !closing => {
                if !reported {
                    reported = true;
                    me.board
                        .report(Report::PipeEof, me.inc, writer, started, expect);
                }
                if got == Err(RecvError::Eof) {
                    break;
                }
            }
            Err(RecvError::Eof) => break,
            Err(e) => {
                eprintln!("faults: pipe reader: {e} (writer closing: {closing})");
                violations += 1;
                break;
            }
        }
    }
    me.board.add(Word::PipeMessages, expect);
    w(VIOLATIONS).store(violations, Ordering::Release);
    w(DONE).store(1, Ordering::Release);
    Ok(())
}

fn writer_fate(rng: &mut Rng) -> Fate {
    match rng.below(2) {
        0 => Fate::At(
            rng.pick(&[
                "ring.claimed",
                "ring.payload-written",
                "ring.header-written",
            ]),
            1 + rng.below(100),
            if rng.chance(2) {
                Action::Kill
            } else {
                Action::Stop
            },
        ),
        _ => Fate::Never,
    }
}

/// A writer's fate once it holds its end (a kill before that would leave
/// the end "not yet attached", on which the reader waits forever).
fn writer_attached(rng: &mut Rng) -> Fate {
    match rng.below(5) {
        0 | 1 => Fate::Kill(rng.millis(2, 60)),
        2 | 3 => Fate::Stop(rng.millis(2, 60)),
        _ => Fate::Never,
    }
}

fn reader_fate(rng: &mut Rng) -> Fate {
    match rng.below(4) {
        0 | 1 => Fate::Stop(rng.millis(2, 60)),
        2 => Fate::At(
            rng.pick(&["spsc.read", "spsc.released"]),
            1 + rng.below(100),
            Action::Stop,
        ),
        _ => Fate::Never,
    }
}

fn reader_after_stop(rng: &mut Rng) -> Fate {
    if rng.chance(2) {
        Fate::Stop(rng.millis(10, 80))
    } else {
        Fate::Never
    }
}

/// Runs pipe episodes for `budget`.
pub fn run(fleet: &mut Fleet, tally: &mut Tally, knobs: &Knobs, budget: Duration) {
    let before = tally.snapshot(fleet);
    let started = Instant::now();
    let mut episodes = 0u64;
    let mut violations = 0u64;
    let messages_before = fleet.board.get(Word::PipeMessages);
    while episodes < 2 || started.elapsed() < budget {
        episodes += 1;
        if !episode(fleet, tally, knobs) {
            violations += 1;
        }
    }
    fleet.board.add(Word::PipeViolations, violations);
    tally.phase_line(
        fleet,
        "pipes",
        &before,
        format!(
            "{episodes} episodes, {} messages received, {violations} with lost/duplicated/torn",
            fleet.board.get(Word::PipeMessages) - messages_before
        ),
    );
}

/// One episode; false when the stream was wrong.
fn episode(fleet: &mut Fleet, tally: &mut Tally, knobs: &Knobs) -> bool {
    let name = unique_name("faults-pipe");
    let _pipe = Pipe::builder()
        .ring_bytes(2048)
        .fragment_bytes(128)
        .duplex(false)
        .create(&name)
        .expect("create pipe");
    for i in 0..8 {
        fleet.board.slot(PIPE_SLOT, i).store(0, Ordering::Release);
    }
    fleet.board.word(Word::Stop).store(0, Ordering::Release);
    let (_, first_report) = fleet.board.reports(usize::MAX);
    let rng = &mut fleet.rng;
    let bystander = if rng.chance(5) { 1 + rng.below(100) } else { 0 };
    let messages = 50 + rng.below(400);
    let rf = reader_fate(rng);
    let wf = if bystander != 0 {
        Fate::Never
    } else {
        writer_fate(rng)
    };
    let pipe_name = name.clone();
    let mut reader = Some(fleet.spawn("pipe-reader", 0, rf, |setup| {
        Process::new(&PIPE_READER, (setup, pipe_name))
    }));
    if let Some(r) = reader.as_mut() {
        r.killable = false;
    }
    let pipe_name = name.clone();
    let mut writer: Option<Proc> = Some(fleet.spawn("pipe-writer", 0, wf, |setup| {
        Process::new(&PIPE_WRITER, (setup, pipe_name, messages, bystander))
    }));
    let mut writer_faulted = bystander != 0;
    let mut writer_killed = false;
    let started = Instant::now();
    while let Some(r) = reader.as_mut() {
        if let Some(w) = writer.as_mut() {
            // ORDERING: Acquire — pairs with the writer's Release.
            let attached = fleet.board.slot(PIPE_SLOT, WRITER).load(Ordering::Acquire) == w.inc;
            if attached && !writer_faulted {
                writer_faulted = true;
                let f = writer_attached(&mut fleet.rng);
                if !matches!(f, Fate::Never) && !w.stopped() {
                    fleet.refate(w, f);
                }
            }
            let mut after = |rng: &mut Rng| writer_attached(rng);
            match fleet.poll(w, &mut after) {
                None => {}
                Some(Gone::Killed(_)) => {
                    writer_killed = true;
                    writer = None;
                }
                Some(Gone::Exited(s)) if s.success() => writer = None,
                Some(gone) => {
                    fleet.unexpected(w, &gone);
                    writer = None;
                }
            }
        }
        match fleet.poll(r, &mut reader_after_stop) {
            None => {}
            Some(Gone::Exited(s)) if s.success() => reader = None,
            Some(gone) => {
                fleet.unexpected(r, &gone);
                reader = None;
            }
        }
        if started.elapsed() > EPISODE_LIMIT {
            fleet.failures.push(format!(
                "pipe episode {name} did not end in {EPISODE_LIMIT:?}"
            ));
            tally.wedges += 1;
            fleet.board.word(Word::Stop).store(1, Ordering::Release);
            let mut all: Vec<&mut Proc> = [writer.as_mut(), reader.as_mut()]
                .into_iter()
                .flatten()
                .collect();
            // A reader waiting for a writer that never attached ends only
            // by the kill after the limit.
            fleet.end_all(&mut all, Duration::from_secs(5));
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    if let Some(mut w) = writer.take() {
        match fleet
            .end_all(&mut [&mut w], Duration::from_secs(20))
            .pop()
            .flatten()
        {
            Some(Gone::Killed(_)) => writer_killed = true,
            Some(Gone::Exited(s)) if s.success() => {}
            Some(gone) => fleet.unexpected(&w, &gone),
            None => {}
        }
    }
    let (reports, _) = fleet.board.reports(first_report);
    for r in &reports {
        let what = match r.kind {
            Report::PipeEof => "end of file",
            Report::BrokenPipe => "broken pipe",
            _ => continue,
        };
        verdict::judge(fleet, tally, knobs, what, Some(r.blamed), r);
    }
    // ORDERING: Acquire — both children are gone.
    let word = |i| fleet.board.slot(PIPE_SLOT, i).load(Ordering::Acquire);
    let (sent, sending, received) = (word(SENT), word(SENDING), word(RECEIVED));
    let whole = received == sent || (writer_killed && sending == sent + 1 && received == sent + 1);
    if word(DONE) != 1 || word(VIOLATIONS) != 0 || !whole {
        eprintln!(
            "faults: pipe {name}: sent {sent}, sending {sending}, received {received}, \
             violations {}, writer killed {writer_killed}",
            word(VIOLATIONS)
        );
        return false;
    }
    true
}
