//! [`AsyncQueue`]: a [`Queue`] awaited from tokio (feature `tokio`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;

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
            match self.queue.handle.get_async(None).await {
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
            .get_async(deadline)
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
