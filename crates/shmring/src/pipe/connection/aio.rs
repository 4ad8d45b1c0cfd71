//! [`AsyncConnection`]: a pipe end whose receives are awaited (feature
//! `tokio`).

use std::time::Duration;

use tokio::time::Instant;

use super::Connection;
use crate::aio::block_on;
use crate::codec::Message;
use crate::pipe::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::sys::uring::KeepAlive;

/// A pipe [`Connection`] whose `recv` is awaited: a task that waits gives
/// its thread back to the runtime and sleeps in an io_uring futex wait
/// (see [`crate::aio`]). The writer may be a sync connection in any
/// process; a writer that closes or dies ends the wait with
/// [`RecvError::Eof`] within the liveness slice (100 ms by default).
///
/// Sends stay the sync connection's ([`get_mut`](Self::get_mut)): an
/// awaited send is not written yet.
///
/// # Cancel safety
///
/// [`recv`](Self::recv), [`recv_bytes`](Self::recv_bytes) and
/// [`recv_timeout`](Self::recv_timeout) are cancel-safe: a message is
/// taken off the ring only inside a poll, and the part of a long
/// (streamed) message taken so far stays in the connection for the next
/// receive, as after a sync timeout.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use shmring::aio::AsyncConnection;
/// use shmring::pipe::{Pipe, RecvError};
///
/// let (reader, mut writer) = Pipe::new(false)?;
/// let mut reader = AsyncConnection::new(reader);
/// writer.send(&"ping".to_string())?;
/// assert_eq!(reader.recv::<String>().await?, "ping");
/// drop(writer); // end of file
/// assert!(matches!(reader.recv::<String>().await, Err(RecvError::Eof)));
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct AsyncConnection {
    conn: Connection,
}

impl From<Connection> for AsyncConnection {
    fn from(conn: Connection) -> Self {
        AsyncConnection { conn }
    }
}

impl AsyncConnection {
    /// Wraps a connection.
    pub fn new(conn: Connection) -> AsyncConnection {
        conn.into()
    }

    /// The sync connection (its `try_` forms never block).
    pub fn get_ref(&self) -> &Connection {
        &self.conn
    }

    /// The sync connection, for its sends.
    pub fn get_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// The sync connection back.
    pub fn into_inner(self) -> Connection {
        self.conn
    }

    /// Receives one whole message, awaiting it.
    ///
    /// # Cancel safety
    ///
    /// Cancel-safe (see the type's docs).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv`]: [`RecvError::Eof`] once the writer closed
    /// or died and everything it sent was received.
    pub async fn recv<T: Message>(&mut self) -> Result<T, RecvError> {
        self.recv_until(None, |c| c.try_recv::<T>())
            .await
            .map_err(|e| match e {
                RecvTimeoutError::Recv(e) => e,
                RecvTimeoutError::Timeout => unreachable!("no deadline"),
            })
    }

    /// Receives one whole message as bytes (at most `maxlength` of them),
    /// awaiting it.
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_bytes`].
    pub async fn recv_bytes(&mut self, maxlength: Option<usize>) -> Result<Vec<u8>, RecvError> {
        self.recv_until(None, |c| c.try_recv_bytes(maxlength))
            .await
            .map_err(|e| match e {
                RecvTimeoutError::Recv(e) => e,
                RecvTimeoutError::Timeout => unreachable!("no deadline"),
            })
    }

    /// Receives one whole message, awaiting it for at most `timeout`
    /// (tokio's clock).
    ///
    /// # Errors
    ///
    /// As [`Connection::recv_timeout`].
    pub async fn recv_timeout<T: Message>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        let deadline = Instant::now().checked_add(timeout);
        self.recv_until(deadline, |c| c.try_recv::<T>()).await
    }

    /// Tries, then awaits a record (or the end) and tries again.
    async fn recv_until<R>(
        &mut self,
        deadline: Option<Instant>,
        mut try_recv: impl FnMut(&mut Connection) -> Result<R, TryRecvError>,
    ) -> Result<R, RecvTimeoutError> {
        loop {
            match try_recv(&mut self.conn) {
                Ok(r) => return Ok(r),
                Err(TryRecvError::Recv(e)) => return Err(RecvTimeoutError::Recv(e)),
                Err(TryRecvError::Empty) => {}
            }
            if !self
                .conn
                .await_readable(deadline)
                .await
                .map_err(RecvTimeoutError::Recv)?
            {
                // One last try: a record that came with the deadline.
                return match try_recv(&mut self.conn) {
                    Ok(r) => Ok(r),
                    Err(TryRecvError::Recv(e)) => Err(RecvTimeoutError::Recv(e)),
                    Err(TryRecvError::Empty) => Err(RecvTimeoutError::Timeout),
                };
            }
        }
    }
}

impl Connection {
    /// Awaits the next record or the end of the ring (a writer that closed,
    /// or that the slow check found dead, which closes the ring: the next
    /// try then reports the end); `false`: `deadline` passed first.
    async fn await_readable(&mut self, deadline: Option<Instant>) -> Result<bool, RecvError> {
        if self.closed() {
            return Err(RecvError::HandleClosed);
        }
        let keep: KeepAlive = self.pipe.clone();
        let waiter = self.pipe.segment.waiter();
        let inc = self
            .incoming
            .get_mut()
            .as_mut()
            .ok_or(RecvError::WriteOnly)?;
        let policy = inc.consumer.wait_policy();
        let (consumer, ring) = (&mut inc.consumer, &inc.ring);
        let ready = block_on(
            ring.readable_word(),
            &waiter,
            &keep,
            policy,
            deadline,
            |slow| consumer.check_readable(slow),
        )
        .await;
        Ok(ready.is_ok())
    }
}
