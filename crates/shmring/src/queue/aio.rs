//! [`AsyncQueue`]: a [`Queue`] awaited from tokio (feature `tokio`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use futures_sink::Sink;

use super::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use super::Queue;
use crate::codec::Message;

/// A [`Queue`] handle whose `get` and `put` are awaited: a task that waits
/// gives its thread back to the runtime and costs no CPU while asleep
/// (see [`crate::aio`] for how, and which futures are cancel-safe).
///
/// Cheap to clone (an `Arc` of one [`Queue`] handle); clones share the
/// handle's producer ring. The other ends may be sync handles in any
/// process.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::aio::AsyncQueue;
/// use shmring::queue::Queue;
///
/// let queue = AsyncQueue::new(Queue::<u64>::new(0)?);
/// let consumer = queue.clone();
/// let task = tokio::spawn(async move { consumer.get().await });
/// queue.put(7).await?;
/// assert_eq!(task.await??, 7);
/// # Ok(())
/// # }
/// ```
pub struct AsyncQueue<T> {
    queue: Arc<Queue<T>>,
}

impl<T> Clone for AsyncQueue<T> {
    fn clone(&self) -> Self {
        AsyncQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for AsyncQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AsyncQueue").field(&*self.queue).finish()
    }
}

impl<T> From<Queue<T>> for AsyncQueue<T> {
    fn from(queue: Queue<T>) -> Self {
        AsyncQueue {
            queue: Arc::new(queue),
        }
    }
}

impl<T: Message> AsyncQueue<T> {
    /// Wraps a queue handle.
    pub fn new(queue: Queue<T>) -> AsyncQueue<T> {
        queue.into()
    }

    /// The sync handle underneath (its blocking calls block the thread:
    /// use them outside the runtime, or its `try_` forms).
    pub fn sync(&self) -> &Queue<T> {
        &self.queue
    }

    /// Takes the next item, awaiting one while the queue is empty.
    ///
    /// # Blocking
    ///
    /// Never blocks the thread: tries once, then sleeps in an io_uring
    /// futex wait (see [`crate::aio`]) until a producer puts, this handle
    /// is closed or the queue shut down.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe: a dropped pending `get` has taken no message, and
    /// leaves no waiter registered.
    ///
    /// # Errors
    ///
    /// As [`Queue::get`].
    pub async fn get(&self) -> Result<T, GetError> {
        loop {
            match self.queue.handle.get_async(None, None).await {
                Ok(item) => return Ok(item),
                Err(TryGetError::Get(e)) => return Err(e),
                Err(TryGetError::Empty) => {}
            }
        }
    }

    /// Takes the next item, awaiting at most `timeout` (tokio's clock; a
    /// zero timeout tries once).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe, as [`get`](Self::get).
    ///
    /// # Errors
    ///
    /// As [`Queue::get_timeout`].
    pub async fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        self.queue
            .handle
            .get_async(deadline, None)
            .await
            .map_err(TryGetError::timed_out)
    }

    /// Takes the next item only if there is one now; never awaits.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_get`].
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.queue.try_get()
    }

    /// Puts `item`, awaiting room while the queue is full.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a dropped pending `put` has not put `item`, and
    /// drops it.
    ///
    /// # Errors
    ///
    /// As [`Queue::put`]; each gives the item back.
    pub async fn put(&self, item: T) -> Result<(), PutError<T>> {
        let mut item = item;
        loop {
            match self.queue.handle.put_async(item, None).await {
                Ok(()) => return Ok(()),
                Err(TryPutError::Put(e)) => return Err(e),
                Err(TryPutError::Full(back)) => item = back,
            }
        }
    }

    /// Puts `item`, awaiting room for at most `timeout` (tokio's clock; a
    /// zero timeout tries once).
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe, as [`put`](Self::put); on a timeout the item is
    /// given back.
    ///
    /// # Errors
    ///
    /// As [`Queue::put_timeout`].
    pub async fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        self.queue
            .handle
            .put_async(item, deadline)
            .await
            .map_err(TryPutError::timed_out)
    }

    /// Puts `item` only if there is room now; never awaits.
    ///
    /// # Errors
    ///
    /// As [`Queue::try_put`].
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.queue.try_put(item)
    }
}

impl<T: Message + Send + 'static> AsyncQueue<T> {
    /// The queue's items as a [`Stream`] (of `get` results), which ends
    /// after this handle is closed or the queue shut down (and drained).
    ///
    /// # Cancel safety
    ///
    /// Dropping the stream while it waits takes nothing, as a dropped
    /// [`get`](Self::get).
    pub fn into_stream(self) -> QueueStream<T> {
        QueueStream {
            queue: self.queue,
            pending: None,
            done: false,
        }
    }

    /// This handle's producer side as a [`Sink`] of items, for
    /// `SinkExt::send`, `send_all` and `Stream::forward` (the `futures`
    /// crate's extension traits).
    ///
    /// # Sink contract
    ///
    /// * `start_send` tries the put at once: with room, the item is in the
    ///   queue when `start_send` returns. Without, the sink keeps it (one
    ///   item at most) and awaits room as [`put`](Self::put) does (an
    ///   io_uring futex wait on the queue's space word, no thread, no
    ///   polling).
    /// * `poll_ready` and `poll_flush` put the kept item, awaiting room;
    ///   `Ready(Ok)` from `poll_ready` means the sink keeps nothing, so
    ///   the next `start_send` is accepted.
    /// * `poll_close` is `poll_flush`: it closes nothing, since the handle
    ///   is shared with this queue's clones (close the handle through
    ///   [`sync`](Self::sync) where that is meant).
    /// * A put that fails for good (the handle closed, the queue shut
    ///   down, an item that cannot be encoded) is reported by the next
    ///   `poll_ready`, `poll_flush` or `poll_close`, as the [`PutError`]
    ///   that gives the item back; the sink then takes items again.
    ///
    /// Items of one sink are put in the order they were sent.
    ///
    /// # Cancel safety
    ///
    /// Once `poll_flush` (or `poll_close`, or `SinkExt::send`) returned
    /// `Ready(Ok)`, every item sent is in the queue, and dropping the sink
    /// loses none. An item the sink still keeps when it is dropped (sent
    /// while the queue was full, not yet flushed) is dropped with it and
    /// never put; dropping the sink also ends its waiter registration. The
    /// futures of `SinkExt::send` and `send_all` are not cancel-safe for
    /// the same reason: use [`put_timeout`](Self::put_timeout) where an
    /// item must not be lost.
    ///
    /// # Panics
    ///
    /// `start_send` panics when the sink still keeps an item or an error,
    /// that is when it was called without `poll_ready` returning
    /// `Ready(Ok)` first (the `Sink` contract).
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::SinkExt;
    /// use shmring::aio::AsyncQueue;
    /// use shmring::queue::Queue;
    ///
    /// let queue = AsyncQueue::new(Queue::<u64>::new(0)?);
    /// let mut sink = queue.clone().into_sink();
    /// sink.send(1).await?;
    /// sink.send(2).await?;
    /// assert_eq!(queue.get().await?, 1);
    /// assert_eq!(queue.get().await?, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub fn into_sink(self) -> QueueSink<T>
    where
        T: Sync,
    {
        QueueSink {
            queue: self.queue,
            pending: None,
            failed: None,
        }
    }
}

/// A put of a [`QueueSink`] awaiting room; it owns its item.
type PendingPut<T> = Pin<Box<dyn Future<Output = Result<(), PutError<T>>> + Send>>;

/// [`AsyncQueue::into_sink`]: a queue handle's producer side as a [`Sink`].
pub struct QueueSink<T> {
    queue: Arc<Queue<T>>,
    /// The put of the item sent while the queue was full, if any.
    pending: Option<PendingPut<T>>,
    /// A put that failed for good in `start_send`, for the next poll.
    failed: Option<PutError<T>>,
}

impl<T> std::fmt::Debug for QueueSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSink")
            .field("queue", &*self.queue)
            .field("keeps_an_item", &self.pending.is_some())
            .field("failed", &self.failed.is_some())
            .finish()
    }
}

// Nothing in a sink is pinned structurally: the pending put is boxed, and
// the kept error (with its item) is moved out, never polled.
impl<T> Unpin for QueueSink<T> {}

impl<T: Message + Send + Sync + 'static> QueueSink<T> {
    /// Whether the sink keeps an item not yet put (sent while the queue
    /// was full), or a failed one not yet reported: dropping it now loses
    /// that item.
    pub fn is_pending(&self) -> bool {
        self.pending.is_some() || self.failed.is_some()
    }

    /// Puts the kept item, if any, awaiting room; reports a failed put.
    fn poll_put(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), PutError<T>>> {
        if let Some(e) = self.failed.take() {
            return Poll::Ready(Err(e));
        }
        let Some(put) = self.pending.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let Poll::Ready(done) = put.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        self.pending = None;
        Poll::Ready(done)
    }
}

impl<T: Message + Send + Sync + 'static> Sink<T> for QueueSink<T> {
    type Error = PutError<T>;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Every field is Unpin (the future is boxed).
        self.get_mut().poll_put(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Self::Error> {
        let this = self.get_mut();
        assert!(
            !this.is_pending(),
            "QueueSink::start_send without poll_ready returning Ready(Ok) first"
        );
        match this.queue.try_put(item) {
            Ok(()) => {}
            Err(TryPutError::Full(item)) => {
                let queue = AsyncQueue {
                    queue: this.queue.clone(),
                };
                this.pending = Some(Box::pin(async move { queue.put(item).await }));
            }
            Err(TryPutError::Put(e)) => this.failed = Some(e),
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_put(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.get_mut().poll_put(cx)
    }
}

/// A pending `get` of a [`QueueStream`].
type PendingGet<T> = Pin<Box<dyn Future<Output = Result<T, GetError>> + Send>>;

/// [`AsyncQueue::into_stream`]: the items of a queue as a [`Stream`].
pub struct QueueStream<T> {
    queue: Arc<Queue<T>>,
    /// The get in progress, if any.
    pending: Option<PendingGet<T>>,
    /// The queue was closed or shut down: nothing more comes.
    done: bool,
}

impl<T> std::fmt::Debug for QueueStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueStream")
            .field("queue", &*self.queue)
            .field("done", &self.done)
            .finish()
    }
}

impl<T: Message + Send + 'static> Stream for QueueStream<T> {
    type Item = Result<T, GetError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Every field is Unpin (the future is boxed).
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let queue = &this.queue;
        let get = this.pending.get_or_insert_with(|| {
            let queue = AsyncQueue {
                queue: queue.clone(),
            };
            Box::pin(async move { queue.get().await })
        });
        let Poll::Ready(got) = get.as_mut().poll(cx) else {
            return Poll::Pending;
        };
        this.pending = None;
        match got {
            Err(GetError::Closed | GetError::ShutDown) => {
                this.done = true;
                Poll::Ready(None)
            }
            got => Poll::Ready(Some(got)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll, Waker};

    use futures_sink::Sink;

    use super::AsyncQueue;
    use crate::queue::{Queue, TryGetError};

    /// A sink dropped while its kept item awaits room leaves no waiter
    /// registered on the space word, and the item is not put.
    #[test]
    fn a_sink_dropped_while_awaiting_room_leaves_no_waiter() {
        let q = AsyncQueue::new(Queue::<u64>::new(1).unwrap());
        let word = q.sync().handle.queue.core().space_word();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        let mut sink = q.clone().into_sink();
        let mut cx = Context::from_waker(Waker::noop());
        let mut pinned = Pin::new(&mut sink);
        assert!(matches!(
            pinned.as_mut().poll_ready(&mut cx),
            Poll::Ready(Ok(()))
        ));
        pinned.as_mut().start_send(0).unwrap(); // put at once
        assert!(matches!(
            pinned.as_mut().poll_ready(&mut cx),
            Poll::Ready(Ok(()))
        ));
        pinned.as_mut().start_send(1).unwrap(); // kept: the queue is full
        assert!(pinned.as_mut().poll_flush(&mut cx).is_pending());
        assert_eq!(word.waiters(), 1, "asleep and registered");
        drop(sink);
        assert_eq!(word.waiters(), 0, "dropped: deregistered");
        assert_eq!(q.try_get().unwrap(), 0);
        assert!(
            matches!(q.try_get(), Err(TryGetError::Empty)),
            "1 was not put"
        );
    }

    /// `start_send` without `poll_ready` while the sink keeps an item
    /// breaks the `Sink` contract: it panics rather than drop or reorder.
    #[test]
    #[should_panic(expected = "without poll_ready")]
    fn start_send_while_an_item_is_kept_panics() {
        let q = AsyncQueue::new(Queue::<u64>::new(1).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        let mut sink = q.into_sink();
        let mut pinned = Pin::new(&mut sink);
        pinned.as_mut().start_send(0).unwrap(); // put
        pinned.as_mut().start_send(1).unwrap(); // kept
        let _ = pinned.as_mut().start_send(2);
    }
}
