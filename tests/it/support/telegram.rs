//! A Telegram Bot API on loopback: `getMe`, `sendMessage` (JSON or form) and
//! `sendDocument` (multipart/form-data), answering as the Bot API does
//! (`{"ok": true, "result": …}` or `{"ok": false, "error_code": N, "description": …}`):
//! 401 Unauthorized for another token, 400 "Bad Request: chat not found" for a chat it does
//! not know, 429 with `parameters.retry_after` for the first [`BotApi::flood`] calls, 413
//! for a document above its size limit. It records what it accepted.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// One message the bot sent: the chat, the text (or caption), the document.
#[derive(Clone, Debug, PartialEq)]
pub struct Sent {
    pub chat_id: String,
    pub text: String,
    pub document: Option<(String, Vec<u8>)>,
}

struct Api {
    token: String,
    chats: Vec<String>,
    max_document_bytes: usize,
    flood: AtomicU32,
    retry_after: u64,
    sent: Mutex<Vec<Sent>>,
    /// Every request path, to show what the bot asked for (the token is in each).
    requests: Mutex<Vec<String>>,
}

/// A running Bot API.
pub struct BotApi {
    pub url: String,
    state: Arc<Api>,
}

impl BotApi {
    /// Serves the bot `token`, knowing `chats`.
    pub fn start(token: &str, chats: &[&str]) -> BotApi {
        BotApi::start_with(token, chats, 50 * 1024 * 1024, 0, 1)
    }

    /// ... with a document limit, and `flood` first calls answered 429 retry_after.
    pub fn start_with(token: &str, chats: &[&str], max_document_bytes: usize, flood: u32, retry_after: u64) -> BotApi {
        let state = Arc::new(Api {
            token: token.to_owned(),
            chats: chats.iter().map(|c| (*c).to_owned()).collect(),
            max_document_bytes,
            flood: AtomicU32::new(flood),
            retry_after,
            sent: Mutex::new(Vec::new()),
            requests: Mutex::new(Vec::new()),
        });
        // Served from a thread of its own, so that it outlives any test runtime and can be
        // dropped inside one.
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/{bot}/{method}", post(handle))
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20))
            .with_state(Arc::clone(&state));
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        BotApi { url, state }
    }

    pub fn sent(&self) -> Vec<Sent> {
        self.state.sent.lock().unwrap().clone()
    }

    pub fn requests(&self) -> usize {
        self.state.requests.lock().unwrap().len()
    }
}

fn answer(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn refuse(code: u16, description: &str) -> Response {
    answer(code, json!({"ok": false, "error_code": code, "description": description}))
}

async fn handle(
    State(api): State<Arc<Api>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    api.requests.lock().unwrap().push(format!("/{bot}/{method}"));
    if bot.strip_prefix("bot") != Some(api.token.as_str()) {
        return refuse(401, "Unauthorized");
    }
    let flood = api.flood.load(Ordering::SeqCst);
    if flood > 0 && method != "getMe" {
        api.flood.store(flood - 1, Ordering::SeqCst);
        let description = format!("Too Many Requests: retry after {}", api.retry_after);
        return answer(
            429,
            json!({"ok": false, "error_code": 429, "description": description, "parameters": {"retry_after": api.retry_after}}),
        );
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let fields = if let Some(boundary) = content_type.split("boundary=").nth(1) {
        multipart(&body, boundary.trim_matches('"'))
    } else {
        let v: Value = serde_json::from_slice(&body).unwrap_or(json!({}));
        v.as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| {
                        (k.clone(), None, v.as_str().map_or_else(|| v.to_string(), str::to_owned).into_bytes())
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let field = |name: &str| fields.iter().find(|(n, _, _)| n == name);
    let text_of = |name: &str| field(name).map(|(_, _, v)| String::from_utf8_lossy(v).into_owned()).unwrap_or_default();
    match method.as_str() {
        "getMe" => answer(
            200,
            json!({"ok": true, "result": {"id": 1, "is_bot": true, "first_name": "salespulse", "username": "salespulse_test_bot"}}),
        ),
        "sendMessage" | "sendDocument" => {
            let chat_id = text_of("chat_id");
            if !api.chats.contains(&chat_id) {
                return refuse(400, "Bad Request: chat not found");
            }
            let (text, document) = if method == "sendMessage" {
                let text = text_of("text");
                if text.is_empty() {
                    return refuse(400, "Bad Request: message text is empty");
                }
                if text.chars().count() > 4096 {
                    return refuse(400, "Bad Request: message is too long");
                }
                (text, None)
            } else {
                let Some((_, name, bytes)) = field("document") else {
                    return refuse(400, "Bad Request: there is no document in the request");
                };
                if bytes.len() > api.max_document_bytes {
                    return refuse(413, "Request Entity Too Large");
                }
                let caption = text_of("caption");
                if caption.chars().count() > 1024 {
                    return refuse(400, "Bad Request: message caption is too long");
                }
                (caption, Some((name.clone().unwrap_or_default(), bytes.clone())))
            };
            api.sent.lock().unwrap().push(Sent { chat_id: chat_id.clone(), text, document });
            answer(200, json!({"ok": true, "result": {"message_id": 7, "chat": {"id": chat_id}}}))
        }
        _ => refuse(404, "Not Found"),
    }
}

/// The parts of a multipart/form-data body: (name, file name, bytes).
fn multipart(body: &[u8], boundary: &str) -> Vec<(String, Option<String>, Vec<u8>)> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        rest = &rest[at + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest_part = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let Some(head_end) = find(rest_part, b"\r\n\r\n") else { break };
        let head = String::from_utf8_lossy(&rest_part[..head_end]).into_owned();
        let content = &rest_part[head_end + 4..];
        let end = find(content, format!("\r\n{delimiter}").as_bytes()).unwrap_or(content.len());
        let disposition =
            head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition:")).unwrap_or_default();
        let attr = |key: &str| {
            disposition
                .split(';')
                .find_map(|p| p.trim().strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('"').to_owned()))
        };
        parts.push((attr("name").unwrap_or_default(), attr("filename"), content[..end].to_vec()));
        rest = &content[end..];
    }
    parts
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
