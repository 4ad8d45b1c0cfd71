//! The async forms of [`Handle::put_until`] and [`Handle::get_until`]
//! (feature `tokio`): the same tries, with [`crate::aio::block_on`]'s
//! sleep, which yields to the runtime instead of blocking the thread.

use tokio::time::Instant;

use super::{lock, try_take, ConsumerState, Handle, TakeError};
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
        let (policy, _) = self.wait.load();
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
    /// forever). `Empty` means nothing came in time.
    ///
    /// Cancel-safe: a message is taken only inside the poll that returns
    /// it (the try and the decode run without an await between them).
    pub(in crate::queue) async fn get_async<T: Message>(
        &self,
        deadline: Option<Instant>,
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
        let (policy, _) = self.wait.load();
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
                    match try_take(state, None) {
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
