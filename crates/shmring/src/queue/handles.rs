//! [`Sender`] and [`Receiver`]: typed one-thread handles of a [`Queue`],
//! for hot loops.
//!
//! A `Queue` is `Sync`: threads share it, so each `put` takes the handle's
//! producer mutex for its try, and each `get` takes a consumer state out of
//! the handle's pool and puts it back (a mutex each time): a few atomic
//! read-modify-writes per call, about the cost of the ring operation itself. A `Sender` owns a producer ring of
//! its own and a `Receiver` a consumer, both behind `&mut self`: no lock,
//! nothing shared with other handles of this process. Semantics are those
//! of [`Queue::put`] and [`Queue::get`] otherwise.

use std::marker::PhantomData;
use std::time::Duration;

use super::{get_error, pop, push, put_error, GetError, PutError, Queue};
use crate::attach::AttachError;
use crate::codec::{encoded, Message};
use crate::counts::Counts;
use crate::mpmc;
use crate::segment::PeerCounter;
use shmring_core::error::{PopError, PushError};

/// A put-only handle of a [`Queue`] for one thread, made by
/// [`Queue::sender`]: `Send`, not shared, no lock per call (a `Queue` takes
/// its producer mutex for each put). It owns a producer
/// ring of the queue (one of [`QueueOptions::producers`](super::QueueOptions::producers))
/// until dropped; FIFO holds per `Sender`.
#[derive(Debug)]
pub struct Sender<T> {
    producer: mpmc::Producer,
    scratch: Vec<u8>,
    counts: Counts,
    _items: PhantomData<fn(T) -> T>,
}

/// A get-only handle of a [`Queue`] for one thread, made by
/// [`Queue::receiver`]: `Send`, not shared, with a consumer state of its
/// own. Semantics are those of [`Queue::get`].
#[derive(Debug)]
pub struct Receiver<T> {
    consumer: mpmc::Consumer,
    buf: Vec<u8>,
    counts: Counts,
    _items: PhantomData<fn(T) -> T>,
}

impl<T: Message> Queue<T> {
    /// A [`Sender`]: puts without a lock per call.
    ///
    /// # Errors
    ///
    /// [`AttachError`] when every producer ring is taken by a live handle.
    pub fn sender(&self) -> Result<Sender<T>, AttachError> {
        Ok(Sender {
            producer: self.handle.queue.producer()?,
            scratch: Vec::new(),
            counts: Counts::new(
                self.segment.clone(),
                PeerCounter::Puts,
                PeerCounter::BytesIn,
            ),
            _items: PhantomData,
        })
    }

    /// A [`Receiver`]: gets without a lock per call.
    pub fn receiver(&self) -> Receiver<T> {
        Receiver {
            consumer: self.handle.queue.consumer(),
            buf: Vec::new(),
            counts: Counts::new(
                self.segment.clone(),
                PeerCounter::Gets,
                PeerCounter::BytesOut,
            ),
            _items: PhantomData,
        }
    }
}

impl<T: Message> Sender<T> {
    /// As [`Queue::put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; each gives the item back.
    #[inline]
    pub fn put(&mut self, item: T, timeout: Option<Duration>) -> Result<(), PutError<T>> {
        self.put_with(item, |producer, bytes| push(producer, bytes, timeout))
    }

    /// Encodes `item` (or borrows its own bytes) and hands them to `push`.
    #[inline(always)]
    fn put_with(
        &mut self,
        item: T,
        push: impl FnOnce(&mut mpmc::Producer, &[u8]) -> Result<(), PushError>,
    ) -> Result<(), PutError<T>> {
        let pushed = match encoded(&item, &mut self.scratch) {
            Ok(bytes) => push(&mut self.producer, bytes).map(|()| bytes.len()),
            Err(e) => return Err(PutError::Encode(item, e)),
        };
        match pushed {
            Ok(len) => {
                self.counts.one(len);
                Ok(())
            }
            Err(e) => Err(put_error(&self.counts.segment, item, e)),
        }
    }

    /// As [`Queue::try_put`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    #[doc(alias = "put_nowait")]
    #[inline]
    pub fn try_put(&mut self, item: T) -> Result<(), PutError<T>> {
        self.put_with(item, |producer, bytes| producer.try_push(bytes))
    }
}

impl<T: Message> Receiver<T> {
    /// As [`Queue::get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    #[inline]
    pub fn get(&mut self, timeout: Option<Duration>) -> Result<T, GetError> {
        self.get_with(|consumer, buf| pop(consumer, buf, timeout))
    }

    /// Pops with `pop` into the handle's buffer and decodes.
    #[inline(always)]
    fn get_with(
        &mut self,
        pop: impl FnOnce(&mut mpmc::Consumer, &mut Vec<u8>) -> Result<usize, PopError>,
    ) -> Result<T, GetError> {
        match pop(&mut self.consumer, &mut self.buf) {
            Ok(len) => {
                self.counts.one(len);
                T::decode(&self.buf).map_err(GetError::Decode)
            }
            Err(e) => Err(get_error(&self.counts.segment, e)),
        }
    }

    /// As [`Queue::try_get`].
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    #[doc(alias = "get_nowait")]
    #[inline]
    pub fn try_get(&mut self) -> Result<T, GetError> {
        self.get_with(|consumer, buf| consumer.try_pop(buf))
    }
}
