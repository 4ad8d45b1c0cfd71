//! The async forms of [`Handle::put_until`] and [`Handle::get_until`]
//! (feature `tokio`): the same tries, with [`crate::aio::block_on`]'s
//! sleep, which yields to the runtime instead of blocking the thread.

use tokio::time::Instant;

use super::{lock, try_take, ConsumerState, Handle, TakeError, Tasks};
use crate::aio::{block_on, keep_alive};
use crate::codec::Message;
use crate::queue::error::{GetError, TryGetError, TryPutError};
use shmring_core::error::PopError;

/// A consumer state checked out of its handle's pool for one get, and
/// checked back in when the get ends or its future is dropped.
struct CheckedOut<'a> {
    handle: &'a Handle,
    state: Option<ConsumerState>,
}

impl CheckedOut<'_> {
    fn state(&mut self) -> &mut ConsumerState {
        // Only `drop` takes it out.
        self.state.as_mut().expect("checked out until dropped")
    }
}

impl Drop for CheckedOut<'_> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            lock(&self.handle.consumers).push(state);
        }
    }
}

impl Handle {
    /// [`Handle::put_until`] awaiting room until `deadline` (`None`:
    /// forever). `Full` means no room came in time.
    pub(in crate::queue) async fn put_async<T: Message>(
        &self,
        item: T,
        deadline: Option<Instant>,
    ) -> Result<(), TryPutError<T>> {
        let mut owned: Option<Vec<u8>> = None;
        let mut len = 0;
        let policy = self.wait.policy();
        let keep = keep_alive(&self.segment);
        let result = block_on(
            self.queue.core().space_word(),
            &self.waiter,
            &keep,
            policy,
            deadline,
            |_slow| self.try_put_once(&item, &mut owned, &mut len, true),
        )
        .await;
        self.put_done(item, result, len, true)
    }

    /// [`Handle::get_until`] awaiting a message until `deadline` (`None`:
    /// forever); `tasks` as there. `Empty` means nothing came in time.
    ///
    /// Cancel-safe: a message is taken only inside the poll that returns
    /// it (the try and the decode run without an await between them; for
    /// a JoinableQueue, so do the take's announcement and its end in the
    /// task slot).
    pub(in crate::queue) async fn get_async<T: Message>(
        &self,
        deadline: Option<Instant>,
        tasks: Option<Tasks<'_>>,
    ) -> Result<T, TryGetError> {
        if self.is_closed() {
            return Err(TryGetError::Get(GetError::Closed));
        }
        let state = lock(&self.consumers)
            .pop()
            .unwrap_or_else(|| (self.queue.consumer(), Vec::new()));
        let mut checked = CheckedOut {
            handle: self,
            state: Some(state),
        };
        let policy = self.wait.policy();
        let keep = keep_alive(&self.segment);
        let popped = {
            let state = checked.state();
            block_on(
                self.queue.core().not_empty_word(),
                &self.waiter,
                &keep,
                policy,
                deadline,
                |_slow| {
                    if self.is_closed() {
                        return Some(Err(TakeError::HandleClosed));
                    }
                    match try_take(state, tasks) {
                        Err(TakeError::Pop(PopError::Empty)) => None,
                        done => Some(done),
                    }
                },
            )
            .await
        };
        self.get_done(popped, checked.state(), true)
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};
    use std::time::{Duration, Instant};

    use crate::queue::Queue;
    use crate::WaitPolicy;

    /// Sleepers that never wake by themselves within a test (a 60 s slice).
    const LONG_SLICE: WaitPolicy = WaitPolicy {
        spin_ns: 0,
        max_spin_ns: 0,
        slice_ns: 60_000_000_000,
    };

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    fn wait_for(what: &str, cond: impl Fn() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < Duration::from_secs(10), "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_dropped_pending_get_leaves_no_waiter_registered() {
        let q = Queue::<u64>::new(0).unwrap();
        let word = q.handle.queue.core().not_empty_word();
        let rt = runtime();
        let _in = rt.enter();
        let mut get = Box::pin(q.handle.get_async::<u64>(None, None));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(get.as_mut().poll(&mut cx).is_pending());
        assert_eq!(word.waiters(), 1, "asleep and registered");
        drop(get);
        assert_eq!(word.waiters(), 0, "dropped: deregistered");
        q.put(1).unwrap();
        assert_eq!(q.try_get().unwrap(), 1, "and it took nothing");
    }

    /// The io_uring wait is queued first, so the put's wake of one goes to
    /// it (futex wakes are FIFO among equal priorities); its get is then
    /// dropped before it saw the completion. Without the pass-on the sync
    /// sleeper behind it sleeps through its whole 20 s timeout (its slice
    /// is longer).
    #[test]
    fn a_get_dropped_after_its_wait_took_the_wake_passes_it_on() {
        let q = Queue::<u64>::new(0).unwrap();
        q.set_wait_policy(LONG_SLICE);
        let word = q.handle.queue.core().not_empty_word();
        let rt = runtime();
        let _in = rt.enter();
        let mut get = Box::pin(q.handle.get_async::<u64>(None, None));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(get.as_mut().poll(&mut cx).is_pending());
        std::thread::scope(|s| {
            let sleeper = s.spawn(|| q.get_timeout(Duration::from_secs(20)));
            wait_for("the sync sleeper registers", || word.waiters() == 2);
            std::thread::sleep(Duration::from_millis(50)); // and sleeps
            let start = Instant::now();
            q.put(42).unwrap();
            std::thread::sleep(Duration::from_millis(50)); // the wake lands
            drop(get);
            // The driver reaps the woken, abandoned wait and passes it on.
            rt.block_on(tokio::time::sleep(Duration::from_millis(10)));
            assert_eq!(sleeper.join().unwrap().unwrap(), 42);
            assert!(start.elapsed() < Duration::from_secs(10));
        });
        assert_eq!(word.waiters(), 0);
    }
}
