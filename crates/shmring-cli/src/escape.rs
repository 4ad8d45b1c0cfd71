//! Making names safe to print.
//!
//! Any local user can create a file in `/dev/shm` under any name: one that
//! holds an escape sequence (recolour the terminal, move the cursor, set
//! the window title), a newline (forge a row of `ls`'s table), a carriage
//! return, a right-to-left override. Every name the CLI prints goes through
//! [`name`] (or [`os_name`] for names that are not UTF-8), and every message
//! through [`text`], so that no such byte ever reaches the terminal raw.
//! JSON strings are escaped by [`crate::json::string`] by the same rule.

use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;

/// Whether `c` must not reach a terminal raw: C0 and C1 controls, DEL, the
/// line and paragraph separators, and the invisible format characters that
/// reorder or hide text (bidirectional overrides and isolates, zero-width
/// characters, the byte order mark).
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2069}'
                | '\u{feff}'
        )
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if (c as u32) < 0x100 => {
            let _ = write!(out, "\\x{:02x}", c as u32);
        }
        c => {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        }
    }
}

/// A segment or file name as the CLI prints it: every unsafe character
/// ([`is_unsafe`]) as `\n`, `\r`, `\t`, `\xNN` or `\u{NNNN}`, and a
/// backslash doubled, so that an escaped name can never be mistaken for a
/// name that holds the escape's text.
pub fn name(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if is_unsafe(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// [`name`] for a name that may not be UTF-8: a byte that is not part of
/// valid UTF-8 is shown as `\xNN`.
pub fn os_name(s: &OsStr) -> String {
    let mut out = String::new();
    for chunk in s.as_bytes().utf8_chunks() {
        out.push_str(&name(chunk.valid()));
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A message for the terminal: unsafe characters escaped as by [`name`],
/// backslashes left as they are (the library's messages quote names with
/// `{:?}`, which escapes them already; this is the safety net).
pub fn text(s: &str) -> String {
    if !s.chars().any(is_unsafe) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn names_lose_every_control_byte() {
        assert_eq!(name("/plain-name.1"), "/plain-name.1");
        assert_eq!(name("/a\x1b[31mred"), "/a\\x1b[31mred");
        assert_eq!(name("/a\nb\r\t"), "/a\\nb\\r\\t");
        assert_eq!(name("/del\x7f"), "/del\\x7f");
        assert_eq!(name("/csi\u{9b}"), "/csi\\x9b");
        assert_eq!(name("/rtl\u{202e}"), "/rtl\\u{202e}");
        assert_eq!(name("/back\\x1b"), "/back\\\\x1b");
        assert_eq!(name("/é日本"), "/é日本");
    }

    #[test]
    fn non_utf8_bytes_are_shown_as_hex() {
        let raw = OsStr::from_bytes(b"/a\xff\xfeb\x1b\xc3\xa9");
        assert_eq!(os_name(raw), "/a\\xff\\xfeb\\x1bé");
    }

    #[test]
    fn text_keeps_backslashes() {
        assert_eq!(
            text("segment \"/a\\u{1b}\" not found"),
            "segment \"/a\\u{1b}\" not found"
        );
        assert_eq!(text("bad\x1b[2J"), "bad\\x1b[2J");
    }
}
