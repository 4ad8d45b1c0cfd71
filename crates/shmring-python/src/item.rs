//! The bytes a queue item, or a dict key or value, is stored as: the six
//! atomic types, and lists, tuples and dicts of them, in a short form of
//! their own; everything else pickled.
//!
//! `pickle.dumps` + `pickle.loads` of a small int costs about as much as the
//! whole ring round trip around it (a `Pickler` and an `Unpickler` object
//! made and freed per call), so an exact `None`, `bool`, `int` (that fits
//! in 64 bits), `float`, `bytes` or `str` is written as one tag byte and
//! its raw value instead. An exact `list`, `tuple` or `dict` whose items
//! (keys and values) are such objects or such containers, at most
//! [`MAX_DEPTH`] deep, is a tag, a 4-byte count and its items; inside, an
//! int takes 1, 4 or 8 bytes after its tag, and a `bytes` or `str` has a
//! 1-byte length under 256 bytes, a 4-byte one above (at the top, a
//! `bytes` or `str` runs to the end of the item, an int takes 8 bytes):
//! fewer bytes to move between CPUs, and mostly fewer than the pickle. Every other object, a subclass of
//! one of these types, and a container holding one, is pickled (highest
//! protocol) whole. The two forms cannot be confused: a pickle of protocol
//! 2 or above starts with the `PROTO` opcode, `0x80`, and no tag is `0x80`.
//!
//! The result is the same object a pickle round trip gives: pickle handles
//! these exact types itself, before any `copyreg` table or
//! `reducer_override` is asked, so nothing a user registers is skipped; a
//! dict's keys come back in their order; and an item in which one
//! container appears twice (shared, or holding itself) is pickled, so
//! the copy shares as the original did. (Equal atomic objects are not
//! shared by identity in either form, as far as anything may rely on.)
//!
//! Strings of up to 40 bytes go through a cache of 256 recent ones per
//! process, by address one way and by text the other: a dict's keys are
//! usually the same few strings message after message, and making a `str`
//! and hashing it again costs more than finding it.
//!
//! Queues and the dict use this form. A pipe's `recv_bytes` hands out the
//! bytes a `send` wrote, which CPython makes a pickle, so pipes pickle
//! everything. Dict keys are compared by these bytes; equal keys of one
//! exact type encode alike in either form, so that stays as it was with
//! pickles (`1`, `1.0` and `True` are three keys).
//!
//! The bytes come from shared memory, so they are untrusted: a length or
//! count that runs past the end, an unknown tag, a `str` that is not
//! UTF-8, an unhashable dict key or nesting past [`MAX_DEPTH`] is an
//! `OSError` naming the corruption, never a panic, and no count makes an
//! allocation larger than the item; an unknown first byte goes to
//! `pickle.loads`, which raises as it would for any other garbage.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::{dumps, loads, os_error, Pickled};

const NONE: u8 = 1;
const TRUE: u8 = 2;
const FALSE: u8 = 3;
const INT: u8 = 4;
const FLOAT: u8 = 5;
const BYTES: u8 = 6;
const STR: u8 = 7;
const LIST: u8 = 8;
const TUPLE: u8 = 9;
const DICT: u8 = 10;
/// Inside containers only: an int that fits 8 or 32 bits, and a `bytes`
/// or `str` shorter than 256 bytes, with a 1-byte length.
const INT1: u8 = 11;
const INT4: u8 = 12;
const SHORT_BYTES: u8 = 13;
const SHORT_STR: u8 = 14;

/// How deep containers may nest in the short form (deeper: pickled).
const MAX_DEPTH: usize = 32;

/// How many containers one item may hold in the short form (more:
/// pickled). Each is checked against the others for identity, so this
/// bounds that check's quadratic cost.
const MAX_CONTAINERS: usize = 64;

/// The bytes `obj` travels as (see the module docs), where `limit` is the
/// most its destination takes (a queue's `max_message`, a dict's
/// `max_key` or `max_value`): a container whose short form would be
/// longer is pickled instead, so the short form never refuses an item its
/// pickle would carry (a pickle writes an object repeated in the item
/// once, and a few ints and strings take a byte less there), and never
/// builds more than `limit` bytes (and 9) on the way.
pub(crate) fn encode<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
    limit: usize,
) -> PyResult<Pickled> {
    if let Some(item) = atomic_form(py, obj) {
        return Ok(item);
    }
    let mut enc = Encoder {
        out: Vec::with_capacity(256.min(limit.saturating_add(16))),
        containers: Vec::new(),
        strings: strings::Strings::lock(py),
        limit,
    };
    if enc.short_form(obj, 0, true) {
        Ok(Pickled::In(enc.out))
    } else {
        drop(enc); // the string cache, before pickle runs Python code
        Ok(Pickled::of(&dumps(py, obj)?))
    }
}

/// The short form of an atomic object (the common small item: no buffer
/// in between); `None` for anything else.
fn atomic_form<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> Option<Pickled> {
    if obj.is_none() {
        Some(Pickled::tagged(NONE, &[]))
    } else if obj.is_exact_instance_of::<PyBool>() {
        let tag = if obj.is(PyBool::new(py, true)) {
            TRUE
        } else {
            FALSE
        };
        Some(Pickled::tagged(tag, &[]))
    } else if obj.is_exact_instance_of::<PyInt>() {
        // An int beyond 64 bits is pickled (the failed extraction's error
        // is dropped here, not left set).
        let v: i64 = obj.extract().ok()?;
        Some(Pickled::tagged(INT, &v.to_le_bytes()))
    } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
        Some(Pickled::tagged(FLOAT, &f.value().to_bits().to_le_bytes()))
    } else if let Ok(b) = obj.cast_exact::<PyBytes>() {
        Some(Pickled::tagged(BYTES, b.as_bytes()))
    } else if let Ok(s) = obj.cast_exact::<PyString>() {
        // A str with lone surrogates has no UTF-8 form: pickled.
        strings::Strings::lock(py).utf8(s, |utf8| Pickled::tagged(STR, utf8))
    } else {
        None
    }
}

/// One item's short form on its way out.
struct Encoder {
    out: Vec<u8>,
    /// The containers met so far: one met twice (shared, or holding
    /// itself) is pickled, which keeps the sharing.
    containers: Vec<usize>,
    strings: strings::Strings,
    /// Past this many bytes, the item is pickled instead.
    limit: usize,
}

impl Encoder {
    /// Whether `n` more bytes keep the item within its limit.
    fn room(&self, n: usize) -> bool {
        self.out.len().saturating_add(n) <= self.limit
    }

    /// Appends `len` as the 4-byte length of a container or of a `str` or
    /// `bytes` inside one; `false` when it does not fit.
    fn put_len(&mut self, len: usize) -> bool {
        match u32::try_from(len) {
            Ok(n) => {
                self.out.extend_from_slice(&n.to_le_bytes());
                true
            }
            Err(_) => false,
        }
    }

    /// Appends a `bytes` or `str` payload under `tag` (`BYTES` or `STR`):
    /// at the top it runs to the end of the item; inside a container it
    /// has a 1-byte length under the short tag when under 256 bytes, else
    /// a 4-byte one.
    fn put_payload(&mut self, tag: u8, short_tag: u8, payload: &[u8], top: bool) -> bool {
        let head = match (top, payload.len()) {
            (true, _) => 1,
            (false, 0..=255) => 2,
            (false, _) => 5,
        };
        if !self.room(payload.len().saturating_add(head)) {
            return false;
        }
        match u8::try_from(payload.len()) {
            Ok(n) if !top => self.out.extend_from_slice(&[short_tag, n]),
            _ => {
                self.out.push(tag);
                if !top && !self.put_len(payload.len()) {
                    return false;
                }
            }
        }
        self.out.extend_from_slice(payload);
        true
    }

    /// Appends the short form of `obj`; `false` for an object that must
    /// be pickled, or an item that would pass its limit (then `out` holds
    /// garbage). `top`: the item itself.
    fn short_form(&mut self, obj: &Bound<'_, PyAny>, depth: usize, top: bool) -> bool {
        // The fixed-size forms below are at most 9 bytes: written, then
        // checked against the limit (the buffer passes it by 9 at most).
        if obj.is_none() {
            self.out.push(NONE);
        } else if obj.is_exact_instance_of::<PyBool>() {
            self.out.push(if obj.is(PyBool::new(obj.py(), true)) {
                TRUE
            } else {
                FALSE
            });
        } else if obj.is_exact_instance_of::<PyInt>() {
            // An int beyond 64 bits is pickled (the failed extraction's
            // error is dropped here, not left set).
            let Ok(v) = obj.extract::<i64>() else {
                return false;
            };
            // Inside a container (a lone int is an atomic item): as few
            // bytes as hold it.
            if let Ok(v) = i8::try_from(v) {
                self.out.extend_from_slice(&[INT1, v.to_le_bytes()[0]]);
            } else if let Ok(v) = i32::try_from(v) {
                self.out.push(INT4);
                self.out.extend_from_slice(&v.to_le_bytes());
            } else {
                self.out.push(INT);
                self.out.extend_from_slice(&v.to_le_bytes());
            }
        } else if let Ok(f) = obj.cast_exact::<PyFloat>() {
            self.out.push(FLOAT);
            self.out
                .extend_from_slice(&f.value().to_bits().to_le_bytes());
        } else if let Ok(b) = obj.cast_exact::<PyBytes>() {
            return self.put_payload(BYTES, SHORT_BYTES, b.as_bytes(), top);
        } else if let Ok(s) = obj.cast_exact::<PyString>() {
            // A str with lone surrogates has no UTF-8 form: pickled.
            let mut strings = std::mem::take(&mut self.strings);
            let written = strings.utf8(s, |utf8| self.put_payload(STR, SHORT_STR, utf8, top));
            self.strings = strings;
            return written == Some(true);
        } else {
            return self.container(obj, depth);
        }
        self.room(0)
    }

    /// [`short_form`](Encoder::short_form) of a list, tuple or dict.
    fn container(&mut self, obj: &Bound<'_, PyAny>, depth: usize) -> bool {
        let (tag, len) = if let Ok(l) = obj.cast_exact::<PyList>() {
            (LIST, l.len())
        } else if let Ok(t) = obj.cast_exact::<PyTuple>() {
            (TUPLE, t.len())
        } else if let Ok(d) = obj.cast_exact::<PyDict>() {
            (DICT, d.len())
        } else {
            return false;
        };
        let id = obj.as_ptr() as usize;
        if depth >= MAX_DEPTH
            || self.containers.len() >= MAX_CONTAINERS
            || self.containers.contains(&id)
        {
            return false;
        }
        self.containers.push(id);
        self.out.push(tag);
        if !self.put_len(len) || !self.room(0) {
            return false;
        }
        // Nothing below runs Python code (exact containers of exact
        // atomic objects; the first other object stops the walk), so none
        // of them can change while we read them; a count that differs from
        // the items written is refused anyway.
        let mut written = 0usize;
        let ok = if let Ok(l) = obj.cast_exact::<PyList>() {
            l.iter().all(|x| {
                written += 1;
                self.short_form(&x, depth + 1, false)
            })
        } else if let Ok(t) = obj.cast_exact::<PyTuple>() {
            t.iter().all(|x| {
                written += 1;
                self.short_form(&x, depth + 1, false)
            })
        } else if let Ok(d) = obj.cast_exact::<PyDict>() {
            d.iter().all(|(k, v)| {
                written += 1;
                self.short_form(&k, depth + 1, false) && self.short_form(&v, depth + 1, false)
            })
        } else {
            false
        };
        ok && written == len
    }
}

/// The object `bytes` (read from shared memory) stands for.
pub(crate) fn decode<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    match bytes.first() {
        Some(&(NONE..=SHORT_STR)) => {
            let mut reader = Reader {
                rest: bytes,
                strings: strings::Strings::lock(py),
            };
            let obj = reader.item(py, 0, true)?;
            if reader.rest.is_empty() {
                Ok(obj)
            } else {
                Err(corrupted(format!(
                    "{} stray bytes after the item",
                    reader.rest.len()
                )))
            }
        }
        _ => loads(py, bytes),
    }
}

fn corrupted(what: impl std::fmt::Display) -> PyErr {
    os_error(format!("corrupted item: {what}"))
}

/// Reads short forms off the front of `rest`.
struct Reader<'a> {
    rest: &'a [u8],
    strings: strings::Strings,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> PyResult<&'a [u8]> {
        if self.rest.len() < n {
            return Err(corrupted(format!(
                "a {what} of {} bytes ({n} expected)",
                self.rest.len()
            )));
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Ok(head)
    }

    fn word(&mut self, what: &str) -> PyResult<[u8; 8]> {
        let b = self.take(8, what)?;
        Ok(b.try_into().expect("8 bytes taken"))
    }

    fn len(&mut self) -> PyResult<usize> {
        let b = self.take(4, "length")?;
        let n = u32::from_le_bytes(b.try_into().expect("4 bytes taken"));
        Ok(n as usize)
    }

    /// A `bytes` or `str` payload: the rest of the item at the top, else
    /// a length and that many bytes.
    fn payload(&mut self, top: bool, what: &str) -> PyResult<&'a [u8]> {
        if top {
            let all = self.rest;
            self.rest = &[];
            Ok(all)
        } else {
            let n = self.len()?;
            self.take(n, what)
        }
    }

    /// A container's item count, refused when the bytes left could not
    /// hold that many items (each takes at least one byte), so a hostile
    /// count never makes a huge allocation.
    fn count(&mut self, per_item: usize) -> PyResult<usize> {
        let n = self.len()?;
        if n.saturating_mul(per_item) > self.rest.len() {
            return Err(corrupted(format!(
                "a container of {n} items in {} bytes",
                self.rest.len()
            )));
        }
        Ok(n)
    }

    fn item<'py>(
        &mut self,
        py: Python<'py>,
        depth: usize,
        top: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        if depth > MAX_DEPTH {
            return Err(corrupted("containers nested too deep"));
        }
        let tag = self.take(1, "tag")?[0];
        Ok(match tag {
            NONE => py.None().into_bound(py),
            TRUE => PyBool::new(py, true).to_owned().into_any(),
            FALSE => PyBool::new(py, false).to_owned().into_any(),
            INT => i64::from_le_bytes(self.word("int")?)
                .into_pyobject(py)?
                .into_any(),
            FLOAT => {
                PyFloat::new(py, f64::from_bits(u64::from_le_bytes(self.word("float")?))).into_any()
            }
            INT1 => i64::from(i8::from_le_bytes([self.take(1, "int")?[0]]))
                .into_pyobject(py)?
                .into_any(),
            INT4 => {
                let b = self.take(4, "int")?;
                i64::from(i32::from_le_bytes(b.try_into().expect("4 bytes taken")))
                    .into_pyobject(py)?
                    .into_any()
            }
            BYTES => PyBytes::new(py, self.payload(top, "bytes")?).into_any(),
            STR => {
                let utf8 = self.payload(top, "str")?;
                self.strings.decode(py, utf8)?.into_any()
            }
            SHORT_BYTES => {
                let n = self.take(1, "length")?[0];
                PyBytes::new(py, self.take(usize::from(n), "bytes")?).into_any()
            }
            SHORT_STR => {
                let n = self.take(1, "length")?[0];
                let utf8 = self.take(usize::from(n), "str")?;
                self.strings.decode(py, utf8)?.into_any()
            }
            LIST => {
                let n = self.count(1)?;
                let items = (0..n)
                    .map(|_| self.item(py, depth + 1, false))
                    .collect::<PyResult<Vec<_>>>()?;
                PyList::new(py, items)?.into_any()
            }
            TUPLE => {
                let n = self.count(1)?;
                let items = (0..n)
                    .map(|_| self.item(py, depth + 1, false))
                    .collect::<PyResult<Vec<_>>>()?;
                PyTuple::new(py, items)?.into_any()
            }
            DICT => {
                let n = self.count(2)?;
                let d = PyDict::new(py);
                for _ in 0..n {
                    let k = self.item(py, depth + 1, false)?;
                    let v = self.item(py, depth + 1, false)?;
                    // An unhashable key (a list) only comes from garbage.
                    d.set_item(k, v)
                        .map_err(|e| corrupted(format!("a dict key: {e}")))?;
                }
                d.into_any()
            }
            other => return Err(corrupted(format!("unknown tag {other}"))),
        })
    }
}

/// `str` ⇄ UTF-8 for the short form, with a small per-thread cache of
/// short strings: a dict's keys are usually the same few strings, message
/// after message, and both making a `str` and hashing it (for the dict
/// insert) cost more than the lookup.
///
/// The cache holds strong references, so a pointer in it always names the
/// same immutable `str` it was filled with.
mod strings {
    use std::sync::{Mutex, MutexGuard};

    use super::*;

    /// Strings longer than this (in UTF-8) are not cached.
    const MAX: usize = 40;
    const SLOTS: usize = 256;

    struct Entry {
        s: Py<PyString>,
        len: u8,
        utf8: [u8; MAX],
    }

    impl Entry {
        fn utf8(&self) -> &[u8] {
            &self.utf8[..usize::from(self.len)]
        }
    }

    struct Cache {
        /// Indexed by the `str`'s address.
        by_ptr: Vec<Option<Entry>>,
        /// Indexed by a hash of the UTF-8.
        by_text: Vec<Option<Entry>>,
    }

    /// One for the process: every use holds the GIL, so it is never
    /// contended (a `try_lock` that fails, which cannot happen, skips the
    /// cache). Never dropped: no reference in it is released after the
    /// interpreter is gone.
    static CACHE: Mutex<Cache> = Mutex::new(Cache {
        by_ptr: Vec::new(),
        by_text: Vec::new(),
    });

    fn slot_of_ptr(p: usize) -> usize {
        ((p >> 4).wrapping_mul(0x9E37_79B9) >> 8) & (SLOTS - 1)
    }

    fn slot_of_text(t: &[u8]) -> usize {
        // FNV-1a: short keys, no need for more.
        let h = t.iter().fold(0x811c_9dc5u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        (h as usize) & (SLOTS - 1)
    }

    fn entry(s: &Bound<'_, PyString>, utf8: &[u8]) -> Option<Entry> {
        let len = u8::try_from(utf8.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX)?;
        let mut buf = [0u8; MAX];
        buf[..utf8.len()].copy_from_slice(utf8);
        Some(Entry {
            s: s.clone().unbind(),
            len,
            utf8: buf,
        })
    }

    /// The cache, held for one item's encoding or decoding (one lock per
    /// item, not per string); without it when it is in use further up
    /// this thread's stack (a finalizer run by a collection during a
    /// decode that puts or gets an item itself).
    #[derive(Default)]
    pub(super) struct Strings(Option<MutexGuard<'static, Cache>>);

    impl Strings {
        pub(super) fn lock(_py: Python<'_>) -> Strings {
            let guard = CACHE.try_lock().ok().map(|mut c| {
                if c.by_ptr.is_empty() {
                    c.by_ptr.resize_with(SLOTS, || None);
                    c.by_text.resize_with(SLOTS, || None);
                }
                c
            });
            Strings(guard)
        }

        /// `f` of the UTF-8 of `s`; `None` for a `str` with no UTF-8 form
        /// (lone surrogates).
        pub(super) fn utf8<R>(
            &mut self,
            s: &Bound<'_, PyString>,
            f: impl FnOnce(&[u8]) -> R,
        ) -> Option<R> {
            let p = s.as_ptr() as usize;
            let slot = slot_of_ptr(p);
            if let Some(c) = &self.0 {
                if let Some(e) = c.by_ptr[slot]
                    .as_ref()
                    .filter(|e| e.s.as_ptr() as usize == p)
                {
                    return Some(f(e.utf8()));
                }
            }
            let utf8 = s.to_cow().ok()?;
            let utf8 = utf8.as_bytes();
            if let (Some(c), Some(e)) = (&mut self.0, entry(s, utf8)) {
                c.by_ptr[slot] = Some(e);
            }
            Some(f(utf8))
        }

        /// The `str` of `utf8`.
        pub(super) fn decode<'py>(
            &mut self,
            py: Python<'py>,
            utf8: &[u8],
        ) -> PyResult<Bound<'py, PyString>> {
            let slot = (utf8.len() <= MAX).then(|| slot_of_text(utf8));
            if let (Some(c), Some(slot)) = (&self.0, slot) {
                if let Some(e) = c.by_text[slot].as_ref().filter(|e| e.utf8() == utf8) {
                    return Ok(e.s.bind(py).clone());
                }
            }
            let text = std::str::from_utf8(utf8)
                .map_err(|e| corrupted(format!("a str that is not UTF-8 ({e})")))?;
            let s = PyString::new(py, text);
            if let (Some(c), Some(slot)) = (&mut self.0, slot) {
                if let Some(e) = entry(&s, utf8) {
                    c.by_text[slot] = Some(e);
                }
            }
            Ok(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval<'py>(py: Python<'py>, src: &str) -> Bound<'py, PyAny> {
        let code = std::ffi::CString::new(src).expect("no NUL");
        py.eval(&code, None, None)
            .unwrap_or_else(|e| panic!("{src}: {e}"))
    }

    fn round_trip<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        decode(py, encode(py, obj, usize::MAX).expect("encodes").bytes()).expect("decodes")
    }

    fn pickled(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
        encode(py, obj, usize::MAX)
            .expect("encodes")
            .bytes()
            .first()
            == Some(&0x80)
    }

    /// `repr` of both sides, which shows types and order (a `1` inside
    /// comes back as `1`, not `1.0` or `True`).
    fn same_repr(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> bool {
        a.repr().expect("repr").to_string() == b.repr().expect("repr").to_string()
    }

    /// `src` takes the short form and comes back (twice: the second time
    /// through the string cache) of the same type, equal, and with the
    /// same types inside and order (`repr`; NaN aside, see its test).
    fn assert_short_round_trip(py: Python<'_>, src: &str) {
        let obj = eval(py, src);
        assert!(!pickled(py, &obj), "{src} took the short form");
        for _ in 0..2 {
            let back = round_trip(py, &obj);
            assert!(back.get_type().is(obj.get_type()), "{src}: same type");
            assert!(back.eq(&obj).expect("compares"), "{src}: equal");
            assert!(same_repr(&back, &obj), "{src}: same types inside and order");
        }
    }

    #[test]
    fn atomic_objects_take_the_short_form_and_come_back_equal_and_exact() {
        Python::initialize();
        Python::attach(|py| {
            let cases = [
                "None",
                "True",
                "False",
                "0",
                "-1",
                "2**63 - 1",
                "-2**63",
                "1.5",
                "-0.0",
                "float('inf')",
                "b''",
                "b'\\x80abc'",
                "''",
                "'h\\u00e9llo \\U0001f600'",
                "'x' * 100",
                "b'y' * 100",
            ];
            for src in cases {
                assert_short_round_trip(py, src);
            }
            let nan = eval(py, "float('nan')");
            let back = round_trip(py, &nan);
            assert!(back.cast::<PyFloat>().expect("float").value().is_nan());
        });
    }

    #[test]
    fn containers_of_atomic_objects_take_the_short_form_and_come_back_alike() {
        Python::initialize();
        Python::attach(|py| {
            let cases = [
                "[]",
                "()",
                "{}",
                "[1, 2.5, 'three', b'four', None, True, False]",
                "(1,)",
                "{'key%d' % i: i for i in range(10)}",
                "{3: 'c', 1: 'a', 2: 'b'}",
                "{(1, 'a'): [1, 2], 2.5: {'x': (None,)}, b'k': ()}",
                "[[[[1]]], ({},)]",
                "{'a': 1, 'b': [1, 1.0, True, '1', b'1']}",
                "['same', 'same', 'same']",
                "[2**63 - 1, -2**63, 2**31 - 1, -2**31, 2**31, -2**31 - 1, 127, -128, 128, -129]",
                "['x' * 255, 'y' * 256, b'z' * 255, b'w' * 256, '\\u00e9' * 200]",
            ];
            for src in cases {
                assert_short_round_trip(py, src);
            }
        });
    }

    #[test]
    fn what_the_short_form_cannot_keep_is_pickled() {
        Python::initialize();
        Python::attach(|py| {
            let cases = [
                // Atomic objects without a short form.
                "2**64",
                "-2**63 - 1",
                "'\\ud800'",
                "__import__('http').HTTPStatus.OK",
                "__import__('re').RegexFlag.IGNORECASE",
                "bytearray(b'x')",
                // Inside containers: the whole item is pickled.
                "[1, 2**64]",
                "{'a': '\\ud800'}",
                "[bytearray(b'x')]",
                "(1, __import__('decimal').Decimal(1))",
                // Subclasses of the containers.
                "__import__('collections').OrderedDict(a=1)",
                "__import__('collections').defaultdict(int, a=1)",
                "__import__('time').gmtime(0)",
                "__import__('os').terminal_size((1, 2))",
                // Sets are not short-formed.
                "{1, 2}",
                "frozenset({1})",
                // Deeper than the short form goes.
                "eval('[' * 40 + ']' * 40)",
            ];
            for src in cases {
                let obj = eval(py, src);
                assert!(pickled(py, &obj), "{src} was pickled");
                let back = round_trip(py, &obj);
                assert!(back.get_type().is(obj.get_type()), "{src}: same type");
            }
            let big = eval(py, "[1, 2**64]");
            assert!(round_trip(py, &big).eq(&big).expect("compares"));
        });
    }

    #[test]
    fn a_short_form_past_the_limit_is_pickled_and_never_built_whole() {
        Python::initialize();
        Python::attach(|py| {
            // 10 bytes per string in the short form, 2 in a pickle (which
            // writes the repeated string once).
            let ints = eval(py, "['abcdefgh'] * 100");
            let short = encode(py, &ints, usize::MAX).expect("encodes");
            assert_ne!(short.bytes()[0], 0x80);
            let limited = encode(py, &ints, 500).expect("encodes");
            assert_eq!(limited.bytes()[0], 0x80, "pickled under a 500-byte limit");
            assert!(limited.bytes().len() <= 500);
            assert!(decode(py, limited.bytes())
                .expect("decodes")
                .eq(&ints)
                .expect("compares"));
            // One big object repeated: the short form stops at the limit.
            let big = eval(py, "[b'x' * 100000] * 1000");
            let item = encode(py, &big, 1 << 20).expect("encodes");
            assert_eq!(item.bytes()[0], 0x80);
            assert!(item.bytes().len() < 200_000, "the pickle writes it once");
            // Atomic objects keep their short form whatever the limit (their
            // pickle is longer still).
            let s = eval(py, "'x' * 100");
            assert_ne!(encode(py, &s, 10).expect("encodes").bytes()[0], 0x80);
        });
    }

    #[test]
    fn a_short_form_exactly_at_the_limit_is_kept() {
        Python::initialize();
        Python::attach(|py| {
            for src in [
                "(1, 2)",
                "('ab', 1)",
                "(None,)",
                "[1, 2, 3, 4]",
                "{'k': b'v'}",
                "()",
            ] {
                let obj = eval(py, src);
                let len = encode(py, &obj, usize::MAX).expect("encodes").bytes().len();
                let at = encode(py, &obj, len).expect("encodes");
                assert_ne!(
                    at.bytes()[0],
                    0x80,
                    "{src}: {len} bytes fit a limit of {len}"
                );
                assert_eq!(at.bytes().len(), len);
                let under = encode(py, &obj, len - 1).expect("encodes");
                assert_eq!(
                    under.bytes()[0],
                    0x80,
                    "{src}: pickled under a limit of {}",
                    len - 1
                );
            }
        });
    }

    #[test]
    fn shared_and_self_holding_containers_keep_their_identity() {
        Python::initialize();
        Python::attach(|py| {
            // The same list twice: pickled, and comes back as one list.
            let shared = eval(py, "(lambda a: [a, a])([1])");
            assert!(pickled(py, &shared));
            let back = round_trip(py, &shared);
            let first = back.get_item(0).expect("item 0");
            let second = back.get_item(1).expect("item 1");
            assert!(first.is(&second), "one list, not two copies");
            // A list holding itself: pickled (the short form would recurse).
            let cyclic = eval(py, "(lambda l: (l.append(l), l)[1])([])");
            assert!(pickled(py, &cyclic));
            let back = round_trip(py, &cyclic);
            assert!(back.get_item(0).expect("item 0").is(&back));
            // Equal atomic objects shared are fine in the short form.
            let strs = eval(py, "(lambda s: [s, s])('shared text')");
            assert!(!pickled(py, &strs));
        });
    }

    #[test]
    fn the_string_cache_never_confuses_two_strings() {
        Python::initialize();
        Python::attach(|py| {
            // Many more distinct keys than the cache has slots, twice over,
            // in dicts and alone: every one comes back as itself.
            let obj = eval(py, "[{'k%d' % i: i} for i in range(2000)]");
            for _ in 0..2 {
                assert!(round_trip(py, &obj).eq(&obj).expect("compares"));
            }
            for i in 0..2000 {
                let s = PyString::new(py, &format!("s{i}"));
                let back = round_trip(py, s.as_any());
                assert_eq!(back.extract::<String>().expect("str"), format!("s{i}"));
            }
        });
    }

    #[test]
    fn hostile_bytes_raise_instead_of_panicking() {
        Python::initialize();
        Python::attach(|py| {
            for bad in [
                &[INT, 1, 2][..],
                &[FLOAT][..],
                &[NONE, 0][..],
                &[TRUE, 1, 2, 3][..],
                &[STR, 0xff, 0xfe][..],
                &[0x7f, 1, 2][..],
                &[][..],
                // A list of 2**32 - 1 items in 4 bytes.
                &[LIST, 0xff, 0xff, 0xff, 0xff, NONE, NONE, NONE, NONE][..],
                // A dict missing its value.
                &[DICT, 1, 0, 0, 0, NONE][..],
                // A list as a dict key.
                &[DICT, 1, 0, 0, 0, LIST, 0, 0, 0, 0, NONE][..],
                // A str inside a list whose length runs past the end.
                &[LIST, 1, 0, 0, 0, STR, 9, 0, 0, 0, b'a'][..],
                // An unknown tag inside.
                &[TUPLE, 1, 0, 0, 0, 0x55][..],
                // Short ints and strings cut short.
                &[LIST, 1, 0, 0, 0, INT1][..],
                &[LIST, 1, 0, 0, 0, INT4, 1, 2][..],
                &[LIST, 1, 0, 0, 0, SHORT_STR, 3, b'a'][..],
                &[LIST, 1, 0, 0, 0, SHORT_BYTES][..],
                &[LIST, 1, 0, 0, 0, SHORT_STR, 1, 0xff][..],
                // Stray bytes after a container.
                &[LIST, 0, 0, 0, 0, 1][..],
            ] {
                assert!(decode(py, bad).is_err(), "{bad:?} is refused");
            }
            // Nested deeper than the short form goes.
            let mut deep = Vec::new();
            for _ in 0..100 {
                deep.extend_from_slice(&[LIST, 1, 0, 0, 0]);
            }
            deep.push(NONE);
            assert!(decode(py, &deep).is_err());
        });
    }

    /// Every prefix and every one-byte change of valid items: an error or
    /// an object, never a panic or a hang.
    #[test]
    fn damaged_items_never_panic() {
        Python::initialize();
        Python::attach(|py| {
            let obj = eval(
                py,
                "{'a': [1, 2.5, None, True], (1, 'b'): {'c': b'd'}, 'e': ('f', [])}",
            );
            let good = encode(py, &obj, usize::MAX)
                .expect("encodes")
                .bytes()
                .to_vec();
            for len in 0..good.len() {
                let _ = decode(py, &good[..len]);
            }
            for at in 0..good.len() {
                for value in [0u8, 1, 4, 7, 8, 10, 0x7f, 0x80, 0xff] {
                    let mut bad = good.clone();
                    bad[at] = value;
                    let _ = decode(py, &bad);
                }
            }
        });
    }
}
