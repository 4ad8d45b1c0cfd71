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
use std::time::{Duration, Instant};

use shmring_core::wait::Until;

use super::error::{self, GetTimeoutError, PutTimeoutError, TryGetError, TryPutError};
use super::{
    get_error, get_methods, put_error, put_methods, GetError, PutError, PutFailure, Queue,
};
use crate::codec::{encoded, Message};
use crate::counts::Counts;
use crate::mpmc;
use crate::object::RoleError;
use crate::segment::PeerCounter;
use shmring_core::error::{PopError, PushError};

/// A put-only handle of a [`Queue`] for one thread, made by
/// [`Queue::sender`]: `Send`, not shared, no lock per call (a `Queue` takes
/// its producer mutex for each put). It owns a producer
/// ring of the queue (one of the queue's `producers`)
/// until dropped; FIFO holds per `Sender`.
///
/// # Examples
///
/// ```
/// use shmring::queue::{Queue, TryPutError};
///
/// let q = Queue::<u64>::new(2)?;
/// let mut tx = q.sender()?; // claims a producer ring now
/// let mut rx = q.receiver();
/// tx.put(1)?;
/// tx.put(2)?;
/// assert!(matches!(tx.try_put(3), Err(TryPutError::Full(3))));
/// assert_eq!(rx.get()?, 1);
/// assert_eq!(rx.try_get()?, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmring::queue::{GetTimeoutError, Queue};
///
/// let q = Queue::<String>::new(0)?;
/// let mut rx = q.receiver();
/// q.put("job".to_string())?;
/// assert_eq!(rx.get_timeout(Duration::from_secs(1))?, "job");
/// assert!(matches!(
///     rx.get_timeout(Duration::from_millis(1)),
///     Err(GetTimeoutError::Timeout)
/// ));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
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
    /// [`RoleError::NoFreeRing`] when every producer ring is taken by a
    /// live handle.
    pub fn sender(&self) -> Result<Sender<T>, RoleError> {
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
    put_methods!(mut);

    /// Encodes `item` (or borrows its own bytes) and pushes it, waiting
    /// until `until`.
    #[inline]
    fn put_until(&mut self, item: T, until: Until) -> Result<(), TryPutError<T>> {
        let bytes = match encoded(&item, &mut self.scratch) {
            Ok(bytes) => bytes,
            Err(e) => return Err(TryPutError::Put(PutError::Encode(item, e))),
        };
        let len = bytes.len();
        match self.producer.push(bytes, until) {
            Ok(()) => {
                self.counts.one(len);
                Ok(())
            }
            Err(PushError::Full | PushError::Timeout) => {
                if !until.is_now() {
                    self.counts.segment.add_to_counter(PeerCounter::Timeouts, 1);
                }
                Err(TryPutError::Full(item))
            }
            Err(e) => Err(TryPutError::Put(put_error(item, PutFailure::Push(e)))),
        }
    }
}

impl<T: Message> Receiver<T> {
    get_methods!(mut);

    /// Pops into the handle's buffer, waiting until `until`, and decodes
    /// (a `Vec<u8>` or `String` item takes the buffer itself: see
    /// [`Message::decode_from`]).
    #[inline]
    fn get_until(&mut self, until: Until) -> Result<T, TryGetError> {
        pop_until(&mut self.consumer, &mut self.counts, &mut self.buf, until)?;
        T::decode_from(&mut self.buf).map_err(|e| TryGetError::Get(GetError::Decode(e)))
    }
}

/// One get's pop into `buf`, waiting until `until`, counted in `counts`;
/// the message's length.
#[inline(always)]
fn pop_until(
    consumer: &mut mpmc::Consumer,
    counts: &mut Counts,
    buf: &mut Vec<u8>,
    until: Until,
) -> Result<usize, TryGetError> {
    match consumer.pop(buf, until) {
        Ok(len) => {
            counts.one(len);
            Ok(len)
        }
        Err(PopError::Empty | PopError::Timeout) => {
            if !until.is_now() {
                counts.segment.add_to_counter(PeerCounter::Timeouts, 1);
            }
            Err(TryGetError::Empty)
        }
        Err(e) => Err(TryGetError::Get(get_error(e))),
    }
}

/// Gets into a buffer of the caller's: for a loop that handles each
/// message's bytes and is done with them before the next, no allocation
/// per message (once `buf` has grown to the longest message). A
/// [`get`](Receiver::get) must hand back a new `Vec` each time, so it
/// allocates one per message.
impl Receiver<Vec<u8>> {
    /// Takes the next message into `buf`, replacing its contents, waiting
    /// while the queue is empty; returns its length (`buf.len()`). The same
    /// message [`get`](Receiver::get) would return, with `buf`'s
    /// allocation reused (grown if the message is longer than its
    /// capacity).
    ///
    /// # Blocking
    ///
    /// As [`get`](Receiver::get).
    ///
    /// # Errors
    ///
    /// As [`get`](Receiver::get), except that bytes are never a decode
    /// error. After an error `buf` holds unspecified bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::queue::Queue;
    ///
    /// let q = Queue::<Vec<u8>>::new(0)?;
    /// let mut tx = q.sender()?;
    /// let mut rx = q.receiver();
    /// tx.put(b"first".to_vec())?;
    /// tx.put(b"2nd".to_vec())?;
    /// let mut buf = Vec::new();
    /// assert_eq!(rx.get_into(&mut buf)?, 5);
    /// assert_eq!(buf, b"first");
    /// assert_eq!(rx.try_get_into(&mut buf)?, 3);
    /// assert_eq!(buf, b"2nd");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, GetError> {
        error::get_forever(|| self.get_into_until(buf, Until::Never))
    }

    /// Takes the next message into `buf` (as [`get_into`](Self::get_into))
    /// only if there is one now.
    ///
    /// # Errors
    ///
    /// [`TryGetError::Empty`], or why the get failed for good; after an
    /// error `buf` holds unspecified bytes.
    pub fn try_get_into(&mut self, buf: &mut Vec<u8>) -> Result<usize, TryGetError> {
        self.get_into_until(buf, Until::Now)
    }

    /// Takes the next message into `buf` (as [`get_into`](Self::get_into)),
    /// waiting at most `timeout` (a zero timeout tries once).
    ///
    /// # Errors
    ///
    /// [`GetTimeoutError::Timeout`], or why the get failed for good; after
    /// an error `buf` holds unspecified bytes.
    pub fn get_into_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, GetTimeoutError> {
        self.get_into_until(buf, Until::after(timeout))
            .map_err(TryGetError::timed_out)
    }

    #[inline]
    fn get_into_until(&mut self, buf: &mut Vec<u8>, until: Until) -> Result<usize, TryGetError> {
        pop_until(&mut self.consumer, &mut self.counts, buf, until)
    }
}
