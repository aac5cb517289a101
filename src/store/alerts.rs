//! The alert ledger: one row per (alert, period, recipient key, channel), holding the
//! message's text, with the report ledger's states and claim rule (see the module doc of
//! `store`). An alert's period is its slot (`2026-11-25T12:00+03:00`), so each slot's
//! alert is its own message; the channel is `email` until chat channels deliver alerts.

use rusqlite::{OptionalExtension, Row, params};

use super::{NOW, Owner, Recorded, Store, StoreError, sql};
use crate::store::DeliveryState;

/// Which row: (alert, period, recipient key, channel).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AlertSendKey {
    pub alert: String,
    pub period: String,
    /// The manager's Bitrix24 id, or a fixed recipient's address.
    pub recipient_key: String,
    pub channel: String,
}

/// One row of the alert ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertSend {
    pub key: AlertSendKey,
    pub recipient_name: String,
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub permanent: bool,
    pub last_error: Option<String>,
    pub message_id: Option<String>,
    pub updated_at: String,
    pub sent_at: Option<String>,
}

/// An alert message to record.
pub struct NewAlertSend<'a> {
    pub key: AlertSendKey,
    pub recipient_name: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
}

const WHERE_KEY: &str = "alert = ?1 AND period = ?2 AND recipient_key = ?3 AND channel = ?4";

const SELECT: &str = "SELECT alert, period, recipient_key, channel, recipient_name, addresses, subject, body, state,
    attempts, permanent, last_error, message_id, updated_at, sent_at FROM alert_sends";

fn describe(k: &AlertSendKey) -> String {
    format!("{}/{}/{}/{}", k.alert, k.period, k.recipient_key, k.channel)
}

impl Store {
    /// Records an alert message (state `rendered`). A row sent, being sent, or interrupted
    /// is left as it is (its text too: an interrupted row is sent again as it was); an
    /// unsent or failed one gets the new text and a fresh attempt count.
    pub fn record_alert(&self, new: &NewAlertSend<'_>) -> Result<Recorded, StoreError> {
        let k = &new.key;
        let addresses = serde_json::to_string(new.to).expect("a list of strings serializes");
        let changed = self
            .conn()
            .execute(
                &format!(
                    "INSERT INTO alert_sends (alert, period, recipient_key, channel, recipient_name, addresses,
                        subject, body, state)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'rendered')
                     ON CONFLICT (alert, period, recipient_key, channel) DO UPDATE SET
                        recipient_name = excluded.recipient_name, addresses = excluded.addresses,
                        subject = excluded.subject, body = excluded.body, state = 'rendered', attempts = 0,
                        permanent = 0, last_error = NULL, claimed_by = NULL, updated_at = {NOW}
                     WHERE alert_sends.state IN ('rendered', 'failed')"
                ),
                params![
                    k.alert,
                    k.period,
                    k.recipient_key,
                    k.channel,
                    new.recipient_name,
                    addresses,
                    new.subject,
                    new.body
                ],
            )
            .map_err(sql(format!("record alert {}", describe(k))))?;
        if changed == 1 {
            return Ok(Recorded::Ready);
        }
        Ok(match self.alert_send(k)?.map(|d| d.state) {
            Some(DeliveryState::Sending) => Recorded::InFlight,
            Some(DeliveryState::Unknown) => Recorded::Interrupted,
            _ => Recorded::AlreadySent,
        })
    }

    /// Claims a row for sending if it is in one of `from`; `None` when another process won.
    pub fn claim_alert(&self, key: &AlertSendKey, from: &[DeliveryState]) -> Result<Option<AlertSend>, StoreError> {
        let states: Vec<String> = from.iter().map(|s| format!("'{}'", s.as_str())).collect();
        if states.is_empty() {
            return Ok(None);
        }
        let changed = self
            .conn()
            .execute(
                &format!(
                    "UPDATE alert_sends SET state = 'sending', claimed_by = ?5, updated_at = {NOW}
                     WHERE {WHERE_KEY} AND state IN ({})",
                    states.join(", ")
                ),
                params![key.alert, key.period, key.recipient_key, key.channel, self.owner.token],
            )
            .map_err(sql(format!("claim alert {}", describe(key))))?;
        if changed == 1 { self.alert_send(key) } else { Ok(None) }
    }

    /// Counts a transaction about to start on a claimed row, with the Message-ID it carries.
    pub fn start_alert_attempt(&self, key: &AlertSendKey, message_id: &str) -> Result<(), StoreError> {
        self.update_claimed_alert(key, "attempts = attempts + 1, message_id = ?6", Some(message_id), "start attempt")
    }

    /// A failed attempt that will be tried again (the claim is kept).
    pub fn note_alert_retry(&self, key: &AlertSendKey, error: &str) -> Result<(), StoreError> {
        self.update_claimed_alert(key, "last_error = ?6", Some(error), "note retry")
    }

    /// The server accepted the message: the one write inside the window after its 250,
    /// without waiting for the disk, as [`Store::mark_sent`].
    pub fn mark_alert_sent(&self, key: &AlertSendKey) -> Result<(), StoreError> {
        let conn = self.conn();
        let stmt = format!(
            "UPDATE alert_sends SET state = 'sent', sent_at = {NOW}, last_error = NULL, permanent = 0,
                claimed_by = NULL, updated_at = {NOW}
             WHERE {WHERE_KEY} AND state = 'sending' AND claimed_by = ?5"
        );
        let sent = conn.pragma_update(None, "synchronous", "NORMAL").and_then(|()| {
            conn.prepare_cached(&stmt)?.execute(params![
                key.alert,
                key.period,
                key.recipient_key,
                key.channel,
                self.owner.token
            ])
        });
        let restored = conn.pragma_update(None, "synchronous", "FULL");
        let err = || sql(format!("mark sent alert {}", describe(key)));
        sent.map_err(err())?;
        restored.map_err(err())?;
        Ok(())
    }

    /// The row will not be tried again by this run.
    pub fn mark_alert_failed(&self, key: &AlertSendKey, error: &str, permanent: bool) -> Result<(), StoreError> {
        let set = format!("state = 'failed', last_error = ?6, permanent = {}, claimed_by = NULL", permanent as u8);
        self.update_claimed_alert(key, &set, Some(error), "mark failed")
    }

    fn update_claimed_alert(
        &self,
        key: &AlertSendKey,
        set: &str,
        value: Option<&str>,
        action: &str,
    ) -> Result<(), StoreError> {
        let stmt = format!(
            "UPDATE alert_sends SET {set}, updated_at = {NOW}
             WHERE {WHERE_KEY} AND state = 'sending' AND claimed_by = ?5"
        );
        self.conn()
            .execute(&stmt, params![key.alert, key.period, key.recipient_key, key.channel, self.owner.token, value])
            .map_err(sql(format!("{action} alert {}", describe(key))))?;
        Ok(())
    }

    /// Marks `sending` rows of dead processes `unknown` (see [`Store::recover_interrupted`]).
    pub fn recover_interrupted_alerts(&self) -> Result<(), StoreError> {
        let claimed: Vec<(AlertSendKey, Option<String>)> = {
            let conn = self.conn();
            let mut stmt = conn
                .prepare(
                    "SELECT alert, period, recipient_key, channel, claimed_by FROM alert_sends WHERE state = 'sending'",
                )
                .map_err(sql("list interrupted alerts"))?;
            stmt.query_map([], |r| {
                Ok((
                    AlertSendKey { alert: r.get(0)?, period: r.get(1)?, recipient_key: r.get(2)?, channel: r.get(3)? },
                    r.get(4)?,
                ))
            })
            .and_then(|rows| rows.collect())
            .map_err(sql("list interrupted alerts"))?
        };
        for (key, owner) in claimed {
            let owner = owner.unwrap_or_default();
            if owner == self.owner.token || Owner::is_alive(&self.state_dir, &owner) {
                continue;
            }
            self.conn()
                .execute(
                    &format!(
                        "UPDATE alert_sends SET state = 'unknown', claimed_by = NULL, updated_at = {NOW},
                            last_error = COALESCE(last_error || '; ', '') || 'interrupted during sending'
                         WHERE {WHERE_KEY} AND state = 'sending' AND claimed_by IS ?5"
                    ),
                    params![
                        key.alert,
                        key.period,
                        key.recipient_key,
                        key.channel,
                        if owner.is_empty() { None } else { Some(owner) }
                    ],
                )
                .map_err(sql(format!("mark alert {} unknown", describe(&key))))?;
        }
        Ok(())
    }

    /// One row.
    pub fn alert_send(&self, key: &AlertSendKey) -> Result<Option<AlertSend>, StoreError> {
        self.conn()
            .query_row(
                &format!("{SELECT} WHERE {WHERE_KEY}"),
                params![key.alert, key.period, key.recipient_key, key.channel],
                alert_row,
            )
            .optional()
            .map_err(sql(format!("read alert {}", describe(key))))
    }

    /// The rows of one alert and period, by recipient key and channel.
    pub fn alert_sends(&self, alert: &str, period: &str) -> Result<Vec<AlertSend>, StoreError> {
        self.select_alerts("WHERE alert = ?1 AND period = ?2 ORDER BY recipient_key, channel", params![alert, period])
    }

    /// Rows not sent (`rendered`, `sending`, `failed`, `unknown`), for `status` and start-up.
    pub fn unsent_alerts(&self) -> Result<Vec<AlertSend>, StoreError> {
        self.select_alerts("WHERE state != 'sent' ORDER BY alert, period, recipient_key, channel", params![])
    }

    /// The latest period of an alert with a row sent: the period, when its last row was
    /// sent, and how many of its rows are sent.
    pub fn last_alert_sent(&self, alert: &str) -> Result<Option<(String, String, u32)>, StoreError> {
        self.conn()
            .query_row(
                "SELECT period, MAX(sent_at), COUNT(*) FROM alert_sends
                 WHERE alert = ?1 AND state = 'sent' AND period = (
                     SELECT period FROM alert_sends WHERE alert = ?1 AND state = 'sent'
                     ORDER BY sent_at DESC LIMIT 1)
                 GROUP BY period",
                params![alert],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(sql(format!("read the last send of alert {alert}")))
    }

    fn select_alerts(&self, clause: &str, params: impl rusqlite::Params) -> Result<Vec<AlertSend>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{SELECT} {clause}")).map_err(sql("list alerts"))?;
        stmt.query_map(params, alert_row).and_then(|rows| rows.collect()).map_err(sql("list alerts"))
    }
}

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertSend> {
    let addresses: String = r.get(5)?;
    Ok(AlertSend {
        key: AlertSendKey { alert: r.get(0)?, period: r.get(1)?, recipient_key: r.get(2)?, channel: r.get(3)? },
        recipient_name: r.get(4)?,
        to: serde_json::from_str(&addresses).unwrap_or_default(),
        subject: r.get(6)?,
        body: r.get(7)?,
        state: DeliveryState::parse(&r.get::<_, String>(8)?),
        attempts: r.get(9)?,
        permanent: r.get(10)?,
        last_error: r.get(11)?,
        message_id: r.get(12)?,
        updated_at: r.get(13)?,
        sent_at: r.get(14)?,
    })
}
