//! AMF0 (Action Message Format, AMF0 specification 2006, section 2), bounded: the values RTMP commands
//! and data messages carry.
//!
//! The reader is iterative with an explicit stack limited to [`MAX_DEPTH`] open objects and arrays, so
//! no input can overflow the stack (rml_amf0 0.3 recursed without a limit: a few hundred kilobytes of
//! nested arrays aborted the process), it never allocates more than the input holds, and it returns a
//! typed [`Amf0Error`] for anything malformed instead of panicking.
//!
//! It reads what rml_amf0 read the way rml_amf0 read it, so commands are understood as before: values
//! follow each other until the input ends or an object-end marker stands where a value would start; an
//! ECMA array is an object (its count ignored, it ends with the object-end marker like encoders write
//! it); a strict array ends early at the end of the input or at an object-end marker. Beyond rml_amf0 it
//! also reads long strings, dates and `undefined` in any position (rml_amf0 refused the first two).

/// Nesting of objects and arrays allowed; metadata from encoders nests two or three deep.
pub const MAX_DEPTH: usize = 32;

/// Type markers (section 2.1).
mod marker {
    pub const NUMBER: u8 = 0x00;
    pub const BOOLEAN: u8 = 0x01;
    pub const STRING: u8 = 0x02;
    pub const OBJECT: u8 = 0x03;
    pub const NULL: u8 = 0x05;
    pub const UNDEFINED: u8 = 0x06;
    pub const ECMA_ARRAY: u8 = 0x08;
    pub const OBJECT_END: u8 = 0x09;
    pub const STRICT_ARRAY: u8 = 0x0a;
    pub const DATE: u8 = 0x0b;
    pub const LONG_STRING: u8 = 0x0c;
}

/// One AMF0 value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Number (2.2): an IEEE 754 double.
    Number(f64),
    /// Boolean (2.3).
    Boolean(bool),
    /// String (2.4) or long string (2.14); the writer picks the form by length.
    String(String),
    /// Anonymous object (2.5): properties in the order they were sent.
    Object(Vec<(String, Value)>),
    /// Null (2.7).
    Null,
    /// Undefined (2.8).
    Undefined,
    /// ECMA array (2.10): an associative array, properties in order.
    EcmaArray(Vec<(String, Value)>),
    /// Strict array (2.12).
    StrictArray(Vec<Value>),
    /// Date (2.13): milliseconds since the Unix epoch, and a time zone the spec says to ignore.
    Date {
        /// Milliseconds since 1970-01-01 UTC.
        millis: f64,
        /// Reserved time-zone field, as sent.
        timezone: i16,
    },
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number, if this is one.
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an object or ECMA array (rml_amf0 read both as one kind).
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            _ => None,
        }
    }

    /// The value of property `key` of an object or ECMA array; the last one if sent twice (as a map
    /// would keep it).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// An object from `(key, value)` pairs, in order.
    pub fn object<K: Into<String>>(props: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// A string value.
    pub fn string(s: impl Into<String>) -> Value {
        Value::String(s.into())
    }
}

/// Why AMF0 bytes cannot be read, or a value cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Amf0Error {
    /// The input ends inside a value.
    #[error("truncated value")]
    Truncated,
    /// A marker this reader does not know (references, AMF3 switch, XML, typed objects, ...).
    #[error("unknown AMF0 marker {0:#04x}")]
    UnknownMarker(u8),
    /// More than [`MAX_DEPTH`] objects and arrays open at once.
    #[error("objects nested too deeply")]
    TooDeep,
    /// An empty property name not followed by the object-end marker.
    #[error("object property without a name")]
    NamelessProperty,
    /// A property name followed by the object-end marker.
    #[error("object property without a value")]
    MissingValue,
    /// A string that is not UTF-8 (AMF0 strings must be).
    #[error("string is not UTF-8")]
    NotUtf8,
    /// A property name longer than 65535 bytes cannot be written.
    #[error("property name of {0} bytes is longer than 65535")]
    NameTooLong(usize),
}

/// A container being read: an object (or ECMA array) waiting for its next property, or a strict array
/// with `left` elements still announced.
enum Open {
    Object {
        ecma: bool,
        props: Vec<(String, Value)>,
        key: Option<String>,
    },
    Array {
        items: Vec<Value>,
        left: u32,
    },
}

/// Reads every top-level value of `data`; see the module doc for where reading stops.
pub fn read_all(data: &[u8]) -> Result<Vec<Value>, Amf0Error> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Open> = Vec::new();
    let mut values = Vec::new();
    loop {
        // Where the next value goes, and its marker (or what closes a container).
        let marker = match stack.last_mut() {
            None => match r.peek() {
                None | Some(marker::OBJECT_END) => return Ok(values),
                Some(m) => {
                    r.pos += 1;
                    m
                }
            },
            Some(Open::Object { key, .. }) => {
                let len = usize::from(r.u16()?);
                if len == 0 {
                    if r.u8()? != marker::OBJECT_END {
                        return Err(Amf0Error::NamelessProperty);
                    }
                    let done = close(stack.pop());
                    attach(&mut stack, &mut values, done);
                    continue;
                }
                *key = Some(r.utf8(len)?);
                match r.u8()? {
                    marker::OBJECT_END => return Err(Amf0Error::MissingValue),
                    m => m,
                }
            }
            Some(Open::Array { left, .. }) => {
                if *left == 0 {
                    let done = close(stack.pop());
                    attach(&mut stack, &mut values, done);
                    continue;
                }
                *left -= 1;
                match r.peek() {
                    None | Some(marker::OBJECT_END) => {
                        // rml_amf0 ends the array here (consuming the end marker), and so do we.
                        if r.peek().is_some() {
                            r.pos += 1;
                        }
                        let done = close(stack.pop());
                        attach(&mut stack, &mut values, done);
                        continue;
                    }
                    Some(m) => {
                        r.pos += 1;
                        m
                    }
                }
            }
        };
        let value = match marker {
            marker::NUMBER => Value::Number(r.f64()?),
            // Only 1 is true, as rml_amf0 read it (the spec says any non-zero; encoders write 1).
            marker::BOOLEAN => Value::Boolean(r.u8()? == 1),
            marker::STRING => {
                let len = usize::from(r.u16()?);
                Value::String(r.utf8(len)?)
            }
            marker::LONG_STRING => {
                let len = r.u32()? as usize;
                Value::String(r.utf8(len)?)
            }
            marker::NULL => Value::Null,
            marker::UNDEFINED => Value::Undefined,
            marker::DATE => {
                let millis = r.f64()?;
                let timezone = r.u16()? as i16;
                Value::Date { millis, timezone }
            }
            marker::OBJECT | marker::ECMA_ARRAY | marker::STRICT_ARRAY => {
                if stack.len() >= MAX_DEPTH {
                    return Err(Amf0Error::TooDeep);
                }
                stack.push(match marker {
                    marker::OBJECT => Open::Object {
                        ecma: false,
                        props: Vec::new(),
                        key: None,
                    },
                    marker::ECMA_ARRAY => {
                        r.u32()?;
                        Open::Object {
                            ecma: true,
                            props: Vec::new(),
                            key: None,
                        }
                    }
                    // The count is not trusted for the allocation: each element takes input bytes.
                    _ => Open::Array {
                        items: Vec::new(),
                        left: r.u32()?,
                    },
                });
                continue;
            }
            m => return Err(Amf0Error::UnknownMarker(m)),
        };
        attach(&mut stack, &mut values, value);
    }
}

/// The value a finished container makes.
fn close(open: Option<Open>) -> Value {
    match open {
        Some(Open::Object {
            ecma: true, props, ..
        }) => Value::EcmaArray(props),
        Some(Open::Object { props, .. }) => Value::Object(props),
        Some(Open::Array { items, .. }) => Value::StrictArray(items),
        None => Value::Null,
    }
}

/// Puts a finished value where it belongs: in the innermost open container, or at the top level.
fn attach(stack: &mut [Open], values: &mut Vec<Value>, value: Value) {
    match stack.last_mut() {
        None => values.push(value),
        Some(Open::Object { props, key, .. }) => {
            props.push((key.take().unwrap_or_default(), value))
        }
        Some(Open::Array { items, .. }) => items.push(value),
    }
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Amf0Error> {
        let end = self.pos.checked_add(n).ok_or(Amf0Error::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(Amf0Error::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        Ok(f64::from_be_bytes(self.array()?))
    }

    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| Amf0Error::NotUtf8)
    }
}

/// Appends `value` in AMF0 (strings longer than 65535 bytes as long strings).
pub fn write(value: &Value, out: &mut Vec<u8>) -> Result<(), Amf0Error> {
    match value {
        Value::Number(n) => {
            out.push(marker::NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => out.extend_from_slice(&[marker::BOOLEAN, u8::from(*b)]),
        Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(marker::STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => {
                out.push(marker::LONG_STRING);
                // A string of 4 GiB cannot reach here: RTMP messages are at most 16 MiB.
                out.extend_from_slice(&(s.len() as u32).to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        },
        Value::Object(props) => {
            out.push(marker::OBJECT);
            write_properties(props, out)?;
        }
        Value::EcmaArray(props) => {
            out.push(marker::ECMA_ARRAY);
            out.extend_from_slice(&(props.len() as u32).to_be_bytes());
            write_properties(props, out)?;
        }
        Value::Null => out.push(marker::NULL),
        Value::Undefined => out.push(marker::UNDEFINED),
        Value::StrictArray(items) => {
            out.push(marker::STRICT_ARRAY);
            out.extend_from_slice(&(items.len() as u32).to_be_bytes());
            for item in items {
                write(item, out)?;
            }
        }
        Value::Date { millis, timezone } => {
            out.push(marker::DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
    }
    Ok(())
}

fn write_properties(props: &[(String, Value)], out: &mut Vec<u8>) -> Result<(), Amf0Error> {
    for (key, value) in props {
        let len = u16::try_from(key.len()).map_err(|_| Amf0Error::NameTooLong(key.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(key.as_bytes());
        write(value, out)?;
    }
    out.extend_from_slice(&[0, 0, marker::OBJECT_END]);
    Ok(())
}

/// Appends every value of `values` in order.
pub fn write_all(values: &[Value], out: &mut Vec<u8>) -> Result<(), Amf0Error> {
    values.iter().try_for_each(|v| write(v, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rml_rtmp::rml_amf0::{self, Amf0Value};

    fn sample() -> Vec<Value> {
        vec![
            Value::string("connect"),
            Value::Number(1.0),
            Value::object([
                ("app", Value::string("live")),
                ("flag", Value::Boolean(true)),
                ("nothing", Value::Null),
                ("undef", Value::Undefined),
                (
                    "list",
                    Value::StrictArray(vec![Value::string("hvc1"), Value::Number(2.5)]),
                ),
                (
                    "map",
                    Value::EcmaArray(vec![("k".into(), Value::object([("x", Value::Null)]))]),
                ),
                (
                    "when",
                    Value::Date {
                        millis: 1.5e12,
                        timezone: -60,
                    },
                ),
            ]),
            Value::string("ü".repeat(40_000)),
        ]
    }

    #[test]
    fn values_round_trip() {
        let mut out = Vec::new();
        write_all(&sample(), &mut out).expect("writable");
        assert_eq!(read_all(&out), Ok(sample()));
        // 80 000 bytes: written as a long string.
        let long = &sample()[3..];
        let mut out = Vec::new();
        write_all(long, &mut out).expect("writable");
        assert_eq!(out[0], marker::LONG_STRING);
    }

    #[test]
    fn reads_what_rml_amf0_writes_and_rml_amf0_reads_what_we_write() {
        let theirs = vec![
            Amf0Value::Utf8String("publish".into()),
            Amf0Value::Number(3.0),
            Amf0Value::Null,
            Amf0Value::Object(
                [
                    ("a".to_string(), Amf0Value::Boolean(false)),
                    (
                        "b".to_string(),
                        Amf0Value::StrictArray(vec![Amf0Value::Undefined]),
                    ),
                ]
                .into(),
            ),
        ];
        let bytes = rml_amf0::serialize(&theirs).expect("rml serializes");
        let ours = read_all(&bytes).expect("we read it");
        assert_eq!(ours.len(), 4);
        assert_eq!(ours[0], Value::string("publish"));
        assert_eq!(ours[3].get("a"), Some(&Value::Boolean(false)));
        assert_eq!(
            ours[3].get("b"),
            Some(&Value::StrictArray(vec![Value::Undefined]))
        );
        let mut out = Vec::new();
        write_all(&ours, &mut out).expect("writable");
        let back = rml_amf0::deserialize(&mut std::io::Cursor::new(out)).expect("rml reads it");
        assert_eq!(back, theirs);
    }

    #[test]
    fn where_reading_stops_is_where_rml_amf0_stopped() {
        // A top-level object-end marker ends the values; a strict array announcing more than it has
        // ends at the end of the input; an ECMA array's count is ignored.
        assert_eq!(
            read_all(&[5, 9, 5]),
            Ok(vec![Value::Null]),
            "top-level end marker"
        );
        assert_eq!(
            read_all(&[10, 0, 0, 0, 9, 5]),
            Ok(vec![Value::StrictArray(vec![Value::Null])])
        );
        assert_eq!(
            read_all(&[8, 0, 0, 0, 7, 0, 1, b'k', 5, 0, 0, 9]),
            Ok(vec![Value::EcmaArray(vec![("k".into(), Value::Null)])])
        );
    }

    #[test]
    fn hostile_inputs_are_typed_errors() {
        // 100 000 nested strict arrays: refused at MAX_DEPTH, not a stack overflow.
        let deep: Vec<u8> = std::iter::repeat_n([10u8, 0, 0, 0, 1], 100_000)
            .flatten()
            .collect();
        assert_eq!(read_all(&deep), Err(Amf0Error::TooDeep));
        let deep_objects: Vec<u8> = std::iter::once(3u8)
            .chain(std::iter::repeat_n([0u8, 1, b'k', 3], 100_000).flatten())
            .collect();
        assert_eq!(read_all(&deep_objects), Err(Amf0Error::TooDeep));
        // 31 levels read fine.
        let mut ok: Vec<u8> = std::iter::repeat_n([10u8, 0, 0, 0, 1], MAX_DEPTH)
            .flatten()
            .collect();
        ok.push(5);
        assert!(read_all(&ok).is_ok());
        // Every truncation of a valid encoding is an error or a shorter reading, never a panic.
        let mut full = Vec::new();
        write_all(&sample()[..3], &mut full).expect("writable");
        for cut in 0..full.len() {
            let _ = read_all(&full[..cut]);
        }
        assert_eq!(read_all(&[0, 1, 2]), Err(Amf0Error::Truncated));
        assert_eq!(read_all(&[2, 0, 9, b'a']), Err(Amf0Error::Truncated));
        assert_eq!(
            read_all(&[12, 0xff, 0xff, 0xff, 0xff]),
            Err(Amf0Error::Truncated)
        );
        assert_eq!(read_all(&[2, 0, 2, 0xff, 0xfe]), Err(Amf0Error::NotUtf8));
        assert_eq!(read_all(&[7, 0, 1]), Err(Amf0Error::UnknownMarker(7)));
        assert_eq!(read_all(&[3, 0, 0, 5]), Err(Amf0Error::NamelessProperty));
        assert_eq!(read_all(&[3, 0, 1, b'k', 9]), Err(Amf0Error::MissingValue));
        // A strict array announcing 4 billion elements allocates nothing for them.
        assert_eq!(
            read_all(&[10, 0xff, 0xff, 0xff, 0xff, 5]),
            Ok(vec![Value::StrictArray(vec![Value::Null])])
        );
        // Arbitrary bytes: never a panic.
        let mut x = 0x2545_f491_u32;
        for _ in 0..2_000 {
            let bytes: Vec<u8> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x % 14) as u8
                })
                .collect();
            let _ = read_all(&bytes);
        }
    }

    #[test]
    fn names_longer_than_a_u16_cannot_be_written() {
        let v = Value::object([("k".repeat(70_000), Value::Null)]);
        assert_eq!(
            write(&v, &mut Vec::new()),
            Err(Amf0Error::NameTooLong(70_000))
        );
    }
}
