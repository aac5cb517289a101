//! The delivery ledger: one row per (job, period label, recipient key) and the files it
//! points at; the states and the claim rule are in the module doc of `store`.

use std::fs;
use std::path::{Path, PathBuf};

use rusqlite::{OptionalExtension, Row, params};

use super::{NOW, Owner, Store, StoreError, describe, path_text, sql, write_atomically};
use crate::text::file_name;

/// [`Store::mark_sent`]'s statement, prepared once per connection.
const MARK_SENT: &str = "UPDATE deliveries SET state = 'sent', sent_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        last_error = NULL, permanent = 0, claimed_by = NULL, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        admin_notice = COALESCE(?7, admin_notice)
     WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND channel = ?4 AND destination = ?5
       AND state = 'sending' AND claimed_by = ?6";

/// Where a ledger row stands (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryState {
    Rendered,
    Sending,
    Sent,
    Failed,
    Unknown,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Rendered => "rendered",
            DeliveryState::Sending => "sending",
            DeliveryState::Sent => "sent",
            DeliveryState::Failed => "failed",
            DeliveryState::Unknown => "unknown",
        }
    }

    pub(super) fn parse(s: &str) -> DeliveryState {
        match s {
            "rendered" => DeliveryState::Rendered,
            "sending" => DeliveryState::Sending,
            "sent" => DeliveryState::Sent,
            "failed" => DeliveryState::Failed,
            // The CHECK constraint admits nothing else.
            _ => DeliveryState::Unknown,
        }
    }
}

impl std::fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which row: (job, period label, recipient key, channel, destination).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub job: String,
    pub period: String,
    /// Which report: the manager's Bitrix24 id, or `department`.
    pub recipient_key: String,
    /// `email`, `bitrix24` or `telegram` (`config::Channel::as_str`).
    pub channel: String,
    /// Where a chat row goes (a Bitrix24 DIALOG_ID, a Telegram chat id); `""` for e-mail,
    /// whose one SMTP transaction carries every address of the row.
    pub destination: String,
}

impl DeliveryKey {
    /// The e-mail row of a report.
    pub fn email(job: &str, period: &str, recipient_key: &str) -> DeliveryKey {
        DeliveryKey {
            job: job.to_owned(),
            period: period.to_owned(),
            recipient_key: recipient_key.to_owned(),
            channel: "email".to_owned(),
            destination: String::new(),
        }
    }
}

/// One row of the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery {
    pub key: DeliveryKey,
    pub recipient_name: String,
    pub to: Vec<String>,
    pub file_name: String,
    /// Absolute paths of the stored PDF and its JSON data.
    pub pdf_path: PathBuf,
    pub json_path: PathBuf,
    pub state: DeliveryState,
    /// SMTP transactions started for this row (including one cut short by a crash).
    pub attempts: u32,
    /// The last failure was a permanent refusal.
    pub permanent: bool,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub sent_at: Option<String>,
    /// 0 for the first delivery of the row; +1 for each deliberate resend of a row that
    /// was sent (or may have been), so the resend gets its own Message-ID.
    pub generation: u32,
    /// What the admin has still to be told about this row (see [`Store::pending_notices`]).
    pub admin_notice: Option<String>,
}

/// A report to record in the ledger.
pub struct NewDelivery<'a> {
    pub key: DeliveryKey,
    pub recipient_name: &'a str,
    pub to: &'a [String],
    pub file_name: &'a str,
    pub pdf: &'a [u8],
    pub json: &'a str,
}

/// What [`Store::record`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// A new row, or an unsent one whose files were replaced by the new rendering.
    Ready,
    /// The row was sent already: files and state left as they were.
    AlreadySent,
    /// Another process is sending the row right now: left alone.
    InFlight,
    /// A send of the row was cut short by a crash: left in state `unknown` with the files
    /// it was being sent with.
    Interrupted,
}

impl Store {
    /// Stores a rendered report's files and its ledger row (state `rendered`). A row already
    /// sent is left as it is unless `reopen_sent` (an explicit resend); a row whose send was
    /// interrupted keeps its stored files and state (it is resent as it was, see
    /// `pipeline::deliver`) unless `reopen_sent`; a row being sent by another process is
    /// always left alone.
    pub fn record(&self, new: &NewDelivery<'_>, reopen_sent: bool) -> Result<Recorded, StoreError> {
        let existing = self.delivery(&new.key)?;
        match existing.as_ref().map(|d| d.state) {
            Some(DeliveryState::Sent) if !reopen_sent => return Ok(Recorded::AlreadySent),
            Some(DeliveryState::Unknown) if !reopen_sent => return Ok(Recorded::Interrupted),
            Some(DeliveryState::Sending) => return Ok(Recorded::InFlight),
            _ => {}
        }
        // New files under fresh names: the files a row points at never change under a
        // process that is sending them, whatever happens between the read above and the
        // update below.
        let dir = self.report_dir(&new.key.job, &new.key.period);
        let stem = format!("{}.{:08x}", file_name(&new.key.recipient_key, "_"), fastrand::u32(..));
        let pdf_rel = dir.join(format!("{stem}.pdf"));
        let json_rel = dir.join(format!("{stem}.json"));
        write_atomically(&self.state_dir.join(&pdf_rel), new.pdf)?;
        write_atomically(&self.state_dir.join(&json_rel), new.json.as_bytes())?;
        let addresses = serde_json::to_string(new.to).expect("a list of strings serializes");
        let k = &new.key;
        // An unsent row gets the new rendering and addresses (an address fixed in Bitrix24
        // since the last try is used) and a fresh attempt count; the WHERE clause re-checks
        // the state, so a row claimed meanwhile is not touched.
        let reopen = if reopen_sent { ", 'sent', 'unknown'" } else { "" };
        let changed = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO deliveries (job, period, recipient_key, channel, destination, recipient_name,
                        addresses, file_name, pdf_path, json_path, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'rendered')
                     ON CONFLICT (job, period, recipient_key, channel, destination) DO UPDATE SET
                        recipient_name = excluded.recipient_name, addresses = excluded.addresses,
                        file_name = excluded.file_name, pdf_path = excluded.pdf_path,
                        json_path = excluded.json_path, state = 'rendered', attempts = 0, permanent = 0,
                        last_error = NULL, claimed_by = NULL, updated_at = {NOW},
                        generation = deliveries.generation
                            + (deliveries.state IN ('sent', 'unknown'))
                     WHERE deliveries.state IN ('rendered', 'failed'{reopen})"
                ),
                params![
                    k.job,
                    k.period,
                    k.recipient_key,
                    k.channel,
                    k.destination,
                    new.recipient_name,
                    addresses,
                    new.file_name,
                    path_text(&pdf_rel),
                    path_text(&json_rel)
                ],
            )
            .map_err(sql(format!("record delivery {}", describe(k))))?;
        let (stale_pdf, stale_json) = match (changed, existing) {
            (1, Some(old)) => (old.pdf_path, old.json_path),
            (1, None) => return Ok(Recorded::Ready),
            _ => (self.state_dir.join(&pdf_rel), self.state_dir.join(&json_rel)),
        };
        // Old files of a replaced rendering, or ours when we lost: nobody points at them.
        let _ = fs::remove_file(stale_pdf);
        let _ = fs::remove_file(stale_json);
        if changed == 1 {
            return Ok(Recorded::Ready);
        }
        Ok(match self.delivery(k)?.map(|d| d.state) {
            Some(DeliveryState::Sending) => Recorded::InFlight,
            Some(DeliveryState::Unknown) => Recorded::Interrupted,
            _ => Recorded::AlreadySent,
        })
    }

    /// Claims a row for sending: sets `sending` only if the row is in one of `from`, and says
    /// whether this process won it. Whoever wins sends; everyone else leaves the row alone.
    pub fn claim(&self, key: &DeliveryKey, from: &[DeliveryState]) -> Result<Option<Delivery>, StoreError> {
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        if states.is_empty() {
            return Ok(None);
        }
        let changed = self
            .conn()
            .execute(
                &format!(
                    "UPDATE deliveries SET state = 'sending', claimed_by = ?6, updated_at = {NOW}
                     WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND channel = ?4 AND destination = ?5
                       AND state IN ({})",
                    states.join(", ")
                ),
                params![key.job, key.period, key.recipient_key, key.channel, key.destination, self.owner.token],
            )
            .map_err(sql(format!("claim delivery {}", describe(key))))?;
        if changed == 1 { self.delivery(key) } else { Ok(None) }
    }

    /// Counts an SMTP transaction about to start on a claimed row, and remembers the
    /// Message-ID it carries.
    pub fn start_attempt(&self, key: &DeliveryKey, message_id: &str) -> Result<(), StoreError> {
        self.update_claimed(key, "attempts = attempts + 1, message_id = ?7", Some(message_id), "start attempt")
    }

    /// Records a failed attempt on a claimed row that will be tried again (the row stays
    /// `sending`: this process keeps its claim while it waits).
    pub fn note_retry(&self, key: &DeliveryKey, error: &str) -> Result<(), StoreError> {
        self.update_claimed(key, "last_error = ?7", Some(error), "note retry")
    }

    /// The server accepted the message. This is the only write between the server's 250 and
    /// the ledger knowing it (the window of `pipeline::deliver`), so it does nothing else: one
    /// cached statement, committed without waiting for the disk (`synchronous = NORMAL` in
    /// WAL mode: the commit is the write of its WAL frames and the update of the WAL index,
    /// microseconds; with `FULL` an fsync would come between the two, inside the window).
    /// A process killed after the write keeps the commit; a power cut before the next
    /// commit's fsync can lose it, which leaves the row `sending`: the same case as a kill
    /// inside the window (sent again with the same Message-ID, the admin told).
    ///
    /// `notice`: what the admin must be told about this send (kept until
    /// [`Store::clear_notices`]; see [`Store::pending_notices`]).
    pub fn mark_sent(&self, key: &DeliveryKey, notice: Option<&str>) -> Result<(), StoreError> {
        let conn = self.conn();
        let err = || sql(format!("mark sent delivery {}", describe(key)));
        let sent = conn.pragma_update(None, "synchronous", "NORMAL").and_then(|()| {
            conn.prepare_cached(MARK_SENT)?.execute(params![
                key.job,
                key.period,
                key.recipient_key,
                key.channel,
                key.destination,
                self.owner.token,
                notice
            ])
        });
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        sent.map_err(err())?;
        restored.map_err(err())?;
        Ok(())
    }

    /// The row will not be tried again by this run.
    pub fn mark_failed(&self, key: &DeliveryKey, error: &str, permanent: bool) -> Result<(), StoreError> {
        let set = format!("state = 'failed', last_error = ?7, permanent = {}, claimed_by = NULL", permanent as u8);
        self.update_claimed(key, &set, Some(error), "mark failed")
    }

    fn update_claimed(
        &self,
        key: &DeliveryKey,
        set: &str,
        value: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        // Only this process's claim may be finished by it: a row another process won (or
        // that recovery took away) is not touched.
        let stmt = format!(
            "UPDATE deliveries SET {set}, updated_at = {NOW}
             WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND channel = ?4 AND destination = ?5
               AND state = 'sending' AND claimed_by = ?6"
        );
        let conn = self.conn();
        let k = key;
        let result = if let Some(value) = value {
            conn.execute(
                &stmt,
                params![k.job, k.period, k.recipient_key, k.channel, k.destination, self.owner.token, value],
            )
        } else {
            conn.execute(&stmt, params![k.job, k.period, k.recipient_key, k.channel, k.destination, self.owner.token])
        };
        result.map_err(sql(format!("{action} delivery {}", describe(key))))?;
        Ok(())
    }

    /// Marks `sending` rows whose process is gone as `unknown`, and returns every row in
    /// that state. Rows claimed by a live process (a `send` run by hand) are left alone.
    pub fn recover_interrupted(&self) -> Result<Vec<Delivery>, StoreError> {
        let claimed: Vec<(DeliveryKey, Option<String>)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT job, period, recipient_key, channel, destination, claimed_by FROM deliveries
                     WHERE state = 'sending'",
                )
                .map_err(sql("list interrupted deliveries"))?;
            stmt.query_map([], |r| {
                let key = DeliveryKey {
                    job: r.get(0)?,
                    period: r.get(1)?,
                    recipient_key: r.get(2)?,
                    channel: r.get(3)?,
                    destination: r.get(4)?,
                };
                Ok((key, r.get(5)?))
            })
            .and_then(|rows| rows.collect())
            .map_err(sql("list interrupted deliveries"))?
        };
        for (key, owner) in claimed {
            let owner = owner.unwrap_or_default();
            if owner == self.owner.token || Owner::is_alive(&self.state_dir, &owner) {
                continue;
            }
            self.conn()
                .execute(
                    &format!(
                        "UPDATE deliveries SET state = 'unknown', claimed_by = NULL, updated_at = {NOW},
                            last_error = COALESCE(last_error || '; ', '') || 'interrupted during sending'
                         WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND channel = ?4
                           AND destination = ?5 AND state = 'sending' AND claimed_by IS ?6"
                    ),
                    params![
                        key.job,
                        key.period,
                        key.recipient_key,
                        key.channel,
                        key.destination,
                        if owner.is_empty() { None } else { Some(owner) }
                    ],
                )
                .map_err(sql(format!("mark delivery {} unknown", describe(&key))))?;
        }
        self.select("WHERE state = 'unknown' ORDER BY job, period, recipient_key, channel, destination", params![])
    }

    /// One row.
    pub fn delivery(&self, key: &DeliveryKey) -> Result<Option<Delivery>, StoreError> {
        let conn = self.conn();
        conn.query_row(
            &format!(
                "{SELECT_DELIVERY} WHERE job = ?1 AND period = ?2 AND recipient_key = ?3 AND channel = ?4
                 AND destination = ?5"
            ),
            params![key.job, key.period, key.recipient_key, key.channel, key.destination],
            |r| self.row(r),
        )
        .optional()
        .map_err(sql(format!("read delivery {}", describe(key))))
    }

    /// The rows of one job and period, by recipient key.
    pub fn deliveries(&self, job: &str, period: &str) -> Result<Vec<Delivery>, StoreError> {
        self.select("WHERE job = ?1 AND period = ?2 ORDER BY recipient_key, channel, destination", params![job, period])
    }

    /// Rows not sent: `rendered`, `sending`, `failed` and `unknown`, for `status` and for the
    /// daemon's start-up.
    /// The rows of (job, period) with something the admin has not been told yet, with it.
    pub fn pending_notices(&self, job: &str, period: &str) -> Result<Vec<(Delivery, String)>, StoreError> {
        let rows = self.select(
            "WHERE job = ?1 AND period = ?2 AND admin_notice IS NOT NULL ORDER BY recipient_key, channel, destination",
            params![job, period],
        )?;
        Ok(rows.into_iter().filter_map(|d| d.admin_notice.clone().map(|n| (d, n))).collect())
    }

    /// The (job, period) pairs with a notice the admin has not been told yet.
    pub fn notice_periods(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT DISTINCT job, period FROM deliveries WHERE admin_notice IS NOT NULL ORDER BY job, period")
            .map_err(sql("list pending admin notices"))?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(sql("list pending admin notices"))?;
        rows.collect::<Result<_, _>>().map_err(sql("list pending admin notices"))
    }

    /// The admin was told about these rows of (job, period): one statement, one commit.
    pub fn clear_notices(&self, job: &str, period: &str, rows: &[DeliveryKey]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let keys: Vec<[&str; 3]> =
            rows.iter().map(|k| [k.recipient_key.as_str(), k.channel.as_str(), k.destination.as_str()]).collect();
        let keys = serde_json::to_string(&keys).unwrap_or_else(|_| "[]".to_owned());
        self.conn()
            .execute(
                "UPDATE deliveries SET admin_notice = NULL
                 WHERE job = ?1 AND period = ?2 AND EXISTS (
                     SELECT 1 FROM json_each(?3) AS k
                     WHERE json_extract(k.value, '$[0]') = recipient_key
                       AND json_extract(k.value, '$[1]') = channel
                       AND json_extract(k.value, '$[2]') = destination)",
                params![job, period, keys],
            )
            .map_err(sql(format!("clear the admin notices of {job}/{period}")))?;
        Ok(())
    }

    pub fn unsent(&self) -> Result<Vec<Delivery>, StoreError> {
        self.select("WHERE state != 'sent' ORDER BY job, period, recipient_key, channel, destination", params![])
    }

    fn select(&self, clause: &str, params: impl rusqlite::Params) -> Result<Vec<Delivery>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT_DELIVERY} {clause}")).map_err(sql("list deliveries"))?;
        stmt.query_map(params, |r| self.row(r)).and_then(|rows| rows.collect()).map_err(sql("list deliveries"))
    }

    fn row(&self, r: &Row<'_>) -> rusqlite::Result<Delivery> {
        let addresses: String = r.get(4)?;
        let pdf: String = r.get(6)?;
        let json: String = r.get(7)?;
        Ok(Delivery {
            key: DeliveryKey {
                job: r.get(0)?,
                period: r.get(1)?,
                recipient_key: r.get(2)?,
                channel: r.get(18)?,
                destination: r.get(19)?,
            },
            recipient_name: r.get(3)?,
            to: serde_json::from_str(&addresses).unwrap_or_default(),
            file_name: r.get(5)?,
            pdf_path: self.state_dir.join(pdf),
            json_path: self.state_dir.join(json),
            state: DeliveryState::parse(&r.get::<_, String>(8)?),
            attempts: r.get(9)?,
            permanent: r.get(10)?,
            last_error: r.get(11)?,
            message_id: r.get(12)?,
            created_at: r.get(13)?,
            updated_at: r.get(14)?,
            sent_at: r.get(15)?,
            generation: r.get(16)?,
            admin_notice: r.get(17)?,
        })
    }

    /// The stored PDF of a row: the exact bytes a retry sends.
    pub fn read_pdf(&self, delivery: &Delivery) -> Result<Vec<u8>, StoreError> {
        fs::read(&delivery.pdf_path).map_err(|source| StoreError::ReadFile { path: delivery.pdf_path.clone(), source })
    }

    /// The stored JSON data of a row.
    pub fn read_json(&self, delivery: &Delivery) -> Result<String, StoreError> {
        fs::read_to_string(&delivery.json_path)
            .map_err(|source| StoreError::ReadFile { path: delivery.json_path.clone(), source })
    }

    /// `reports/<job>/<period>`, relative to the state directory.
    pub fn report_dir(&self, job: &str, period: &str) -> PathBuf {
        Path::new("reports").join(file_name(job, "_")).join(file_name(period, "_"))
    }

    /// The latest delivery of a job, by daemon or by hand: its period, when its last row
    /// was sent, and how many rows of that period are sent.
    pub fn last_sent(&self, job: &str) -> Result<Option<(String, String, u32)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT period, MAX(sent_at), COUNT(DISTINCT recipient_key) FROM deliveries
                 WHERE job = ?1 AND state = 'sent' AND period = (
                     SELECT period FROM deliveries WHERE job = ?1 AND state = 'sent'
                     ORDER BY sent_at DESC LIMIT 1)
                 GROUP BY period",
                params![job],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql(format!("read the last delivery of job {job}")))
    }
}

const SELECT_DELIVERY: &str = "SELECT job, period, recipient_key, recipient_name, addresses, file_name, pdf_path,
    json_path, state, attempts, permanent, last_error, message_id, created_at, updated_at, sent_at, generation,
    admin_notice, channel, destination FROM deliveries";
