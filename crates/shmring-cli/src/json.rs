//! A minimal JSON writer: the CLI's output is flat enough that a dependency
//! would cost more build time than it saves.

use std::fmt::Write;

/// A JSON string literal for `s`. Besides what JSON requires, every
/// character that must not reach a terminal raw
/// ([`escape::is_unsafe`](crate::escape::is_unsafe): DEL, C1 controls,
/// bidirectional overrides, ...) is written as `\uNNNN`, so that output
/// piped to a terminal, or shown by a tool that prints strings as they are,
/// stays harmless.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if crate::escape::is_unsafe(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON number for a float (`null` when not finite).
pub fn float(x: f64) -> String {
    if x.is_finite() {
        format!("{x}")
    } else {
        "null".into()
    }
}

/// A JSON array of already-encoded values.
pub fn array(items: impl IntoIterator<Item = String>) -> String {
    let items: Vec<String> = items.into_iter().collect();
    format!("[{}]", items.join(","))
}

/// Builds a JSON object field by field, in insertion order.
#[derive(Default)]
pub struct Object {
    fields: Vec<String>,
}

impl Object {
    /// An empty object.
    pub fn new() -> Object {
        Object::default()
    }

    /// Adds a field whose value is already JSON.
    pub fn raw(mut self, key: &str, json: String) -> Object {
        self.fields.push(format!("{}:{json}", string(key)));
        self
    }

    /// Adds a string field.
    pub fn str(self, key: &str, value: &str) -> Object {
        self.raw(key, string(value))
    }

    /// Adds an integer field.
    pub fn num(self, key: &str, value: impl Into<u64>) -> Object {
        self.raw(key, value.into().to_string())
    }

    /// Adds an integer field, or `null`.
    pub fn opt(self, key: &str, value: Option<u64>) -> Object {
        self.raw(key, value.map_or("null".into(), |v| v.to_string()))
    }

    /// Adds a boolean field.
    pub fn bool(self, key: &str, value: bool) -> Object {
        self.raw(key, value.to_string())
    }

    /// The encoded object.
    pub fn finish(self) -> String {
        format!("{{{}}}", self.fields.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped() {
        assert_eq!(string("a\"b\\c\n\u{1}"), r#""a\"b\\c\n\u0001""#);
        assert_eq!(
            string("\x1b[2J\x7f\u{9b}\u{202e}é"),
            r#""\u001b[2J\u007f\u009b\u202eé""#
        );
    }

    #[test]
    fn objects_and_arrays() {
        let o = Object::new()
            .str("k", "v")
            .num("n", 3u32)
            .opt("m", None)
            .bool("b", true)
            .raw("a", array(["1".to_string(), "2".to_string()]))
            .finish();
        assert_eq!(o, r#"{"k":"v","n":3,"m":null,"b":true,"a":[1,2]}"#);
        assert_eq!(float(f64::NAN), "null");
    }
}
