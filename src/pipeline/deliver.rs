//! Ledger-driven delivery: each rendered report becomes a ledger row (its PDF and JSON
//! stored under the state directory), and each row not yet sent is sent exactly once through
//! a [`Mailer`], with capped exponential backoff for transient failures. A permanent failure
//! fails its row only; the admin gets one digest of what failed.
//!
//! Rendering is the pipeline's; the SQL is `store`'s; composing and transport are `mail`'s,
//! and `chat`'s for the other channels.
//!
//! # Channels
//!
//! A report becomes one row per channel of its job and destination (`rows`): one e-mail row
//! carrying every address, and one chat row per Bitrix24 dialog or Telegram chat. Every
//! row follows the rules below on its own: claimed, sent, marked sent; a chat row's
//! "Message-ID" in the ledger is `channel:destination`. A chat row's window is the chat
//! server's time to take the message (for Bitrix24 the last call, `im.disk.file.commit`;
//! an upload before it shows nothing), and a crash in it sends the message again once,
//! told to the admin as for e-mail. A refused SMTP login holds e-mail rows only.
//!
//! # A send cut short by a crash
//!
//! A row is marked `sending` immediately before its SMTP transaction and `sent` immediately
//! after the server's 250. A row found `sending` after its process died is ambiguous: killed
//! before the final dot, the server discarded the message; killed between the 250 and the
//! ledger write, it was delivered. Our rule: **such a row (state `unknown`) is sent again,
//! once, from the files stored before the crash and with the same Message-ID, and the
//! admin's digest says a duplicate is possible.** A new rendering (`send` run again) does
//! not replace an interrupted row's files. Why this way round:
//!
//! - a kill before the final dot is written loses nothing. The ambiguous window starts
//!   when the dot is written: the server still reads it after the process is gone. So the
//!   window is mostly the server's time to take the message, plus our one SQLite update
//!   (47 µs). Under the kill benchmark (BENCHMARKS.md §6) about a third of random kills
//!   land in it, so a crash-free send is the normal case. Losing a report would be worse
//!   than sending it twice;
//! - a missing Monday scorecard is a failure a manager notices and nobody repairs; a rare
//!   duplicate carrying the same Message-ID (deterministic per job, period and recipient) is
//!   collapsed by many mail systems and harmless otherwise;
//! - the admin is told in the digest, so a duplicate is never a mystery. What to tell is
//!   written in the same update that marks the row `sent` and cleared only once a digest
//!   carried it, so a crash before the digest (or a digest the server refused) delays the
//!   telling to the next run instead of losing it.
//!
//! The crash test (`tests/it/daemon_crash.rs`, SIGKILL of the real binary before, at and after
//! DATA) shows both sides: kills before the dot lose nothing, and a kill at the very moment
//! the server took the dot yields one duplicate, with the same Message-ID, reported.
//!
//! The interrupted attempt counts towards `max_attempts`, so a message that brings the
//! process down every time it is sent stops being retried and is reported as failed.
//!
//! # A refused login
//!
//! When the SMTP server refuses the login (535), the run stops sending: each further
//! message would be one more failed login, and a mailbox may lock after a few. The row
//! refused and every row not tried after it are marked failed, not permanently, with the
//! cause, so nothing is lost: the daemon's hourly retry or its start-up, or a `send` run by
//! hand, sends them once the login works (one login tried per run meanwhile). The failure
//! digest, which would need the same login, is not tried either: the log says it once.
//!
//! A `send` run by hand while the daemon is up cannot double-send: the store's claim is an
//! atomic conditional update, and a row claimed by a live process is never taken for
//! interrupted.

use std::time::Duration;

use tracing::{error, info, warn};

use crate::chat::{Attachment, ChatMessage};
use crate::config::{Channel, Config, DaemonConfig, JobConfig};
use crate::domain::Period;
use crate::kpi::ReportData;
use crate::mail::{DigestLine, MailError, Mailer, ReportMail};
use crate::pipeline::RenderedReport;
use crate::store::{Delivery, DeliveryKey, DeliveryState, NewDelivery, Recorded, Store, StoreError};

mod rows;
use rows::{Prepared, SendError, Senders, rows_of};

/// How to deliver.
#[derive(Clone, Debug, Default)]
pub struct DeliverOptions {
    /// Send again to recipients whose row is already `sent` (`send --resend`).
    pub resend: bool,
    /// Only these channels of the job (`send --channel`); every channel of the job when
    /// empty.
    pub channels: Vec<Channel>,
}

/// One row that did not end `sent` as it should, or was sent after an interruption.
#[derive(Clone, Debug, PartialEq)]
pub struct DeliveryIssue {
    pub recipient_key: String,
    /// `email`, `bitrix24` or `telegram`.
    pub channel: String,
    pub recipient_name: String,
    pub to: Vec<String>,
    pub reason: String,
    /// Not worth retrying (5xx, no address, a message that cannot be built).
    pub permanent: bool,
}

/// What one delivery did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeliverySummary {
    /// Rows sent now.
    pub sent: usize,
    /// Rows left alone: sent before (without `resend`), or being sent by another process.
    pub skipped: usize,
    /// Rows that failed now.
    pub failed: Vec<DeliveryIssue>,
    /// Rows whose earlier attempt was cut short by a crash and that were sent again now: a
    /// duplicate (same Message-ID) is possible. Also counted in `sent`.
    pub unknown: Vec<DeliveryIssue>,
    /// Rows sent, but with something the admin should know (the PDF left out because it
    /// exceeded `max_attachment_bytes`). Also counted in `sent`.
    pub notices: Vec<DeliveryIssue>,
    /// The admin digest could not be sent (the reason), when one was due.
    pub digest_error: Option<String>,
    /// The SMTP server refused the login (the reason): the rows after it were not tried.
    pub login_refused: Option<String>,
}

impl DeliverySummary {
    fn absorb(&mut self, other: DeliverySummary) {
        self.sent += other.sent;
        self.skipped += other.skipped;
        self.failed.extend(other.failed);
        self.unknown.extend(other.unknown);
        self.notices.extend(other.notices);
        self.digest_error = self.digest_error.take().or(other.digest_error);
        self.login_refused = self.login_refused.take().or(other.login_refused);
    }
}

/// A delivery that could not proceed at all (the ledger itself failed). Failures of single
/// rows are not errors: they are in [`DeliverySummary::failed`].
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("failed to deliver job {job} for {period} ({source})")]
    Store {
        job: String,
        period: String,
        #[source]
        source: StoreError,
    },
}

/// Capped exponential backoff between attempts of one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub max_attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub fn from_config(daemon: &DaemonConfig) -> Backoff {
        Backoff {
            max_attempts: daemon.max_attempts.max(1),
            initial: Duration::from_secs(daemon.retry_initial_secs),
            max: Duration::from_secs(daemon.retry_max_secs),
        }
    }

    /// The wait after failed attempt number `attempt` (1-based): initial, doubling, capped.
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Records each report as a ledger row (files stored, state `rendered`), then sends each
/// row not yet sent exactly once through `mailer`, retrying transient failures; afterwards
/// the admin gets a digest if anything failed or was sent after an interruption.
pub async fn deliver<M: Mailer + Sync>(
    store: &Store,
    mailer: &M,
    config: &Config,
    job: &JobConfig,
    period: &Period,
    reports: &[RenderedReport],
    options: &DeliverOptions,
) -> Result<DeliverySummary, DeliverError> {
    let label = period.label();
    let store_err = |source| DeliverError::Store { job: job.name.clone(), period: label.clone(), source };
    // Rows a killed process left `sending` become `unknown` here, so a `send` after a crash
    // finishes them instead of skipping them as in flight.
    store.recover_interrupted().map_err(store_err)?;
    let mut summary = DeliverySummary::default();
    let mut ready = Vec::new();
    let mut interrupted = Vec::new();
    for report in reports {
        for (key, to) in rows_of(config, job, &label, report, &options.channels) {
            let new = NewDelivery {
                key: key.clone(),
                recipient_name: &report.recipient_name,
                to: &to,
                file_name: &report.file_name,
                pdf: &report.pdf,
                json: &report.json,
            };
            match store.record(&new, options.resend).map_err(store_err)? {
                Recorded::Ready => ready.push((key, report)),
                Recorded::Interrupted => interrupted.push(key),
                Recorded::AlreadySent => {
                    info!(job = %job.name, period = %label, recipient = %report.recipient_key, channel = %key.channel, "Report sent before; skipped.");
                    summary.skipped += 1;
                }
                Recorded::InFlight => {
                    info!(job = %job.name, period = %label, recipient = %report.recipient_key, channel = %key.channel, "Report being sent by another process; skipped.");
                    summary.skipped += 1;
                }
            }
        }
    }
    let backoff = Backoff::from_config(&config.daemon);
    let send = Senders::new(mailer, config);
    for (key, report) in ready {
        if let Some(refused) = summary.login_refused.clone()
            && key.channel == Channel::Email.as_str()
        {
            summary.absorb(hold(store, &key, DeliveryState::Rendered, &refused).map_err(store_err)?);
            continue;
        }
        let row = Row { key, data: &report.data, pdf: &report.pdf };
        let one = send_row(store, &send, config, job, &row, &[DeliveryState::Rendered], &backoff).await;
        summary.absorb(one.map_err(store_err)?);
    }
    for key in interrupted {
        if summary.login_refused.is_some() && key.channel == Channel::Email.as_str() {
            // Left `unknown` for the next run, which knows what it means.
            continue;
        }
        // Sent as it was being sent when the crash came: the stored files, the same
        // Message-ID.
        if let Some(row) = store.delivery(&key).map_err(store_err)? {
            summary.absorb(send_stored(store, &send, config, job, &row, &backoff).await.map_err(store_err)?);
        }
    }
    send_digest(store, mailer, config, job, &label, &mut summary).await;
    Ok(summary)
}

/// Sends the rows of (job, period) that a crash or an earlier run left unsent: `rendered`,
/// `unknown` (interrupted: sent again, see the module doc) and transiently `failed`, from
/// the stored files, without rendering again. Rows `sending` in a dead process are first
/// turned `unknown`.
pub async fn resume<M: Mailer + Sync>(
    store: &Store,
    mailer: &M,
    config: &Config,
    job: &JobConfig,
    period: &Period,
) -> Result<DeliverySummary, DeliverError> {
    let label = period.label();
    let store_err = |source| DeliverError::Store { job: job.name.clone(), period: label.clone(), source };
    store.recover_interrupted().map_err(store_err)?;
    let backoff = Backoff::from_config(&config.daemon);
    let send = Senders::new(mailer, config);
    let mut summary = DeliverySummary::default();
    for row in store.deliveries(&job.name, &label).map_err(store_err)? {
        let resumable = match row.state {
            DeliveryState::Rendered | DeliveryState::Unknown => true,
            DeliveryState::Failed => !row.permanent,
            DeliveryState::Sending | DeliveryState::Sent => false,
        };
        if !resumable {
            continue;
        }
        if let Some(refused) = summary.login_refused.clone()
            && row.key.channel == Channel::Email.as_str()
        {
            if row.state != DeliveryState::Unknown {
                summary.absorb(hold(store, &row.key, row.state, &refused).map_err(store_err)?);
            }
            continue;
        }
        summary.absorb(send_stored(store, &send, config, job, &row, &backoff).await.map_err(store_err)?);
    }
    send_digest(store, mailer, config, job, &label, &mut summary).await;
    Ok(summary)
}

/// The (job, period label) pairs with rows left unsent, or with a digest the admin is still
/// owed, for the daemon's start-up and hourly retry: rows a dead process left `sending` are
/// turned `unknown` first. Permanently failed rows are not
/// listed: only a person can fix them (`send --resend` after fixing the address).
pub fn unsent_periods(store: &Store) -> Result<Vec<(String, String)>, StoreError> {
    store.recover_interrupted()?;
    let mut out: Vec<(String, String)> = store
        .unsent()?
        .into_iter()
        .filter(|d| match d.state {
            DeliveryState::Rendered | DeliveryState::Unknown => true,
            DeliveryState::Failed => !d.permanent,
            DeliveryState::Sending | DeliveryState::Sent => false,
        })
        .map(|d| (d.key.job, d.key.period))
        .collect();
    // A digest a crash or a refusing server kept from the admin is due too.
    out.extend(store.notice_periods()?);
    out.sort();
    out.dedup();
    Ok(out)
}

/// What a row needs to be composed.
struct Row<'a> {
    key: DeliveryKey,
    data: &'a ReportData,
    pdf: &'a [u8],
}

/// Sends one row from its stored files (claiming it from the state it is in).
async fn send_stored<M: Mailer + Sync>(
    store: &Store,
    mailer: &Senders<'_, M>,
    config: &Config,
    job: &JobConfig,
    row: &Delivery,
    backoff: &Backoff,
) -> Result<DeliverySummary, StoreError> {
    match read_stored(store, row) {
        Ok((data, pdf)) => {
            let r = Row { key: row.key.clone(), data: &data, pdf: &pdf };
            send_row(store, mailer, config, job, &r, &[row.state], backoff).await
        }
        Err(reason) => {
            // The files are gone or unreadable: nothing to send; the row needs a `send`.
            let mut summary = DeliverySummary::default();
            if store.claim(&row.key, &[row.state])?.is_some() {
                store.mark_failed(&row.key, &reason, true)?;
                summary.failed.push(failure(row, reason, true));
            }
            Ok(summary)
        }
    }
}

fn read_stored(store: &Store, row: &Delivery) -> Result<(ReportData, Vec<u8>), String> {
    let pdf = store.read_pdf(row).map_err(|e| e.to_string())?;
    let json = store.read_json(row).map_err(|e| e.to_string())?;
    let data = serde_json::from_str(&json)
        .map_err(|e| format!("failed to read report data {} ({e})", row.json_path.display()))?;
    Ok((data, pdf))
}

/// A row not tried because the server refused the login earlier in the run: failed, not
/// permanently, with the cause (see the module doc).
fn hold(store: &Store, key: &DeliveryKey, from: DeliveryState, refused: &str) -> Result<DeliverySummary, StoreError> {
    let mut summary = DeliverySummary::default();
    if let Some(row) = store.claim(key, &[from])? {
        let reason = format!("not tried: {refused}");
        store.mark_failed(key, &reason, false)?;
        summary.failed.push(failure(&row, reason, false));
    }
    Ok(summary)
}

fn failure(row: &Delivery, reason: String, permanent: bool) -> DeliveryIssue {
    DeliveryIssue {
        recipient_key: row.key.recipient_key.clone(),
        channel: row.key.channel.clone(),
        recipient_name: row.recipient_name.clone(),
        to: row.to.clone(),
        reason,
        permanent,
    }
}

/// Claims one row (from one of `from`) and sends it, with retries. A row another process
/// holds is skipped.
async fn send_row<M: Mailer + Sync>(
    store: &Store,
    mailer: &Senders<'_, M>,
    config: &Config,
    job: &JobConfig,
    row: &Row<'_>,
    from: &[DeliveryState],
    backoff: &Backoff,
) -> Result<DeliverySummary, StoreError> {
    let mut summary = DeliverySummary::default();
    let key = &row.key;
    let Some(claimed) = store.claim(key, from)? else {
        info!(job = %key.job, period = %key.period, recipient = %key.recipient_key, "Report claimed by another process; skipped.");
        summary.skipped += 1;
        return Ok(summary);
    };
    let interrupted = from.contains(&DeliveryState::Unknown) && claimed.attempts > 0;
    let fail = |summary: &mut DeliverySummary, reason: String, permanent: bool| -> Result<(), StoreError> {
        warn!(job = %key.job, period = %key.period, recipient = %key.recipient_key, reason = %reason, "Report not sent.");
        store.mark_failed(key, &reason, permanent)?;
        summary.failed.push(failure(&claimed, reason, permanent));
        Ok(())
    };
    let channel = Channel::from_name(&key.channel).unwrap_or(Channel::Email);
    if channel == Channel::Email && claimed.to.is_empty() {
        let reason =
            "no usable e-mail address in Bitrix24 (EMAIL is empty or not one bare address such as name@example.ru)";
        fail(&mut summary, reason.to_owned(), true)?;
        return Ok(summary);
    }
    if interrupted && claimed.attempts >= backoff.max_attempts {
        let reason = format!("gave up after {} interrupted attempts", claimed.attempts);
        fail(&mut summary, reason, false)?;
        return Ok(summary);
    }
    let prepared = match channel {
        Channel::Email => {
            let mail = ReportMail {
                job,
                data: row.data,
                pdf: row.pdf,
                file_name: &claimed.file_name,
                to: &claimed.to,
                recipient_key: &key.recipient_key,
                generation: claimed.generation,
            };
            crate::mail::compose(&config.mail, &mail).map(Prepared::Mail)
        }
        chat => crate::mail::compose_chat_text(row.data, Some(&claimed.file_name)).map(|text| {
            let attachment = Attachment { file_name: claimed.file_name.clone(), bytes: row.pdf.to_vec() };
            Prepared::Chat(chat, ChatMessage { text, attachment: Some(attachment) })
        }),
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            fail(&mut summary, e.to_string(), true)?;
            return Ok(summary);
        }
    };
    // What the ledger remembers the attempt by: the Message-ID, or the chat it goes to.
    let (message_id, attachment_omitted) = match &prepared {
        Prepared::Mail(o) => (o.message_id.clone(), o.attachment_omitted),
        Prepared::Chat(c, _) => (format!("{c}:{}", key.destination), false),
    };
    // An interrupted attempt counts towards the cap; a row that failed transiently in an
    // earlier run starts a new series of attempts.
    let mut attempt = if interrupted { claimed.attempts } else { 0 };
    loop {
        attempt += 1;
        store.start_attempt(key, &message_id)?;
        match mailer.send(&prepared, &key.destination).await {
            Ok(()) => {
                // What the admin must hear of this send is written with `sent`, in one
                // update, so a crash before the digest cannot lose it (see `send_digest`).
                let again = interrupted.then(|| match channel {
                    Channel::Email => {
                        "sent again after an interrupted attempt; a duplicate with the same Message-ID is possible"
                            .to_owned()
                    }
                    chat => format!("{chat}: sent again after an interrupted attempt; a duplicate message is possible"),
                });
                let without_pdf = attachment_omitted.then(|| {
                    format!(
                        "sent without the PDF: larger than max_attachment_bytes ({})",
                        config.mail.max_attachment_bytes
                    )
                });
                let notice: Vec<&str> = again.iter().chain(&without_pdf).map(String::as_str).collect();
                let notice = (!notice.is_empty()).then(|| notice.join("; "));
                store.mark_sent(key, notice.as_deref())?;
                info!(job = %key.job, period = %key.period, recipient = %key.recipient_key, channel = %key.channel, attempt, "Report sent.");
                summary.sent += 1;
                if let Some(reason) = again {
                    summary.unknown.push(failure(&claimed, reason, false));
                }
                if let Some(reason) = without_pdf {
                    summary.notices.push(failure(&claimed, reason, true));
                }
                return Ok(summary);
            }
            Err(e) if e.is_transient() && attempt < backoff.max_attempts => {
                let wait = backoff.delay(attempt);
                warn!(job = %key.job, period = %key.period, recipient = %key.recipient_key, attempt,
                    wait_secs = wait.as_secs_f64(), error = %e, "Report not sent; will retry.");
                store.note_retry(key, &e.to_string())?;
                if stopped_while_waiting(wait).await {
                    // Shutting down: no more waiting. The row stays transiently failed, so
                    // the next start-up sends it.
                    let reason = format!("{e} (not retried: shutting down; will retry at start-up)");
                    fail(&mut summary, reason, false)?;
                    return Ok(summary);
                }
            }
            Err(SendError::Mail(e @ MailError::LoginRefused { .. })) => {
                // Not permanent: the row is fine, the login is not (see the module doc).
                fail(&mut summary, e.to_string(), false)?;
                summary.login_refused = Some(e.to_string());
                return Ok(summary);
            }
            Err(e) => {
                let permanent = !e.is_transient();
                let reason =
                    if e.is_transient() { format!("{e} (gave up after {attempt} attempts)") } else { e.to_string() };
                fail(&mut summary, reason, permanent)?;
                return Ok(summary);
            }
        }
    }
}

tokio::task_local! {
    /// Set by the daemon around a delivery: becomes `true` when shutdown is asked for.
    static STOP: tokio::sync::watch::Receiver<bool>;
}

/// Runs `work` (a delivery, or a job that delivers) so that its waits between retries end
/// early when `stop` turns `true`: a daemon asked to stop finishes the SMTP transaction in
/// flight but does not sit out minutes of backoff. Outside this scope retries wait in full.
pub async fn with_stop<F: std::future::Future>(stop: tokio::sync::watch::Receiver<bool>, work: F) -> F::Output {
    STOP.scope(stop, work).await
}

/// Waits `d`; says whether a stop came first.
pub(crate) async fn stopped_while_waiting(d: Duration) -> bool {
    let Ok(mut stop) = STOP.try_with(|s| s.clone()) else {
        tokio::time::sleep(d).await;
        return false;
    };
    let asked = async move { stop.wait_for(|v| *v).await.is_ok() };
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        stopped = asked => {
            if !stopped {
                // The sender is gone, so nobody can ask to stop any more: wait in full.
                tokio::time::sleep(d).await;
            }
            stopped
        }
    }
}

/// Tells the admin what failed (and what may have gone out twice, or without its PDF), in
/// one message. The sends to tell about are read from the ledger (`admin_notice`, written
/// with `sent`) rather than from this run's summary alone, and cleared only once the digest
/// went out: a digest lost to a crash between the send and the digest, or to a server that
/// refused it, is sent by the next run of the job and period (`send`, the daemon's hourly
/// retry or its start-up, see [`unsent_periods`]). A digest that cannot be sent is logged
/// and noted in the summary; it never fails the delivery.
async fn send_digest<M: Mailer + Sync>(
    store: &Store,
    mailer: &M,
    config: &Config,
    job: &JobConfig,
    period_label: &str,
    summary: &mut DeliverySummary,
) {
    // What the admin is owed for sends (this run's and any earlier digest lost), from the
    // ledger; if it cannot be read, this run's at least. `told`: what a sent digest clears.
    let (notices, told): (Vec<DeliveryIssue>, Vec<DeliveryKey>) = match store.pending_notices(&job.name, period_label) {
        Ok(pending) => pending
            .into_iter()
            .map(|(row, notice)| {
                let key = row.key.clone();
                (failure(&row, notice, false), key)
            })
            .unzip(),
        Err(e) => {
            warn!(job = %job.name, period = %period_label, error = %e, "Cannot read the admin notices of the ledger.");
            (summary.unknown.iter().chain(&summary.notices).cloned().collect(), Vec::new())
        }
    };
    if summary.failed.is_empty() && notices.is_empty() {
        return;
    }
    if let Some(refused) = &summary.login_refused {
        // The digest needs the same login: trying it would be one more failed login.
        error!(job = %job.name, period = %period_label, not_sent = summary.failed.len(), reason = %refused,
            "The SMTP server refused the login; the reports not sent wait for the next run, and no failure digest can be sent.");
        summary.digest_error = Some(format!("not tried: {refused}"));
        return;
    }
    if config.mail.admin_to.is_empty() {
        warn!(job = %job.name, period = %period_label, failed = summary.failed.len(), "No admin_to configured; failure digest not sent.");
        // Nobody to tell, now or later: the log is all there is.
        if let Err(e) = store.clear_notices(&job.name, period_label, &told) {
            warn!(job = %job.name, period = %period_label, error = %e, "Cannot clear the admin notices.");
        }
        return;
    }
    let lines: Vec<DigestLine> = summary
        .failed
        .iter()
        .chain(&notices)
        .map(|f| DigestLine {
            recipient_key: f.recipient_key.clone(),
            // A job that sends by e-mail alone: its resend commands need no `--channel`.
            channel: if job.channels == [Channel::Email] { String::new() } else { f.channel.clone() },
            recipient_name: f.recipient_name.clone(),
            to: f.to.clone(),
            reason: f.reason.clone(),
        })
        .collect();
    let result = match crate::mail::compose_digest_in(
        &config.mail,
        config.language,
        &config.source_name,
        &job.name,
        period_label,
        &lines,
    ) {
        Ok(digest) => mailer.send(&digest).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => {
            info!(job = %job.name, period = %period_label, lines = lines.len(), "Failure digest sent to the admin.");
            if let Err(e) = store.clear_notices(&job.name, period_label, &told) {
                // The admin may hear of these again from the next run: better than never.
                warn!(job = %job.name, period = %period_label, error = %e, "Cannot mark the admin notices told.");
            }
        }
        Err(e) => {
            warn!(job = %job.name, period = %period_label, error = %e, "Failure digest not sent.");
            summary.digest_error = Some(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let b = Backoff { max_attempts: 6, initial: Duration::from_secs(30), max: Duration::from_secs(300) };
        let waits: Vec<u64> = (1..=6).map(|a| b.delay(a).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
        let huge = b.delay(200);
        assert_eq!(huge, Duration::from_secs(300));
    }
}
