//! Compact JSON written straight into a byte buffer, for the objects a report writes once
//! per flow or finding (a million of each on a large capture).
//!
//! The text is exactly what `serde_json::to_writer` writes for the same value: the same
//! separators, the same escapes, integers through the same `itoa`, floats handed to
//! `serde_json` itself. What differs is the cost. Strings are checked for characters that
//! need escaping eight bytes at a time instead of one by one, and every piece goes
//! straight into the `Vec` instead of through `io::Write`; in the profile of an `audit`,
//! escaping alone was a seventh of all instructions.

use serde::ser::{self, Impossible, Serialize};
use std::fmt;

/// Appends the compact JSON text of `value` to `out`. On an error (a map key that is not
/// a string, finite number, boolean or unit variant, or an `Option` of one; a value's own
/// `Serialize` failing) `out` keeps what was written before it.
pub fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(Writer { out })
}

/// [`write`] for writers that work in `io::Result`.
pub fn write_io<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> std::io::Result<()> {
    write(out, value).map_err(std::io::Error::other)
}

/// `head`'s fields, then `tail`'s, as one object: the text serde's `#[serde(flatten)]`
/// gives a struct holding both, written without it. Flattening sends every field of the
/// object through serde's map path (each name serialised as a map key at run time);
/// written as two structs, the names are constants of the struct path and the two
/// objects are joined in the text. Both must serialise as JSON objects.
pub fn write_merged<A, B>(out: &mut Vec<u8>, head: &A, tail: &B) -> Result<(), Error>
where
    A: Serialize + ?Sized,
    B: Serialize + ?Sized,
{
    let start = out.len();
    // On an error nothing of either value is left in `out`.
    let not_object = |out: &mut Vec<u8>| {
        out.truncate(start);
        Error("a merged value is not a JSON object".to_string())
    };
    write(out, head)?;
    if out.get(start) != Some(&b'{') || out.pop() != Some(b'}') {
        return Err(not_object(out));
    }
    let head_empty = out.len() == start + 1;
    let mark = out.len();
    write(out, tail)?;
    if out.get(mark) != Some(&b'{') || out.last() != Some(&b'}') {
        return Err(not_object(out));
    }
    if out.len() == mark + 2 {
        // `{}`: nothing to add.
        out.truncate(mark);
        out.push(b'}');
    } else if head_empty {
        out.remove(mark);
    } else if let Some(open) = out.get_mut(mark) {
        *open = b',';
    }
    Ok(())
}

/// [`write_merged`] for writers that work in `io::Result`.
pub fn write_merged_io<A, B>(out: &mut Vec<u8>, head: &A, tail: &B) -> std::io::Result<()>
where
    A: Serialize + ?Sized,
    B: Serialize + ?Sized,
{
    write_merged(out, head, tail).map_err(std::io::Error::other)
}

/// Why a value could not be written.
#[derive(Debug)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Whether any of the eight bytes of `w` is a control character, `"` or `\`: the bytes
/// JSON strings must escape. (A byte below 0x20 borrows into its own top bit only when
/// that bit was clear; a byte equal to `c` is a zero byte of `w ^ c..c`. Both tests are
/// exact for "is there any such byte", which is all this asks.)
#[inline]
fn any_to_escape(w: u64) -> bool {
    let control = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (control | quote | backslash) & HIGH != 0
}

/// The escape of one byte, or `None` for a byte written as it is.
#[inline]
fn escape_of(b: u8) -> Option<&'static [u8]> {
    const SHORT: [&[u8]; 0x20] = [
        b"\\u0000", b"\\u0001", b"\\u0002", b"\\u0003", b"\\u0004", b"\\u0005", b"\\u0006",
        b"\\u0007", b"\\b", b"\\t", b"\\n", b"\\u000b", b"\\f", b"\\r", b"\\u000e", b"\\u000f",
        b"\\u0010", b"\\u0011", b"\\u0012", b"\\u0013", b"\\u0014", b"\\u0015", b"\\u0016",
        b"\\u0017", b"\\u0018", b"\\u0019", b"\\u001a", b"\\u001b", b"\\u001c", b"\\u001d",
        b"\\u001e", b"\\u001f",
    ];
    match b {
        0..=0x1f => Some(SHORT[b as usize]),
        b'"' => Some(b"\\\""),
        b'\\' => Some(b"\\\\"),
        _ => None,
    }
}

/// No byte of `b` needs escaping. A plain loop without early exit: on a literal it
/// folds to a constant, on a short string it is a few instructions a byte.
#[inline(always)]
fn plain(b: &[u8]) -> bool {
    let mut ok = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        ok &= c >= 0x20 && c != b'"' && c != b'\\';
        i += 1;
    }
    ok
}

/// The string contents of `s`, escaped, without quotes.
#[inline]
fn put_escaped(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    // Most strings in a report need no escape. They are checked a word or a block at a
    // time, the last one overlapping the one before it; only the shortest byte by byte.
    let mut i = 0;
    if b.len() < 4 {
        if plain(b) {
            out.extend_from_slice(b);
            return;
        }
    } else if b.len() < 8 {
        // Two overlapping 4-byte halves make one word.
        let half = |at: usize| {
            let h: [u8; 4] = b[at..at + 4].try_into().unwrap_or_default();
            u64::from(u32::from_le_bytes(h))
        };
        if !any_to_escape(half(0) | half(b.len() - 4) << 32) {
            out.extend_from_slice(b);
            return;
        }
    } else if b.len() < 16 {
        let word = |at: usize| {
            let w: [u8; 8] = b[at..at + 8].try_into().unwrap_or_default();
            u64::from_le_bytes(w)
        };
        if !any_to_escape(word(0)) && !any_to_escape(word(b.len() - 8)) {
            out.extend_from_slice(b);
            return;
        }
    } else {
        // Sixteen bytes at a time: `plain` on a fixed-size block compiles to vector
        // compares (SSE2 on any x86-64), the last block overlapping the one before it.
        let block = |at: usize| -> [u8; 16] { b[at..at + 16].try_into().unwrap_or_default() };
        while i + 16 <= b.len() && plain(&block(i)) {
            i += 16;
        }
        if i == b.len() || (i + 16 > b.len() && plain(&block(b.len() - 16))) {
            out.extend_from_slice(b);
            return;
        }
        i = i.min(b.len() - 16);
    }
    // Something to escape from the word at `i` on: byte by byte from there.
    let mut run = 0; // start of the bytes not yet copied
    for (j, &c) in b.iter().enumerate().skip(i) {
        if let Some(e) = escape_of(c) {
            out.extend_from_slice(&b[run..j]);
            out.extend_from_slice(e);
            run = j + 1;
        }
    }
    out.extend_from_slice(&b[run..]);
}

/// `s` as a JSON string.
pub(crate) fn put_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    put_escaped(out, s);
    out.push(b'"');
}

fn put_int<I: itoa::Integer>(out: &mut Vec<u8>, i: I) {
    out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
}

/// Writes `Display` text as escaped string contents, piece by piece.
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        put_escaped(self.0, s);
        Ok(())
    }
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// A sequence or map being written: whether the next element is the first.
struct Compound<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Compound<'_> {
    #[inline]
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(b',');
        }
    }

    /// `"name":` of a struct field, after a comma when needed. The name is a literal at
    /// every call, so once this is inlined the compiler folds the escape check and the
    /// copy to constants; a name with a character to escape is escaped.
    #[inline(always)]
    fn field_key(&mut self, key: &'static str) {
        self.out.reserve(key.len() + 4);
        self.comma();
        self.out.push(b'"');
        if plain(key.as_bytes()) {
            self.out.extend_from_slice(key.as_bytes());
        } else {
            put_escaped(self.out, key);
        }
        self.out.extend_from_slice(b"\":");
    }
}

fn open<'a>(out: &'a mut Vec<u8>, bracket: u8) -> Compound<'a> {
    out.push(bracket);
    Compound { out, first: true }
}

/// `{"variant":`, written before a variant's contents (`}` closes it after them).
fn variant_key(out: &mut Vec<u8>, variant: &str) {
    out.push(b'{');
    put_str(out, variant);
    out.push(b':');
}

fn open_variant<'a>(out: &'a mut Vec<u8>, variant: &str, bracket: u8) -> Compound<'a> {
    variant_key(out, variant);
    open(out, bracket)
}

/// The integer methods of a serializer: the digits, between `$quote`s (empty for values,
/// `"` for map keys).
macro_rules! ints {
    ($quote:literal) => {
        ints!($quote; serialize_i8: i8, serialize_i16: i16, serialize_i32: i32,
              serialize_i64: i64, serialize_i128: i128, serialize_u8: u8, serialize_u16: u16,
              serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);
    };
    ($quote:literal; $($name:ident: $t:ty),*) => {
        $(fn $name(self, v: $t) -> Result<(), Error> {
            self.out.extend_from_slice($quote);
            put_int(self.out, v);
            self.out.extend_from_slice($quote);
            Ok(())
        })*
    };
}

impl<'a> ser::Serializer for Writer<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    ints!(b"");

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        serde_json::to_writer(self.out, &v).map_err(ser::Error::custom)
    }

    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        serde_json::to_writer(self.out, &v).map_err(ser::Error::custom)
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        put_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        put_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut seq = open(self.out, b'[');
        for &b in v {
            seq.comma();
            put_int(seq.out, b);
        }
        seq.out.push(b']');
        Ok(())
    }

    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        put_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        let out = self.out;
        variant_key(out, variant);
        v.serialize(Writer { out: &mut *out })?;
        out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(open(self.out, b'['))
    }

    fn serialize_tuple(self, _: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(None)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(open_variant(self.out, variant, b'['))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(open(self.out, b'{'))
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Error> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        Ok(open_variant(self.out, variant, b'{'))
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<(), Error> {
        self.out.push(b'"');
        fmt::Write::write_fmt(&mut Escaping(&mut *self.out), format_args!("{v}"))
            .map_err(|_| Error("a value's Display failed".into()))?;
        self.out.push(b'"');
        Ok(())
    }
}

/// The sequence-like serializers: elements separated by commas, then `close`.
macro_rules! elements {
    ($($trait:ident :: $method:ident => $close:expr),* $(,)?) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Error;

            fn $method<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
                self.comma();
                v.serialize(Writer { out: self.out })
            }

            fn end(self) -> Result<(), Error> {
                self.out.extend_from_slice($close);
                Ok(())
            }
        }
    )*};
}

elements!(
    SerializeSeq::serialize_element => b"]",
    SerializeTuple::serialize_element => b"]",
    SerializeTupleStruct::serialize_field => b"]",
    SerializeTupleVariant::serialize_field => b"]}",
);

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(KeyWriter { out: self.out })?;
        self.out.push(b':');
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        v.serialize(Writer { out: self.out })
    }

    fn end(self) -> Result<(), Error> {
        self.out.push(b'}');
        Ok(())
    }
}

/// The struct-like serializers: `"key":value` pairs separated by commas, then `close`.
macro_rules! fields {
    ($($trait:ident => $close:expr),* $(,)?) => {$(
        impl ser::$trait for Compound<'_> {
            type Ok = ();
            type Error = Error;

            #[inline(always)]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                v: &T,
            ) -> Result<(), Error> {
                self.field_key(key);
                v.serialize(Writer { out: self.out })
            }

            fn end(self) -> Result<(), Error> {
                self.out.extend_from_slice($close);
                Ok(())
            }
        }
    )*};
}

fields!(SerializeStruct => b"}", SerializeStructVariant => b"}}");

/// A map key: JSON keys are strings, so numbers (finite floats included) and booleans are
/// written quoted and `Some` as what it holds, as `serde_json` does; anything else is an
/// error.
struct KeyWriter<'a> {
    out: &'a mut Vec<u8>,
}

fn key_error() -> Error {
    Error("key must be a string".into())
}

/// A float key: its text quoted, as serde_json writes it; not a number, an error.
fn quoted_float<F: Serialize>(out: &mut Vec<u8>, v: F, finite: bool) -> Result<(), Error> {
    if !finite {
        return Err(Error("float key must be finite (got NaN or +/-inf)".into()));
    }
    out.push(b'"');
    serde_json::to_writer(&mut *out, &v).map_err(ser::Error::custom)?;
    out.push(b'"');
    Ok(())
}

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        put_str(self.out, v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), Error> {
        put_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"\"true\"" } else { b"\"false\"" });
        Ok(())
    }

    ints!(b"\"");

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<(), Error> {
        v.serialize(self)
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<(), Error> {
        Writer { out: self.out }.collect_str(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        quoted_float(self.out, v, v.is_finite())
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        quoted_float(self.out, v, v.is_finite())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Error> {
        v.serialize(self)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn ours<T: Serialize + ?Sized>(v: &T) -> String {
        let mut out = Vec::new();
        write(&mut out, v).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn same<T: Serialize + ?Sized>(v: &T) {
        assert_eq!(ours(v), serde_json::to_string(v).unwrap());
    }

    #[test]
    fn every_ascii_byte_is_escaped_as_serde_json_escapes_it() {
        for b in 0u8..0x80 {
            let c = char::from(b);
            // At every place of strings of every length up to 40: each length takes
            // its own path (bytes, two halves, two words, blocks of sixteen) and the
            // last half, word or block overlaps the one before it.
            for len in 1..=40 {
                for at in 0..len {
                    let s = format!("{}{c}{}", "a".repeat(at), "z".repeat(len - 1 - at));
                    same(&s);
                }
            }
        }
        for len in 0..=40 {
            same(&"a".repeat(len));
        }
        same("héllo \u{2028} wörld \u{1F600}\"\\\n");
    }

    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(i64, bool),
        Struct { a: Option<u32>, b: &'static str },
    }

    #[derive(Serialize)]
    struct Inner {
        x: i128,
        y: u128,
        f: f64,
        g: f32,
        c: char,
    }

    #[derive(Serialize)]
    struct Outer {
        #[serde(flatten)]
        inner: Inner,
        list: Vec<E>,
        empty: Vec<u8>,
        unit: (),
        tuple: (u8, &'static str),
        #[serde(with = "serde_bytes_like")]
        raw: Vec<u8>,
        map: BTreeMap<i32, Vec<String>>,
        flags: BTreeMap<bool, u8>,
        nothing: Option<Inner>,
        #[serde(skip_serializing_if = "Option::is_none")]
        skipped: Option<u8>,
    }

    /// Bytes through `serialize_bytes`, as a byte-buffer type would write them.
    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    #[test]
    fn every_shape_is_written_as_serde_json_writes_it() {
        let v = Outer {
            inner: Inner {
                x: i128::MIN,
                y: u128::MAX,
                f: 1.5e300,
                g: f32::NAN,
                c: '"',
            },
            list: vec![
                E::Unit,
                E::New(7),
                E::Tuple(-3, true),
                E::Struct {
                    a: None,
                    b: "tab\there",
                },
            ],
            empty: vec![],
            unit: (),
            tuple: (1, "two"),
            raw: vec![0, 255, 16],
            map: BTreeMap::from([(-1, vec!["a\u{1}".into()]), (2, vec![])]),
            flags: BTreeMap::from([(false, 0), (true, 1)]),
            nothing: None,
            skipped: None,
        };
        same(&v);
        same(&serde_json::json!({"k": [1, "x", null, {"n": -0.0}], "": {}}));
        same(&format_args!("a{}b", "\"q\""));
    }

    /// Field names that need escaping, in a struct and a struct variant: the literal
    /// fast path must fall back to escaping them.
    #[derive(Serialize)]
    struct Renamed {
        #[serde(rename = "quote\"d")]
        a: u8,
        #[serde(rename = "back\\slash\ttab")]
        b: u8,
        #[serde(rename = "")]
        c: u8,
        #[serde(rename = "plain_name_longer_than_a_word")]
        d: Vec<RenamedVariant>,
    }

    #[derive(Serialize)]
    enum RenamedVariant {
        V {
            #[serde(rename = "ctl\u{1}")]
            x: u8,
            y: u8,
        },
    }

    #[test]
    fn field_names_are_escaped_when_they_need_it() {
        same(&Renamed {
            a: 1,
            b: 2,
            c: 3,
            d: vec![RenamedVariant::V { x: 4, y: 5 }],
        });
    }

    #[test]
    fn a_key_that_cannot_be_a_string_is_an_error() {
        let m = BTreeMap::from([(vec![1u8], 1u8)]);
        let mut out = Vec::new();
        let err = write(&mut out, &m).unwrap_err();
        assert_eq!(err.to_string(), "key must be a string");
        assert!(serde_json::to_string(&m).is_err());
        // Float keys that are not numbers: the same error text as serde_json's.
        let nan = [(f64::NAN, 1u8)];
        let err = write(&mut out, &Pairs(&nan)).unwrap_err();
        let theirs = serde_json::to_string(&Pairs(&nan)).unwrap_err();
        assert_eq!(err.to_string(), theirs.to_string());
    }

    /// A map from pairs, whatever the key type (floats have no `Ord`).
    struct Pairs<'a, K, V>(&'a [(K, V)]);

    impl<K: Serialize, V: Serialize> Serialize for Pairs<'_, K, V> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }

    #[test]
    fn option_and_float_keys_are_written_as_serde_json_writes_them() {
        same(&BTreeMap::from([(Some("a"), 1u8)]));
        let none: BTreeMap<Option<&str>, u8> = BTreeMap::from([(None, 1)]);
        assert!(write(&mut Vec::new(), &none).is_err());
        assert!(serde_json::to_string(&none).is_err());
        same(&BTreeMap::from([(Some(5u32), 1u8)]));
        same(&Pairs(&[(1.5f64, 1u8), (-0.0, 2), (1e21, 3), (5e-324, 4)]));
        same(&Pairs(&[(0.1f32, 2u8), (f32::MAX, 3)]));
    }

    /// Two objects merged in the text are what `#[serde(flatten)]` of both writes,
    /// empty ones and maps included; anything but an object is refused.
    #[test]
    fn merged_objects_are_flattened_objects() {
        #[derive(Serialize)]
        struct Empty {}
        #[derive(Serialize)]
        struct Tail<'a> {
            list: Vec<&'a str>,
            nested: Inner,
        }
        #[derive(Serialize)]
        struct Both<'a, A: Serialize, B: Serialize> {
            #[serde(flatten)]
            head: &'a A,
            #[serde(flatten)]
            tail: &'a B,
        }
        fn check<A: Serialize, B: Serialize>(head: &A, tail: &B) {
            let mut out = b"[".to_vec();
            write_merged(&mut out, head, tail).unwrap();
            let want = serde_json::to_string(&Both { head, tail }).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), format!("[{want}"));
        }
        let inner = Inner {
            x: -1,
            y: 2,
            f: 0.5,
            g: 1.5,
            c: '"',
        };
        let tail = Tail {
            list: vec!["a", "b\\"],
            nested: Inner {
                x: 3,
                y: 4,
                f: -0.0,
                g: 2.0,
                c: 'z',
            },
        };
        let map = BTreeMap::from([("k", 1u8), ("q\"", 2)]);
        check(&inner, &tail);
        check(&tail, &inner);
        check(&Empty {}, &tail);
        check(&inner, &Empty {});
        check(&Empty {}, &Empty {});
        check(&map, &inner);
        check(&inner, &BTreeMap::<String, u8>::new());
        for (head, tail) in [(&[1u8][..], &inner), (&[][..], &inner)] {
            let mut out = b"[".to_vec();
            assert!(write_merged(&mut out, head, tail).is_err());
            assert!(write_merged(&mut out, tail, head).is_err());
            assert_eq!(out, b"[", "nothing left behind");
        }
        assert!(write_merged(&mut Vec::new(), &inner, "text").is_err());
    }

    proptest! {
        #[test]
        fn any_string_is_escaped_as_serde_json_escapes_it(s in any::<String>()) {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }

        #[test]
        fn control_heavy_strings_too(bytes in proptest::collection::vec(0u8..0x80, 0..40)) {
            let s = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
        }
    }
}
