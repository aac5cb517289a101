//! A row of a list as the portal sent it, packed into one allocation: the form every fetched
//! row takes from the moment its page arrives, and the form the CRM cache stores, so a
//! cached row is read back without parsing JSON again.
//!
//! A `serde_json` map of a 16-field deal row costs some forty allocations (a key and a
//! value string each, tree nodes); packed it is one, a few hundred bytes. Nothing is lost that the conversion
//! into `domain` records reads: each field keeps its name and the kind of value the portal
//! served (null, boolean, number as the text JSON printed, string, or anything nested as
//! its JSON text), so [`super::wire::Row`] reads a packed row exactly as it read the map.
//!
//! The layout: how many fields, then field after field in the order of the map:
//!
//! ```text
//! row   := count:varint field*
//! field := key value
//! key   := k:u8 (k < 255: KEYS[k]) | 255 len:varint utf8      (a field name KEYS lacks)
//! value := 0 (null) | 1 (false) | 2 (true)
//!        | 3 len:varint utf8 (a number's JSON text) | 4 len:varint utf8 (a string)
//!        | 5 len:varint utf8 (an array or object, as JSON text)
//! ```
//!
//! `KEYS` is part of the cache's format: names are only ever appended to it (an old file's
//! indices keep their meaning), and a change to the layout is a new cache schema version.

use serde_json::{Map, Value};

/// Field names written as one byte: every field the client selects. Append only.
const KEYS: [&str; 44] = [
    "ID",
    "TITLE",
    "CATEGORY_ID",
    "STAGE_ID",
    "STAGE_SEMANTIC_ID",
    "CURRENCY_ID",
    "OPPORTUNITY",
    "LEAD_ID",
    "ASSIGNED_BY_ID",
    "DATE_CREATE",
    "DATE_MODIFY",
    "MOVED_TIME",
    "CLOSEDATE",
    "IS_RECURRING",
    "IS_RETURN_CUSTOMER",
    "SOURCE_ID",
    "STATUS_SEMANTIC_ID",
    "RESPONSIBLE_ID",
    "TYPE_ID",
    "DIRECTION",
    "COMPLETED",
    "CREATED",
    "LAST_UPDATED",
    "OWNER_ID",
    "CREATED_TIME",
    "PRODUCT_ID",
    "PRODUCT_NAME",
    "PRICE",
    "QUANTITY",
    "NAME",
    "LAST_NAME",
    "EMAIL",
    "ACTIVE",
    "UF_DEPARTMENT",
    "PARENT",
    "UF_HEAD",
    "SORT",
    "STATUS_ID",
    "ENTITY_ID",
    "SEMANTICS",
    "CURRENCY",
    "AMOUNT",
    "AMOUNT_CNT",
    "BASE",
];

/// Whether `key` is written as one byte (in `KEYS`): for the test that the selects fit.
#[cfg(test)]
pub(super) fn has_short_key(key: &str) -> bool {
    key_index(key).is_some()
}

/// `KEYS`' index of a field name.
fn key_index(key: &str) -> Option<u8> {
    static INDEX: std::sync::LazyLock<std::collections::HashMap<&'static str, u8>> =
        std::sync::LazyLock::new(|| KEYS.iter().enumerate().map(|(i, k)| (*k, i as u8)).collect());
    INDEX.get(key).copied()
}

const INLINE_KEY: u8 = 255;
const NULL: u8 = 0;
const FALSE: u8 = 1;
const TRUE: u8 = 2;
const NUMBER: u8 = 3;
const STRING: u8 = 4;
const JSON: u8 = 5;

/// One field's value as the portal served it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Field<'a> {
    Null,
    Bool(bool),
    /// A JSON number, as `serde_json` prints it.
    Number(&'a str),
    String(&'a str),
    /// An array or an object, as JSON text.
    Json(&'a str),
}

impl Field<'_> {
    /// The value as `serde_json` would hold it.
    pub fn to_value(self) -> Value {
        match self {
            Field::Null => Value::Null,
            Field::Bool(b) => Value::Bool(b),
            Field::Number(n) => serde_json::from_str(n).unwrap_or(Value::Null),
            Field::String(s) => Value::String(s.to_owned()),
            Field::Json(j) => serde_json::from_str(j).unwrap_or(Value::Null),
        }
    }
}

/// A packed row (see the module doc).
#[derive(Clone, PartialEq, Eq)]
pub struct PackedRow(Box<[u8]>);

impl std::fmt::Debug for PackedRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", Value::Object(self.to_map()))
    }
}

impl PackedRow {
    /// Packs a map.
    pub fn from_map(map: &Map<String, Value>) -> PackedRow {
        let mut out = Vec::with_capacity(16 * map.len() + 1);
        put_len(&mut out, map.len());
        for (key, value) in map {
            match key_index(key) {
                Some(i) => out.push(i),
                None => {
                    out.push(INLINE_KEY);
                    put_bytes(&mut out, key.as_bytes());
                }
            }
            match value {
                Value::Null => out.push(NULL),
                Value::Bool(false) => out.push(FALSE),
                Value::Bool(true) => out.push(TRUE),
                Value::Number(n) => {
                    out.push(NUMBER);
                    put_bytes(&mut out, n.to_string().as_bytes());
                }
                Value::String(s) => {
                    out.push(STRING);
                    put_bytes(&mut out, s.as_bytes());
                }
                nested => {
                    out.push(JSON);
                    put_bytes(&mut out, nested.to_string().as_bytes());
                }
            }
        }
        PackedRow(out.into_boxed_slice())
    }

    /// A row read back from its bytes (the cache file), checked: `Err` says what is wrong.
    pub fn from_bytes(bytes: Box<[u8]>) -> Result<PackedRow, String> {
        let row = PackedRow(bytes);
        let (count, mut at) = take_len(&row.0, 0).ok_or("a packed row without its field count")?;
        for _ in 0..count {
            at = row.field_at(at).ok_or_else(|| format!("a broken packed row at byte {at}"))?.2;
        }
        if at != row.0.len() {
            return Err(format!("a packed row with {} bytes after its {count} fields", row.0.len() - at));
        }
        Ok(row)
    }

    /// The bytes, for the cache file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Box<[u8]> {
        self.0
    }

    /// The value of field `key`, if the row has it. Only the field asked for is decoded;
    /// the others are stepped over by their lengths (a conversion asks a row for some twenty
    /// fields, the cache's filters for one or two).
    pub fn get(&self, key: &str) -> Option<Field<'_>> {
        let want = key_index(key);
        let bytes = &self.0;
        let (count, mut at) = take_len(bytes, 0)?;
        for _ in 0..count {
            let start = at;
            let hit = match *bytes.get(at)? {
                INLINE_KEY => {
                    let (raw, next) = take_bytes(bytes, at + 1)?;
                    at = next;
                    // Also when `key` is in KEYS: a row written before it was appended.
                    raw == key.as_bytes()
                }
                k => {
                    at += 1;
                    want == Some(k)
                }
            };
            if hit {
                return self.field_at(start).map(|(_, value, _)| value);
            }
            at = match *bytes.get(at)? {
                NULL | FALSE | TRUE => at + 1,
                _ => take_bytes(bytes, at + 1)?.1,
            };
        }
        None
    }

    /// Every field, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&str, Field<'_>)> {
        let mut at = take_len(&self.0, 0).map_or(usize::MAX, |(_, at)| at);
        std::iter::from_fn(move || {
            if at >= self.0.len() {
                return None;
            }
            let (key, value, next) = self.field_at(at)?;
            at = next;
            Some((key, value))
        })
    }

    /// The row as a map again.
    pub fn to_map(&self) -> Map<String, Value> {
        self.fields().map(|(k, v)| (k.to_owned(), v.to_value())).collect()
    }

    /// The field starting at byte `at`: its key, its value and where the next one starts;
    /// `None` when the bytes there are not a field.
    fn field_at(&self, at: usize) -> Option<(&str, Field<'_>, usize)> {
        let bytes = &self.0;
        let (key, at) = match *bytes.get(at)? {
            INLINE_KEY => {
                let (raw, next) = take_bytes(bytes, at + 1)?;
                (std::str::from_utf8(raw).ok()?, next)
            }
            k => (*KEYS.get(usize::from(k))?, at + 1),
        };
        let tag = *bytes.get(at)?;
        let at = at + 1;
        let (value, next) = match tag {
            NULL => (Field::Null, at),
            FALSE => (Field::Bool(false), at),
            TRUE => (Field::Bool(true), at),
            NUMBER | STRING | JSON => {
                let (raw, next) = take_bytes(bytes, at)?;
                let text = std::str::from_utf8(raw).ok()?;
                let value = match tag {
                    NUMBER => Field::Number(text),
                    STRING => Field::String(text),
                    _ => Field::Json(text),
                };
                (value, next)
            }
            _ => return None,
        };
        Some((key, value, next))
    }
}

/// A length (LEB128) and the bytes.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// A length, LEB128.
fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let low = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(low);
            break;
        }
        out.push(low | 0x80);
    }
}

/// The bytes [`put_bytes`] wrote at `at`, and where they end.
fn take_bytes(bytes: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let (n, at) = take_len(bytes, at)?;
    let end = at.checked_add(n)?;
    Some((bytes.get(at..end)?, end))
}

/// The length [`put_len`] wrote at `at`, and where it ends.
fn take_len(bytes: &[u8], mut at: usize) -> Option<(usize, usize)> {
    let mut n: usize = 0;
    let mut shift = 0;
    loop {
        let b = *bytes.get(at)?;
        at += 1;
        if shift > 56 {
            return None;
        }
        n |= usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Some((n, at));
        }
    }
}

/// A list of packed rows as one byte string (a deal's product rows in the cache): each row
/// with its length before it.
pub fn pack_list(rows: &[PackedRow]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.iter().map(|r| r.0.len() + 2).sum());
    for row in rows {
        put_bytes(&mut out, &row.0);
    }
    out
}

/// The rows [`pack_list`] wrote, checked.
pub fn unpack_list(bytes: &[u8]) -> Result<Vec<PackedRow>, String> {
    let mut rows = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let (raw, next) = take_bytes(bytes, at).ok_or_else(|| format!("a broken list of packed rows at byte {at}"))?;
        rows.push(PackedRow::from_bytes(raw.into())?);
        at = next;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_kind_of_value_comes_back_as_it_was_served() {
        let long = "я".repeat(200);
        let map = json!({"ID": "12", "OPPORTUNITY": 1500.5, "BIG": 18446744073709551615u64, "NEG": -3,
                         "IS_RECURRING": "N", "ACTIVE": true, "NO": false, "CLOSEDATE": null, "TITLE": long,
                         "UF_DEPARTMENT": [1, "3"], "UF_CRM_1700000000": {"a": [1, {"b": null}]}, "": "empty key",
                         "EMOJI_🙂": "🙂\u{0}\u{7}"});
        let map = map.as_object().unwrap();
        let row = PackedRow::from_map(map);
        assert_eq!(&row.to_map(), map);
        assert_eq!(row.get("ID"), Some(Field::String("12")));
        assert_eq!(row.get("OPPORTUNITY"), Some(Field::Number("1500.5")));
        assert_eq!(row.get("BIG"), Some(Field::Number("18446744073709551615")));
        assert_eq!(row.get("ACTIVE"), Some(Field::Bool(true)));
        assert_eq!(row.get("CLOSEDATE"), Some(Field::Null));
        assert_eq!(row.get("UF_DEPARTMENT"), Some(Field::Json("[1,\"3\"]")));
        assert_eq!(row.get("missing"), None);
        assert_eq!(row.get("EMOJI_🙂"), Some(Field::String("🙂\u{0}\u{7}")));
        assert_eq!(row.get(""), Some(Field::String("empty key")));
        for (key, value) in row.fields() {
            assert_eq!(row.get(key), Some(value), "{key}");
        }
        let again = PackedRow::from_bytes(row.as_bytes().into()).unwrap();
        assert_eq!(again, row);
        assert!(row.as_bytes().len() < 600, "{}", row.as_bytes().len());
    }

    #[test]
    fn every_key_has_its_own_index() {
        for (i, key) in KEYS.iter().enumerate() {
            assert_eq!(key_index(key), Some(i as u8), "{key}");
        }
        assert!(KEYS.len() < usize::from(INLINE_KEY));
    }

    #[test]
    fn broken_bytes_are_refused_not_read() {
        let row = PackedRow::from_map(json!({"ID": "7", "TITLE": "Deal"}).as_object().unwrap());
        let bytes = row.as_bytes();
        for cut in 1..bytes.len() {
            assert!(PackedRow::from_bytes(bytes[..cut].into()).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(PackedRow::from_bytes(longer.into()).is_err(), "a byte after the last field");
        assert!(PackedRow::from_bytes(vec![1, 200, 0].into()).is_err(), "an index past KEYS");
        assert!(PackedRow::from_bytes(vec![1, 0, 9].into()).is_err(), "an unknown tag");
        assert!(PackedRow::from_bytes(vec![1, 0, 4, 2, 0xff, 0xfe].into()).is_err(), "not UTF-8");
        let huge = vec![1, 0, 4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(PackedRow::from_bytes(huge.into()).is_err(), "a length past the end");
        assert!(PackedRow::from_bytes(Vec::new().into()).is_err(), "no field count");
        assert_eq!(PackedRow::from_bytes(vec![0].into()).unwrap().fields().count(), 0);
        let list = pack_list(&[row.clone(), PackedRow::from_map(&Map::new()), row.clone()]);
        assert_eq!(unpack_list(&list).unwrap(), vec![row.clone(), PackedRow::from_map(&Map::new()), row]);
        assert!(unpack_list(&list[..list.len() - 1]).is_err());
    }
}
