//! [`AsyncJoinableQueue`]: a [`JoinableQueue`] awaited from tokio (feature
//! `tokio`).

use std::sync::Arc;
use std::time::Duration;

use shmring_core::joinable::TooManyDone;
use shmring_core::wait::WaitPolicy;
use tokio::time::Instant;

use super::{JoinableQueue, TryJoinError};
use crate::aio::{block_on, keep_alive};
use crate::codec::Message;
use crate::queue::error::{
    GetError, GetTimeoutError, PutError, PutTimeoutError, TryGetError, TryPutError,
};
use crate::queue::recovery::{JoinError, JoinTimeoutError};
use crate::segment::PeerCounter;

/// A [`JoinableQueue`] handle whose `get`, `put` and `join` are awaited:
/// a task that waits gives its thread back to the runtime and sleeps in an
/// io_uring futex wait (see [`crate::aio`]). The wrapper of
/// [`AsyncQueue`](crate::aio::AsyncQueue), with the task counter: a
/// worker task `get`s and calls [`task_done`](Self::task_done) (which
/// never waits), a coordinator awaits [`join`](Self::join). The other
/// handles may be sync ones in any process: their `task_done` wakes an
/// awaiting `join` through the same wait word a sync joiner sleeps on.
///
/// Cheap to clone (an `Arc` of one handle): clones share the handle's
/// producer ring and its task slot, so a task got through one clone may
/// be marked done through another.
///
/// # Cancel safety
///
/// * [`get`](Self::get), [`get_timeout`](Self::get_timeout),
///   [`join`](Self::join) and [`join_timeout`](Self::join_timeout) are
///   cancel-safe: a dropped pending `get` has taken nothing (and counts no
///   task in this handle's slot); a dropped pending `join` changes
///   nothing. Either leaves no waiter registered.
/// * [`put`](Self::put) and [`put_timeout`](Self::put_timeout) are not,
///   as [`AsyncQueue::put`](crate::aio::AsyncQueue::put): a dropped pending
///   put drops its item (and counts no task).
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::aio::AsyncJoinableQueue;
/// use shmring::queue::JoinableQueue;
///
/// let queue = AsyncJoinableQueue::new(JoinableQueue::<u64>::new(0)?);
/// let worker = queue.clone();
/// tokio::spawn(async move {
///     while let Ok(_job) = worker.get().await {
///         worker.task_done()?;
///     }
///     Ok::<_, shmring::core::joinable::TooManyDone>(())
/// });
/// queue.put(1).await?;
/// queue.put(2).await?;
/// queue.join().await?; // both were got and marked done
/// # Ok(())
/// # }
/// ```
pub struct AsyncJoinableQueue<T> {
    queue: Arc<JoinableQueue<T>>,
}

impl<T> Clone for AsyncJoinableQueue<T> {
    fn clone(&self) -> Self {
        AsyncJoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> std::fmt::Debug for AsyncJoinableQueue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("AsyncJoinableQueue")
            .field(&*self.queue)
            .finish()
    }
}

impl<T> From<JoinableQueue<T>> for AsyncJoinableQueue<T> {
    fn from(queue: JoinableQueue<T>) -> Self {
        AsyncJoinableQueue {
            queue: Arc::new(queue),
        }
    }
}

impl<T> AsyncJoinableQueue<T> {
    /// The sync handle underneath (its blocking calls block the thread:
    /// use them outside the runtime, or its `try_` forms).
    pub fn sync(&self) -> &JoinableQueue<T> {
        &self.queue
    }

    /// [`JoinableQueue::task_done`]: marks one task done; never waits.
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::task_done`].
    pub fn task_done(&self) -> Result<(), TooManyDone> {
        self.queue.task_done()
    }

    /// Awaits until every item put has been marked done (as
    /// [`JoinableQueue::join`], without blocking the thread).
    ///
    /// # Blocking
    ///
    /// Never blocks the thread: sleeps in an io_uring futex wait on the
    /// queue's all-done word, woken by the `task_done` (or the take) that
    /// brings the count to zero, in any process. Tasks held by dead
    /// processes are taken off the count within one or two liveness
    /// slices.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type).
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::join`]: [`JoinError::PeerDied`] when tasks were
    /// taken off the count because their holder died.
    pub async fn join(&self) -> Result<(), JoinError> {
        loop {
            match self.join_until(None).await {
                Ok(()) => return Ok(()),
                Err(TryJoinError::Join(e)) => return Err(e),
                Err(TryJoinError::Unfinished) => {}
            }
        }
    }

    /// As [`join`](Self::join), for at most `timeout` (tokio's clock; a
    /// zero timeout is [`try_join`](Self::try_join)).
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type).
    ///
    /// # Errors
    ///
    /// [`JoinTimeoutError::Timeout`] with tasks still unfinished, or
    /// [`JoinError::PeerDied`] as for [`join`](Self::join).
    pub async fn join_timeout(&self, timeout: Duration) -> Result<(), JoinTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.join_until(deadline).await.map_err(super::timed_out)
    }

    /// [`JoinableQueue::try_join`]: never awaits.
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::try_join`].
    pub fn try_join(&self) -> Result<(), TryJoinError> {
        self.queue.try_join()
    }

    /// Tasks put and not yet marked done (a snapshot).
    pub fn unfinished_tasks(&self) -> u64 {
        self.queue.unfinished_tasks()
    }

    /// The sync `join_until` with [`crate::aio::block_on`]'s sleep (which
    /// runs its slow check, reclaiming dead holders' slots, at the
    /// deadline too). The tasks a check drops are counted at once, not at
    /// the end: a join dropped while pending still counts what it
    /// reclaimed (its losses are reported by the next join).
    async fn join_until(&self, deadline: Option<Instant>) -> Result<(), TryJoinError> {
        let q = &*self.queue;
        let mark = q.tasks().loss_mark();
        let keep = keep_alive(&q.segment);
        let joined = block_on(
            q.tasks().all_done_word(),
            &q.handle.waiter,
            &keep,
            WaitPolicy::default(),
            deadline,
            |slow| {
                let mut dropped = 0;
                let unfinished = q.unfinished_reclaiming(slow, &mut dropped);
                if dropped != 0 {
                    q.segment.add_to_counter(PeerCounter::Recovered, dropped);
                }
                (unfinished == 0).then_some(())
            },
        )
        .await;
        q.join_outcome(joined.is_ok(), mark, 0)
    }
}

impl<T: Message> AsyncJoinableQueue<T> {
    /// Wraps a queue handle.
    pub fn new(queue: JoinableQueue<T>) -> AsyncJoinableQueue<T> {
        queue.into()
    }

    /// Takes the next item (a task this handle now holds until
    /// [`task_done`](Self::task_done)), awaiting one while the queue is
    /// empty.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type).
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::get`].
    pub async fn get(&self) -> Result<T, GetError> {
        loop {
            match self.get_until(None).await {
                Ok(item) => return Ok(item),
                Err(TryGetError::Get(e)) => return Err(e),
                Err(TryGetError::Empty) => {}
            }
        }
    }

    /// As [`get`](Self::get), for at most `timeout` (tokio's clock).
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::get_timeout`].
    pub async fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.get_until(deadline)
            .await
            .map_err(TryGetError::timed_out)
    }

    /// [`JoinableQueue::try_get`]: never awaits.
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::try_get`].
    pub fn try_get(&self) -> Result<T, TryGetError> {
        self.queue.try_get()
    }

    /// Puts `item` (one more unfinished task), awaiting room while the
    /// queue is full.
    ///
    /// # Cancel safety
    ///
    /// Not cancel-safe: a dropped pending `put` drops `item`.
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::put`]; each gives the item back.
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

    /// As [`put`](Self::put), awaiting room for at most `timeout`; on a
    /// timeout the item is given back.
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::put_timeout`].
    pub async fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        let deadline = Instant::now().checked_add(timeout);
        self.queue
            .handle
            .put_async(item, deadline)
            .await
            .map_err(TryPutError::timed_out)
    }

    /// [`JoinableQueue::try_put`]: never awaits.
    ///
    /// # Errors
    ///
    /// As [`JoinableQueue::try_put`].
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.queue.try_put(item)
    }

    async fn get_until(&self, deadline: Option<Instant>) -> Result<T, TryGetError> {
        let q = &*self.queue;
        q.handle.get_async(deadline, Some(q.task_hooks())).await
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};

    use super::AsyncJoinableQueue;
    use crate::queue::JoinableQueue;

    #[test]
    fn a_dropped_pending_join_leaves_no_waiter() {
        let q = AsyncJoinableQueue::new(JoinableQueue::<u64>::new(0).unwrap());
        let word = q.sync().tasks().all_done_word();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        q.sync().put(1).unwrap();
        let mut join = Box::pin(q.join());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(join.as_mut().poll(&mut cx).is_pending());
        assert_eq!(word.waiters(), 1, "asleep and registered");
        drop(join);
        assert_eq!(word.waiters(), 0, "dropped: deregistered");
        assert_eq!(q.sync().try_get().unwrap(), 1);
        q.task_done().unwrap();
        assert!(q.try_join().is_ok());
    }

    /// A pending get of a JoinableQueue dropped while asleep counts no
    /// task: a join afterwards returns at once.
    #[test]
    fn a_dropped_pending_get_counts_no_task() {
        let q = AsyncJoinableQueue::new(JoinableQueue::<u64>::new(0).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _in = rt.enter();
        let mut get = Box::pin(q.get());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(get.as_mut().poll(&mut cx).is_pending());
        drop(get);
        assert_eq!(q.unfinished_tasks(), 0);
        assert!(q.try_join().is_ok());
    }

    /// Two tasks join on one handle (one clone each) while a sync thread
    /// finishes the tasks: the last `task_done` wakes both.
    #[test]
    fn two_joins_on_one_handle_both_wake() {
        let q = AsyncJoinableQueue::new(JoinableQueue::<u64>::new(0).unwrap());
        let word = q.sync().tasks().all_done_word();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        q.sync().put(1).unwrap();
        q.sync().put(2).unwrap();
        rt.block_on(async {
            let joins = [q.clone(), q.clone()].map(|q| tokio::spawn(async move { q.join().await }));
            while word.waiters() != 2 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let worker = q.clone();
            let finished = std::thread::spawn(move || {
                for _ in 0..2 {
                    worker.sync().get().unwrap();
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    worker.task_done().unwrap();
                }
            });
            for join in joins {
                let joined = tokio::time::timeout(std::time::Duration::from_secs(20), join).await;
                joined.expect("woken").unwrap().unwrap();
            }
            finished.join().unwrap();
        });
        assert_eq!(word.waiters(), 0);
    }
}
