//! Chat delivery: a short text message, with an optional attachment (a file name and its
//! bytes), to one recipient over one channel: the Bitrix24 messenger ([`bitrix24`], through
//! the CRM's incoming webhook and its client) or a Telegram bot ([`telegram`]). It knows
//! nothing of reports, ledgers or retries: `pipeline::deliver` calls [`Chats::send`] once per
//! ledger row, and a pace alert can do the same with a message and no attachment.
//!
//! The text is plain text and stays so: no channel interprets anything in it as markup.
//! Telegram gets it without a `parse_mode`; Bitrix24, whose messages always interpret
//! BB-code, gets it through [`escape_bbcode`], so a manager called `[b]x[/b]` or a deal
//! titled `[url=…]` shows as typed. Secrets (the webhook code, the bot token) never appear
//! in a [`ChatError`]: each channel scrubs what its server answered.

pub mod bitrix24;
pub mod telegram;

use crate::config::{Channel, Config, CrmSourceKind};
use crate::crm::bitrix24::{Bitrix24Client, ClientSettings};

pub use telegram::TelegramBot;

/// What to send: plain text, and a file to attach.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatMessage {
    pub text: String,
    pub attachment: Option<Attachment>,
}

/// A file sent with a message (a report's PDF).
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// A message that did not go.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    /// Worth retrying: a timeout, a 5xx, a rate limit that outlasted its waits.
    #[error("failed to send the {channel} message ({detail}); will retry")]
    Transient { channel: Channel, detail: String },
    /// Not worth retrying until someone acts: a refused token or webhook, a missing scope,
    /// an unknown chat, a file the server will not take.
    #[error("failed to send the {channel} message ({detail})")]
    Permanent { channel: Channel, detail: String },
}

impl ChatError {
    pub fn is_transient(&self) -> bool {
        matches!(self, ChatError::Transient { .. })
    }

    fn permanent(channel: Channel, detail: impl Into<String>) -> ChatError {
        ChatError::Permanent { channel, detail: detail.into() }
    }
}

/// The chat channels of a config, set up once per delivery. A channel whose set-up failed
/// (its secret unreadable) fails each of its messages with the reason.
pub struct Chats {
    bitrix24: Result<Bitrix24Client, String>,
    telegram: Result<TelegramBot, String>,
}

impl Chats {
    /// The Bitrix24 messenger through `[crm]`'s webhook (a real portal only) and the bot of
    /// `[telegram]`, as the config has them. Secrets are read here.
    pub fn from_config(config: &Config) -> Chats {
        let bitrix24 = match &config.crm.source {
            CrmSourceKind::Bitrix24 { webhook_url } => webhook_url
                .resolve_checked(crate::config::check_webhook_url)
                .map_err(|e| e.to_string())
                .and_then(|url| {
                    Bitrix24Client::new(&url, ClientSettings::from_config(&config.crm)).map_err(|e| e.to_string())
                }),
            CrmSourceKind::Demo => {
                Err("the bitrix24 channel needs crm.source = \"bitrix24\" (the demo portal has no messenger)"
                    .to_owned())
            }
        };
        let telegram = match &config.telegram {
            Some(t) => TelegramBot::from_config(t),
            None => Err("the telegram channel needs a [telegram] section".to_owned()),
        };
        Chats { bitrix24, telegram }
    }

    /// Sends `message` to `destination` (a Bitrix24 DIALOG_ID, a Telegram chat id) over
    /// `channel`: the one call every chat delivery makes.
    pub async fn send(&self, channel: Channel, destination: &str, message: &ChatMessage) -> Result<(), ChatError> {
        match channel {
            Channel::Email => Err(ChatError::permanent(channel, "e-mail is not a chat channel")),
            Channel::Bitrix24 => match &self.bitrix24 {
                Ok(client) => bitrix24::send(client, destination, message).await,
                Err(reason) => Err(ChatError::permanent(channel, reason.clone())),
            },
            Channel::Telegram => match &self.telegram {
                Ok(bot) => bot.send(destination, message).await,
                Err(reason) => Err(ChatError::permanent(channel, reason.clone())),
            },
        }
    }
}

/// `text` with nothing Bitrix24's messenger reads as markup: square brackets (every BB-code
/// tag, `[b]`, `[url=…]`, `[user=…]`, `[send=…]`) become the full-width `［` `］`, which look
/// alike and open no tag, and a line starting with `>>` (a quote) starts with `›>` instead.
/// Bitrix24 documents no escape for BB-code, so the brackets are replaced, not escaped.
pub fn escape_bbcode(text: &str) -> String {
    let replaced = text.replace('[', "\u{FF3B}").replace(']', "\u{FF3D}");
    replaced
        .split('\n')
        .map(|line| match line.strip_prefix(">>") {
            Some(rest) => format!("\u{203A}>{rest}"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `text` cut to at most `max` characters (a channel's limit), ending in `…` when cut.
pub fn cut_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbcode_in_text_stays_text() {
        let s = escape_bbcode("[b]Иван[/b] [url=https://evil.example]жми[/url]\n>>цитата\nok >> not a quote");
        assert!(!s.contains('[') && !s.contains(']'), "{s}");
        assert!(s.contains("［b］Иван［/b］"), "{s}");
        assert!(s.contains("\n›>цитата\n"), "{s}");
        assert!(s.ends_with("ok >> not a quote"), "{s}");
    }

    #[test]
    fn cuts_by_characters() {
        assert_eq!(cut_chars("абв", 3), "абв");
        assert_eq!(cut_chars("абвг", 3), "аб…");
    }
}
