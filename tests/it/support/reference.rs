//! The reference the report tests check the product against: docs/kpi.md written out
//! plainly over a portal's wire records (the Bitrix24 field names, as the emulator serves
//! them), without any of the product's code. `e2e.rs` checks every scorecard's and the
//! department's counts and revenue with it; `reports.rs` checks manager 17's rates, cycle,
//! satisfaction, open pipeline and stuck deals.
//!
//! One population (a set of managers) and one period `[start, end)`:
//!
//! ```ignore
//! let portal = salespulse::crm::demo::portal(moscow(2026, 11, 23, 8)); // the job's slot
//! let week = Reference::new(&portal, &["17"], moscow(2026, 11, 16, 0), moscow(2026, 11, 23, 0));
//! assert_eq!(data["kpis"]["deals_won"]["value"], week.won().len());
//! ```

#![allow(dead_code)]

use chrono::{DateTime, FixedOffset, TimeZone};
use serde_json::Value;

use salespulse::crm::emulator::{PortalData, Record};

/// A time in Moscow, on the hour: a period's bounds, or the slot a report of the period
/// belongs to in the demo config (the first slot at or after the period's end), which is
/// also the demo portal's "now".
pub fn moscow(y: i32, m: u32, d: u32, h: u32) -> DateTime<chrono_tz::Tz> {
    chrono_tz::Europe::Moscow.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
}

/// A wire timestamp (ISO 8601 with an offset); `None` when absent or empty.
pub fn ts(v: Option<&Value>) -> Option<DateTime<FixedOffset>> {
    v.and_then(Value::as_str).filter(|s| !s.is_empty()).and_then(|s| DateTime::parse_from_rfc3339(s).ok())
}

/// A wire field as a string; `""` when absent or not a string.
pub fn s<'a>(r: &'a Record, key: &str) -> &'a str {
    r.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Days from `from` to `to`, with the fraction.
pub fn days(from: DateTime<FixedOffset>, to: DateTime<FixedOffset>) -> f64 {
    (to - from).num_seconds() as f64 / 86_400.0
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// docs/kpi.md over `portal`'s wire records for the deals, leads and activities of
/// `managers` (Bitrix24 user ids) in the period `[start, end)`.
pub struct Reference<'a> {
    pub portal: &'a PortalData,
    pub managers: &'a [&'a str],
    pub start: DateTime<FixedOffset>,
    pub end: DateTime<FixedOffset>,
}

impl<'a> Reference<'a> {
    pub fn new<Tz: TimeZone>(
        portal: &'a PortalData,
        managers: &'a [&'a str],
        start: DateTime<Tz>,
        end: DateTime<Tz>,
    ) -> Reference<'a> {
        Reference { portal, managers, start: start.fixed_offset(), end: end.fixed_offset() }
    }

    /// Whether `t` lies in the period.
    pub fn inside(&self, t: Option<DateTime<FixedOffset>>) -> bool {
        t.is_some_and(|t| t >= self.start && t < self.end)
    }

    fn ours(&self, r: &Record, field: &str) -> bool {
        self.managers.contains(&s(r, field))
    }

    /// A deal stage's semantics from `crm.status.list`: `S`, `F`, or `P` for the rest.
    pub fn semantics(&self, stage: &str) -> &'static str {
        let st = self
            .portal
            .statuses
            .iter()
            .find(|st| s(st, "ENTITY_ID").starts_with("DEAL_STAGE") && s(st, "STATUS_ID") == stage);
        match st.map(|st| s(st, "SEMANTICS")) {
            Some("S") => "S",
            Some("F") => "F",
            _ => "P",
        }
    }

    /// The base currency's amount of one unit of `code` (`crm.currency.list`).
    pub fn rate(&self, code: &str) -> f64 {
        let c = self.portal.currencies.iter().find(|c| s(c, "CURRENCY") == code).expect("a rate");
        s(c, "AMOUNT").parse::<f64>().unwrap() / s(c, "AMOUNT_CNT").parse::<f64>().unwrap()
    }

    /// A deal's amount in the base currency (0 without one).
    pub fn money(&self, deal: &Record) -> f64 {
        s(deal, "OPPORTUNITY").parse::<f64>().unwrap_or(0.0) * self.rate(s(deal, "CURRENCY_ID"))
    }

    /// The population's deals; recurring deal templates are never counted.
    pub fn deals(&self) -> impl Iterator<Item = &'a Record> + '_ {
        self.portal.deals.iter().filter(|d| self.ours(d, "ASSIGNED_BY_ID") && s(d, "IS_RECURRING") != "Y")
    }

    /// A deal's stage-history entries (`crm.stagehistory.list`).
    pub fn history<'h>(&'h self, deal: &'h Record) -> impl Iterator<Item = &'a Record> + 'h {
        self.portal.stage_history.iter().filter(move |h| s(h, "OWNER_ID") == s(deal, "ID"))
    }

    /// When the deal entered its current `semantics` (`S` or `F`), if it is still there: its
    /// latest history entry into such a stage, else `MOVED_TIME`, else `CLOSEDATE`.
    pub fn closed_at(&self, deal: &Record, semantics: &str) -> Option<DateTime<FixedOffset>> {
        if self.semantics(s(deal, "STAGE_ID")) != semantics {
            return None;
        }
        self.history(deal)
            .filter(|h| self.semantics(s(h, "STAGE_ID")) == semantics)
            .filter_map(|h| ts(h.get("CREATED_TIME")))
            .max()
            .or_else(|| ts(deal.get("MOVED_TIME")))
            .or_else(|| ts(deal.get("CLOSEDATE")))
    }

    /// The deals won in the period (`deals_won` is their number).
    pub fn won(&self) -> Vec<&'a Record> {
        self.deals().filter(|d| self.inside(self.closed_at(d, "S"))).collect()
    }

    /// `deals_lost`.
    pub fn lost(&self) -> usize {
        self.deals().filter(|d| self.inside(self.closed_at(d, "F"))).count()
    }

    /// `revenue`: the won deals' amounts in the base currency.
    pub fn revenue(&self) -> f64 {
        self.won().iter().map(|d| self.money(d)).sum()
    }

    /// The leads created in the period (`leads_total` is their number).
    pub fn leads(&self) -> Vec<&'a Record> {
        self.portal
            .leads
            .iter()
            .filter(|l| self.ours(l, "ASSIGNED_BY_ID") && self.inside(ts(l.get("DATE_CREATE"))))
            .collect()
    }

    /// `emails_sent`: e-mail activities (`TYPE_ID` 4), outgoing, completed, created in the
    /// period.
    pub fn emails_sent(&self) -> usize {
        self.portal
            .activities
            .iter()
            .filter(|a| {
                self.ours(a, "RESPONSIBLE_ID")
                    && s(a, "TYPE_ID") == "4"
                    && s(a, "DIRECTION") == "2"
                    && s(a, "COMPLETED") == "Y"
                    && self.inside(ts(a.get("CREATED")))
            })
            .count()
    }

    /// The stage a deal had at the period's end, with the time of the history entry that put
    /// it there (`None` without one: the caller falls back to `MOVED_TIME`); `None` before
    /// the deal existed.
    pub fn stage_at_end(&self, deal: &Record) -> Option<(String, Option<DateTime<FixedOffset>>)> {
        if ts(deal.get("DATE_CREATE")).is_none_or(|c| c >= self.end) {
            return None;
        }
        let last = self
            .history(deal)
            .filter_map(|h| ts(h.get("CREATED_TIME")).filter(|t| *t < self.end).map(|t| (t, s(h, "ID"), h)))
            .max_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.parse::<u64>().unwrap().cmp(&b.1.parse::<u64>().unwrap())));
        Some(match last {
            Some((t, _, h)) => (s(h, "STAGE_ID").to_owned(), Some(t)),
            None => (s(deal, "STAGE_ID").to_owned(), None),
        })
    }
}
