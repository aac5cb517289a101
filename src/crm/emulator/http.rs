//! The HTTP face of the emulated portal: a request's webhook code checked, its faults
//! injected (5xx, rate-limit answers, truncated bodies, delays: deterministic given the
//! seed), its parameters read from the query and the body, the method run ([`super::methods`])
//! and its answer wrapped in Bitrix24's envelope with the `time` object; or the webhook
//! code shown back, as a blocked or misconfigured portal does.

use std::sync::Arc;
use std::sync::atomic::Ordering as AtomicOrdering;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value, json};

use super::limits::Operating;
use super::lists::parse_php_query;
use super::{Portal, TokenLeak};

pub(super) async fn handle(
    State(portal): State<Arc<Portal>>,
    Path((user, token, method)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    #[allow(clippy::disallowed_methods)] // A portal's `time` object carries its wall clock.
    let started_wall = SystemTime::now();
    portal.requests.fetch_add(1, AtomicOrdering::Relaxed);
    if let Some(leak) = portal.options.leak_token {
        return leak_path(leak, &format!("/rest/{user}/{token}/{method}"));
    }
    let response = serve(&portal, &token, &method, query, &headers, &body, started_wall).await;
    portal.server_nanos.fetch_add(started.elapsed().as_nanos() as u64, AtomicOrdering::Relaxed);
    response
}

async fn serve(
    portal: &Portal,
    token: &str,
    method: &str,
    query: Option<String>,
    headers: &HeaderMap,
    body: &Bytes,
    started: SystemTime,
) -> Response {
    if !portal.admit() {
        portal.rate_limited.fetch_add(1, AtomicOrdering::Relaxed);
        return error(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests");
    }
    if token != portal.options.token {
        return error(StatusCode::UNAUTHORIZED, "INVALID_CREDENTIALS", "Invalid request credentials");
    }
    let (fault, delay, garbage, cut) = {
        let mut rng = portal.rng.lock().expect("rng lock");
        let o = &portal.options;
        let roll = rng.f64();
        let fault = if roll < o.server_errors {
            Some(0)
        } else if roll < o.server_errors + o.rate_limit_errors {
            Some(1)
        } else {
            None
        };
        (fault, rng.f64() < o.delays, rng.f64() < o.garbage_bodies, rng.f64())
    };
    if fault.is_some() || delay || garbage {
        portal.faults.fetch_add(1, AtomicOrdering::Relaxed);
    }
    if delay {
        tokio::time::sleep(portal.options.delay).await;
    }
    match fault {
        Some(0) => return error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_SERVER_ERROR", "Internal server error"),
        Some(_) => return error(StatusCode::SERVICE_UNAVAILABLE, "QUERY_LIMIT_EXCEEDED", "Too many requests"),
        None => {}
    }
    let method = method.trim_end_matches('/');
    let method = method.strip_suffix(".json").unwrap_or(method).to_ascii_lowercase();
    let mut params = match query.as_deref() {
        Some(q) if !q.is_empty() => parse_php_query(q),
        _ => json!({}),
    };
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !body.is_empty() {
        let from_body = if is_form {
            Ok(parse_php_query(&String::from_utf8_lossy(body)))
        } else {
            serde_json::from_slice::<Value>(body)
        };
        match from_body {
            Ok(Value::Object(m)) => params.as_object_mut().expect("params are an object").extend(m),
            Ok(_) | Err(_) => {
                return error(StatusCode::BAD_REQUEST, "INVALID_REQUEST", "Request body must be a JSON object");
            }
        }
    }
    let outcome = portal.call(token, &method, &params, true);
    let mut response = match outcome {
        Ok((done, operating)) => {
            let mut env = Map::new();
            env.insert("result".into(), done.result);
            if let Some(n) = done.next {
                env.insert("next".into(), json!(n));
            }
            if let Some(t) = done.total {
                env.insert("total".into(), json!(t));
            }
            env.insert("time".into(), time_object(started, &operating));
            (StatusCode::OK, serde_json::to_string(&Value::Object(env)).expect("JSON serializes"))
        }
        Err((status, code, description)) => (status, error_body(code, &description)),
    };
    if garbage {
        let keep = ((response.1.len() as f64) * (0.1 + 0.8 * cut)) as usize;
        let keep = (0..=keep).rev().find(|i| response.1.is_char_boundary(*i)).unwrap_or(0);
        response.1.truncate(keep);
        response.0 = StatusCode::OK;
    }
    json_response(response.0, response.1)
}

/// The answer of a portal that shows `path` (with the webhook code in it) back.
fn leak_path(leak: TokenLeak, path: &str) -> Response {
    let encode = |upper: bool| -> String {
        path.bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' if upper => (b as char).to_string(),
                _ if upper => format!("%{b:02X}"),
                _ => format!("%{b:02x}"),
            })
            .collect()
    };
    match leak {
        TokenLeak::Redirect => (
            StatusCode::FOUND,
            [
                (header::LOCATION, format!("/auth/?backurl={}", encode(true))),
                (header::CONTENT_TYPE, "text/html".into()),
            ],
            format!("<html><body>Redirecting to <a href=\"/auth/?backurl={}\">login</a></body></html>", encode(true)),
        )
            .into_response(),
        TokenLeak::EchoPath => error(
            StatusCode::UNAUTHORIZED,
            "NO_AUTH_FOUND",
            &format!("Wrong authorization data for {path} ({})", encode(false)),
        ),
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body).into_response()
}

pub(super) fn error_body(code: &str, description: &str) -> String {
    json!({"error": code, "error_description": description}).to_string()
}

fn error(status: StatusCode, code: &str, description: &str) -> Response {
    json_response(status, error_body(code, description))
}

/// The `time` object of every successful answer, with the method's operating time.
#[allow(clippy::disallowed_methods)] // A portal's `time` object carries its wall clock.
pub(super) fn time_object(started: SystemTime, operating: &Operating) -> Value {
    let finished = SystemTime::now();
    // A whole second, as a portal writes it; rounded up so that a client waiting for it
    // never wakes before the basket has really dropped out.
    let reset_at = finished + operating.reset_at.saturating_duration_since(Instant::now());
    let reset_at = reset_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64().ceil() as u64;
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    let date = |t: SystemTime| {
        DateTime::<chrono::Utc>::from(t).with_timezone(&moscow()).format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    };
    json!({
        "start": secs(started), "finish": secs(finished), "duration": secs(finished) - secs(started),
        "processing": secs(finished) - secs(started), "date_start": date(started), "date_finish": date(finished),
        "operating_reset_at": reset_at, "operating": operating.used.as_secs_f64()
    })
}

fn moscow() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("+03:00 is a valid offset")
}
