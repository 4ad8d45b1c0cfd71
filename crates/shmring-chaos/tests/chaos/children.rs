//! The children: one entry point per kind of process (see
//! `shmring_chaos::roles`, `channel` and `pipe_faults` for what each does).
//! Each takes its [`HookSetup`] (the ledger, the failpoint it dies at, its
//! consumer identity, the clock it stamps) and installs the hook before
//! anything else, then the names of the objects it opens (opening by name
//! is part of what the run exercises) and its numbers. A handover end
//! handed to a child travels as the `Connection` itself.

use shmring::pipe::{Connection, End};
use shmring::process::{ChildEntry, Entry, EntryResult};
use shmring_chaos::ledger::Chan;
use shmring_chaos::{channel, install_hook, pipe_faults, roles, HookSetup};

/// Every entry point of this binary, for `run_child`.
pub fn all() -> [&'static dyn ChildEntry; 12] {
    [
        &PRODUCER,
        &CONSUMER,
        &LOCK_WORKER,
        &DICT_WORKER,
        &PIPE_WRITER,
        &PIPE_READER,
        &CHAN_WRITER,
        &CHAN_READER,
        &HANDOVER_WRITER,
        &HANDOVER_WRITER_HANDED,
        &HANDOVER_READER,
        &HANDOVER_READER_HANDED,
    ]
}

/// A child that opens one object by name.
pub type Named = Entry<(HookSetup, String)>;
/// A child that opens one object by name, with its identity.
pub type NamedWithId = Entry<(HookSetup, String, usize)>;
/// A channel's writer or reader: which channel, and its ring's or pipe's
/// name.
pub type OnChannel = Entry<(HookSetup, Chan, String)>;

/// Queue producer: the queue's name and the producer's identity.
pub static PRODUCER: NamedWithId = shmring::entry!(producer);
fn producer((hook, queue, p): (HookSetup, String, usize)) -> EntryResult {
    let ledger = install_hook(&hook);
    roles::producer(&ledger, &queue, p);
    Ok(())
}

/// Queue consumer: the queue's name and the consumer's identity (its
/// hook's `consumer` too).
pub static CONSUMER: NamedWithId = shmring::entry!(consumer);
fn consumer((hook, queue, c): (HookSetup, String, usize)) -> EntryResult {
    let ledger = install_hook(&hook);
    roles::consumer(&ledger, &queue, c);
    Ok(())
}

/// Lock worker: the lock's name.
pub static LOCK_WORKER: Named = shmring::entry!(lock_worker);
fn lock_worker((hook, lock): (HookSetup, String)) -> EntryResult {
    let ledger = install_hook(&hook);
    roles::lock_worker(&ledger, &lock);
    Ok(())
}

/// Dict worker: the dict's name and the worker's identity (its key).
pub static DICT_WORKER: NamedWithId = shmring::entry!(dict_worker);
fn dict_worker((hook, dict, d): (HookSetup, String, usize)) -> EntryResult {
    let ledger = install_hook(&hook);
    roles::dict_worker(&ledger, &dict, d);
    Ok(())
}

/// The writer of a writer-kill pipe episode: the pipe's name.
pub static PIPE_WRITER: Named = shmring::entry!(pipe_writer);
fn pipe_writer((hook, pipe): (HookSetup, String)) -> EntryResult {
    let ledger = install_hook(&hook);
    roles::pipe_writer(&ledger, &pipe);
    Ok(())
}

/// The reader of a writer-kill pipe episode: the pipe's name.
pub static PIPE_READER: Named = shmring::entry!(pipe_reader);
fn pipe_reader((hook, pipe): (HookSetup, String)) -> EntryResult {
    let ledger = install_hook(&hook);
    roles::pipe_reader(&ledger, &pipe);
    Ok(())
}

/// The writer of a reader-kill channel.
pub static CHAN_WRITER: OnChannel = shmring::entry!(chan_writer);
fn chan_writer((hook, c, name): (HookSetup, Chan, String)) -> EntryResult {
    let ledger = install_hook(&hook);
    channel::writer(&ledger, c, &name);
    Ok(())
}

/// The reader of a reader-kill channel.
pub static CHAN_READER: OnChannel = shmring::entry!(chan_reader);
fn chan_reader((hook, c, name): (HookSetup, Chan, String)) -> EntryResult {
    let ledger = install_hook(&hook);
    channel::reader(&ledger, c, &name);
    Ok(())
}

/// A handover writer that takes the writing end over by the pipe's name:
/// the name, its number in the episode, its quota (`u64::MAX`: none).
pub static HANDOVER_WRITER: Entry<(HookSetup, String, u32, u64)> = shmring::entry!(handover_writer);
fn handover_writer((hook, pipe, id, quota): (HookSetup, String, u32, u64)) -> EntryResult {
    let ledger = install_hook(&hook);
    let conn = Connection::open(&pipe, End::Second).expect("claim the end by name");
    pipe_faults::writer(&ledger, conn, id, quota);
    Ok(())
}

/// A handover writer handed the writing end by the parent: the end, its
/// number in the episode, its quota (`u64::MAX`: none).
pub static HANDOVER_WRITER_HANDED: Entry<(HookSetup, Connection, u32, u64)> =
    shmring::entry!(handover_writer_handed);
fn handover_writer_handed(
    (hook, conn, id, quota): (HookSetup, Connection, u32, u64),
) -> EntryResult {
    let ledger = install_hook(&hook);
    pipe_faults::writer(&ledger, conn, id, quota);
    Ok(())
}

/// A handover reader that takes the reading end over by the pipe's name:
/// the name, and the seed of its choice of calls.
pub static HANDOVER_READER: Entry<(HookSetup, String, u64)> = shmring::entry!(handover_reader);
fn handover_reader((hook, pipe, seed): (HookSetup, String, u64)) -> EntryResult {
    let ledger = install_hook(&hook);
    let conn = Connection::open(&pipe, End::First).expect("claim the end by name");
    pipe_faults::reader(&ledger, conn, seed);
    Ok(())
}

/// A handover reader handed the reading end (by the parent, which may
/// have read half a message from it): the end, and the seed of its
/// choice of calls.
pub static HANDOVER_READER_HANDED: Entry<(HookSetup, Connection, u64)> =
    shmring::entry!(handover_reader_handed);
fn handover_reader_handed((hook, conn, seed): (HookSetup, Connection, u64)) -> EntryResult {
    let ledger = install_hook(&hook);
    pipe_faults::reader(&ledger, conn, seed);
    Ok(())
}
