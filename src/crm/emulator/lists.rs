//! A list method as a portal serves it: the generic filter prefixes (`>=`, `!@`, `%`, …)
//! compared as numbers, instants or text, any order, `start` paging with `next`/`total`
//! and `start=-1`, and `select` with `*` and `UF_*`; and PHP's query strings, in which
//! `batch` commands and form bodies arrive.

use std::cmp::Ordering;

use chrono::DateTime;
use serde_json::{Map, Value, json};

use super::{Done, Fail, Record, record_id};

/// A parameter by name, any case (`filter`, `FILTER`).
pub(super) fn param<'a>(params: &'a Value, name: &str) -> Option<&'a Value> {
    let o = params.as_object()?;
    o.get(name).or_else(|| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v))
}

/// A scalar as text; `null` as `""`.
pub(super) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "Y" } else { "N" }.to_owned(),
        other => other.to_string(),
    }
}

/// The elements of a list parameter: an array, a PHP map `{"0": .., "1": ..}`, or one value.
pub(super) fn elements(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a.clone(),
        Value::Object(m) => m.values().cloned().collect(),
        other => vec![other.clone()],
    }
}

/// Legacy methods serve every scalar as a string.
pub(super) fn legacy(r: &Record) -> Record {
    r.iter()
        .map(|(k, v)| {
            let v = match v {
                Value::Number(n) => Value::String(n.to_string()),
                other => other.clone(),
            };
            (k.clone(), v)
        })
        .collect()
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Typing {
    Legacy,
    AsStored,
}

/// One filter condition.
struct Cond {
    field: String,
    op: Op,
    values: Vec<Key>,
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    In,
    NotIn,
    Like,
    NotLike,
}

/// A value prepared for comparison: as a number and as an instant where it parses.
struct Key {
    text: String,
    number: Option<f64>,
    instant: Option<i64>,
}

impl Key {
    fn of(v: &Value) -> Key {
        let text = text(v);
        let t = text.trim();
        let number = t.parse::<f64>().ok().filter(|f| f.is_finite());
        let instant = if number.is_none() && t.len() >= 19 {
            DateTime::parse_from_rfc3339(t).ok().map(|d| d.timestamp_micros())
        } else {
            None
        };
        Key { text, number, instant }
    }

    fn cmp(&self, other: &Key) -> Ordering {
        if let (Some(a), Some(b)) = (self.number, other.number) {
            return a.partial_cmp(&b).unwrap_or(Ordering::Equal);
        }
        if let (Some(a), Some(b)) = (self.instant, other.instant) {
            return a.cmp(&b);
        }
        self.text.cmp(&other.text)
    }
}

fn parse_conditions(filter: Option<&Value>) -> Vec<Cond> {
    let Some(Value::Object(m)) = filter else { return Vec::new() };
    m.iter()
        .map(|(key, v)| {
            const PREFIXES: [(&str, Op); 14] = [
                ("!=%", Op::NotLike),
                ("!%=", Op::NotLike),
                (">=", Op::Ge),
                ("<=", Op::Le),
                ("!@", Op::NotIn),
                ("!=", Op::Ne),
                ("=%", Op::Like),
                ("%=", Op::Like),
                ("!%", Op::NotLike),
                (">", Op::Gt),
                ("<", Op::Lt),
                ("@", Op::In),
                ("%", Op::Like),
                ("!", Op::Ne),
            ];
            let (op, field) = PREFIXES
                .iter()
                .find_map(|(p, op)| key.strip_prefix(p).map(|f| (*op, f)))
                .unwrap_or_else(|| (Op::Eq, key.strip_prefix('=').unwrap_or(key)));
            let values: Vec<Key> = match (op, v) {
                (Op::In | Op::NotIn, v) => elements(v).iter().map(Key::of).collect(),
                // An unprefixed array is IN, as user.get and department.get take it.
                (Op::Eq, Value::Array(_)) => elements(v).iter().map(Key::of).collect(),
                (_, v) => vec![Key::of(v)],
            };
            let op = if op == Op::Eq && v.is_array() { Op::In } else { op };
            Cond { field: field.to_owned(), op, values }
        })
        .collect()
}

fn like(hay: &str, pattern: &str) -> bool {
    let hay = hay.to_lowercase();
    let pattern = pattern.to_lowercase();
    if !pattern.contains('%') {
        return hay.contains(&pattern);
    }
    // `%` is a wildcard: every piece must appear in order.
    let mut rest = hay.as_str();
    let parts: Vec<&str> = pattern.split('%').collect();
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        match rest.find(part) {
            Some(at) if i > 0 || at == 0 => rest = &rest[at + part.len()..],
            _ => return false,
        }
    }
    parts.last().is_some_and(|p| p.is_empty()) || rest.is_empty()
}

fn matches(row: &Record, conds: &[Cond]) -> bool {
    conds.iter().all(|c| {
        let cell = row.get(&c.field).cloned().unwrap_or(Value::Null);
        // A multiple field (UF_DEPARTMENT) matches when any of its values does.
        let cells: Vec<Key> = match &cell {
            Value::Array(a) => a.iter().map(Key::of).collect(),
            Value::Bool(b) => vec![Key::of(&Value::String(if *b { "Y" } else { "N" }.into()))],
            other => vec![Key::of(other)],
        };
        let flag_eq = |k: &Key, v: &Key| {
            if matches!(cell, Value::Bool(_)) {
                let yes = |s: &str| matches!(s, "Y" | "true" | "1");
                yes(&k.text) == yes(&v.text)
            } else {
                k.cmp(v) == Ordering::Equal
            }
        };
        let any = |f: &dyn Fn(&Key) -> bool| cells.iter().any(f);
        let v0 = &c.values[0];
        match c.op {
            Op::Eq => any(&|k| flag_eq(k, v0)),
            Op::Ne => !any(&|k| flag_eq(k, v0)),
            Op::Gt => any(&|k| !k.text.is_empty() && k.cmp(v0) == Ordering::Greater),
            Op::Ge => any(&|k| !k.text.is_empty() && k.cmp(v0) != Ordering::Less),
            Op::Lt => any(&|k| !k.text.is_empty() && k.cmp(v0) == Ordering::Less),
            Op::Le => any(&|k| !k.text.is_empty() && k.cmp(v0) != Ordering::Greater),
            Op::In => any(&|k| c.values.iter().any(|v| flag_eq(k, v))),
            Op::NotIn => !any(&|k| c.values.iter().any(|v| flag_eq(k, v))),
            Op::Like => any(&|k| like(&k.text, &v0.text)),
            Op::NotLike => !any(&|k| like(&k.text, &v0.text)),
        }
    })
}

/// A list method: filter, order, `start` paging (50 a page; `-1` = no count, no `next`),
/// select.
pub(super) fn list(rows: &[Record], params: &Value, typing: Typing) -> Result<Done, Fail> {
    let conds = parse_conditions(param(params, "filter"));
    let order: Vec<(String, bool)> = match param(params, "order") {
        Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), !text(v).eq_ignore_ascii_case("DESC"))).collect(),
        _ => Vec::new(),
    };
    let start: i64 = param(params, "start").map(text).and_then(|s| s.trim().parse().ok()).unwrap_or(0);
    let by_id_asc = order.is_empty() || (order.len() == 1 && order[0].0.eq_ignore_ascii_case("ID") && order[0].1);
    let page_of = |i: usize| i;
    let (page, total): (Vec<&Record>, u64) = if by_id_asc {
        // Rows are kept in ID order: a `>ID` bound starts the scan by binary search, and
        // `start=-1` stops after one page, as the fast path on a real portal does.
        let from = conds
            .iter()
            .filter(|c| c.field == "ID" && matches!(c.op, Op::Gt | Op::Ge))
            .filter_map(|c| c.values[0].number)
            .map(|n| rows.partition_point(|r| (record_id(r) as f64) < n))
            .max()
            .unwrap_or(0);
        let hits = rows[from..].iter().filter(|r| matches(r, &conds));
        if start < 0 {
            (hits.take(50).collect(), 0)
        } else {
            let all: Vec<&Record> = hits.collect();
            let total = all.len() as u64;
            (all.into_iter().skip(page_of(start as usize)).take(50).collect(), total)
        }
    } else {
        let mut all: Vec<&Record> = rows.iter().filter(|r| matches(r, &conds)).collect();
        all.sort_by(|a, b| {
            order
                .iter()
                .map(|(field, asc)| {
                    let (x, y) =
                        (Key::of(a.get(field).unwrap_or(&Value::Null)), Key::of(b.get(field).unwrap_or(&Value::Null)));
                    if *asc { x.cmp(&y) } else { y.cmp(&x) }
                })
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        let total = if start < 0 { 0 } else { all.len() as u64 };
        (all.into_iter().skip(start.max(0) as usize).take(50).collect(), total)
    };
    let select: Vec<String> =
        param(params, "select").map(|s| elements(s).iter().map(text).collect()).unwrap_or_default();
    let all_fields = select.is_empty() || select.iter().any(|s| s == "*");
    let uf = select.iter().any(|s| s == "UF_*");
    let out: Vec<Value> = page
        .into_iter()
        .map(|r| {
            let picked: Record = if all_fields && (uf || select.is_empty()) {
                r.clone()
            } else {
                r.iter()
                    .filter(|(k, _)| {
                        k.as_str() == "ID"
                            || k.as_str() == "id"
                            || select.contains(k)
                            || (all_fields && !k.starts_with("UF_"))
                            || (uf && k.starts_with("UF_"))
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            };
            Value::Object(if typing == Typing::Legacy { legacy(&picked) } else { picked })
        })
        .collect();
    let next = (start >= 0 && (start as u64 + 50) < total).then(|| start as u64 + 50);
    Ok(Done { result: Value::Array(out), total: Some(total), next })
}

/// PHP's `parse_str`: `filter[>ID]=5&select[]=ID&select[]=TITLE` into nested objects
/// (lists as `{"0": .., "1": ..}`, as PHP holds them).
pub fn parse_php_query(query: &str) -> Value {
    let mut root = Map::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let (base, rest) = match key.find('[') {
            Some(i) if key.ends_with(']') => (&key[..i], &key[i + 1..key.len() - 1]),
            _ => (key.as_ref(), ""),
        };
        if base.is_empty() {
            continue;
        }
        let mut path: Vec<&str> = vec![base];
        if key.contains('[') && key.ends_with(']') {
            path.extend(rest.split("]["));
        }
        let mut node = &mut root;
        for (i, part) in path.iter().enumerate() {
            let part = if part.is_empty() { node.len().to_string() } else { (*part).to_owned() };
            if i + 1 == path.len() {
                node.insert(part, Value::String(value.to_string()));
                break;
            }
            let child = node.entry(part).or_insert_with(|| json!({}));
            if !child.is_object() {
                *child = json!({});
            }
            node = child.as_object_mut().expect("just made an object");
        }
    }
    Value::Object(root)
}

/// Replaces `$result[cmd][path..]` in string parameters with earlier commands' results;
/// an unresolvable reference becomes `""`, as on a real portal.
pub(super) fn substitute(v: &mut Value, results: &Map<String, Value>) {
    match v {
        Value::Object(m) => m.values_mut().for_each(|x| substitute(x, results)),
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, results)),
        Value::String(s) if s.starts_with("$result[") => {
            let mut node: Option<&Value> = None;
            let mut rest = &s["$result".len()..];
            let mut first = true;
            while let Some(stripped) = rest.strip_prefix('[') {
                let Some(end) = stripped.find(']') else { break };
                let seg = &stripped[..end];
                node = if first {
                    results.get(seg)
                } else {
                    node.and_then(|n| match n {
                        Value::Object(m) => m.get(seg),
                        Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                        _ => None,
                    })
                };
                first = false;
                rest = &stripped[end + 1..];
            }
            *v = match node {
                Some(Value::String(x)) => Value::String(x.clone()),
                Some(x @ (Value::Number(_) | Value::Bool(_))) => Value::String(text(x)),
                Some(x @ (Value::Array(_) | Value::Object(_))) => x.clone(),
                _ => Value::String(String::new()),
            };
        }
        _ => {}
    }
}
