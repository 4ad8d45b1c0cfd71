//! The extension module behind `import shmring`: Python's
//! `multiprocessing` queues, pipes, locks and dict over the shmring
//! library.
//!
//! This crate holds the parts that must be fast or must run without the
//! GIL: pickling a put's object and unpickling a got one, the waits (in
//! slices of at most [`SLICE`], the GIL released, signals checked between
//! slices so that Ctrl-C interrupts a blocked call), and the mapping of the
//! library's errors to the exceptions CPython raises. The Python package
//! (`python/shmring/__init__.py`) builds multiprocessing's classes on it:
//! argument checks that are easiest in Python, pickling of the objects
//! themselves (`__reduce__`, by name), re-attaching after `fork`, and
//! `Manager`.
//!
//! Every object lives in a *named* segment (a fresh name made here), so
//! that a child started with `spawn` or `forkserver` opens it by name, and
//! a child forked without exec re-opens it by name too (a forked copy of a
//! handle must not be used: it would share the parent's peer row, roles
//! and liveness locks; see the crate docs of `shmring`, "Fork without
//! exec"). The inherited handle is then forgotten, never dropped: dropping
//! it would release the parent's row and roles.

use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pyo3::exceptions::PyOSError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};

use shmring::codec::{CodecError, Message};

mod dict;
mod item;
mod lock;
mod pipe;
mod queue;

/// The longest one wait runs with the GIL released before it checks for
/// signals (Ctrl-C) and goes on: an idle waiter wakes this often, which
/// costs nothing measurable, and a signal is handled within this time.
pub(crate) const SLICE: Duration = Duration::from_millis(100);

/// When a blocking call gives up, from Python's `block` and `timeout`.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deadline {
    /// One try (`block=False`, or a timeout of zero or less, as CPython's
    /// queues and locks treat a negative timeout).
    Now,
    /// As long as it takes (`timeout=None`).
    Never,
    /// Until then.
    At(Instant),
}

impl Deadline {
    /// Python's `(block, timeout)`: `block=False` ignores the timeout; a
    /// timeout of zero, less, or NaN tries once; one too large for the
    /// clock waits forever.
    pub(crate) fn of(block: bool, timeout: Option<f64>) -> Deadline {
        if !block {
            return Deadline::Now;
        }
        match timeout {
            None => Deadline::Never,
            // NaN tries once too.
            Some(t) if t.is_nan() || t <= 0.0 => Deadline::Now,
            Some(t) => match Duration::try_from_secs_f64(t) {
                Ok(d) => Instant::now()
                    .checked_add(d)
                    .map_or(Deadline::Never, Deadline::At),
                Err(_) => Deadline::Never,
            },
        }
    }

    /// A poll's timeout (`None` waits forever), where a timeout of zero or
    /// less tries once.
    pub(crate) fn of_timeout(timeout: Option<f64>) -> Deadline {
        Deadline::of(true, timeout)
    }
}

/// Runs `op(slice)` until it returns something other than `Ok(None)`
/// ("timed out, nothing happened") or `deadline` passes: with the GIL
/// released during each slice of at most [`SLICE`], and signal handlers
/// run between slices (their exception, typically `KeyboardInterrupt`,
/// ends the wait).
///
/// With `first_with_gil`, the first try is `op(Duration::ZERO)` with the
/// GIL held (no release and re-acquire when the call can complete at
/// once): only for an `op` that never waits when given a zero slice.
/// Without it, even a `Deadline::Now` try runs with the GIL released.
///
/// Returns `Ok(Ok(None))` when the deadline passed, `Ok(Err(e))` when `op`
/// failed, and `Err` for an exception raised by a signal handler.
///
/// # Errors
///
/// The exception of a signal handler.
pub(crate) fn in_slices<T, E, F>(
    py: Python<'_>,
    deadline: Deadline,
    first_with_gil: bool,
    mut op: F,
) -> PyResult<Result<Option<T>, E>>
where
    T: Send,
    E: Send,
    F: FnMut(Duration) -> Result<Option<T>, E> + Send,
{
    if first_with_gil {
        match op(Duration::ZERO) {
            Ok(None) if !matches!(deadline, Deadline::Now) => {}
            done => return Ok(done),
        }
    } else if let Deadline::Now = deadline {
        return Ok(py.detach(|| op(Duration::ZERO)));
    }
    loop {
        let slice = match deadline {
            Deadline::Now => return Ok(Ok(None)),
            Deadline::Never => SLICE,
            Deadline::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() && first_with_gil {
                    return Ok(Ok(None));
                }
                left.min(SLICE)
            }
        };
        match py.detach(|| op(slice)) {
            Ok(None) => {}
            done => return Ok(done),
        }
        if let Deadline::At(at) = deadline {
            if Instant::now() >= at {
                return Ok(Ok(None));
            }
        }
        py.check_signals()?;
    }
}

/// Pickled bytes on their way into shared memory, or bytes on their way
/// out to be unpickled: the message type of every queue.
///
/// A put hands the ring the bytes of the `bytes` object `pickle.dumps`
/// made, with no copy in between (`as_bytes`); a get takes the buffer the
/// message was popped into (`decode_from`).
pub(crate) enum Pickled {
    /// The bytes of a `bytes` object, which `_keep` holds alive.
    Out {
        _keep: Py<PyBytes>,
        ptr: *const u8,
        len: usize,
    },
    /// Bytes popped out of a ring, or a short form built in a buffer.
    In(Vec<u8>),
    /// A short form of at most [`INLINE`] bytes, held in place (no
    /// allocation for the common small item).
    Inline { len: u8, buf: [u8; INLINE] },
}

/// The longest [`Pickled::Inline`].
pub(crate) const INLINE: usize = 30;

// SAFETY: `ptr`/`len` point into the buffer of the immutable `bytes`
// object that `_keep` owns a reference to, so they stay valid and unchanged
// on any thread for as long as the value lives; `Py<PyBytes>` is `Send`.
unsafe impl Send for Pickled {}
// SAFETY: as for `Send`: nothing in it is ever written through a shared
// reference (the bytes are immutable, and `_keep` is never touched through
// one; dropped without the GIL, pyo3 defers its decref to the GIL's next
// holder).
unsafe impl Sync for Pickled {}

impl Pickled {
    /// The bytes of `bytes`, without a copy.
    pub(crate) fn of(bytes: &Bound<'_, PyBytes>) -> Pickled {
        let slice = bytes.as_bytes();
        Pickled::Out {
            ptr: slice.as_ptr(),
            len: slice.len(),
            _keep: bytes.clone().unbind(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            // SAFETY: see the `Send` impl: `_keep` keeps the immutable
            // buffer alive for as long as `self`.
            Pickled::Out { ptr, len, .. } => unsafe { std::slice::from_raw_parts(*ptr, *len) },
            Pickled::In(v) => v,
            Pickled::Inline { len, buf } => &buf[..usize::from(*len)],
        }
    }

    /// A copy of `bytes` held in place, if short enough.
    fn inline(bytes: &[u8]) -> Option<Pickled> {
        let len = u8::try_from(bytes.len())
            .ok()
            .filter(|&n| usize::from(n) <= INLINE)?;
        let mut buf = [0; INLINE];
        buf[..bytes.len()].copy_from_slice(bytes);
        Some(Pickled::Inline { len, buf })
    }

    /// `tag` then `value`, held in place when short enough.
    pub(crate) fn tagged(tag: u8, value: &[u8]) -> Pickled {
        match u8::try_from(value.len() + 1) {
            Ok(len) if usize::from(len) <= INLINE => {
                let mut buf = [0; INLINE];
                buf[0] = tag;
                buf[1..usize::from(len)].copy_from_slice(value);
                Pickled::Inline { len, buf }
            }
            _ => {
                let mut v = Vec::with_capacity(value.len() + 1);
                v.push(tag);
                v.extend_from_slice(value);
                Pickled::In(v)
            }
        }
    }
}

impl Message for Pickled {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        out.extend_from_slice(self.bytes());
        Ok(())
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Ok(Pickled::inline(bytes).unwrap_or_else(|| Pickled::In(bytes.to_vec())))
    }

    fn decode_from(bytes: &mut Vec<u8>) -> Result<Self, CodecError> {
        // A short item is copied out, leaving the buffer for the next pop
        // (which would otherwise allocate again); a longer one is taken.
        Ok(Pickled::inline(bytes).unwrap_or_else(|| Pickled::In(std::mem::take(bytes))))
    }

    fn as_bytes(&self) -> Option<&[u8]> {
        Some(self.bytes())
    }
}

static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static EMPTY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static FULL: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// The protocol every object is pickled with (`pickle.HIGHEST_PROTOCOL` of
/// every CPython this module supports).
const PROTOCOL: u32 = 5;

fn attr<'py>(py: Python<'py>, module: &str, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import(module)?.getattr(name)
}

fn cached_type<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyType>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyType>> {
    Ok(cell
        .get_or_try_init(py, || {
            PyResult::Ok(attr(py, module, name)?.cast_into::<PyType>()?.unbind())
        })?
        .bind(py))
}

/// `pickle.dumps(obj, HIGHEST_PROTOCOL)`.
pub(crate) fn dumps<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let f = DUMPS.get_or_try_init(py, || PyResult::Ok(attr(py, "pickle", "dumps")?.unbind()))?;
    Ok(f.bind(py).call1((obj, PROTOCOL))?.cast_into::<PyBytes>()?)
}

/// `pickle.loads(obj)` of an object with the buffer protocol.
pub(crate) fn loads_from<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let f = LOADS.get_or_try_init(py, || PyResult::Ok(attr(py, "pickle", "loads")?.unbind()))?;
    f.bind(py).call1((obj,))
}

/// `pickle.loads(bytes)`.
pub(crate) fn loads<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let f = LOADS.get_or_try_init(py, || PyResult::Ok(attr(py, "pickle", "loads")?.unbind()))?;
    f.bind(py).call1((PyBytes::new(py, bytes),))
}

/// `queue.Empty()`.
pub(crate) fn empty(py: Python<'_>) -> PyErr {
    match cached_type(py, &EMPTY, "queue", "Empty") {
        Ok(t) => PyErr::from_type(t.clone(), ()),
        Err(e) => e,
    }
}

/// `queue.Full()`.
pub(crate) fn full(py: Python<'_>) -> PyErr {
    match cached_type(py, &FULL, "queue", "Full") {
        Ok(t) => PyErr::from_type(t.clone(), ()),
        Err(e) => e,
    }
}

/// An `OSError` for what the library reports as corrupted shared memory
/// or a failed system call.
pub(crate) fn os_error(what: impl std::fmt::Display) -> PyErr {
    PyOSError::new_err(what.to_string())
}

/// A fresh segment name for a new object of `kind`: process id, a counter
/// and the clock, so that no two objects made on this host meet.
pub(crate) fn fresh_name(kind: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // ORDERING: Relaxed — only uniqueness within this process matters.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("/shmring-py-{kind}-{}-{n}-{nanos:x}", std::process::id())
}

/// The module: the classes the Python package builds on.
#[pymodule]
fn _shmring(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<queue::PyQueue>()?;
    m.add_class::<queue::PySimpleQueue>()?;
    m.add_class::<pipe::PyConnection>()?;
    m.add_class::<lock::PyLock>()?;
    m.add_class::<lock::PyRLock>()?;
    m.add_class::<dict::PyDict>()?;
    m.add("PROTOCOL", PROTOCOL)?;
    m.add("SLICE_SECONDS", SLICE.as_secs_f64())?;
    Ok(())
}

/// One handle of this process, which the at-fork hook of a forked child
/// replaces with one it opened itself (see the module docs).
///
/// Every call reads the current handle with one atomic load: a replaced
/// handle is never freed (it is forgotten, see
/// [`replace_forgetting`](Attached::replace_forgetting)), so a reference
/// taken before a replacement stays valid, and only the last handle is
/// dropped, with the object.
pub(crate) struct Attached<T> {
    /// From `Box::into_raw`; never null.
    slot: AtomicPtr<Result<T, String>>,
    /// Owns a `T` (for drop check; Send and Sync: see the impls below).
    _owns: std::marker::PhantomData<T>,
}

// SAFETY: moving an `Attached` moves the `T` it owns: sound when `T` is.
unsafe impl<T: Send> Send for Attached<T> {}
// SAFETY: through `&Attached`, threads share `&T` (needs `T: Sync`), and
// `replace_forgetting` moves in a `T` made on one thread that `Drop` may
// free on another (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Attached<T> {}

impl<T> Attached<T> {
    pub(crate) fn new(handle: T) -> Self {
        Attached {
            slot: AtomicPtr::new(Box::into_raw(Box::new(Ok(handle)))),
            _owns: std::marker::PhantomData,
        }
    }

    /// The current handle.
    ///
    /// # Errors
    ///
    /// `OSError` when this process is a forked child that could not open
    /// the object again.
    #[inline]
    pub(crate) fn get(&self) -> PyResult<&T> {
        // ORDERING: Acquire — pairs with the AcqRel swap in
        // `replace_forgetting`: the new box's contents are visible.
        let slot = self.slot.load(Ordering::Acquire);
        // SAFETY: `slot` came from `Box::into_raw` and is freed only by
        // `Drop`, which has `&mut self`, so not while `&self` is borrowed;
        // a replaced box is never freed.
        match unsafe { &*slot } {
            Ok(h) => Ok(h),
            Err(why) => Err(os_error(why)),
        }
    }

    /// In a child forked without exec: puts `handle` (or, when opening it
    /// failed, the reason) in place of the inherited handle, which is
    /// *forgotten*: its drop would release the parent's peer row and
    /// roles, which are the parent's to release. (Its memory and mapping
    /// stay in this process, unused.)
    pub(crate) fn replace_forgetting(&self, handle: Result<T, String>) {
        let fresh = Box::into_raw(Box::new(handle));
        // ORDERING: AcqRel — Release publishes the new box to `get`'s
        // Acquire load; the old pointer is dropped on the floor (leaked).
        let _forgotten = self.slot.swap(fresh, Ordering::AcqRel);
    }
}

impl<T> Drop for Attached<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer came from `Box::into_raw`, is not freed
        // elsewhere, and no reference from `get` outlives `&self`.
        drop(unsafe { Box::from_raw(*self.slot.get_mut()) });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_timeouts_map_to_deadlines_as_cpython_treats_them() {
        assert!(matches!(Deadline::of(false, Some(10.0)), Deadline::Now));
        assert!(matches!(Deadline::of(true, None), Deadline::Never));
        assert!(matches!(Deadline::of(true, Some(0.0)), Deadline::Now));
        assert!(matches!(Deadline::of(true, Some(-1.0)), Deadline::Now));
        assert!(matches!(Deadline::of(true, Some(f64::NAN)), Deadline::Now));
        assert!(matches!(Deadline::of(true, Some(1e300)), Deadline::Never));
        let before = Instant::now();
        match Deadline::of(true, Some(0.5)) {
            Deadline::At(at) => assert!(at >= before + Duration::from_millis(500)),
            other => panic!("expected a deadline, got {other:?}"),
        }
    }

    /// `Attached<T>` is `Sync` only when `T` is `Send` and `Sync`: a
    /// replacement made on one thread may be dropped on another.
    #[test]
    fn attached_is_sync_only_when_its_handle_is_send_and_sync() {
        struct Probe<T>(std::marker::PhantomData<T>);
        trait NotSync {
            const IS_SYNC: bool = false;
        }
        impl<T> NotSync for Probe<T> {}
        impl<T: Sync> Probe<T> {
            const IS_SYNC: bool = true;
        }
        type SyncNotSend = std::sync::MutexGuard<'static, ()>;
        const { assert!(!Probe::<Attached<SyncNotSend>>::IS_SYNC) };
        const { assert!(Probe::<Attached<std::sync::Mutex<u8>>>::IS_SYNC) };
    }

    #[test]
    fn fresh_names_are_valid_and_distinct() {
        let (a, b) = (fresh_name("q"), fresh_name("q"));
        assert_ne!(a, b);
        assert!(a.starts_with("/shmring-py-q-") && a.len() < 200);
        assert_eq!(a.matches('/').count(), 1);
    }

    #[test]
    fn pickled_bytes_pass_through_without_a_copy_and_come_back() {
        Python::initialize();
        Python::attach(|py| {
            let obj = PyBytes::new(py, b"payload");
            let out = Pickled::of(&obj);
            assert_eq!(out.as_bytes(), Some(&b"payload"[..]));
            assert_eq!(
                out.as_bytes().map(<[u8]>::as_ptr),
                Some(obj.as_bytes().as_ptr())
            );
            // A long item takes the pop buffer; a short one is copied out
            // of it and leaves it for the next pop.
            let long = vec![7u8; INLINE + 1];
            let mut buf = long.clone();
            let back = Pickled::decode_from(&mut buf).expect("decodes");
            assert_eq!(back.bytes(), &long[..]);
            assert!(buf.is_empty(), "the buffer was taken, not copied");
            let mut buf = b"popped".to_vec();
            let back = Pickled::decode_from(&mut buf).expect("decodes");
            assert_eq!(back.bytes(), b"popped");
            assert!(matches!(back, Pickled::Inline { .. }));
            assert_eq!(buf, b"popped", "the buffer stays with the consumer");
            assert_eq!(Pickled::tagged(1, &[2; INLINE - 1]).bytes().len(), INLINE);
            assert!(matches!(Pickled::tagged(1, &[2; INLINE]), Pickled::In(_)));
            let value = loads(py, dumps(py, &obj).expect("pickles").as_bytes()).expect("unpickles");
            assert_eq!(
                value.cast::<PyBytes>().expect("bytes").as_bytes(),
                b"payload"
            );
        });
    }
}
