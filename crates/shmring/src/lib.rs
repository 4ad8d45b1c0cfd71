//! shmring: shared-memory IPC for processes on one Linux host, with the API
//! Python's `multiprocessing` made familiar.
//!
//! Messages travel through lock-free rings in an `mmap`'d segment
//! (`shm_open` or `memfd`). Each ring carries futex wait words, so calls can
//! block with timeouts; a call that neither blocks nor wakes a sleeper never
//! enters the kernel.
//!
//! # Quick start
//!
//! ```
//! use std::time::Duration;
//! use shmring::queue::{Queue, TryGetError};
//!
//! let q = std::sync::Arc::new(Queue::<String>::new(3)?); // Python's Queue(3)
//! let consumer = {
//!     let q = q.clone(); // threads share a handle; processes get their own
//!     std::thread::spawn(move || {
//!         let mut got = Vec::new();
//!         while let Ok(bun) = q.get_timeout(Duration::from_secs(5)) {
//!             if bun.is_empty() { break } // the sentinel
//!             got.push(bun);
//!         }
//!         got
//!     })
//! };
//! for i in 0..5 {
//!     q.put(format!("bun {i}"))?; // blocks while 3 are queued
//! }
//! q.put(String::new())?;
//! assert_eq!(consumer.join().unwrap().len(), 5);
//! assert!(matches!(q.try_get(), Err(TryGetError::Empty)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Between processes, hand `&q` to [`process::Process::spawn`] (see
//! [`process`]) or open it by name.
//!
//! # Coming from Python
//!
//! | Python `multiprocessing` | shmring |
//! |---|---|
//! | `Queue(maxsize)` | [`queue::Queue::new`]`(maxsize)`; [`queue::Queue::builder`] for the shape, a name, or an open |
//! | `q.put(x)`, `q.put(x, timeout=t)`, `put_nowait` | `q.put(x)`, `q.put_timeout(x, t)`, `q.try_put(x)` (and `put_deadline`) |
//! | `q.get()`, `q.get(timeout=t)`, `get_nowait` | `q.get()`, `q.get_timeout(t)`, `q.try_get()` (and `get_deadline`) |
//! | `queue.Full` / `queue.Empty` | [`queue::TryPutError::Full`] / [`queue::PutTimeoutError::Timeout`] (item given back), [`queue::TryGetError::Empty`] / [`queue::GetTimeoutError::Timeout`] |
//! | `qsize()` / `empty()` / `full()` / `close()` | `len()` / `is_empty()` / `is_full()` / `close()` (+ `shutdown()` for all) |
//! | `JoinableQueue` | [`queue::JoinableQueue<T>`]: `task_done`, `join`, `try_join`, `join_timeout`, `join_deadline` |
//! | `SimpleQueue` | [`queue::SimpleQueue<T>`] |
//! | `Pipe(duplex)` → `(conn1, conn2)` | [`pipe::Pipe::new`] → two [`pipe::Connection`]s (plus `try_send`/`try_recv`, `send_timeout`/`recv_timeout`) |
//! | `Manager().dict()` | [`dict::Dict<K, V>`] (no server process; `update_with` for atomic read-modify-write) |
//! | `Lock()` / `RLock()` | [`lock::Lock`] / [`lock::RLock`] (a dead holder is reported to the next acquirer) |
//! | `Process(target=f, args=(q,))` | [`process::Process::spawn`]`(&F, (&q,))?`, `F` an [`process::Entry`] declared with [`entry!`] |
//! | `p.join(timeout)`, `terminate`, `is_alive`, `exitcode`, `daemon` | `join`/`join_timeout` and the same on [`process::Process`] |
//! | `Pool(n)` | [`process::Pool::start`] over a task queue |
//! | pickle | [`codec::Message`]: raw bytes, plain-old-data ([`codec::Pod`]), any serde type with the `serde` feature |
//!
//! Sharing works as in Python: by inheritance (hand the object to
//! [`process::Process::spawn`], or `share_with_child` then
//! `builder().open_inherited(var)` in the child) or by name
//! (`builder().create(name)` / `open(name)`).
//!
//! # Making objects
//!
//! Each type has `new(..)` for the common anonymous case
//! (`Queue::<T>::new(maxsize)`, `Lock::new()`, `Pipe::new(duplex)`, …) and
//! a [`Builder`] for the rest, with one vocabulary for every kind
//! (`maxsize`, `producers`, `ring_bytes`, `max_message`, the segment's
//! `mode`, `unlink`, `peer_rows`, `open_timeout`, …):
//!
//! ```
//! use shmring::queue::Queue;
//!
//! let name = format!("/doc-builder-{}", std::process::id());
//! let q = Queue::<String>::builder().maxsize(8).producers(4).create(&name)?;
//! let other = Queue::<String>::open(&name)?; // as another process would
//! other.put("hi".to_string())?;
//! assert_eq!(q.get()?, "hi");
//! assert_eq!(other.maxsize(), 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Creating and opening fail with a [`CreateError`] or an [`OpenError`];
//! claiming a role in an object (a ring's producer, a queue's
//! [`sender`](queue::Queue::sender), a pipe end) with a [`RoleError`].
//!
//! # Waiting, and what can go wrong
//!
//! Every action that can wait comes in four forms: `x()` waits as long as
//! it takes, `try_x()` tries once (it never sleeps and never reads the
//! clock), `x_timeout(d)` and `x_deadline(instant)` give up. All four build
//! one [`core::wait::Until`] and run one internal operation. A waiting call
//! spins (5 µs, or longer where its handle has learned that longer waits
//! pay, never on an oversubscribed CPU: see [`WaitPolicy`]), then sleeps on
//! a futex; a call that neither waits nor wakes a sleeper makes no system
//! call, and no fence either: a publish orders itself against a sleeper
//! with a compiler barrier, the sleeper paying `membarrier(2)` instead (see
//! [`core::wait`]). Set `SHMRING_FULL_FENCES` in a process's environment
//! to make its publishes use a full fence (both kinds work together).
//!
//! Each form has its own error type: `x()` returns `XError`, which cannot
//! say "full", "empty" or "timed out"; `try_x()` adds the would-block case
//! (`TryPutError::Full`, `TryGetError::Empty`, `TryAcquireError::WouldBlock`,
//! …) and the timed forms add `Timeout`. Items that were not put come back
//! inside the error.
//!
//! # Crash behaviour
//!
//! A process killed at any instruction leaves no queue, pipe, dict or lock
//! stuck: a dead producer's published messages are still delivered, a dead
//! consumer loses at most the message it was taking, a lock held by a dead
//! process is taken over and reported ([`lock::LockGuard::owner_died`]), a
//! JoinableQueue's `join` writes off a dead holder's tasks and says so
//! ([`queue::JoinError::PeerDied`]), a pipe end whose peer died reads what
//! was sent and then reports end of file. A process that is merely slow or
//! stopped is never written off. Each type's `# Crash behaviour` section
//! says exactly what it promises.
//!
//! # Fork without exec
//!
//! Every handle is one *attachment*: a peer row, a liveness lock held by an
//! open file description, and process-local state. A `fork()` that is not
//! followed by `exec` copies all of it, so parent and child would act as
//! one peer (each taking a dict's or a lock's word "from itself", holding
//! the same pipe roles, and keeping each other's liveness lock alive). Use
//! a handle in one of the two processes only; give a forked child objects
//! the way an exec'd one gets them (`open`, or `share_with_child` then
//! `builder().open_inherited`). [`process::Process`] and [`process::Pool`] always
//! exec.
//!
//! # Layers
//!
//! * Facades: [`queue`], [`pipe`], [`dict`], [`lock`], [`process`].
//! * Engine: [`spsc`] and [`mpmc`] handles, [`segment`]s and their peers,
//!   the futex [`FutexWaiter`].
//! * Core ([`core`], the `shmring-core` crate): the algorithms and layouts,
//!   with no system calls, checked by loom and Miri.
#![warn(missing_docs)]

#[cfg(feature = "tokio")]
pub mod aio;
mod attach;
pub mod codec;
mod counts;
mod descriptor;
pub mod dict;
pub mod error;
pub mod lock;
pub mod mpmc;
mod object;
pub mod pipe;
pub mod process;
pub mod queue;
pub mod segment;
pub mod spsc;
pub(crate) mod sys;

pub use error::SegmentError;
pub use object::{Builder, CreateError, OpenError, RoleError, SegmentObject};
pub use segment::{CreateOptions, ObjectKind, OpenOptions, Segment, UnlinkPolicy};
pub use shmring_core as core;
pub use shmring_core::wait::WaitPolicy;
pub use sys::FutexWaiter;

/// The README's code runs as a doctest, so its examples cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
