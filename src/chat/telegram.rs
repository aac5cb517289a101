//! A Telegram bot over the Bot API (`https://api.telegram.org/bot<token>/METHOD`):
//! `sendMessage` for a text, `sendDocument` (multipart/form-data) for a text with a file,
//! the text as its caption. Plain text: no `parse_mode`, so nothing in it is markup.
//!
//! Answers are `{"ok": true, "result": …}` or `{"ok": false, "error_code": N,
//! "description": "…", "parameters": {"retry_after": S}}`. A 429 is waited out
//! (`retry_after`, up to [`MAX_RETRY_AFTER`] a time, [`MAX_FLOOD_WAITS`] times) and tried
//! again; 5xx and connection failures are transient; 401 and 404 (a refused or malformed
//! token), 400 (chat not found), 403 (the bot was blocked) and 413 (file too large) are
//! permanent. The token is part of every URL, so it is kept out of every error: reqwest's
//! errors lose their URL, and whatever the server answered is scrubbed of it.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ChatError, ChatMessage, cut_chars};
use crate::config::{Channel, Secret, TelegramConfig};

/// Telegram's limits: a message's text, a caption.
pub const MAX_TEXT_CHARS: usize = 4096;
pub const MAX_CAPTION_CHARS: usize = 1024;
/// The longest flood-control wait the bot sits out itself; a longer one is a transient
/// failure, retried with the delivery's backoff.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
pub const MAX_FLOOD_WAITS: u32 = 3;

/// One bot: its API base and token.
pub struct TelegramBot {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

// By hand: the token is a secret.
impl std::fmt::Debug for TelegramBot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelegramBot").field("api_url", &self.api_url).finish_non_exhaustive()
    }
}

/// One call's failure before retries decide.
enum Failure {
    Flood(Duration, String),
    Transient(String),
    Permanent(String),
}

impl TelegramBot {
    /// The bot of `[telegram]`; reads the token now.
    pub fn from_config(config: &TelegramConfig) -> Result<TelegramBot, String> {
        let token = config.bot_token.resolve().map_err(|e| e.to_string())?;
        TelegramBot::new(&config.api_url, token, Duration::from_secs(config.timeout_secs))
    }

    pub fn new(api_url: &str, token: Secret, timeout: Duration) -> Result<TelegramBot, String> {
        let api_url = crate::config::check_api_url(api_url).map_err(|m| format!("telegram.api_url {m}"))?;
        if token.expose().is_empty() || token.expose().chars().any(|c| c.is_whitespace() || c == '/') {
            return Err("telegram.bot_token is not a bot token (expected 123456:ABC-…)".to_owned());
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("failed to build the HTTP client: {}", e.without_url()))?;
        Ok(TelegramBot { http, api_url, token })
    }

    /// Sends `message` to `chat_id`.
    pub async fn send(&self, chat_id: &str, message: &ChatMessage) -> Result<(), ChatError> {
        let result = match &message.attachment {
            None => {
                let text = cut_chars(&message.text, MAX_TEXT_CHARS);
                let body = json!({"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": true}});
                self.call("sendMessage", || Body::Json(body.clone())).await
            }
            Some(file) => {
                // A text too long for a caption goes first as a message of its own.
                let caption = if message.text.chars().count() > MAX_CAPTION_CHARS {
                    let text = cut_chars(&message.text, MAX_TEXT_CHARS);
                    let body = json!({"chat_id": chat_id, "text": text, "link_preview_options": {"is_disabled": true}});
                    self.call("sendMessage", || Body::Json(body.clone())).await.map_err(|e| self.error(chat_id, e))?;
                    String::new()
                } else {
                    message.text.clone()
                };
                let form = multipart(chat_id, &caption, &file.file_name, &file.bytes);
                self.call("sendDocument", || Body::Form(form.0.clone(), form.1.clone())).await
            }
        };
        result.map(drop).map_err(|e| self.error(chat_id, e))
    }

    /// Asks the Bot API who the bot is (`getMe`), for `check`: its username.
    pub async fn check(&self) -> Result<String, ChatError> {
        let me = self.call("getMe", || Body::Json(json!({}))).await.map_err(|e| self.error("-", e))?;
        Ok(crate::text::one_line(me.get("username").and_then(Value::as_str).unwrap_or("?")))
    }

    fn error(&self, chat_id: &str, failure: Failure) -> ChatError {
        let channel = Channel::Telegram;
        match failure {
            Failure::Flood(wait, d) => ChatError::Transient {
                channel,
                detail: self
                    .token
                    .scrub(&format!("chat {chat_id}: {d} (flood control, retry after {}s)", wait.as_secs())),
            },
            Failure::Transient(d) => {
                ChatError::Transient { channel, detail: self.token.scrub(&format!("chat {chat_id}: {d}")) }
            }
            Failure::Permanent(d) => {
                ChatError::Permanent { channel, detail: self.token.scrub(&format!("chat {chat_id}: {d}")) }
            }
        }
    }

    /// One method, its 429s waited out.
    async fn call(&self, method: &str, body: impl Fn() -> Body) -> Result<Value, Failure> {
        let mut waits = 0;
        loop {
            match self.once(method, body()).await {
                Err(Failure::Flood(wait, _)) if waits < MAX_FLOOD_WAITS && wait <= MAX_RETRY_AFTER => {
                    waits += 1;
                    tracing::warn!(method, wait_secs = wait.as_secs(), "Telegram flood control; waiting.");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn once(&self, method: &str, body: Body) -> Result<Value, Failure> {
        let url = format!("{}/bot{}/{method}", self.api_url, self.token.expose());
        let request = match body {
            Body::Json(v) => self.http.post(url).json(&v),
            Body::Form(content_type, bytes) => {
                self.http.post(url).header(reqwest::header::CONTENT_TYPE, content_type).body(bytes)
            }
        };
        let response = request.send().await.map_err(|e| {
            let e = e.without_url();
            Failure::Transient(format!("{method}: {} to {}: {e}", crate::endpoint::send_failure(&e), self.api_url))
        })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| Failure::Transient(format!("{method}: connection dropped mid-answer: {}", e.without_url())))?;
        let answer: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(_) if status.is_server_error() => {
                return Err(Failure::Transient(format!("{method}: HTTP {status} without a JSON answer")));
            }
            Err(_) if status.as_u16() == 413 => {
                return Err(Failure::Permanent(format!("{method}: HTTP 413: the file is too large for the Bot API")));
            }
            Err(_) => return Err(Failure::Transient(format!("{method}: HTTP {status}: the answer is not JSON"))),
        };
        if answer.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(answer.get("result").cloned().unwrap_or(Value::Null));
        }
        let code = answer.get("error_code").and_then(Value::as_u64).unwrap_or(u64::from(status.as_u16()));
        let description = answer.get("description").and_then(Value::as_str).unwrap_or("no description");
        let shown = format!("{method}: {code} {description}");
        Err(match code {
            429 => {
                let secs = answer.pointer("/parameters/retry_after").and_then(Value::as_u64).unwrap_or(1);
                Failure::Flood(Duration::from_secs(secs), shown)
            }
            401 | 404 => Failure::Permanent(format!(
                "{shown}: the Bot API refused the bot token; check telegram.bot_token (from @BotFather)"
            )),
            413 => Failure::Permanent(format!("{shown}: the file is too large for the Bot API (50 MB)")),
            400 | 403 => Failure::Permanent(format!(
                "{shown}: check the chat id in [telegram.chats], and that the person has started the bot"
            )),
            c if c >= 500 => Failure::Transient(shown),
            _ => Failure::Permanent(shown),
        })
    }
}

/// A request body: JSON, or a form as (content type, bytes).
enum Body {
    Json(Value),
    Form(String, Vec<u8>),
}

/// `multipart/form-data` with `chat_id`, `caption` (when not empty) and the file as
/// `document`; the boundary is a hash of the content, so it never occurs in it.
fn multipart(chat_id: &str, caption: &str, file_name: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let mut hash = crate::fnv::Fnv1a::new();
    hash.write(bytes);
    hash.write(caption.as_bytes());
    let mut boundary = format!("salespulse-{:016x}", hash.finish());
    while bytes.windows(boundary.len()).any(|w| w == boundary.as_bytes()) {
        boundary.push('x');
    }
    let name = crate::text::file_name(file_name, "report.pdf").replace('"', "'");
    let mut out = Vec::with_capacity(bytes.len() + 512);
    let mut field = |name: &str, value: &str| {
        out.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    };
    field("chat_id", chat_id);
    if !caption.is_empty() {
        field("caption", caption);
    }
    out.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"document\"; filename=\"{name}\"\r\nContent-Type: application/pdf\r\n\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(bytes);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), out)
}
