//! [`Connection`]: one end of a pipe. Claiming, sharing and closing it are
//! here; its sends are in `send`, its receives in `recv`.

mod recv;
mod send;

use std::cell::Cell;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use shmring_core::wait::{TimedOut, WaitPolicy};

use super::ends::{peer_gone, Incoming, Outgoing};
use super::{end_var, End, Pipe, PipeError, Shared};
use crate::attach::{claim_role, deadline, release_role, AttachError, GONE};
use crate::counts::Counts;
use crate::error::SegmentError;
use crate::object;
use crate::segment::{OpenOptions, PeerCounter};

/// One end of a [`Pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// `Send` but not `Sync`, and the operations take `&mut self`: like Python's,
/// a connection is used by one thread at a time. See the [module
/// docs](super) for the ownership rule when handing an end to a child.
///
/// # Crash behaviour
///
/// See the [module docs](super#crash-behaviour): the other end's death is
/// end of file for `recv` (after what it sent) and a broken pipe for a
/// `send` that has to wait.
#[derive(Debug)]
pub struct Connection {
    pipe: Arc<Shared>,
    end: End,
    /// `None` when not readable (write-only, closed, transferred).
    incoming: Option<Incoming>,
    /// `None` when not writable (read-only, closed, transferred).
    outgoing: Option<Outgoing>,
    readable: bool,
    writable: bool,
    closed: bool,
    /// Handed to a child: roles given up, nothing signalled on drop.
    transferred: Cell<bool>,
    policy: WaitPolicy,
    /// Encoding buffer of the sends (receives collect into
    /// [`Incoming::partial`]).
    scratch: Vec<u8>,
    /// Messages and bytes sent (`Puts`, `BytesIn`) and received (`Gets`,
    /// `BytesOut`), added to this process's peer row in batches.
    sent: Counts,
    received: Counts,
}

const _: () = {
    const fn send<T: Send>() {}
    send::<Connection>();
};

impl Connection {
    /// Claims `end` of the pipe behind `pipe` (see [`Pipe::connection`]).
    pub(super) fn claim(pipe: Arc<Shared>, end: End) -> Result<Connection, AttachError> {
        let role = match end {
            End::First => "pipe end 1",
            End::Second => "pipe end 2",
        };
        // ORDERING: Relaxed — a process-local flag; only the RMW's atomicity
        // matters (two threads claiming the same end: one wins).
        if pipe.claimed[end.index()]
            .compare_exchange(false, true, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return Err(AttachError::RoleTaken {
                role,
                pid: Some(std::process::id()),
            });
        }
        let attached = Self::claim_roles(&pipe, end, role);
        if attached.is_err() {
            // ORDERING: Relaxed — as above; nothing was claimed.
            pipe.claimed[end.index()].store(false, Ordering::Relaxed);
        }
        let (incoming, outgoing) = attached?;
        let counts = |messages, bytes| Counts::new(pipe.segment.clone(), messages, bytes);
        Ok(Connection {
            sent: counts(PeerCounter::Puts, PeerCounter::BytesIn),
            received: counts(PeerCounter::Gets, PeerCounter::BytesOut),
            readable: incoming.is_some(),
            writable: outgoing.is_some(),
            pipe,
            end,
            incoming,
            outgoing,
            closed: false,
            transferred: Cell::new(false),
            policy: WaitPolicy::default(),
            scratch: Vec::new(),
        })
    }

    fn claim_roles(
        pipe: &Shared,
        end: End,
        role: &'static str,
    ) -> Result<(Option<Incoming>, Option<Outgoing>), AttachError> {
        let segment = &pipe.segment;
        let (incoming, outgoing) = end.rings(pipe.duplex);
        let incoming = match incoming {
            Some(i) => {
                let ring = pipe.rings[i].clone();
                let word = ring.owner_words().1;
                let previous = claim_role(word, segment, role)?;
                // A closed end stays closed. Its writer learnt so (the
                // reader closed: `BrokenPipe`; the other end died or closed:
                // the producer flag), but the ring's consumer only ends at
                // the producer flag: set it too, so that this reader drains
                // what is left and then sees end of file instead of
                // waiting for a writer that will never write again (a
                // producer writes nothing once any flag is set). The role
                // found `GONE`: the writer found the previous reader dead
                // and is closing the ring (or has): close it ourselves, so
                // that it is closed before we use it whoever is first.
                if previous == GONE || ring.closed_flags() != 0 {
                    ring.close(&segment.waiter());
                }
                // The connection keeps the segment (`pipe`) alive.
                match ring.consumer(segment.waiter()) {
                    Ok(consumer) => Some(Incoming::new(ring, consumer)),
                    Err(c) => {
                        release_role(word, segment);
                        return Err(c.into());
                    }
                }
            }
            None => None,
        };
        let release_incoming = |incoming: Option<Incoming>| {
            if let Some(inc) = incoming {
                release_role(inc.ring.owner_words().1, segment);
            }
        };
        let outgoing = match outgoing {
            Some(i) => {
                let ring = pipe.rings[i].clone();
                let word = ring.owner_words().0;
                match claim_role(word, segment, role) {
                    // The reader found the previous writer dead and is
                    // closing the ring (see above): it is closed for us too.
                    Ok(GONE) => ring.close(&segment.waiter()),
                    Ok(_) => {}
                    Err(e) => {
                        release_incoming(incoming);
                        return Err(e);
                    }
                }
                match ring.producer(segment.waiter()) {
                    Ok(producer) => Some(Outgoing::new(ring, producer)),
                    Err(c) => {
                        release_role(word, segment);
                        release_incoming(incoming);
                        return Err(c.into());
                    }
                }
            }
            None => None,
        };
        Ok((incoming, outgoing))
    }

    /// Opens `end` of the named pipe `name` (created with [`Pipe::create`]).
    ///
    /// # Errors
    ///
    /// As [`Pipe::open`] and [`Pipe::connection`].
    pub fn open(name: &str, end: End, opts: &OpenOptions) -> Result<Connection, AttachError> {
        Pipe::open(name, opts)?.connection(end)
    }

    /// Child side of [`share_with_child`](Connection::share_with_child):
    /// claims the end the parent handed over through `env_var`.
    ///
    /// # Blocking
    ///
    /// As [`Segment::open_inherited`](crate::Segment::open_inherited).
    ///
    /// # Errors
    ///
    /// As [`Segment::open_inherited`](crate::Segment::open_inherited) (the variable is missing or malformed,
    /// …), or [`AttachError::RoleTaken`] when a live process holds the end.
    pub fn open_inherited(env_var: &str, opts: &OpenOptions) -> Result<Connection, AttachError> {
        let end = std::env::var(end_var(env_var))
            .ok()
            .and_then(|v| End::parse(&v))
            .ok_or_else(|| SegmentError::Inherit {
                env_var: end_var(env_var),
                reason: "not set, or not \"first\"/\"second\"",
            })?;
        object::open_inherited::<Pipe>(env_var, opts)?.connection(end)
    }

    /// Hands this end to the child that `cmd` will spawn, which claims it
    /// with [`open_inherited`](Connection::open_inherited)`(env_var, ..)`.
    ///
    /// **This transfers the end** (see the [module docs](super)): this
    /// process gives up its roles at once, every later operation on `self`
    /// fails with [`PipeError::HandleClosed`], and dropping `self` does *not*
    /// signal end of file. If the child is never spawned, the end stays
    /// unclaimed. A message this end had half received (a `try_recv` that
    /// gave up) is lost: the child starts at the next whole message. Handing the end to
    /// [`Process::new`](crate::process::Process::new) as an argument calls this.
    ///
    /// # Errors
    ///
    /// The handle is closed or already transferred, `env_var` is unusable,
    /// or the descriptor could not be duplicated. Nothing is transferred then.
    pub fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), AttachError> {
        if self.closed() {
            return Err(SegmentError::InvalidConfig {
                reason: "cannot share a pipe connection that is closed or already shared".into(),
            }
            .into());
        }
        let segment = &self.pipe.segment;
        segment.share_with_child(cmd, env_var)?;
        cmd.env(end_var(env_var), self.end.as_str());
        self.transferred.set(true);
        if let Some(inc) = &self.incoming {
            release_role(inc.ring.owner_words().1, segment);
        }
        if let Some(out) = &self.outgoing {
            release_role(out.ring.owner_words().0, segment);
        }
        self.unclaim();
        Ok(())
    }

    /// This handle no longer holds the end: the pipe handle may give it out
    /// again (the role words, released just before, decide who gets it).
    fn unclaim(&self) {
        // ORDERING: Relaxed — a process-local flag (see `claim`); the role
        // words carry the ordering between holders.
        self.pipe.claimed[self.end.index()].store(false, Ordering::Relaxed);
    }

    /// Which end of the pipe this is.
    pub fn end(&self) -> End {
        self.end
    }

    /// Python's `closed`: closed, or transferred to a child.
    pub fn closed(&self) -> bool {
        self.closed || self.transferred.get()
    }

    /// Python's `readable`: whether this end receives (false for the writing
    /// end of a simplex pipe, and after a bad message length).
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// Python's `writable`: whether this end sends (false for the reading
    /// end of a simplex pipe).
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Sets the spin budget and liveness period of blocking calls.
    pub fn set_wait_policy(&mut self, policy: WaitPolicy) {
        self.policy = policy;
    }

    fn check_closed(&self) -> Result<(), PipeError> {
        if self.closed() {
            return Err(PipeError::HandleClosed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<(), PipeError> {
        self.check_closed()?;
        if self.outgoing.is_none() {
            return Err(PipeError::ReadOnly);
        }
        Ok(())
    }

    /// After a bad message length: Python makes a duplex end write-only and
    /// closes a read-only one. The incoming ring is closed for its writer
    /// too (its sends then fail with `BrokenPipe` instead of filling a ring
    /// nobody will read; Python's would block once the buffer is full).
    fn stop_reading(&mut self) {
        if !self.writable {
            self.close();
            return;
        }
        if let Some(inc) = self.incoming.take() {
            inc.consumer.close();
            release_role(inc.ring.owner_words().1, &self.pipe.segment);
        }
        self.readable = false;
    }

    /// Python's `poll(timeout)`: whether a message (or end of file) can be
    /// read now, waiting up to `timeout` for one. `Some(Duration::ZERO)` is
    /// Python's default (answer at once); `None` waits forever.
    ///
    /// `true` at end of file too: the next `recv` then reports it. Records
    /// that only continue a message this end never saw begin (left by a
    /// previous holder of the end, see the [framing](super#framing)) are
    /// skipped here, as a receive would: they make no `true`.
    ///
    /// # Blocking
    ///
    /// Up to `timeout`, waking as soon as a message arrives or the other end
    /// closes; its death is noticed within 100 ms. A timeout is a lower
    /// bound: the call may return a little later. Records to skip that keep
    /// arriving do not hold it past its timeout (as for
    /// [`recv_timeout`](Connection::recv_timeout)).
    ///
    /// # Errors
    ///
    /// [`PipeError::HandleClosed`], [`PipeError::WriteOnly`].
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, PipeError> {
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        self.check_closed()?;
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        let deadline = deadline(timeout);
        inc.begin();
        loop {
            let ring = &inc.ring;
            let writer = ring.owner_words().0;
            let ready = inc
                .consumer
                .wait_readable(deadline, policy, &mut || peer_gone(ring, writer, segment));
            let ready = match ready {
                // Only the rest of a message cut off: skipped; wait on
                // (unless the deadline passed while skipping).
                Ok(true) => inc.skip_orphans(deadline),
                Ok(false) => Ok(true),
                Err(TimedOut) => Err(TimedOut),
            };
            match ready {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                // Timed out: one liveness check (a system call), so that a
                // dead writer reads as end of file even for a zero timeout.
                Err(TimedOut) => return Ok(inc.writer_gone(segment)),
            }
        }
    }

    /// Python's `close()`: closes this end. The other end reads what was
    /// already sent, then gets [`PipeError::Eof`]; its sends fail with
    /// [`PipeError::BrokenPipe`]. Closing twice is harmless; closing a
    /// transferred end signals nothing. `Drop` calls this.
    ///
    /// A closed end stays closed: claiming it again (with
    /// [`Pipe::connection`] or [`Connection::open`]) gives a connection
    /// whose receives return the whole messages still in the ring, then
    /// [`PipeError::Eof`], and whose sends fail with
    /// [`PipeError::BrokenPipe`].
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.sent.flush();
        self.received.flush();
        let transferred = self.transferred.get();
        let segment = &self.pipe.segment;
        if let Some(out) = self.outgoing.take() {
            if !transferred {
                out.producer.close();
                release_role(out.ring.owner_words().0, segment);
            }
        }
        if let Some(inc) = self.incoming.take() {
            if !transferred {
                inc.consumer.close();
                release_role(inc.ring.owner_words().1, segment);
            }
        }
        if !transferred {
            self.unclaim();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.close();
    }
}

impl crate::process::Share for Connection {
    /// Transfers this end to the child: see [`Connection::share_with_child`].
    fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), AttachError> {
        Connection::share_with_child(self, cmd, env_var)
    }
}
