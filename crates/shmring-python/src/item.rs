//! The bytes a queue item, or a dict key or value, is stored as: the six
//! atomic types in a short form of their own, everything else pickled.
//!
//! `pickle.dumps` + `pickle.loads` of a small int costs about as much as the
//! whole ring round trip around it (a `Pickler` and an `Unpickler` object
//! made and freed per call), so an exact `None`, `bool`, `int` (that fits
//! in 64 bits), `float`, `bytes` or `str` is written as one tag byte and
//! its raw value instead. Every other object, and a subclass of one of
//! those, is pickled (highest protocol) as before. The two forms cannot be
//! confused: a pickle of protocol 2 or above starts with the `PROTO`
//! opcode, `0x80`, and no tag is `0x80`.
//!
//! The result is the same object a pickle round trip gives: pickle handles
//! these six exact types itself, before any `copyreg` table or
//! `reducer_override` is asked, so nothing a user registers is skipped.
//!
//! Queues and the dict use this form. A pipe's `recv_bytes` hands out the
//! bytes a `send` wrote, which CPython makes a pickle, so pipes pickle
//! everything. Dict keys are compared by these bytes; equal keys of one
//! exact type encode alike in either form, so that stays as it was with
//! pickles (`1`, `1.0` and `True` are three keys).
//!
//! The bytes come from shared memory, so they are untrusted: a wrong length
//! for its tag, or a `str` that is not UTF-8, is an `OSError` naming the
//! corruption, never a panic; an unknown first byte goes to `pickle.loads`,
//! which raises as it would for any other garbage.

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyFloat, PyInt, PyString};

use crate::{dumps, loads, os_error};

const NONE: u8 = 1;
const TRUE: u8 = 2;
const FALSE: u8 = 3;
const INT: u8 = 4;
const FLOAT: u8 = 5;
const BYTES: u8 = 6;
const STR: u8 = 7;

/// The bytes `obj` travels as (see the module docs).
pub(crate) fn encode<'py>(
    py: Python<'py>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    match short_form(py, obj) {
        Some(bytes) => Ok(bytes),
        None => dumps(py, obj),
    }
}

/// The short form of an exact atomic object, or `None` for one to pickle.
fn short_form<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyBytes>> {
    let tagged = |tag: u8, value: &[u8]| {
        PyBytes::new_with(py, value.len() + 1, |out| {
            out[0] = tag;
            out[1..].copy_from_slice(value);
            Ok(())
        })
        .ok()
    };
    if obj.is_none() {
        tagged(NONE, &[])
    } else if obj.is_exact_instance_of::<PyBool>() {
        tagged(if obj.is_truthy().ok()? { TRUE } else { FALSE }, &[])
    } else if obj.is_exact_instance_of::<PyInt>() {
        // An int beyond 64 bits is pickled (the failed extraction's error
        // is dropped here, not left set).
        let v: i64 = obj.extract().ok()?;
        tagged(INT, &v.to_le_bytes())
    } else if obj.is_exact_instance_of::<PyFloat>() {
        let v = obj.cast::<PyFloat>().ok()?.value();
        tagged(FLOAT, &v.to_bits().to_le_bytes())
    } else if obj.is_exact_instance_of::<PyBytes>() {
        tagged(BYTES, obj.cast::<PyBytes>().ok()?.as_bytes())
    } else if obj.is_exact_instance_of::<PyString>() {
        // A str with lone surrogates has no UTF-8 form: pickled.
        let s = obj.cast::<PyString>().ok()?.to_cow().ok()?;
        tagged(STR, s.as_bytes())
    } else {
        None
    }
}

/// The object `bytes` (read from shared memory) stands for.
pub(crate) fn decode<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let Some((&tag, value)) = bytes.split_first() else {
        return loads(py, bytes);
    };
    let fixed = |what: &str| -> PyResult<[u8; 8]> {
        value.try_into().map_err(|_| {
            os_error(format!(
                "corrupted item: a {what} of {} bytes (8 expected)",
                value.len()
            ))
        })
    };
    let bare = |obj: Bound<'py, PyAny>| -> PyResult<Bound<'py, PyAny>> {
        if value.is_empty() {
            Ok(obj)
        } else {
            Err(os_error(format!(
                "corrupted item: {} stray bytes after a constant",
                value.len()
            )))
        }
    };
    match tag {
        NONE => bare(py.None().into_bound(py)),
        TRUE => bare(PyBool::new(py, true).to_owned().into_any()),
        FALSE => bare(PyBool::new(py, false).to_owned().into_any()),
        INT => Ok(i64::from_le_bytes(fixed("int")?)
            .into_pyobject(py)?
            .into_any()),
        FLOAT => {
            let v = f64::from_bits(u64::from_le_bytes(fixed("float")?));
            Ok(PyFloat::new(py, v).into_any())
        }
        BYTES => Ok(PyBytes::new(py, value).into_any()),
        STR => match std::str::from_utf8(value) {
            Ok(s) => Ok(PyString::new(py, s).into_any()),
            Err(e) => Err(os_error(format!(
                "corrupted item: a str that is not UTF-8 ({e})"
            ))),
        },
        _ => loads(py, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<'py>(py: Python<'py>, obj: &Bound<'py, PyAny>) -> Bound<'py, PyAny> {
        decode(py, encode(py, obj).expect("encodes").as_bytes()).expect("decodes")
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
            ];
            for src in cases {
                let code = std::ffi::CString::new(src).expect("no NUL");
                let obj = py.eval(&code, None, None).expect("evaluates");
                let bytes = encode(py, &obj).expect("encodes");
                assert_ne!(
                    bytes.as_bytes().first(),
                    Some(&0x80),
                    "{src} took the short form"
                );
                let back = round_trip(py, &obj);
                assert!(back.get_type().is(obj.get_type()), "{src}: same type");
                assert!(back.eq(&obj).expect("compares"), "{src}: equal");
            }
            let nan = py.eval(c"float('nan')", None, None).expect("nan");
            let back = round_trip(py, &nan);
            assert!(back.cast::<PyFloat>().expect("float").value().is_nan());
        });
    }

    #[test]
    fn other_objects_and_subclasses_are_pickled() {
        Python::initialize();
        Python::attach(|py| {
            let cases = [
                "2**64",
                "-2**63 - 1",
                "'\\ud800'",
                "[1, 2]",
                "{'a': 1}",
                "__import__('http').HTTPStatus.OK",
                "__import__('re').RegexFlag.IGNORECASE",
                "bytearray(b'x')",
            ];
            for src in cases {
                let code = std::ffi::CString::new(src).expect("no NUL");
                let obj = py.eval(&code, None, None).expect("evaluates");
                let bytes = encode(py, &obj).expect("encodes");
                assert_eq!(bytes.as_bytes().first(), Some(&0x80), "{src} was pickled");
            }
            let big = py.eval(c"2**64", None, None).expect("big int");
            assert!(round_trip(py, &big).eq(&big).expect("compares"));
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
            ] {
                assert!(decode(py, bad).is_err(), "{bad:?} is refused");
            }
        });
    }
}
