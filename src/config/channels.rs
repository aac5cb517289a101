//! Delivery channels: what a `[[job]]` (and later an `[[alert]]`) may name in `channels`,
//! the Bitrix24 dialogs of `bitrix24_recipients`, and the `[telegram]` section with its bot
//! token (a secret like the others) and the chat id of each recipient who asked for it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use toml::Spanned;

use super::ConfigError;
use super::parse::{Ctx, RawTelegram};
use super::secrets::{SecretForms, SecretRef};
use crate::endpoint;

/// Where a report or an alert goes: one recipient, one channel, one ledger row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Channel {
    /// An e-mail through `[mail]` (SMTP or the outbox).
    Email,
    /// The Bitrix24 messenger, through the CRM's incoming webhook (scopes `im` and `disk`).
    Bitrix24,
    /// A Telegram bot (`[telegram]`).
    Telegram,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Email, Channel::Bitrix24, Channel::Telegram];

    /// The name the config, the ledger and the digest use.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Bitrix24 => "bitrix24",
            Channel::Telegram => "telegram",
        }
    }

    pub fn from_name(name: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.as_str() == name)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[telegram]`.
#[derive(Clone, Debug, PartialEq)]
pub struct TelegramConfig {
    /// The bot token from @BotFather: a secret, read when a message is sent.
    pub bot_token: SecretRef,
    /// The Bot API's base URL, without a trailing slash (default `https://api.telegram.org`;
    /// plain http only to a loopback host, a local Bot API server or a test).
    pub api_url: String,
    pub timeout_secs: u64,
    /// A recipient's chat id, by the manager's Bitrix24 user id (`"17"`) or by an e-mail
    /// address of `recipients` (`"head@example.ru"`). A recipient without one gets no
    /// Telegram message (Telegram is for those who asked for it; `check` lists the others).
    pub chats: BTreeMap<String, String>,
}

impl TelegramConfig {
    /// The chat of the first of `keys` (a user id, then e-mail addresses) that has one.
    pub fn chat_for<'a>(&'a self, keys: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
        keys.into_iter()
            .find_map(|k| self.chats.get(k).or_else(|| self.chats.get(&k.to_lowercase())).map(String::as_str))
    }
}

/// The Telegram Bot API's own address.
pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// Checks the base URL of a Bot API: https, or http to a loopback host (the check the
/// Bitrix24 webhook gets, [`endpoint::webhook_url`]); no query, fragment or path beyond `/`.
pub fn check_api_url(url: &str) -> Result<String, String> {
    let parsed = url::Url::parse(url.trim()).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().unwrap_or_default();
    match parsed.scheme() {
        "https" => {}
        "http" if endpoint::is_loopback_host(host) => {}
        other => return Err(format!("uses {other}://; expected https:// (plain http only to a loopback host)")),
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || parsed.path().trim_matches('/').contains("bot") {
        return Err("expected the API's base URL only, such as https://api.telegram.org (no /bot<token>)".to_owned());
    }
    Ok(parsed.as_str().trim_end_matches('/').to_owned())
}

/// A Bitrix24 DIALOG_ID salespulse may send to: a user id (`"17"`, their private dialog
/// with the webhook's user) or a group chat (`"chat42"`).
pub fn is_dialog_id(s: &str) -> bool {
    let digits =
        |d: &str| !d.is_empty() && d.len() <= 18 && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0');
    digits(s) || s.strip_prefix("chat").is_some_and(digits)
}

/// A Telegram chat id: an integer (`123456789`, a group's `-100…`) or a public channel's
/// `@username`.
pub fn is_telegram_chat_id(s: &str) -> bool {
    let number = s.strip_prefix('-').unwrap_or(s);
    let numeric = !number.is_empty() && number.len() <= 20 && number.bytes().all(|b| b.is_ascii_digit());
    let username = s
        .strip_prefix('@')
        .is_some_and(|u| (5..=32).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    numeric || username
}

impl Ctx<'_> {
    /// `channels = [...]` of a job: known names, at least one, none twice; `["email"]` when
    /// absent.
    pub(super) fn channels(
        &self,
        raw: Option<Spanned<Vec<Spanned<String>>>>,
        key: &str,
    ) -> Result<Vec<Channel>, ConfigError> {
        let Some(raw) = raw else { return Ok(vec![Channel::Email]) };
        if raw.get_ref().is_empty() {
            return Err(self.err(
                raw.span(),
                key,
                "name at least one channel: \"email\", \"bitrix24\" or \"telegram\" (or leave the key out for e-mail)",
            ));
        }
        let mut channels = Vec::new();
        for name in raw.into_inner() {
            let Some(channel) = Channel::from_name(name.get_ref().trim()) else {
                return Err(self.err(
                    name.span(),
                    key,
                    format!("unknown channel {:?}; expected \"email\", \"bitrix24\" or \"telegram\"", name.get_ref()),
                ));
            };
            if channels.contains(&channel) {
                return Err(self.err(name.span(), key, format!("channel {channel:?} is named twice")));
            }
            channels.push(channel);
        }
        Ok(channels)
    }

    /// `bitrix24_recipients = ["1", "chat42"]`: Bitrix24 DIALOG_IDs.
    pub(super) fn dialog_ids(&self, raw: Option<Spanned<Vec<String>>>, key: &str) -> Result<Vec<String>, ConfigError> {
        let Some(raw) = raw else { return Ok(Vec::new()) };
        let span = raw.span();
        let mut out: Vec<String> = Vec::new();
        for d in raw.into_inner() {
            let d = d.trim().to_owned();
            if !is_dialog_id(&d) {
                let hint = if d.contains('@') {
                    " (an e-mail address cannot be a chat recipient: give the person's Bitrix24 user id)"
                } else {
                    ""
                };
                return Err(self.err(
                    span,
                    key,
                    format!("not a Bitrix24 dialog: {d:?}; expected a user id such as \"17\" or a group chat such as \"chat42\"{hint}"),
                ));
            }
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    pub(super) fn telegram(&self, raw: Spanned<RawTelegram>) -> Result<TelegramConfig, ConfigError> {
        let span: Range<usize> = raw.span();
        let raw = raw.into_inner();
        let given = SecretForms {
            inline: raw.bot_token.map(Spanned::into_inner),
            env: raw.bot_token_env,
            file: raw.bot_token_file,
            credential: raw.bot_token_credential,
        };
        let bot_token = self.secret(given, "telegram.bot_token", span.clone())?.ok_or_else(|| {
            self.err(
                span.clone(),
                "telegram.bot_token",
                "[telegram] needs bot_token, bot_token_env, bot_token_file or bot_token_credential",
            )
        })?;
        let api_url = match raw.api_url {
            None => TELEGRAM_API_URL.to_owned(),
            Some(u) => check_api_url(u.get_ref()).map_err(|m| self.err(u.span(), "telegram.api_url", m))?,
        };
        let mut chats = BTreeMap::new();
        for (who, chat) in raw.chats {
            let key = format!("telegram.chats.{:?}", who.get_ref());
            let w = who.get_ref().trim();
            let is_user = !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit());
            if !is_user && w.parse::<lettre::Address>().is_err() {
                return Err(self.err(
                    who.span(),
                    &key,
                    "expected a manager's Bitrix24 user id such as \"17\" or an e-mail address of a job's recipients",
                ));
            }
            if !is_telegram_chat_id(chat.get_ref().trim()) {
                return Err(self.err(
                    chat.span(),
                    &key,
                    format!(
                        "not a Telegram chat id: {:?}; expected a number such as \"123456789\" (a group: \"-100…\") or \"@channel\"",
                        chat.get_ref()
                    ),
                ));
            }
            let w = if is_user { w.to_owned() } else { w.to_lowercase() };
            chats.insert(w, chat.get_ref().trim().to_owned());
        }
        Ok(TelegramConfig {
            bot_token,
            api_url,
            timeout_secs: self.bounded(raw.timeout_secs, "telegram.timeout_secs", 60, 1..=3600, "seconds")?,
            chats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogs_and_chats_are_checked() {
        for ok in ["1", "17", "chat42"] {
            assert!(is_dialog_id(ok), "{ok}");
        }
        for bad in ["", "0", "chat", "chat0x", "sg12", "a@b.ru", "17 ", "-1", "chat-1"] {
            assert!(!is_dialog_id(bad), "{bad}");
        }
        for ok in ["123456789", "-1001234567890", "@sales_team"] {
            assert!(is_telegram_chat_id(ok), "{ok}");
        }
        for bad in ["", "-", "@abc", "12a", "@with space", "a@b.ru"] {
            assert!(!is_telegram_chat_id(bad), "{bad}");
        }
    }

    #[test]
    fn api_urls_are_https_or_loopback() {
        assert_eq!(check_api_url("https://api.telegram.org/").unwrap(), "https://api.telegram.org");
        assert_eq!(check_api_url("http://127.0.0.1:8081").unwrap(), "http://127.0.0.1:8081");
        assert!(check_api_url("http://api.telegram.org").is_err());
        assert!(check_api_url("https://api.telegram.org/bot123:abc").is_err());
        assert!(check_api_url("ftp://x").is_err());
    }
}
