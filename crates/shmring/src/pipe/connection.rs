//! [`Connection`]: one end of a pipe.

use std::cell::Cell;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use shmring_core::wait::WaitPolicy;

use super::ends::{peer_gone, Incoming, Outgoing};
use super::{end_var, End, Pipe, PipeError, Shared};
use crate::attach::{claim_role, deadline, release_role, AttachError};
use crate::codec::Message;
use crate::error::SegmentError;
use crate::object;
use crate::segment::OpenOptions;
use crate::sys::FutexWaiter;

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
    /// Encoding buffer of `send`, decoding buffer of `recv`.
    scratch: Vec<u8>,
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
        Ok(Connection {
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
                claim_role(word, segment, role)?;
                match ring.consumer(FutexWaiter) {
                    Ok(consumer) => Some(Incoming {
                        consumer,
                        fragment: ring.config().max_record as usize,
                        ring,
                    }),
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
                if let Err(e) = claim_role(word, segment, role) {
                    release_incoming(incoming);
                    return Err(e);
                }
                match ring.producer(FutexWaiter) {
                    Ok(producer) => Some(Outgoing {
                        producer,
                        fragment: ring.config().max_record as usize,
                        ring,
                    }),
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
    /// unclaimed. [`ProcessBuilder::share`](crate::process::ProcessBuilder::share)
    /// calls this.
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
        Ok(())
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

    /// Python's `send(obj)`: sends `value` encoded as one message.
    ///
    /// # Blocking
    ///
    /// As [`send_bytes`](Connection::send_bytes).
    ///
    /// # Errors
    ///
    /// As [`send_bytes`](Connection::send_bytes), or [`PipeError::Codec`].
    pub fn send<T: Message>(&mut self, value: &T) -> Result<(), PipeError> {
        self.check_writable()?;
        let mut scratch = std::mem::take(&mut self.scratch);
        scratch.clear();
        let sent = value
            .encode(&mut scratch)
            .map_err(PipeError::from)
            .and_then(|()| self.send_message(&scratch));
        self.keep_scratch(scratch);
        sent
    }

    /// Python's `send_bytes(buf, offset, size)`: sends `buf[offset..][..size]`
    /// (`size` `None`: the rest of `buf`) as one message, of any length.
    ///
    /// # Blocking
    ///
    /// Only while the ring is full: spins briefly, then sleeps until the
    /// reader makes room; a message longer than the ring goes out fragment
    /// by fragment as the reader consumes. No timeout, like Python's.
    ///
    /// # Errors
    ///
    /// [`PipeError::OffsetBeyondBuffer`], [`PipeError::SizeBeyondBuffer`],
    /// [`PipeError::HandleClosed`], [`PipeError::ReadOnly`];
    /// [`PipeError::BrokenPipe`] when the other end closed, or died (noticed
    /// while waiting for room). A message interrupted by a broken pipe is
    /// never delivered.
    pub fn send_bytes(
        &mut self,
        buf: &[u8],
        offset: usize,
        size: Option<usize>,
    ) -> Result<(), PipeError> {
        self.check_writable()?;
        if offset > buf.len() {
            return Err(PipeError::OffsetBeyondBuffer);
        }
        let size = size.unwrap_or(buf.len() - offset);
        let end = offset
            .checked_add(size)
            .filter(|&end| end <= buf.len())
            .ok_or(PipeError::SizeBeyondBuffer)?;
        self.send_message(&buf[offset..end])
    }

    fn send_message(&mut self, msg: &[u8]) -> Result<(), PipeError> {
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        let out = self.outgoing.as_mut().ok_or(PipeError::ReadOnly)?;
        if msg.len() < out.fragment {
            return out.push(msg, segment, policy);
        }
        // Full-size fragments continue a message; a shorter one ends it.
        for fragment in msg.chunks(out.fragment) {
            out.push(fragment, segment, policy)?;
        }
        if msg.len().is_multiple_of(out.fragment) {
            out.push(&[], segment, policy)?;
        }
        Ok(())
    }

    /// Python's `recv()`: receives one message and decodes it as a `T`.
    ///
    /// # Blocking
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Errors
    ///
    /// As [`recv_bytes`](Connection::recv_bytes), or [`PipeError::Codec`]
    /// (the message is consumed).
    pub fn recv<T: Message>(&mut self) -> Result<T, PipeError> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let received = self
            .read_message(None, &mut scratch)
            .and_then(|()| T::decode(&scratch).map_err(PipeError::from));
        self.keep_scratch(scratch);
        received
    }

    /// Python's `recv_bytes(maxlength)`: receives one whole message.
    ///
    /// # Blocking
    ///
    /// Until a message arrives or the other end closes or dies: spins for a
    /// few microseconds, then sleeps, re-checking the other end's liveness
    /// every 100 ms. No timeout, like Python's: [`poll`](Connection::poll)
    /// first to bound the wait.
    ///
    /// # Errors
    ///
    /// [`PipeError::Eof`] once the other end closed or died and everything
    /// it sent was read ([`PipeError::TruncatedMessage`] if it went in the
    /// middle of a message); [`PipeError::BadMessageLength`] for a message
    /// longer than `maxlength`, after which this end is no longer readable
    /// (see there); [`PipeError::HandleClosed`]; [`PipeError::WriteOnly`].
    pub fn recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, PipeError> {
        let mut out = Vec::new();
        self.read_message(maxlength, &mut out)?;
        Ok(out)
    }

    /// Python's `recv_bytes_into(buf, offset)`: receives one message into
    /// `buf[offset..]` and returns its length.
    ///
    /// # Blocking
    ///
    /// As [`recv_bytes`](Connection::recv_bytes).
    ///
    /// # Errors
    ///
    /// [`PipeError::OffsetTooLarge`] when `offset > buf.len()` (nothing is
    /// read); [`PipeError::BufferTooShort`] with the whole message, which is
    /// consumed, when it does not fit; otherwise as
    /// [`recv_bytes`](Connection::recv_bytes).
    pub fn recv_bytes_into(&mut self, buf: &mut [u8], offset: usize) -> Result<usize, PipeError> {
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        self.check_closed()?;
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        if offset > buf.len() {
            return Err(PipeError::OffsetTooLarge);
        }
        let room = &mut buf[offset..];
        let fragment = inc.fragment;
        // A whole message that fits goes straight from the ring to `buf`.
        let first = inc.next_record(segment, policy, false, |p| {
            if p.len() < fragment && p.len() <= room.len() {
                room[..p.len()].copy_from_slice(p);
                Ok(p.len())
            } else {
                Err(p.to_vec())
            }
        })?;
        let mut msg = match first {
            Ok(len) => return Ok(len),
            Err(msg) => msg,
        };
        let mut more = msg.len() == fragment;
        while more {
            more = inc.next_record(segment, policy, true, |p| {
                msg.extend_from_slice(p);
                p.len() == fragment
            })?;
        }
        if msg.len() > room.len() {
            return Err(PipeError::BufferTooShort(msg));
        }
        room[..msg.len()].copy_from_slice(&msg);
        Ok(msg.len())
    }

    /// Reads one whole message into `out` (replacing its contents).
    fn read_message(
        &mut self,
        maxlength: Option<usize>,
        out: &mut Vec<u8>,
    ) -> Result<(), PipeError> {
        let limit = maxlength.unwrap_or(usize::MAX);
        out.clear();
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        self.check_closed()?;
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        let fragment = inc.fragment;
        let mut mid_message = false;
        loop {
            let step = inc.next_record(segment, policy, mid_message, |p| {
                if p.len() > limit - out.len() {
                    return None;
                }
                out.extend_from_slice(p);
                Some(p.len() == fragment)
            })?;
            match step {
                Some(true) => mid_message = true,
                Some(false) => return Ok(()),
                None => {
                    out.clear();
                    self.stop_reading();
                    return Err(PipeError::BadMessageLength { maxlength: limit });
                }
            }
        }
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
    /// `true` at end of file too: the next `recv` then reports it.
    ///
    /// # Blocking
    ///
    /// Up to `timeout`, waking as soon as a message arrives or the other end
    /// closes; its death is noticed within 100 ms. A timeout is a lower
    /// bound: the call may return a little later.
    ///
    /// # Errors
    ///
    /// [`PipeError::HandleClosed`], [`PipeError::WriteOnly`].
    pub fn poll(&mut self, timeout: Option<Duration>) -> Result<bool, PipeError> {
        let (segment, policy) = (&self.pipe.segment, &self.policy);
        self.check_closed()?;
        let inc = self.incoming.as_mut().ok_or(PipeError::WriteOnly)?;
        let ring = &inc.ring;
        let writer = ring.owner_words().0;
        let ready = inc
            .consumer
            .wait_readable(deadline(timeout), policy, &mut || {
                peer_gone(ring, writer, segment)
            });
        // Timed out: one liveness check (a system call), so that a dead
        // writer reads as end of file even for a zero timeout.
        Ok(ready.is_ok() || inc.writer_gone(segment))
    }

    /// Python's `close()`: closes this end. The other end reads what was
    /// already sent, then gets [`PipeError::Eof`]; its sends fail with
    /// [`PipeError::BrokenPipe`]. Closing twice is harmless; closing a
    /// transferred end signals nothing. `Drop` calls this.
    pub fn close(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
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
    }

    /// Keeps the scratch buffer for the next call, unless a huge message
    /// made it huge.
    fn keep_scratch(&mut self, scratch: Vec<u8>) {
        if scratch.capacity() <= 1 << 20 {
            self.scratch = scratch;
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
