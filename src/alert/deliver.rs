//! Alerts through the alert ledger, each (alert, period, recipient, channel) at most once,
//! with the report ledger's crash rule (`pipeline::deliver`): a row is claimed before its
//! transaction and marked sent right after the server's 250; a row a crash left `sending`
//! becomes `unknown` and is sent again once, as it was (same text, same Message-ID), and the
//! log says a duplicate is possible. Transient failures are retried with `[daemon]` backoff;
//! a row that still fails, or is left unsent, is retried by the daemon until the alert is
//! stale (its next slot, see `daemon`), then given up.
//!
//! An alert message is one value, [`AlertMessage`] (a short text to one recipient), handed
//! to one send function, `send_message`, which picks the row's channel. The alert's
//! `channels` make one row per recipient and channel: e-mail to the recipient's addresses;
//! the Bitrix24 messenger to a manager's own dialog (a fixed recipient is an e-mail address
//! and gets e-mail only); Telegram to the chat `[telegram.chats]` gives for the manager's id
//! or the fixed address (none there: no Telegram row, as for reports). A chat row is the
//! subject and the body as one plain text (`chat::Chats`), claimed and marked like an e-mail.

use std::time::SystemTime;

use chrono::DateTime;
use chrono_tz::Tz;
use tracing::{info, warn};

use std::sync::OnceLock;

use crate::chat::{ChatError, ChatMessage, Chats};
use crate::config::{Channel, Config};
use crate::domain::Id;
use crate::mail::{MailError, Mailer, Outgoing, alert_message_id};
use crate::pipeline::deliver::Backoff;
use crate::store::{AlertSend, AlertSendKey, DeliveryState, NewAlertSend, Recorded, Store, StoreError};

/// The ledger's name of the e-mail channel.
pub const CHANNEL_EMAIL: &str = "email";

/// Where an alert message goes over `channel`: the addresses, the one dialog or chat, or
/// nothing (no row).
fn destinations(config: &Config, channel: Channel, message: &AlertMessage) -> Option<Vec<String>> {
    // A manager's key is their Bitrix24 user id; a fixed recipient's is their address.
    let manager = message.recipient_key.parse::<Id>().is_ok();
    match channel {
        Channel::Email => Some(message.to.clone()),
        Channel::Bitrix24 => manager.then(|| vec![message.recipient_key.clone()]),
        Channel::Telegram => {
            let chats = &config.telegram.as_ref()?.chats;
            let chat = chats.get(&message.recipient_key).or_else(|| {
                chats.iter().find(|(k, _)| !manager && k.eq_ignore_ascii_case(&message.recipient_key)).map(|(_, v)| v)
            })?;
            Some(vec![chat.clone()])
        }
    }
}

/// Why a message did not go: the mail server's answer or the chat's.
#[derive(Debug, thiserror::Error)]
enum SendFailure {
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Chat(#[from] ChatError),
}

impl SendFailure {
    fn is_transient(&self) -> bool {
        match self {
            SendFailure::Mail(e) => e.is_transient(),
            SendFailure::Chat(e) => e.is_transient(),
        }
    }
}

/// A short text to one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertMessage {
    /// The manager's Bitrix24 id, or a fixed recipient's address: the ledger's key.
    pub recipient_key: String,
    pub recipient_name: String,
    /// Where it goes; empty when the manager has no usable e-mail address.
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

/// What one delivery of an alert did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AlertSummary {
    pub sent: usize,
    /// Sent before, or being sent by another process.
    pub skipped: usize,
    /// (recipient key, reason) of rows that failed now.
    pub failed: Vec<(String, String)>,
    /// Rows sent again after an interrupted attempt (a duplicate is possible).
    pub resent: Vec<String>,
    /// The SMTP server refused the login (the reason): the rows after it were not tried
    /// (each would be one more failed login); they wait, unsent, for the next try.
    pub login_refused: Option<String>,
}

impl AlertSummary {
    fn absorb(&mut self, other: AlertSummary) {
        self.sent += other.sent;
        self.skipped += other.skipped;
        self.failed.extend(other.failed);
        self.resent.extend(other.resent);
        self.login_refused = self.login_refused.take().or(other.login_refused);
    }
}

/// An alert message as an e-mail (plain text) for the row `key`: the key makes its
/// Message-ID, the same on every attempt; `date` is the alert's slot.
pub fn compose_email(
    config: &Config,
    key: &AlertSendKey,
    message: &AlertMessage,
    date: SystemTime,
) -> Result<Outgoing, MailError> {
    let id = [key.alert.as_str(), key.period.as_str(), key.recipient_key.as_str()];
    crate::mail::compose_text(&config.mail, id, &message.to, &message.subject, &message.body, date)
}

/// What a row sends: the composed e-mail, or the text for a chat.
enum Prepared {
    Email(Outgoing),
    Chat(Channel, ChatMessage),
}

/// Sends one alert message to the row's destination `to`; `Ok` when the server accepted it.
/// The chat clients are made on the first chat row (an e-mail-only alert makes none).
async fn send_message<M: Mailer + Sync>(
    mailer: &M,
    chats: &OnceLock<Chats>,
    config: &Config,
    to: &[String],
    prepared: &Prepared,
) -> Result<(), SendFailure> {
    match prepared {
        Prepared::Email(email) => Ok(mailer.send(email).await?),
        Prepared::Chat(channel, message) => {
            let destination = to.first().map(String::as_str).unwrap_or_default();
            Ok(chats.get_or_init(|| Chats::from_config(config)).send(*channel, destination, message).await?)
        }
    }
}

/// Records each message of an alert's slot in the ledger and sends each row not yet sent,
/// exactly once.
pub async fn deliver<M: Mailer + Sync>(
    store: &Store,
    mailer: &M,
    config: &Config,
    alert: &str,
    period: &str,
    slot: DateTime<Tz>,
    messages: &[AlertMessage],
) -> Result<AlertSummary, StoreError> {
    store.recover_interrupted_alerts()?;
    let mut summary = AlertSummary::default();
    let backoff = Backoff::from_config(&config.daemon);
    let chats = OnceLock::new();
    let channels = config.alert(alert).map_or_else(|| vec![Channel::Email], |a| a.channels.clone());
    let mut rows: Vec<(&AlertMessage, Channel, Vec<String>)> = Vec::new();
    for m in messages {
        for &c in &channels {
            match destinations(config, c, m) {
                Some(to) => rows.push((m, c, to)),
                None => {
                    info!(alert, period, recipient = %m.recipient_key, channel = %c, "No destination in this channel; no row.")
                }
            }
        }
    }
    for (m, channel, to) in rows {
        let key = AlertSendKey {
            alert: alert.to_owned(),
            period: period.to_owned(),
            recipient_key: m.recipient_key.clone(),
            channel: channel.as_str().to_owned(),
        };
        let new = NewAlertSend {
            key: key.clone(),
            recipient_name: &m.recipient_name,
            to: &to,
            subject: &m.subject,
            body: &m.body,
        };
        let from = match store.record_alert(&new)? {
            Recorded::Ready => DeliveryState::Rendered,
            Recorded::Interrupted => DeliveryState::Unknown,
            Recorded::AlreadySent | Recorded::InFlight => {
                info!(alert, period, recipient = %m.recipient_key, "Alert sent before or being sent; skipped.");
                summary.skipped += 1;
                continue;
            }
        };
        if summary.login_refused.is_some() && channel == Channel::Email {
            // Left as recorded: the next try sends it, once the login works.
            continue;
        }
        summary.absorb(send_row(store, mailer, &chats, config, &key, from, slot, &backoff).await?);
    }
    Ok(summary)
}

/// Sends the rows of (alert, period) left unsent (`rendered`, `unknown`, transiently
/// `failed`) from the ledger, as they were recorded.
pub async fn resume<M: Mailer + Sync>(
    store: &Store,
    mailer: &M,
    config: &Config,
    alert: &str,
    period: &str,
    slot: DateTime<Tz>,
) -> Result<AlertSummary, StoreError> {
    store.recover_interrupted_alerts()?;
    let backoff = Backoff::from_config(&config.daemon);
    let mut summary = AlertSummary::default();
    let chats = OnceLock::new();
    for row in store.alert_sends(alert, period)? {
        if resumable(&row) && (summary.login_refused.is_none() || row.key.channel != CHANNEL_EMAIL) {
            summary.absorb(send_row(store, mailer, &chats, config, &row.key, row.state, slot, &backoff).await?);
        }
    }
    Ok(summary)
}

/// Gives up the rows of (alert, period) left unsent: the alert is stale.
pub fn give_up(store: &Store, alert: &str, period: &str, reason: &str) -> Result<usize, StoreError> {
    store.recover_interrupted_alerts()?;
    let mut n = 0;
    for row in store.alert_sends(alert, period)? {
        if resumable(&row) && store.claim_alert(&row.key, &[row.state])?.is_some() {
            store.mark_alert_failed(&row.key, reason, true)?;
            n += 1;
        }
    }
    Ok(n)
}

fn resumable(row: &AlertSend) -> bool {
    match row.state {
        DeliveryState::Rendered | DeliveryState::Unknown => true,
        DeliveryState::Failed => !row.permanent,
        DeliveryState::Sending | DeliveryState::Sent => false,
    }
}

/// The (alert, period) pairs with rows left unsent (dead processes' `sending` rows turned
/// `unknown` first).
pub fn unsent_periods(store: &Store) -> Result<Vec<(String, String)>, StoreError> {
    store.recover_interrupted_alerts()?;
    let mut out: Vec<(String, String)> =
        store.unsent_alerts()?.into_iter().filter(resumable).map(|r| (r.key.alert, r.key.period)).collect();
    out.dedup();
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn send_row<M: Mailer + Sync>(
    store: &Store,
    mailer: &M,
    chats: &OnceLock<Chats>,
    config: &Config,
    key: &AlertSendKey,
    from: DeliveryState,
    slot: DateTime<Tz>,
    backoff: &Backoff,
) -> Result<AlertSummary, StoreError> {
    let mut summary = AlertSummary::default();
    let Some(row) = store.claim_alert(key, &[from])? else {
        summary.skipped += 1;
        return Ok(summary);
    };
    let interrupted = from == DeliveryState::Unknown && row.attempts > 0;
    let fail = |summary: &mut AlertSummary, reason: String, permanent: bool| -> Result<(), StoreError> {
        warn!(alert = %key.alert, period = %key.period, recipient = %key.recipient_key, reason = %reason, "Alert not sent.");
        store.mark_alert_failed(key, &reason, permanent)?;
        summary.failed.push((key.recipient_key.clone(), reason));
        Ok(())
    };
    if row.to.is_empty() {
        let reason = "no usable e-mail address in Bitrix24 (EMAIL is empty or not one bare address)".to_owned();
        fail(&mut summary, reason, true)?;
        return Ok(summary);
    }
    if interrupted && row.attempts >= backoff.max_attempts {
        fail(&mut summary, format!("gave up after {} interrupted attempts", row.attempts), false)?;
        return Ok(summary);
    }
    let message = AlertMessage {
        recipient_key: row.key.recipient_key.clone(),
        recipient_name: row.recipient_name.clone(),
        to: row.to.clone(),
        subject: row.subject.clone(),
        body: row.body.clone(),
    };
    let date = SystemTime::from(slot);
    let mut attempt = if interrupted { row.attempts } else { 0 };
    // A chat row's text is its subject and body; its ledger id is the Message-ID the same
    // alert has as an e-mail.
    let id = [key.alert.as_str(), key.period.as_str(), key.recipient_key.as_str()];
    let prepared = match Channel::from_name(&key.channel) {
        Some(Channel::Email) => {
            compose_email(config, key, &message, date).map(|e| (e.message_id.clone(), Prepared::Email(e)))
        }
        Some(channel) => alert_message_id(&config.mail, id).map(|message_id| {
            let text = format!("{}\n\n{}", message.subject, message.body);
            (message_id, Prepared::Chat(channel, ChatMessage { text, attachment: None }))
        }),
        None => Err(MailError::Compose { detail: format!("unknown alert channel {:?}", key.channel) }),
    };
    let (message_id, prepared) = match prepared {
        Ok(p) => p,
        Err(e) => {
            fail(&mut summary, e.to_string(), true)?;
            return Ok(summary);
        }
    };
    loop {
        attempt += 1;
        store.start_alert_attempt(key, &message_id)?;
        match send_message(mailer, chats, config, &row.to, &prepared).await {
            Ok(()) => {
                store.mark_alert_sent(key)?;
                info!(alert = %key.alert, period = %key.period, recipient = %key.recipient_key, attempt, "Alert sent.");
                summary.sent += 1;
                if interrupted {
                    warn!(alert = %key.alert, period = %key.period, recipient = %key.recipient_key,
                        "Alert sent again after an interrupted attempt; a duplicate with the same Message-ID is possible.");
                    summary.resent.push(key.recipient_key.clone());
                }
                return Ok(summary);
            }
            Err(e) if e.is_transient() && attempt < backoff.max_attempts => {
                store.note_alert_retry(key, &e.to_string())?;
                if crate::pipeline::deliver::stopped_while_waiting(backoff.delay(attempt)).await {
                    // Shutting down: transiently failed, so the next start-up sends it.
                    fail(&mut summary, format!("{e} (not retried: shutting down)"), false)?;
                    return Ok(summary);
                }
            }
            Err(SendFailure::Mail(e @ MailError::LoginRefused { .. })) => {
                // Not the row's fault: failed, not permanently (see `pipeline::deliver`).
                fail(&mut summary, e.to_string(), false)?;
                summary.login_refused = Some(e.to_string());
                return Ok(summary);
            }
            Err(e) => {
                fail(&mut summary, e.to_string(), !e.is_transient())?;
                return Ok(summary);
            }
        }
    }
}
