//! Bitrix24's wire format and its conversion into `domain` records.
//!
//! A real portal serves numbers as strings or as numbers, empty values as `""` or `null`,
//! flags as `Y`/`N` (or JSON booleans in `user.get`), empty maps as `[]` and maps with keys
//! `0..n` as arrays (PHP's `json_encode`), ids as strings or integers, and dates as ISO 8601
//! with an offset (see tests/data/bitrix24-real-responses). Everything here accepts every such variant.
//!
//! Every string of a record passes [`Row::text`], which is where CRM strings enter
//! salespulse: control characters and what XML cannot hold are taken out there
//! ([`crate::text::crm_text`]: line breaks and tabs become spaces), so no name or title can
//! break a chart's SVG, the report data or a line of text output downstream. An `EMAIL`
//! is kept only if it is one bare address ([`user`]).
//! Requests and retries are `super::transport`'s job, paging `super::paging`'s; nothing
//! outside `crm::bitrix24` sees these types.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::DateTime;
use serde_json::Value;

use super::packed::{Field, PackedRow};
use crate::domain::{
    Activity, Currency, Deal, DealPipeline, Department, Id, Lead, ProductRow, Semantics, Source, Stage, StageChange,
    Timestamp, User,
};

/// One row of a list as the portal sent it, packed (`super::packed`).
pub type WireRow = PackedRow;

/// An error entry of the portal (`{"error": "...", "error_description": "..."}`).
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// May be empty: legacy CRM methods answer `"error": ""` with HTTP 400.
    pub code: String,
    pub description: String,
}

/// One answer of a REST method: a result with paging fields, or an error.
#[derive(Clone, Debug, PartialEq)]
pub enum Envelope {
    Success { result: Value, next: Option<u64>, total: Option<u64> },
    Error(ApiError),
}

/// The `result` of a `batch` call, each map keyed by command name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchResult {
    pub results: BTreeMap<String, Value>,
    pub errors: BTreeMap<String, ApiError>,
    pub totals: BTreeMap<String, u64>,
    pub nexts: BTreeMap<String, u64>,
    /// Each answered command's operating time, from its `result_time`.
    pub operating: BTreeMap<String, Operating>,
}

/// A method's operating time as the `time` object of an answer reports it (§3).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Operating {
    /// `operating`: seconds the method has run within the portal's window.
    pub used: f64,
    /// `operating_reset_at` less `finish`: how long until the oldest basket drops out. Both
    /// are the portal's clock, so a local clock that is off does not matter.
    pub resets_in: Option<Duration>,
}

/// Reads `operating` and `operating_reset_at` from a `time` object; `None` without them.
pub fn decode_operating(time: &Value) -> Option<Operating> {
    let number = |key: &str| {
        match time.get(key)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|f| f.is_finite())
    };
    let used = number("operating")?.max(0.0);
    let now = number("finish").or_else(|| number("start"));
    let resets_in = match (number("operating_reset_at"), now) {
        (Some(reset), Some(now)) => Some(Duration::from_secs_f64((reset - now).clamp(0.0, 86_400.0))),
        _ => None,
    };
    Some(Operating { used, resets_in })
}

/// Reads a top-level answer. `Err` means the body is JSON but not an envelope.
pub fn decode_envelope(body: &Value) -> Result<Envelope, String> {
    let obj = body.as_object().ok_or_else(|| format!("expected a JSON object, got {}", kind(body)))?;
    if let Some(code) = obj.get("error") {
        // `error` may be a string (classic REST) or, rarely, an object with a `code`.
        let code = match code {
            Value::String(s) => s.clone(),
            Value::Null => String::new(),
            other => scalar_string(other).unwrap_or_else(|| other.to_string()),
        };
        let description = obj.get("error_description").and_then(scalar_string).unwrap_or_default();
        return Ok(Envelope::Error(ApiError { code, description }));
    }
    let result = obj.get("result").cloned().ok_or("missing `result`")?;
    Ok(Envelope::Success { result, next: obj.get("next").and_then(as_u64), total: obj.get("total").and_then(as_u64) })
}

/// Reads the `result` of a `batch` answer.
pub fn decode_batch(result: &Value) -> Result<BatchResult, String> {
    let obj = result.as_object().ok_or_else(|| format!("expected the batch object, got {}", kind(result)))?;
    let mut out = BatchResult::default();
    if let Some(v) = obj.get("result") {
        out.results = php_map(v).map_err(|e| format!("result: {e}"))?;
    }
    if let Some(v) = obj.get("result_error") {
        for (key, err) in php_map(v).map_err(|e| format!("result_error: {e}"))? {
            let e = err.as_object().ok_or_else(|| format!("result_error[{key}] is {}", kind(&err)))?;
            let code = e.get("error").and_then(scalar_string).unwrap_or_default();
            let description = e.get("error_description").and_then(scalar_string).unwrap_or_default();
            out.errors.insert(key, ApiError { code, description });
        }
    }
    for (field, target) in [("result_total", &mut out.totals), ("result_next", &mut out.nexts)] {
        if let Some(v) = obj.get(field) {
            for (key, n) in php_map(v).map_err(|e| format!("{field}: {e}"))? {
                let n = as_u64(&n).ok_or_else(|| format!("{field}[{key}] is not a count: {n}"))?;
                target.insert(key, n);
            }
        }
    }
    if let Some(v) = obj.get("result_time") {
        for (key, time) in php_map(v).map_err(|e| format!("result_time: {e}"))? {
            if let Some(operating) = decode_operating(&time) {
                out.operating.insert(key, operating);
            }
        }
    }
    Ok(out)
}

/// A PHP associative array as `json_encode` writes it: an object, `[]` when empty, or an
/// array when its keys happen to be `0..n`.
pub fn php_map(v: &Value) -> Result<BTreeMap<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        Value::Array(a) => Ok(a.iter().enumerate().map(|(i, v)| (i.to_string(), v.clone())).collect()),
        Value::Null => Ok(BTreeMap::new()),
        other => Err(format!("expected a map, got {}", kind(other))),
    }
}

/// The rows of a list result: an array, `[]`, a PHP map of rows, or `{"items": [...]}`
/// (`crm.stagehistory.list`, `crm.item.list`), `{"categories": [...]}`; each row packed as
/// it is read.
pub fn rows(result: &Value) -> Result<Vec<WireRow>, String> {
    let list: Vec<&Value> = match result {
        Value::Array(a) => a.iter().collect(),
        Value::Object(m) => {
            if let Some(inner) = ["items", "categories", "productRows"].iter().find_map(|k| m.get(*k)) {
                return rows(inner);
            }
            m.values().collect()
        }
        Value::Null => Vec::new(),
        other => return Err(format!("expected a list of records, got {}", kind(other))),
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Object(m) => Ok(PackedRow::from_map(m)),
            other => Err(format!("record {i} is {}, not an object", kind(other))),
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A scalar as text: strings as they are, numbers printed, booleans as `Y`/`N`.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(if *b { "Y" } else { "N" }.to_owned()),
        _ => None,
    }
}

/// A field as text: strings as they are, numbers printed, booleans as `Y`/`N`.
fn field_string(v: Field<'_>) -> Option<&str> {
    match v {
        Field::String(s) | Field::Number(s) => Some(s),
        Field::Bool(b) => Some(if b { "Y" } else { "N" }),
        Field::Null | Field::Json(_) => None,
    }
}

/// The text of a field that is not a scalar, for a note (as `serde_json` prints values).
fn field_raw(v: Field<'_>) -> String {
    match v {
        Field::Json(j) | Field::Number(j) => j.to_owned(),
        other => other.to_value().to_string(),
    }
}

/// `Ok(None)` for empty, `Err(raw)` for a value that is not an id.
fn field_id(v: Option<Field<'_>>) -> Result<Option<Id>, String> {
    match v {
        None => Ok(None),
        Some(v) => match field_string(v) {
            Some(s) if s.trim().is_empty() => Ok(None),
            Some(s) => s.trim().parse::<Id>().map(Some).or_else(|_| {
                // `12.0` from a loose serializer is still id 12.
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| Some(f as Id))
                    .ok_or_else(|| s.to_owned())
            }),
            None => Err(field_raw(v)),
        },
    }
}

/// Field readers over one record. A missing field, `null` and `""` are all "empty".
pub struct Row<'a> {
    row: &'a WireRow,
}

impl<'a> Row<'a> {
    pub fn new(row: &'a WireRow) -> Row<'a> {
        Row { row }
    }

    /// The first of `keys` that is present (legacy UPPER_CASE or crm.item camelCase).
    fn get(&self, keys: &[&str]) -> Option<Field<'a>> {
        keys.iter().find_map(|k| self.row.get(k)).filter(|v| *v != Field::Null)
    }

    /// A string field, cleaned of control and non-XML characters (see the module doc).
    pub fn text(&self, keys: &[&str]) -> Option<String> {
        self.get(keys).and_then(field_string).map(crate::text::crm_text).filter(|s| !s.trim().is_empty())
    }

    /// `Ok(None)` for empty, `Err(raw)` for a value that is not an id.
    pub fn id(&self, keys: &[&str]) -> Result<Option<Id>, String> {
        field_id(self.get(keys))
    }

    pub fn number(&self, keys: &[&str]) -> Result<Option<f64>, String> {
        match self.get(keys) {
            None => Ok(None),
            Some(Field::Number(n)) => Ok(n.parse::<f64>().ok()),
            Some(Field::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Field::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| s.to_owned()),
            Some(other) => Err(field_raw(other)),
        }
    }

    pub fn date(&self, keys: &[&str]) -> Result<Option<Timestamp>, String> {
        // A served date that parses as it is reads the same cleaned (a date has no control
        // characters to clean, and surrounding white space is trimmed either way): the
        // common case skips the copy `text` makes.
        if let Some(t) = self.get(keys).and_then(field_string).and_then(parse_date) {
            return Ok(Some(t));
        }
        match self.text(keys) {
            None => Ok(None),
            Some(s) => parse_date(&s).map(Some).ok_or(s),
        }
    }

    /// `Y`, `true`, `1` are yes; anything else (including empty) is no.
    pub fn flag(&self, keys: &[&str]) -> bool {
        match self.get(keys) {
            Some(Field::Bool(b)) => b,
            Some(Field::Number(n)) => n.parse::<f64>().is_ok_and(|f| f != 0.0),
            Some(Field::String(s)) => matches!(s.trim(), "Y" | "y" | "true" | "1"),
            _ => false,
        }
    }

    /// A list of ids: `[1, 3]`, `["1","3"]`, a PHP map of them, or a single id.
    pub fn ids(&self, keys: &[&str]) -> Result<Vec<Id>, String> {
        let items: Vec<Value> = match self.get(keys) {
            None => return Ok(Vec::new()),
            Some(Field::Json(j)) => match serde_json::from_str(j) {
                Ok(Value::Array(a)) => a,
                Ok(Value::Object(m)) => m.into_iter().map(|(_, v)| v).collect(),
                _ => return Err(j.to_owned()),
            },
            Some(v) => return Ok(field_id(Some(v))?.into_iter().collect()),
        };
        let mut out = Vec::new();
        for v in &items {
            let number;
            let item = match v {
                Value::Null => continue,
                Value::Bool(b) => Field::Bool(*b),
                Value::Number(n) => {
                    number = n.to_string();
                    Field::Number(&number)
                }
                Value::String(s) => Field::String(s),
                nested => return Err(nested.to_string()),
            };
            out.extend(field_id(Some(item))?);
        }
        Ok(out)
    }
}

/// ISO 8601 with an offset: `2024-06-13T18:23:54+02:00` (also `+0200`); a date alone is
/// not an instant and is refused.
pub fn parse_date(s: &str) -> Option<Timestamp> {
    let s = s.trim();
    DateTime::parse_from_rfc3339(s).ok().or_else(|| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%z").ok())
}

/// Collects what a conversion could not read, naming the record.
pub struct Notes<'a> {
    pub notes: &'a mut Vec<String>,
}

impl Notes<'_> {
    fn soft<T>(&mut self, what: &str, field: &str, r: Result<Option<T>, String>) -> Option<T> {
        match r {
            Ok(v) => v,
            Err(raw) => {
                self.notes.push(format!("{what}: unreadable {field} {raw:?} ignored"));
                None
            }
        }
    }

    fn hard<T>(&mut self, what: &str, field: &str, r: Result<Option<T>, String>) -> Option<T> {
        match r {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.notes.push(format!("{what}: skipped, {field} is empty"));
                None
            }
            Err(raw) => {
                self.notes.push(format!("{what}: skipped, unreadable {field} {raw:?}"));
                None
            }
        }
    }
}

fn record_name(kind: &str, row: &Row<'_>) -> String {
    match row.text(&["ID", "id"]) {
        Some(id) => format!("{kind} {id}"),
        None => format!("{kind} without ID"),
    }
}

/// `user.get` row.
pub fn user(m: &WireRow, notes: &mut Notes<'_>) -> Option<User> {
    let r = Row::new(m);
    let what = record_name("user", &r);
    let id = notes.hard(&what, "ID", r.id(&["ID"]))?;
    // A bare address or nothing: a display name (`"Spoof" <m20@…>`), a list or anything
    // else is no usable address, which the delivery reports to the admin for this manager.
    let email = r.text(&["EMAIL"]).map(|e| e.trim().to_owned()).filter(|e| bare_address(e));
    let full = [r.text(&["NAME"]), r.text(&["LAST_NAME"])].into_iter().flatten().collect::<Vec<_>>().join(" ");
    let name = if !full.trim().is_empty() { full.trim().to_owned() } else { email.clone().unwrap_or(format!("#{id}")) };
    let departments = match r.ids(&["UF_DEPARTMENT"]) {
        Ok(d) => d,
        Err(raw) => {
            notes.notes.push(format!("{what}: unreadable UF_DEPARTMENT {raw:?} ignored"));
            Vec::new()
        }
    };
    Some(User { id, name, email, active: r.flag(&["ACTIVE"]), departments })
}

/// Whether `s` is one e-mail address and nothing else (`name@example.ru`).
pub fn bare_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

/// `department.get` row.
pub fn department(m: &WireRow, notes: &mut Notes<'_>) -> Option<Department> {
    let r = Row::new(m);
    let what = record_name("department", &r);
    let id = notes.hard(&what, "ID", r.id(&["ID"]))?;
    let parent = notes.soft(&what, "PARENT", r.id(&["PARENT"])).filter(|p| *p != 0 && *p != id);
    Some(Department { id, name: r.text(&["NAME"]).unwrap_or_else(|| format!("#{id}")), parent })
}

/// `crm.category.list` row (typed numbers, camelCase).
pub fn pipeline(m: &WireRow, notes: &mut Notes<'_>) -> Option<DealPipeline> {
    let r = Row::new(m);
    let what = record_name("pipeline", &r);
    let id = notes.hard(&what, "id", r.id(&["id", "ID"]))?;
    let sort = notes.soft(&what, "sort", r.number(&["sort", "SORT"])).unwrap_or(0.0) as i64;
    Some(DealPipeline { id, name: r.text(&["name", "NAME"]).unwrap_or_else(|| format!("#{id}")), sort })
}

/// The pipeline a `crm.status.list` entity id belongs to: `DEAL_STAGE` is 0,
/// `DEAL_STAGE_7` is 7; other entities are not deal stages.
pub fn stage_entity_pipeline(entity_id: &str) -> Option<Id> {
    match entity_id {
        "DEAL_STAGE" => Some(0),
        other => other.strip_prefix("DEAL_STAGE_").and_then(|n| n.parse().ok()),
    }
}

/// `crm.status.list` row of a `DEAL_STAGE*` entity.
pub fn stage(m: &WireRow, notes: &mut Notes<'_>) -> Option<Stage> {
    let r = Row::new(m);
    let what = record_name("stage", &r);
    let id = notes.hard(&what, "STATUS_ID", Ok(r.text(&["STATUS_ID"])))?;
    let pipeline_id = r
        .text(&["ENTITY_ID"])
        .and_then(|e| stage_entity_pipeline(&e))
        .or_else(|| r.id(&["CATEGORY_ID"]).ok().flatten())
        .unwrap_or(0);
    let sort = notes.soft(&what, "SORT", r.number(&["SORT"])).unwrap_or(0.0) as i64;
    let semantics = Semantics::from_code(&r.text(&["SEMANTICS"]).unwrap_or_default());
    Some(Stage { name: r.text(&["NAME"]).unwrap_or_else(|| id.clone()), id, pipeline_id, sort, semantics })
}

/// `crm.status.list` row of the `SOURCE` entity.
pub fn source(m: &WireRow, notes: &mut Notes<'_>) -> Option<Source> {
    let r = Row::new(m);
    let what = record_name("source", &r);
    let id = notes.hard(&what, "STATUS_ID", Ok(r.text(&["STATUS_ID"])))?;
    Some(Source { name: r.text(&["NAME"]).unwrap_or_else(|| id.clone()), id })
}

/// `crm.currency.list` row; a currency without a usable rate gets rate 0 and a note, so
/// its deals are reported as unconvertible instead of silently counted at 1:1.
pub fn currency(m: &WireRow, notes: &mut Notes<'_>) -> Option<Currency> {
    let r = Row::new(m);
    let code = notes.hard("currency without code", "CURRENCY", Ok(r.text(&["CURRENCY"])))?;
    let what = format!("currency {code}");
    let base = r.flag(&["BASE"]);
    let amount = notes.soft(&what, "AMOUNT", r.number(&["AMOUNT"]));
    let count = notes.soft(&what, "AMOUNT_CNT", r.number(&["AMOUNT_CNT"])).unwrap_or(1.0);
    let rate = match amount {
        Some(a) if a > 0.0 && count > 0.0 => a / count,
        _ if base => 1.0,
        _ => {
            notes.notes.push(format!("{what}: no exchange rate"));
            0.0
        }
    };
    Some(Currency { code, rate, base })
}

/// The deal fields [`deal`] reads; the client selects exactly these (plus the
/// satisfaction field).
pub const DEAL_FIELDS: [&str; 16] = [
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
];

/// `crm.deal.list` row. `stage_semantics` is the stage list's semantics of the deal's
/// stage, preferred over `STAGE_SEMANTIC_ID` (which a portal may serve stale).
pub fn deal(
    m: &WireRow,
    satisfaction_field: Option<&str>,
    stage_semantics: impl Fn(&str) -> Option<Semantics>,
    notes: &mut Notes<'_>,
) -> Option<Deal> {
    let r = Row::new(m);
    let what = record_name("deal", &r);
    let id = notes.hard(&what, "ID", r.id(&["ID", "id"]))?;
    let assigned_by = notes.hard(&what, "ASSIGNED_BY_ID", r.id(&["ASSIGNED_BY_ID", "assignedById"]))?;
    let created = notes.hard(&what, "DATE_CREATE", r.date(&["DATE_CREATE", "createdTime"]))?;
    let stage_id = r.text(&["STAGE_ID", "stageId"]).unwrap_or_default();
    let served = r.text(&["STAGE_SEMANTIC_ID", "stageSemanticId"]).map(|s| Semantics::from_code(&s));
    let stage_semantics = stage_semantics(&stage_id).or(served).unwrap_or(Semantics::Process);
    let opportunity = notes.soft(&what, "OPPORTUNITY", r.number(&["OPPORTUNITY", "opportunity"])).unwrap_or(0.0);
    Some(Deal {
        id,
        title: r.text(&["TITLE", "title"]).unwrap_or_else(|| format!("#{id}")),
        pipeline_id: notes.soft(&what, "CATEGORY_ID", r.id(&["CATEGORY_ID", "categoryId"])).unwrap_or(0),
        stage_id,
        stage_semantics,
        currency: r.text(&["CURRENCY_ID", "currencyId"]).unwrap_or_default(),
        opportunity,
        lead_id: notes.soft(&what, "LEAD_ID", r.id(&["LEAD_ID", "leadId"])).filter(|l| *l != 0),
        assigned_by,
        created,
        moved_time: notes.soft(&what, "MOVED_TIME", r.date(&["MOVED_TIME", "movedTime"])),
        close_date: notes.soft(&what, "CLOSEDATE", r.date(&["CLOSEDATE", "closedate"])),
        is_recurring: r.flag(&["IS_RECURRING", "isRecurring"]),
        is_return_customer: r.flag(&["IS_RETURN_CUSTOMER", "isReturnCustomer"]),
        source_id: r.text(&["SOURCE_ID", "sourceId"]),
        satisfaction: satisfaction_field.and_then(|f| r.get(&[f])).and_then(field_string).map(str::to_owned),
    })
}

/// The lead fields [`lead`] reads.
pub const LEAD_FIELDS: [&str; 5] = ["ID", "ASSIGNED_BY_ID", "DATE_CREATE", "STATUS_SEMANTIC_ID", "SOURCE_ID"];

/// `crm.lead.list` row.
pub fn lead(m: &WireRow, notes: &mut Notes<'_>) -> Option<Lead> {
    let r = Row::new(m);
    let what = record_name("lead", &r);
    let id = notes.hard(&what, "ID", r.id(&["ID", "id"]))?;
    let assigned_by = notes.hard(&what, "ASSIGNED_BY_ID", r.id(&["ASSIGNED_BY_ID", "assignedById"]))?;
    let created = notes.hard(&what, "DATE_CREATE", r.date(&["DATE_CREATE", "createdTime"]))?;
    Some(Lead {
        id,
        assigned_by,
        created,
        status_semantics: Semantics::from_code(&r.text(&["STATUS_SEMANTIC_ID", "stageSemanticId"]).unwrap_or_default()),
        source_id: r.text(&["SOURCE_ID", "sourceId"]),
    })
}

/// The activity fields [`activity`] reads.
pub const ACTIVITY_FIELDS: [&str; 6] = ["ID", "RESPONSIBLE_ID", "TYPE_ID", "DIRECTION", "COMPLETED", "CREATED"];

/// `crm.activity.list` row.
pub fn activity(m: &WireRow, notes: &mut Notes<'_>) -> Option<Activity> {
    let r = Row::new(m);
    let what = record_name("activity", &r);
    let id = notes.hard(&what, "ID", r.id(&["ID"]))?;
    let responsible = notes.hard(&what, "RESPONSIBLE_ID", r.id(&["RESPONSIBLE_ID"]))?;
    let type_id = notes.hard(&what, "TYPE_ID", r.id(&["TYPE_ID"]))?;
    let direction = notes.soft(&what, "DIRECTION", r.id(&["DIRECTION"])).unwrap_or(0);
    let created = notes.hard(&what, "CREATED", r.date(&["CREATED"]))?;
    Some(Activity {
        id,
        responsible,
        type_id: type_id as u32,
        direction: direction as u32,
        completed: r.flag(&["COMPLETED"]),
        created,
    })
}

/// `crm.stagehistory.list` item of a deal (`entityTypeId` 2). Semantics come from the
/// stage list when it knows the stage, as for deals.
pub fn stage_change(
    m: &WireRow,
    stage_semantics: impl Fn(&str) -> Option<Semantics>,
    notes: &mut Notes<'_>,
) -> Option<StageChange> {
    let r = Row::new(m);
    let what = record_name("stage history entry", &r);
    let id = notes.hard(&what, "ID", r.id(&["ID"]))?;
    let deal_id = notes.hard(&what, "OWNER_ID", r.id(&["OWNER_ID"]))?;
    let stage_id = notes.hard(&what, "STAGE_ID", Ok(r.text(&["STAGE_ID"])))?;
    let created = notes.hard(&what, "CREATED_TIME", r.date(&["CREATED_TIME"]))?;
    let served = r.text(&["STAGE_SEMANTIC_ID"]).map(|s| Semantics::from_code(&s));
    Some(StageChange {
        id,
        deal_id,
        pipeline_id: notes.soft(&what, "CATEGORY_ID", r.id(&["CATEGORY_ID"])).unwrap_or(0),
        semantics: stage_semantics(&stage_id).or(served).unwrap_or(Semantics::Process),
        stage_id,
        created,
    })
}

/// `crm.deal.productrows.get` row (or `crm.item.productrow.list`, camelCase).
pub fn product_row(deal_id: Id, m: &WireRow, notes: &mut Notes<'_>) -> Option<ProductRow> {
    let r = Row::new(m);
    let what = format!("product row {} of deal {deal_id}", r.text(&["ID", "id"]).unwrap_or_default());
    let price = notes.hard(&what, "PRICE", r.number(&["PRICE", "price"]))?;
    let quantity = notes.soft(&what, "QUANTITY", r.number(&["QUANTITY", "quantity"])).unwrap_or(1.0);
    Some(ProductRow {
        deal_id,
        product_id: notes.soft(&what, "PRODUCT_ID", r.id(&["PRODUCT_ID", "productId"])).unwrap_or(0),
        name: r.text(&["PRODUCT_NAME", "productName"]).unwrap_or_default(),
        price,
        quantity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_every_spelling_of_a_value() {
        let m = json!({"A": "12", "B": 12, "C": "", "D": null, "E": "12.50", "F": "Y", "G": true, "H": [1, "3"],
                       "I": "2024-06-13T18:23:54+02:00", "J": "abc"});
        let packed = PackedRow::from_map(m.as_object().unwrap());
        let r = Row::new(&packed);
        assert_eq!(r.id(&["A"]), Ok(Some(12)));
        assert_eq!(r.id(&["B"]), Ok(Some(12)));
        assert_eq!(r.id(&["C"]), Ok(None));
        assert_eq!(r.id(&["D"]), Ok(None));
        assert_eq!(r.id(&["missing"]), Ok(None));
        assert_eq!(r.id(&["J"]), Err("abc".to_owned()));
        assert_eq!(r.number(&["E"]), Ok(Some(12.5)));
        assert!(r.flag(&["F"]) && r.flag(&["G"]) && !r.flag(&["C"]));
        assert_eq!(r.ids(&["H"]), Ok(vec![1, 3]));
        assert_eq!(r.date(&["I"]).unwrap().unwrap().to_rfc3339(), "2024-06-13T18:23:54+02:00");
        assert!(r.date(&["J"]).is_err());
    }

    #[test]
    fn the_operating_time_is_read_from_top_level_and_batch_time_objects() {
        // As a real portal writes them: `operating` in float seconds, the reset in whole ones.
        let time = json!({"start": 1739205150.47, "finish": 1739205151.0, "operating": 9.988268852233887,
                          "operating_reset_at": 1739205751});
        let op = decode_operating(&time).unwrap();
        assert_eq!(op.used, 9.988268852233887);
        assert_eq!(op.resets_in, Some(Duration::from_secs(600)));
        assert_eq!(decode_operating(&json!({"start": 1.0, "operating": 0})).unwrap().resets_in, None);
        assert_eq!(decode_operating(&json!({"start": 1.0})), None);
        let batch = json!({"result": {"a": [], "b": []}, "result_error": [],
                           "result_time": {"a": time, "b": {"finish": 5.0, "operating": "1.5", "operating_reset_at": 4}}});
        let decoded = decode_batch(&batch).unwrap();
        assert_eq!(decoded.operating["a"], op);
        assert_eq!(decoded.operating["b"], Operating { used: 1.5, resets_in: Some(Duration::ZERO) });
    }

    #[test]
    fn php_maps_come_as_objects_empty_arrays_or_arrays() {
        assert!(php_map(&json!([])).unwrap().is_empty());
        let a = php_map(&json!([{"error": ""}, {"error": "x"}])).unwrap();
        assert_eq!(a.keys().collect::<Vec<_>>(), ["0", "1"]);
        assert_eq!(php_map(&json!({"cmd": 1})).unwrap()["cmd"], json!(1));
        assert!(php_map(&json!("x")).is_err());
    }

    #[test]
    fn an_unreadable_field_becomes_a_note_naming_the_record() {
        let mut notes = Vec::new();
        let row = json!({"ID": "7", "ASSIGNED_BY_ID": "3", "DATE_CREATE": "2026-01-01T10:00:00+03:00",
                         "OPPORTUNITY": "много", "STAGE_ID": "WON", "STAGE_SEMANTIC_ID": "P"});
        let d = deal(
            &PackedRow::from_map(row.as_object().unwrap()),
            None,
            |s| (s == "WON").then_some(Semantics::Success),
            &mut Notes { notes: &mut notes },
        )
        .unwrap();
        assert_eq!(d.opportunity, 0.0);
        assert_eq!(d.stage_semantics, Semantics::Success, "the stage list wins over STAGE_SEMANTIC_ID");
        assert_eq!(notes.len(), 1);
        assert!(notes[0].contains("deal 7") && notes[0].contains("OPPORTUNITY"), "{notes:?}");

        let broken = json!({"ID": "8", "ASSIGNED_BY_ID": "3", "DATE_CREATE": "вчера"});
        assert!(
            deal(&PackedRow::from_map(broken.as_object().unwrap()), None, |_| None, &mut Notes { notes: &mut notes })
                .is_none()
        );
        assert!(notes[1].contains("deal 8") && notes[1].contains("DATE_CREATE"), "{notes:?}");
    }

    #[test]
    fn a_currency_without_rate_is_noted() {
        let mut notes = Vec::new();
        let row = json!({"CURRENCY": "KZT", "AMOUNT": "", "AMOUNT_CNT": "100", "BASE": "N"});
        let c = currency(&PackedRow::from_map(row.as_object().unwrap()), &mut Notes { notes: &mut notes }).unwrap();
        assert_eq!(c.rate, 0.0);
        assert!(notes[0].contains("KZT"));
        let idr = json!({"CURRENCY": "IDR", "AMOUNT": "54.8738", "AMOUNT_CNT": "10000", "BASE": "N"});
        let c = currency(&PackedRow::from_map(idr.as_object().unwrap()), &mut Notes { notes: &mut notes }).unwrap();
        assert!((c.rate - 0.00548738).abs() < 1e-12);
    }
}
