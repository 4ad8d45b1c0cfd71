//! [`Connection`]: one end of a pipe. Claiming, sharing and closing it are
//! here; its sends are in `send`, its receives in `recv`.

#[cfg(feature = "tokio")]
mod aio;
mod recv;
mod send;

use std::cell::{Cell, RefCell};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring_core::wait::{TimedOut, Until, WaitPolicy};

use super::ends::{pinned, Incoming, Outgoing};
use super::error::{ConnectError, RecvError, SendError};
use super::{end_var, End, Pipe, Shared};
use crate::attach::{claim_role, release_role, GONE};
use crate::counts::Counts;
use crate::error::SegmentError;
use crate::object::{OpenError, RoleError};
use crate::segment::PeerCounter;
use crate::sys::clock::until_instant;
#[cfg(feature = "tokio")]
pub use aio::{AsyncConnection, ConnectionSink, ConnectionStream};

/// One end of a [`Pipe`]: Python's `multiprocessing.connection.Connection`.
///
/// `Send` but not `Sync`: like Python's, a connection is used by one thread
/// at a time. See the [module docs](super) for the ownership rule when
/// handing an end to a child.
///
/// # Methods and their receivers
///
/// Every action comes in crossbeam's four forms: `x` blocks as long as it
/// takes, `try_x` tries once and never sleeps, `x_timeout(.., Duration)`
/// and `x_deadline(.., Instant)` give up when the time runs out. Each
/// form has its own error type (see [`error`](super#errors)): a blocking
/// call cannot report `Full`, `Empty` or `Timeout`.
///
/// The polls ([`poll`](Connection::poll),
/// [`poll_timeout`](Connection::poll_timeout),
/// [`poll_deadline`](Connection::poll_deadline),
/// [`wait_readable`](Connection::wait_readable)) take `&self`: asking
/// whether a message is there can be done from any shared borrow of the
/// connection (a list of connections to wait on, a closure beside a
/// sender). Sends and receives take `&mut self`, as the ends of other
/// single-producer single-consumer rings do: each end of a ring has one
/// user, and `&mut` makes that a compile-time fact instead of a run-time
/// check on every message; a receive also keeps the fragments of a
/// half-received message in the connection, and the message encoder and
/// decoder (your [`Message`](crate::codec::Message) code) run in the
/// middle of a send or receive, where a second call on the same end must
/// not start.
///
/// # Crash behaviour
///
/// See the [module docs](super#crash-behaviour): the other end's death is
/// end of file for `recv` (after what it sent) and a broken pipe for a
/// `send` that has to wait.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmring::pipe::{Pipe, RecvError, TryRecvError};
///
/// let (mut a, mut b) = Pipe::new(true)?;
/// assert!(!b.poll()?);
/// assert!(matches!(b.try_recv::<String>(), Err(TryRecvError::Empty)));
/// a.send(&"ping".to_string())?;
/// assert!(b.poll_timeout(Duration::from_secs(1))?);
/// assert_eq!(b.recv::<String>()?, "ping");
/// drop(a); // end of file for the other end
/// assert!(matches!(b.recv_bytes(None), Err(RecvError::Eof)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    pipe: Arc<Shared>,
    end: End,
    /// `None` when not readable (write-only, closed, transferred). In a
    /// `RefCell` for the polls, which take `&self`; every other use goes
    /// through `&mut self` (`get_mut`, no run-time check), so a poll's
    /// `borrow_mut` never finds it borrowed (a poll runs no code of the
    /// caller's while it holds it).
    incoming: RefCell<Option<Incoming>>,
    /// `None` when not writable (read-only, closed, transferred).
    outgoing: Option<Outgoing>,
    readable: bool,
    writable: bool,
    closed: bool,
    /// Handed to a child: roles given up, nothing signalled on drop.
    transferred: Cell<bool>,
    /// Encoding buffer of the sends (receives collect into
    /// [`Incoming::partial`](super::ends::Incoming)).
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
    pub(super) fn claim(pipe: Arc<Shared>, end: End) -> Result<Connection, RoleError> {
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
            return Err(RoleError::RoleTaken {
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
            incoming: RefCell::new(incoming),
            outgoing,
            closed: false,
            transferred: Cell::new(false),
            scratch: Vec::new(),
        })
    }

    fn claim_roles(
        pipe: &Shared,
        end: End,
        role: &'static str,
    ) -> Result<(Option<Incoming>, Option<Outgoing>), RoleError> {
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
                    Ok(consumer) => Some(Incoming::new(ring, consumer, segment)),
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
                    Ok(producer) => Some(Outgoing::new(ring, producer, segment)),
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

    /// Opens the named pipe `name` (made with `Pipe::builder().create(name)`)
    /// and claims its `end`. (`Pipe::builder().open_timeout(t).open(name)?
    /// .connection(end)` sets the open options.)
    ///
    /// # Errors
    ///
    /// [`ConnectError::Open`] as [`Pipe::open`], [`ConnectError::Role`] as
    /// [`Pipe::connection`].
    pub fn open(name: &str, end: End) -> Result<Connection, ConnectError> {
        Ok(Pipe::open(name)?.connection(end)?)
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
    /// …) in [`ConnectError::Open`], or [`ConnectError::Role`] when a live
    /// process holds the end.
    pub fn open_inherited(env_var: &str) -> Result<Connection, ConnectError> {
        let end = std::env::var(end_var(env_var))
            .ok()
            .and_then(|v| End::parse(&v))
            .ok_or_else(|| {
                OpenError::Segment(SegmentError::Inherit {
                    env_var: end_var(env_var),
                    reason: "not set, or not \"first\"/\"second\"",
                })
            })?;
        Ok(Pipe::builder().open_inherited(env_var)?.connection(end)?)
    }

    /// Hands this end to the child that `cmd` will spawn, which claims it
    /// with [`open_inherited`](Connection::open_inherited)`(env_var)`.
    ///
    /// **This transfers the end** (see the [module docs](super)): this
    /// process gives up its roles at once, every later operation on `self`
    /// fails with [`SendError::HandleClosed`] or [`RecvError::HandleClosed`], and dropping `self` does *not*
    /// signal end of file. If the child is never spawned, the end stays
    /// unclaimed. A message this end had half received (a `try_recv` that
    /// gave up) is lost: the child starts at the next whole message. Handing the end to
    /// [`Process::new`](crate::process::Process::new) as an argument calls this.
    ///
    /// # Errors
    ///
    /// The handle is closed or already transferred, `env_var` is unusable,
    /// or the descriptor could not be duplicated. Nothing is transferred then.
    pub fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), SegmentError> {
        if self.closed() {
            return Err(SegmentError::InvalidConfig {
                reason: "cannot share a pipe connection that is closed or already shared".into(),
            });
        }
        let segment = &self.pipe.segment;
        segment.share_with_child(cmd, env_var)?;
        cmd.env(end_var(env_var), self.end.as_str());
        self.transferred.set(true);
        if let Some(inc) = &*self.incoming.borrow() {
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
        if let Some(inc) = self.incoming.get_mut() {
            inc.consumer.set_wait_policy(policy);
        }
        if let Some(out) = &mut self.outgoing {
            out.producer.set_wait_policy(policy);
        }
    }

    fn check_writable(&self) -> Result<(), SendError> {
        if self.closed() {
            return Err(SendError::HandleClosed);
        }
        if self.outgoing.is_none() {
            return Err(SendError::ReadOnly);
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
        if let Some(inc) = self.incoming.get_mut().take() {
            inc.consumer.close();
            release_role(inc.ring.owner_words().1, &self.pipe.segment);
        }
        self.readable = false;
    }

    /// Python's `poll()`: whether a message (or end of file) can be read
    /// now, without waiting.
    ///
    /// `true` at end of file too: the next receive then reports it. Records
    /// that only continue a message this end never saw begin (left by a
    /// previous holder of the end, see the [framing](super#framing)) are
    /// skipped here, as a receive would: they make no `true`. `true` means a
    /// message has *begun* to arrive; [`try_recv`](Connection::try_recv)
    /// says whether all of it has.
    ///
    /// # Blocking
    ///
    /// Never. When the ring is empty it checks the other end's liveness (a
    /// system call), so that a dead writer reads as end of file.
    ///
    /// # Errors
    ///
    /// [`RecvError::HandleClosed`], [`RecvError::WriteOnly`].
    pub fn poll(&self) -> Result<bool, RecvError> {
        self.poll_until(Until::Now)
    }

    /// Whether a message is half received: a receive that gave up (a try,
    /// a timeout) took its first records, and the next receive of any kind
    /// continues it. Not in Python. A caller that receives small messages
    /// one way and long ones another (the Python binding: a try with the
    /// GIL held, and a wait without it) asks this to pick.
    pub fn mid_message(&self) -> bool {
        // Never borrowed elsewhere at this point: see the field's docs.
        self.incoming
            .borrow()
            .as_ref()
            .is_some_and(Incoming::mid_message)
    }

    /// Python's `poll(timeout)`: [`poll`](Connection::poll), waiting up to
    /// `timeout` for a message (or end of file). A zero timeout is
    /// [`poll`](Connection::poll).
    ///
    /// # Blocking
    ///
    /// Up to `timeout`, waking as soon as a message arrives or the other end
    /// closes; its death is noticed within the liveness period (100 ms). A
    /// timeout is a lower bound: the call may return a little later.
    /// Records to skip that keep arriving do not hold it past its timeout
    /// (as for [`recv_timeout`](Connection::recv_timeout)).
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    pub fn poll_timeout(&self, timeout: Duration) -> Result<bool, RecvError> {
        self.poll_until(Until::after(timeout))
    }

    /// [`poll_timeout`](Connection::poll_timeout) until `deadline` instead
    /// of for a duration; a deadline already past is
    /// [`poll`](Connection::poll).
    ///
    /// # Blocking
    ///
    /// Until `deadline`, as [`poll_timeout`](Connection::poll_timeout).
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    pub fn poll_deadline(&self, deadline: Instant) -> Result<bool, RecvError> {
        self.poll_until(until_instant(deadline))
    }

    /// Python's `poll(None)`: waits until a message (or end of file) can be
    /// read. Returns at once if one can.
    ///
    /// # Blocking
    ///
    /// Until a message begins to arrive or the other end closes or dies
    /// (noticed within the liveness period, 100 ms). An end that was handed
    /// to a child that died before claiming it is not "gone" (see the
    /// [module docs](super#crash-behaviour)): use
    /// [`poll_timeout`](Connection::poll_timeout) if that may happen.
    ///
    /// # Errors
    ///
    /// As [`poll`](Connection::poll).
    #[doc(alias = "poll_forever")]
    pub fn wait_readable(&self) -> Result<(), RecvError> {
        // `Until::Never` never gives up, so `false` does not come; should
        // it, waiting again is the answer.
        while !self.poll_until(Until::Never)? {}
        Ok(())
    }

    /// Every poll ends here: whether the next receive finds a record (or
    /// the end), waiting up to `until` for one. `false`: gave up.
    fn poll_until(&self, until: Until) -> Result<bool, RecvError> {
        if self.closed() {
            return Err(RecvError::HandleClosed);
        }
        // Never borrowed elsewhere at this point: see the field's docs.
        let mut incoming = self.incoming.borrow_mut();
        let inc = incoming.as_mut().ok_or(RecvError::WriteOnly)?;
        let until = pinned(until);
        inc.begin();
        loop {
            let ready = match inc.consumer.wait_readable(until) {
                // Only the rest of a message cut off: skipped; wait on
                // (unless the deadline passed while skipping).
                Ok(true) => inc.skip_orphans(until),
                Ok(false) => Ok(true),
                Err(TimedOut) => Err(TimedOut),
            };
            match ready {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                // Gave up: one liveness check (a system call), so that a
                // dead writer reads as end of file even for a try.
                Err(TimedOut) => return Ok(inc.writer_gone()),
            }
        }
    }

    /// Python's `close()`: closes this end. The other end reads what was
    /// already sent, then gets [`RecvError::Eof`]; its sends fail with
    /// [`SendError::BrokenPipe`]. Closing twice is harmless; closing a
    /// transferred end signals nothing. `Drop` calls this.
    ///
    /// A closed end stays closed: claiming it again (with
    /// [`Pipe::connection`] or [`Connection::open`]) gives a connection
    /// whose receives return the whole messages still in the ring, then
    /// [`RecvError::Eof`], and whose sends fail with
    /// [`SendError::BrokenPipe`].
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
        if let Some(inc) = self.incoming.get_mut().take() {
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
    fn share_with_child(&self, cmd: &mut Command, env_var: &str) -> Result<(), SegmentError> {
        Connection::share_with_child(self, cmd, env_var)
    }
}
