//! The REST methods of the emulated portal: each method the client uses routed to its
//! table (with the typing a real portal gives it: legacy methods serve every scalar as a
//! string), `batch` with its `$result[..]` references, the webhook's scopes, and the
//! refusals injected inside a batch (`command_errors`).

use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::SystemTime;

use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::http::time_object;
use super::lists::{Typing, legacy, list, param, parse_php_query, substitute, text};
use super::{Done, Fail, Portal, Record, record_id};

impl Portal {
    /// Whether the webhook's scopes cover `method` (`scope`, `batch` and the other basic
    /// methods need none): `crm.*` `crm`, `user.*` a user scope, `department.*`
    /// `department`, `im.*` `im`, `disk.*` `disk`.
    fn in_scope(&self, method: &str) -> bool {
        let granted = |s: &str| self.options.scopes.iter().any(|g| g.eq_ignore_ascii_case(s));
        let prefix = method.split('.').next().unwrap_or_default().to_ascii_lowercase();
        match prefix.as_str() {
            "crm" => granted("crm"),
            "user" => granted("user") || granted("user_basic") || granted("user_brief"),
            "department" => granted("department"),
            "im" => granted("im"),
            "disk" => granted("disk"),
            _ => true,
        }
    }

    pub(super) fn execute(&self, token: &str, method: &str, params: &Value, top: bool) -> Result<Done, Fail> {
        self.commands.fetch_add(u64::from(method != "batch"), AtomicOrdering::Relaxed);
        if self.options.denied_methods.iter().any(|m| m.eq_ignore_ascii_case(method)) || !self.in_scope(method) {
            return Err((
                StatusCode::FORBIDDEN,
                "insufficient_scope",
                "The request requires higher privileges than provided by the webhook token".into(),
            ));
        }
        if !top
            && self.options.command_errors > 0.0
            && self.rng.lock().expect("rng lock").f64() < self.options.command_errors
        {
            self.faults.fetch_add(1, AtomicOrdering::Relaxed);
            return Err((
                StatusCode::TOO_MANY_REQUESTS,
                "OPERATION_TIME_LIMIT",
                "Method is blocked due to operation time limit.".into(),
            ));
        }
        if method == "batch" {
            return if top {
                self.batch(token, params)
            } else {
                Err((
                    StatusCode::METHOD_NOT_ALLOWED,
                    "ERROR_BATCH_METHOD_NOT_ALLOWED",
                    "Method not allowed in batch".into(),
                ))
            };
        }
        // Taken per method, not per batch: a batch's commands each read under their own guard.
        let d = &*self.data.read().expect("no panics while holding the portal data");
        match method {
            "user.get" => {
                let filter = param(params, "filter").cloned().unwrap_or(json!({}));
                let order = match (param(params, "sort").map(text), param(params, "order").map(text)) {
                    (Some(field), dir) => json!({ field: dir.unwrap_or_else(|| "ASC".into()) }),
                    (None, _) => json!({"ID": "ASC"}),
                };
                let p = json!({"filter": filter, "order": order, "start": param(params, "start").cloned().unwrap_or(Value::Null)});
                list(&d.users, &p, Typing::AsStored)
            }
            "department.get" => {
                let mut filter = Map::new();
                if let Some(o) = params.as_object() {
                    for (k, v) in o {
                        if !["sort", "order", "start"].contains(&k.to_ascii_lowercase().as_str()) {
                            filter.insert(k.clone(), v.clone());
                        }
                    }
                }
                let order = match param(params, "sort").map(text) {
                    Some(field) => json!({ field: param(params, "order").map(text).unwrap_or_else(|| "ASC".into()) }),
                    None => json!({"ID": "ASC"}),
                };
                let p = json!({"filter": filter, "order": order, "start": param(params, "start").cloned().unwrap_or(Value::Null)});
                list(&d.departments, &p, Typing::AsStored)
            }
            // The webhook's scopes (basic scope: any webhook may ask).
            "scope" => Ok(Done { result: json!(self.options.scopes), total: None, next: None }),
            "crm.status.list" => list(&d.statuses, params, Typing::Legacy),
            "crm.category.list" => {
                if param(params, "entityTypeId").map(text).as_deref() != Some("2") {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        "ENTITY_TYPE_NOT_SUPPORTED",
                        "Entity type is not supported".into(),
                    ));
                }
                let mut done = list(&d.categories, params, Typing::AsStored)?;
                done.result = json!({"categories": done.result});
                Ok(done)
            }
            "crm.currency.list" => {
                let rows: Vec<Value> = d.currencies.iter().map(|r| Value::Object(legacy(r))).collect();
                // "total" is always 0 for this method on real portals.
                Ok(Done { result: Value::Array(rows), total: Some(0), next: None })
            }
            "crm.deal.list" => list(&d.deals, params, Typing::Legacy),
            "crm.lead.list" => list(&d.leads, params, Typing::Legacy),
            "crm.activity.list" => list(&d.activities, params, Typing::Legacy),
            "crm.stagehistory.list" => {
                let rows: &[Record] = match param(params, "entityTypeId").map(text).as_deref() {
                    Some("2") => &d.stage_history,
                    Some("1") => &[],
                    _ => {
                        return Err((
                            StatusCode::BAD_REQUEST,
                            "ENTITY_TYPE_NOT_SUPPORTED",
                            "Entity type is not supported".into(),
                        ));
                    }
                };
                let mut done = list(rows, params, Typing::Legacy)?;
                done.result = json!({"items": done.result});
                Ok(done)
            }
            "crm.deal.productrows.get" => {
                let id = param(params, "id").map(text).and_then(|s| s.parse::<u64>().ok());
                let Some(id) = id else {
                    return Err((StatusCode::BAD_REQUEST, "", "ID is not defined or invalid.".into()));
                };
                // Deals are kept in ID order (see `start`).
                let at = d.deals.partition_point(|r| record_id(r) < id);
                if d.deals.get(at).is_none_or(|r| record_id(r) != id) {
                    return Err((StatusCode::BAD_REQUEST, "", "Not found".into()));
                }
                let rows = d
                    .product_rows
                    .get(&id)
                    .map(|r| r.iter().map(|x| Value::Object(legacy(x))).collect())
                    .unwrap_or_default();
                Ok(Done { result: Value::Array(rows), total: None, next: None })
            }
            m if m.starts_with("im.") || m.starts_with("disk.") => self.messenger(m, params, &d.users),
            _ => Err((StatusCode::NOT_FOUND, "ERROR_METHOD_NOT_FOUND", "Method not found!".into())),
        }
    }

    fn batch(&self, token: &str, params: &Value) -> Result<Done, Fail> {
        let cmds: Vec<(String, String)> = match param(params, "cmd") {
            Some(Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
            Some(Value::Array(a)) => a.iter().enumerate().map(|(i, v)| (i.to_string(), text(v))).collect(),
            _ => return Err((StatusCode::BAD_REQUEST, "INVALID_ARG_VALUE", "cmd must be a map of commands".into())),
        };
        if cmds.len() > 50 {
            return Err((StatusCode::BAD_REQUEST, "ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded".into()));
        }
        let halt = param(params, "halt").is_some_and(|h| matches!(text(h).as_str(), "1" | "true" | "Y"));
        let mut results: Vec<(String, Value)> = Vec::new();
        let mut errors: Vec<(String, Value)> = Vec::new();
        let mut totals: Vec<(String, Value)> = Vec::new();
        let mut nexts: Vec<(String, Value)> = Vec::new();
        let mut times: Vec<(String, Value)> = Vec::new();
        let mut done_so_far: Map<String, Value> = Map::new();
        for (key, cmd) in cmds {
            #[allow(clippy::disallowed_methods)] // Per-command `result_time`, as a portal has.
            let started = SystemTime::now();
            let (method, query) = cmd.split_once('?').unwrap_or((&cmd, ""));
            let mut p = parse_php_query(query);
            substitute(&mut p, &done_so_far);
            match self.call(token, &method.trim_end_matches('/').to_ascii_lowercase(), &p, false) {
                Ok((done, operating)) => {
                    done_so_far.insert(key.clone(), done.result.clone());
                    results.push((key.clone(), done.result));
                    if let Some(t) = done.total {
                        totals.push((key.clone(), json!(t)));
                    }
                    if let Some(n) = done.next {
                        nexts.push((key.clone(), json!(n)));
                    }
                    times.push((key, time_object(started, &operating)));
                }
                Err((_, code, description)) => {
                    errors.push((key, json!({"error": code, "error_description": description})));
                    if halt {
                        break;
                    }
                }
            }
        }
        Ok(Done {
            result: json!({
                "result": php_map(results), "result_error": php_map(errors), "result_total": php_map(totals),
                "result_next": php_map(nexts), "result_time": php_map(times),
            }),
            total: None,
            next: None,
        })
    }
}

/// `json_encode` of a PHP array: `[]` when empty, a list when keyed `0..n`, else an object.
fn php_map(entries: Vec<(String, Value)>) -> Value {
    if entries.iter().enumerate().all(|(i, (k, _))| *k == i.to_string()) {
        Value::Array(entries.into_iter().map(|(_, v)| v).collect())
    } else {
        Value::Object(entries.into_iter().collect())
    }
}
