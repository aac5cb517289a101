//! A report's rows per channel and destination, and how each row leaves: the mailer for
//! e-mail rows, the chat channels for the others.

use tracing::info;

use crate::chat::{ChatError, ChatMessage, Chats};
use crate::config::{Channel, Config, JobConfig, ReportKind};
use crate::mail::{MailError, Mailer, Outgoing};
use crate::pipeline::RenderedReport;
use crate::store::DeliveryKey;

/// The ledger rows of one report: one per channel of the job (those in `only`, when given)
/// and destination, each with the addresses it goes to. E-mail: one row, every address of
/// the report. Bitrix24: the manager's own dialog (a scorecard) and each of
/// `bitrix24_recipients`. Telegram: the chat of the manager (by user id or e-mail) and of
/// each of `recipients` that `[telegram.chats]` lists; a recipient without a chat gets no
/// Telegram row (docs/configuration.md).
pub(super) fn rows_of(
    config: &Config,
    job: &JobConfig,
    period: &str,
    report: &RenderedReport,
    only: &[Channel],
) -> Vec<(DeliveryKey, Vec<String>)> {
    let key = |channel: Channel, destination: &str| DeliveryKey {
        job: job.name.clone(),
        period: period.to_owned(),
        recipient_key: report.recipient_key.clone(),
        channel: channel.as_str().to_owned(),
        destination: destination.to_owned(),
    };
    let manager = job.report == ReportKind::Manager && report.recipient_key != "department";
    let mut rows = Vec::new();
    for &channel in job.channels.iter().filter(|c| only.is_empty() || only.contains(c)) {
        let mut destinations: Vec<String> = Vec::new();
        match channel {
            Channel::Email => {
                rows.push((key(channel, ""), report.to.clone()));
                continue;
            }
            Channel::Bitrix24 => {
                if manager {
                    destinations.push(report.recipient_key.clone());
                }
                destinations.extend(job.bitrix24_recipients.iter().cloned());
            }
            Channel::Telegram => {
                let Some(telegram) = &config.telegram else { continue };
                let extra = |a: &String| job.recipients.iter().any(|r| r.eq_ignore_ascii_case(a));
                if manager {
                    let own = std::iter::once(report.recipient_key.as_str())
                        .chain(report.to.iter().filter(|a| !extra(a)).map(String::as_str));
                    match telegram.chat_for(own) {
                        Some(chat) => destinations.push(chat.to_owned()),
                        None => info!(job = %job.name, recipient = %report.recipient_key,
                            "No Telegram chat in [telegram.chats] for this manager; no Telegram message."),
                    }
                }
                for r in &job.recipients {
                    match telegram.chat_for([r.as_str()]) {
                        Some(chat) => destinations.push(chat.to_owned()),
                        None => info!(job = %job.name, recipient = %r,
                            "No Telegram chat in [telegram.chats] for this recipient; no Telegram message."),
                    }
                }
            }
        }
        let mut seen = Vec::new();
        for d in destinations {
            if !seen.contains(&d) {
                rows.push((key(channel, &d), vec![d.clone()]));
                seen.push(d);
            }
        }
    }
    rows
}

/// How rows leave: the mailer for e-mail rows, the chat channels (set up at the first chat
/// row, reading their secrets then) for the others.
pub(super) struct Senders<'a, M> {
    mailer: &'a M,
    config: &'a Config,
    chats: std::sync::OnceLock<Chats>,
}

impl<'a, M: Mailer + Sync> Senders<'a, M> {
    pub(super) fn new(mailer: &'a M, config: &'a Config) -> Senders<'a, M> {
        Senders { mailer, config, chats: std::sync::OnceLock::new() }
    }

    pub(super) async fn send(&self, prepared: &Prepared, destination: &str) -> Result<(), SendError> {
        match prepared {
            Prepared::Mail(outgoing) => self.mailer.send(outgoing).await.map_err(SendError::Mail),
            Prepared::Chat(channel, message) => {
                let chats = self.chats.get_or_init(|| Chats::from_config(self.config));
                chats.send(*channel, destination, message).await.map_err(SendError::Chat)
            }
        }
    }
}

/// A row ready to go: the composed e-mail, or a chat message.
pub(super) enum Prepared {
    Mail(Outgoing),
    Chat(Channel, ChatMessage),
}

/// Why a row did not go.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    #[error(transparent)]
    Mail(MailError),
    #[error(transparent)]
    Chat(ChatError),
}

impl SendError {
    pub(super) fn is_transient(&self) -> bool {
        match self {
            SendError::Mail(e) => e.is_transient(),
            SendError::Chat(e) => e.is_transient(),
        }
    }
}
