//! The vocabulary of salespulse: CRM records as the KPI pass sees them, money, and periods.
//!
//! Nothing here knows Bitrix24's wire format (that stays in `crm::bitrix24`) or reads the
//! clock (that is `schedule`'s job). Every time stamp is kept as the portal served it, with
//! its UTC offset; comparisons between `DateTime<FixedOffset>` values compare instants, so
//! records served in another offset still fall into the right period.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Datelike, Duration, FixedOffset, IsoWeek, NaiveDate, NaiveDateTime, TimeZone};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

mod calendar;
pub use calendar::Calendar;

/// A Bitrix24 record id (users, departments, deals, leads, activities, pipelines).
pub type Id = u64;

/// A time stamp as the portal served it.
pub type Timestamp = DateTime<FixedOffset>;

/// Stage semantics of Bitrix24 (`SEMANTICS`, `STAGE_SEMANTIC_ID`, `STATUS_SEMANTIC_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Semantics {
    /// `P`: in progress.
    Process,
    /// `S`: success (won deal, converted lead).
    Success,
    /// `F`: failure (lost deal, junk lead).
    Failure,
}

impl Semantics {
    /// Reads Bitrix24's one-letter code; an empty or unknown code is "in progress", which is
    /// how the portal treats a stage without semantics.
    pub fn from_code(code: &str) -> Semantics {
        match code {
            "S" => Semantics::Success,
            "F" => Semantics::Failure,
            _ => Semantics::Process,
        }
    }
}

/// A portal user (`user.get`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Id,
    /// `NAME LAST_NAME`, trimmed; falls back to the e-mail or `#ID` when both are empty.
    pub name: String,
    pub email: Option<String>,
    pub active: bool,
    /// `UF_DEPARTMENT`.
    pub departments: Vec<Id>,
}

/// Who is in scope (docs/kpi.md "Who is a manager"): the configured sales departments and
/// managers. The CRM fetch reads the users and records it names; the KPI pass counts them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Scope {
    pub departments: Vec<Id>,
    pub managers: Vec<Id>,
    pub include_subdepartments: bool,
}

/// A department of the company structure (`department.get`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Department {
    pub id: Id,
    pub name: String,
    pub parent: Option<Id>,
}

/// A deal pipeline (`crm.category.list`, id 0 is the default one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DealPipeline {
    pub id: Id,
    pub name: String,
    pub sort: i64,
}

/// A deal stage of one pipeline (`crm.status.list`, `DEAL_STAGE` / `DEAL_STAGE_{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// `STATUS_ID`, e.g. `WON` or `C1:NEW`.
    pub id: String,
    pub pipeline_id: Id,
    pub name: String,
    pub sort: i64,
    pub semantics: Semantics,
}

/// A lead source (`crm.status.list`, `ENTITY_ID = SOURCE`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub id: String,
    pub name: String,
}

/// A currency with its rate (`crm.currency.list`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Currency {
    pub code: String,
    /// Base-currency units for one unit of this currency: `AMOUNT / AMOUNT_CNT`.
    pub rate: f64,
    /// `BASE = "Y"`.
    pub base: bool,
}

/// A deal (`crm.deal.list`), with only the fields docs/kpi.md uses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Deal {
    pub id: Id,
    pub title: String,
    pub pipeline_id: Id,
    /// `STAGE_ID` now.
    pub stage_id: String,
    /// `STAGE_SEMANTIC_ID` now.
    pub stage_semantics: Semantics,
    pub currency: String,
    /// `OPPORTUNITY` in `currency`.
    pub opportunity: f64,
    pub lead_id: Option<Id>,
    pub assigned_by: Id,
    pub created: Timestamp,
    pub moved_time: Option<Timestamp>,
    pub close_date: Option<Timestamp>,
    /// `IS_RECURRING = "Y"`: a recurring template, never counted.
    pub is_recurring: bool,
    pub is_return_customer: bool,
    /// `SOURCE_ID`; `None` for null or `""`.
    pub source_id: Option<String>,
    /// The configured satisfaction user field, raw as served (`"4"`, `"4.0"`, `""`).
    pub satisfaction: Option<String>,
}

#[cfg(test)]
impl Deal {
    /// A deal for tests: `assigned_by`'s, in `stage_id` of pipeline 0, in RUB, with no
    /// optional field set.
    pub(crate) fn for_test(
        id: Id,
        assigned_by: Id,
        (stage_id, stage_semantics): (&str, Semantics),
        opportunity: f64,
        created: Timestamp,
    ) -> Deal {
        Deal {
            id,
            title: String::new(),
            pipeline_id: 0,
            stage_id: stage_id.into(),
            stage_semantics,
            currency: "RUB".into(),
            opportunity,
            lead_id: None,
            assigned_by,
            created,
            moved_time: None,
            close_date: None,
            is_recurring: false,
            is_return_customer: false,
            source_id: None,
            satisfaction: None,
        }
    }
}

/// Where a deal's won or lost time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventSource {
    History,
    /// `MOVED_TIME` or `CLOSEDATE`: the history had no entry into such a stage.
    Fallback,
}

impl Deal {
    /// When the deal became won (or lost, by `sem`), as docs/kpi.md "When a deal was won or
    /// lost" defines it: `None` unless its stage has that semantics now; else the latest entry of `history`
    /// (this deal's stage changes, oldest first, ties by id) into such a stage, else
    /// `MOVED_TIME`, else `CLOSEDATE`. The KPI pass and the Bitrix24 client (which fetches
    /// product rows only for the deals won in the report's period) both ask this.
    pub fn event_at<'h>(
        &self,
        sem: Semantics,
        history: impl DoubleEndedIterator<Item = &'h StageChange>,
    ) -> Option<(Timestamp, EventSource)> {
        if self.stage_semantics != sem {
            return None;
        }
        match history.rev().find(|h| h.semantics == sem) {
            Some(h) => Some((h.created, EventSource::History)),
            None => self.moved_time.or(self.close_date).map(|t| (t, EventSource::Fallback)),
        }
    }
}

/// The ids of the `deals` won in `[from, until)` by [`Deal::event_at`], recurring templates
/// left out; `history` holds their stage changes, in any order. These are the deals whose
/// product rows a report's product breakdown counts.
pub fn deals_won_in<'a>(
    deals: impl Iterator<Item = &'a Deal>,
    history: impl Iterator<Item = &'a StageChange>,
    from: Timestamp,
    until: Timestamp,
) -> Vec<Id> {
    let mut entries: std::collections::HashMap<Id, Vec<&StageChange>> = std::collections::HashMap::new();
    for h in history.filter(|h| h.semantics == Semantics::Success) {
        entries.entry(h.deal_id).or_default().push(h);
    }
    for list in entries.values_mut() {
        list.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
    }
    let period = from..until;
    deals
        .filter(|d| !d.is_recurring)
        .filter(|d| {
            let mine = entries.get(&d.id).map_or(&[][..], Vec::as_slice);
            d.event_at(Semantics::Success, mine.iter().copied()).is_some_and(|(t, _)| period.contains(&t))
        })
        .map(|d| d.id)
        .collect()
}

/// A lead (`crm.lead.list`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub id: Id,
    pub assigned_by: Id,
    pub created: Timestamp,
    /// `STATUS_SEMANTIC_ID` now.
    pub status_semantics: Semantics,
    pub source_id: Option<String>,
}

/// `crm.activity.list` `TYPE_ID` values docs/kpi.md counts.
pub const ACTIVITY_CALL: u32 = 2;
pub const ACTIVITY_EMAIL: u32 = 4;
/// `DIRECTION` 2.
pub const DIRECTION_OUTGOING: u32 = 2;

/// An activity (`crm.activity.list`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub id: Id,
    pub responsible: Id,
    pub type_id: u32,
    pub direction: u32,
    pub completed: bool,
    pub created: Timestamp,
}

/// One entry of a deal's stage history (`crm.stagehistory.list`, `entityTypeId` 2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageChange {
    pub id: Id,
    pub deal_id: Id,
    pub pipeline_id: Id,
    pub stage_id: String,
    pub semantics: Semantics,
    pub created: Timestamp,
}

/// A product row of a deal (`crm.deal.productrows.get`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProductRow {
    pub deal_id: Id,
    /// `PRODUCT_ID`; 0 for a free-text row, which is then keyed by its name.
    pub product_id: Id,
    pub name: String,
    /// `PRICE`, in the deal's currency.
    pub price: f64,
    pub quantity: f64,
}

/// Everything one report run fetched from the CRM: the input of the KPI pass.
///
/// A source fills it completely or fails; a report is never computed from part of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CrmSnapshot {
    pub users: Vec<User>,
    pub departments: Vec<Department>,
    pub pipelines: Vec<DealPipeline>,
    pub stages: Vec<Stage>,
    pub sources: Vec<Source>,
    pub currencies: Vec<Currency>,
    pub deals: Vec<Deal>,
    pub leads: Vec<Lead>,
    pub activities: Vec<Activity>,
    pub stage_history: Vec<StageChange>,
    pub product_rows: Vec<ProductRow>,
    /// What the source could not read cleanly but did not stop for (a row with an unparsable
    /// field, say); shown in the report's data-quality notes.
    pub notes: Vec<String>,
}

impl CrmSnapshot {
    /// The base currency: `configured` when given, else the one with `BASE = "Y"`, else RUB.
    pub fn base_currency(&self, configured: Option<&str>) -> String {
        configured
            .map(str::to_owned)
            .or_else(|| self.currencies.iter().find(|c| c.base).map(|c| c.code.clone()))
            .unwrap_or_else(|| "RUB".to_owned())
    }

    /// Rates into `base`: one unit of a currency = `rate(currency) / rate(base)` base units.
    /// Rates are served relative to the portal's base, so a configured base that is not the
    /// portal's is reached through it.
    pub fn rates_into(&self, base: &str) -> BTreeMap<String, f64> {
        let base_rate = self.currencies.iter().find(|c| c.code == base).map(|c| c.rate).unwrap_or(1.0);
        self.currencies
            .iter()
            .filter(|c| c.rate > 0.0 && base_rate > 0.0)
            .map(|c| (c.code.clone(), c.rate / base_rate))
            .collect()
    }
}

/// The kind of a reporting period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeriodKind {
    Week,
    Month,
    Custom,
}

impl PeriodKind {
    /// The key of `[targets.*.<kind>]`; custom periods have no targets.
    pub fn target_key(self) -> Option<&'static str> {
        match self {
            PeriodKind::Week => Some("week"),
            PeriodKind::Month => Some("month"),
            PeriodKind::Custom => None,
        }
    }
}

/// A half-open interval `[start, end)` of local time in the portal's zone (docs/kpi.md "Periods").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Period {
    pub kind: PeriodKind,
    /// Local first day.
    pub first_day: NaiveDate,
    /// Local day after the last day.
    pub end_day: NaiveDate,
    pub tz: Tz,
}

/// A period label that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("failed to read period {input:?} ({reason})")]
pub struct PeriodParseError {
    pub input: String,
    pub reason: String,
}

/// The years a period may lie in: nothing in a CRM predates 1970, and a period's slot (which
/// can fall into the next year) keeps a four-digit year, as every label, file name and
/// stored time stamp expects.
pub const PERIOD_YEARS: std::ops::RangeInclusive<i32> = 1970..=9998;

/// The longest custom period, in days (a year, leap or not).
pub const MAX_CUSTOM_DAYS: i64 = 366;

impl Period {
    /// The ISO week that contains `day`.
    pub fn week_of(day: NaiveDate, tz: Tz) -> Period {
        let monday = day - Duration::days(day.weekday().num_days_from_monday() as i64);
        Period { kind: PeriodKind::Week, first_day: monday, end_day: monday + Duration::days(7), tz }
    }

    /// The calendar month that contains `day`.
    pub fn month_of(day: NaiveDate, tz: Tz) -> Period {
        let first = day.with_day(1).expect("day 1 exists in every month");
        Period { kind: PeriodKind::Month, first_day: first, end_day: next_month(first), tz }
    }

    /// Both days included.
    pub fn custom(first: NaiveDate, last: NaiveDate, tz: Tz) -> Period {
        Period { kind: PeriodKind::Custom, first_day: first, end_day: last + Duration::days(1), tz }
    }

    /// Reads `2026-W47`, `2026-11` or `2026-11-01..2026-11-15`, in the years
    /// [`PERIOD_YEARS`]; a custom period is at most [`MAX_CUSTOM_DAYS`] long.
    pub fn parse(input: &str, tz: Tz) -> Result<Period, PeriodParseError> {
        let err = |reason: &str| PeriodParseError { input: input.to_owned(), reason: reason.to_owned() };
        let syntax = || err("expected 2026-W47, 2026-11 or 2026-11-01..2026-11-15");
        let year_ok = |year: i32| {
            if PERIOD_YEARS.contains(&year) {
                Ok(())
            } else {
                Err(err(&format!("the year must be {} to {}", PERIOD_YEARS.start(), PERIOD_YEARS.end())))
            }
        };
        let s = input.trim();
        if let Some((a, b)) = s.split_once("..") {
            let first = NaiveDate::parse_from_str(a.trim(), "%Y-%m-%d").map_err(|_| syntax())?;
            let last = NaiveDate::parse_from_str(b.trim(), "%Y-%m-%d").map_err(|_| syntax())?;
            year_ok(first.year())?;
            year_ok(last.year())?;
            if last < first {
                return Err(err("the first day is after the last"));
            }
            if (last - first).num_days() >= MAX_CUSTOM_DAYS {
                return Err(err(&format!("a custom period is at most {MAX_CUSTOM_DAYS} days long")));
            }
            return Ok(Period::custom(first, last, tz));
        }
        if let Some((y, w)) = s.split_once("-W") {
            let year: i32 = y.parse().map_err(|_| syntax())?;
            let week: u32 = w.parse().map_err(|_| syntax())?;
            year_ok(year)?;
            let monday = NaiveDate::from_isoywd_opt(year, week, chrono::Weekday::Mon)
                .ok_or_else(|| err(&format!("{year} has no ISO week {week}")))?;
            return Ok(Period::week_of(monday, tz));
        }
        if s.len() == 7 {
            let first = NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").map_err(|_| syntax())?;
            year_ok(first.year())?;
            return Ok(Period::month_of(first, tz));
        }
        Err(syntax())
    }

    /// `2026-W47`, `2026-11` or `2026-11-01..2026-11-15`.
    pub fn label(&self) -> String {
        match self.kind {
            PeriodKind::Week => {
                let w: IsoWeek = self.first_day.iso_week();
                format!("{}-W{:02}", w.year(), w.week())
            }
            PeriodKind::Month => self.first_day.format("%Y-%m").to_string(),
            PeriodKind::Custom => format!(
                "{}..{}",
                self.first_day.format("%Y-%m-%d"),
                (self.end_day - Duration::days(1)).format("%Y-%m-%d")
            ),
        }
    }

    /// The period of the same kind immediately before.
    pub fn previous(&self) -> Period {
        match self.kind {
            PeriodKind::Week => Period::week_of(self.first_day - Duration::days(7), self.tz),
            PeriodKind::Month => Period::month_of(self.first_day - Duration::days(1), self.tz),
            PeriodKind::Custom => {
                let days = (self.end_day - self.first_day).num_days();
                Period { first_day: self.first_day - Duration::days(days), end_day: self.first_day, ..self.clone() }
            }
        }
    }

    /// The same period one year earlier (same ISO week number, same month, same dates).
    pub fn year_before(&self) -> Period {
        match self.kind {
            PeriodKind::Week => {
                let w = self.first_day.iso_week();
                let week =
                    w.week().min(NaiveDate::from_ymd_opt(w.year() - 1, 12, 28).expect("valid date").iso_week().week());
                let monday = NaiveDate::from_isoywd_opt(w.year() - 1, week, chrono::Weekday::Mon)
                    .expect("week number clamped to the year's weeks");
                Period::week_of(monday, self.tz)
            }
            PeriodKind::Month => Period::month_of(
                self.first_day.with_year(self.first_day.year() - 1).expect("day 1 exists every year"),
                self.tz,
            ),
            PeriodKind::Custom => {
                let shift = |d: NaiveDate| d.with_year(d.year() - 1).unwrap_or_else(|| d - Duration::days(365));
                Period { first_day: shift(self.first_day), end_day: shift(self.end_day), ..self.clone() }
            }
        }
    }

    /// This period and the `n - 1` before it, oldest first.
    pub fn trailing(&self, n: usize) -> Vec<Period> {
        let mut out = Vec::with_capacity(n);
        let mut p = self.clone();
        for _ in 0..n {
            out.push(p.clone());
            p = p.previous();
        }
        out.reverse();
        out
    }

    /// The local start instant.
    pub fn start(&self) -> DateTime<Tz> {
        local_midnight(self.first_day, self.tz)
    }

    /// The local end instant (exclusive).
    pub fn end(&self) -> DateTime<Tz> {
        local_midnight(self.end_day, self.tz)
    }

    /// Whether the period is over at `now`: at or after its end instant in its zone. The
    /// slot a schedule reports it at is never earlier (`schedule::period_for_slot`), even
    /// a slot at the very midnight the period ends.
    pub fn has_ended(&self, now: DateTime<chrono::Utc>) -> bool {
        now >= self.end()
    }

    /// Whether an instant falls into `[start, end)`.
    pub fn contains(&self, t: &Timestamp) -> bool {
        *t >= self.start() && *t < self.end()
    }

    /// Length in days (a fractional day count across DST would be wrong here: docs/kpi.md's days
    /// are calendar days).
    pub fn days(&self) -> i64 {
        (self.end_day - self.first_day).num_days()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

fn next_month(first: NaiveDate) -> NaiveDate {
    if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1).expect("January 1st exists")
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1).expect("day 1 exists")
    }
}

/// Local midnight of `day`; where a zone skips midnight (a DST change at 00:00, as in some
/// zones' history), the first instant of the day after the gap.
pub fn local_midnight(day: NaiveDate, tz: Tz) -> DateTime<Tz> {
    resolve_local(tz, day.and_hms_opt(0, 0, 0).expect("midnight exists"))
}

/// The longest a zone's offset changes at once (Pacific/Apia skipped a whole day in 2011).
pub const MAX_DST_SHIFT_HOURS: i64 = 26;

/// The instant a local wall-clock time stands for (the DST rules of `schedule`'s module
/// doc, used by periods and slots alike): the only one, the earlier of two (a repeated
/// hour), or the first instant after a gap (a skipped hour).
pub fn resolve_local(tz: Tz, naive: NaiveDateTime) -> DateTime<Tz> {
    match tz.from_local_datetime(&naive) {
        chrono::LocalResult::Single(t) => t,
        chrono::LocalResult::Ambiguous(a, b) => a.min(b),
        chrono::LocalResult::None => (1..=MAX_DST_SHIFT_HOURS * 60)
            .find_map(|m| tz.from_local_datetime(&(naive + Duration::minutes(m))).earliest())
            // chrono-tz has no gap longer than a day; if one ever appeared, the instant that
            // naive time names in UTC is a reasonable answer rather than a panic.
            .unwrap_or_else(|| tz.from_utc_datetime(&naive)),
    }
}

/// Days between two instants, fractional.
pub fn days_between(from: &Timestamp, to: &Timestamp) -> f64 {
    (*to - *from).num_milliseconds() as f64 / 86_400_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSK: Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn deals_won_in_a_period_by_history_then_moved_time_then_close_date() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap();
        let won = |id: Id| Deal::for_test(id, 1, ("WON", Semantics::Success), 1.0, at("2026-01-01T00:00:00+03:00"));
        let change = |id: Id, deal_id: Id, semantics: Semantics, created: &str| StageChange {
            id,
            deal_id,
            pipeline_id: 0,
            stage_id: "X".into(),
            semantics,
            created: at(created),
        };
        let (from, until) = (at("2026-11-16T00:00:00+03:00"), at("2026-11-23T00:00:00+03:00"));
        // 1: won twice, the later entry is in the period. 2: won before the period, moved
        // since (MOVED_TIME is only the fallback). 3: no history, MOVED_TIME in the period.
        // 4: only CLOSEDATE, at the period's end (excluded). 5: recurring. 6: reopened.
        let deals = [
            won(1),
            Deal { moved_time: Some(at("2026-11-20T00:00:00+03:00")), ..won(2) },
            Deal { moved_time: Some(at("2026-11-16T00:00:00+03:00")), ..won(3) },
            Deal { close_date: Some(until), ..won(4) },
            Deal { is_recurring: true, moved_time: Some(at("2026-11-20T00:00:00+03:00")), ..won(5) },
            Deal { stage_semantics: Semantics::Process, ..won(6) },
        ];
        let history = [
            change(7, 1, Semantics::Success, "2026-11-22T23:59:59+03:00"),
            change(3, 1, Semantics::Success, "2026-10-01T00:00:00+03:00"),
            change(4, 2, Semantics::Success, "2026-11-01T00:00:00+03:00"),
            change(5, 2, Semantics::Process, "2026-11-20T00:00:00+03:00"),
            change(6, 6, Semantics::Success, "2026-11-18T00:00:00+03:00"),
        ];
        assert_eq!(deals_won_in(deals.iter(), history.iter(), from, until), vec![1, 3]);
        assert_eq!(
            deals[0].event_at(Semantics::Success, [&history[1], &history[0]].into_iter()),
            Some((at("2026-11-22T23:59:59+03:00"), EventSource::History))
        );
        assert_eq!(deals[3].event_at(Semantics::Success, std::iter::empty()), Some((until, EventSource::Fallback)));
        assert_eq!(deals[0].event_at(Semantics::Failure, history.iter()), None);
    }

    #[test]
    fn parses_and_labels_periods() {
        let w = Period::parse("2026-W47", MSK).unwrap();
        assert_eq!(w.first_day, NaiveDate::from_ymd_opt(2026, 11, 16).unwrap());
        assert_eq!(w.end_day, NaiveDate::from_ymd_opt(2026, 11, 23).unwrap());
        assert_eq!(w.label(), "2026-W47");
        assert_eq!(w.previous().label(), "2026-W46");
        assert_eq!(w.start().to_rfc3339(), "2026-11-16T00:00:00+03:00");

        let m = Period::parse("2026-01", MSK).unwrap();
        assert_eq!(m.previous().label(), "2025-12");
        assert_eq!(m.end_day, NaiveDate::from_ymd_opt(2026, 2, 1).unwrap());
        assert_eq!(m.year_before().label(), "2025-01");

        let c = Period::parse("2026-11-01..2026-11-15", MSK).unwrap();
        assert_eq!(c.days(), 15);
        assert_eq!(c.previous().label(), "2026-10-17..2026-10-31");
        assert_eq!(c.label(), "2026-11-01..2026-11-15");

        assert!(Period::parse("2026-W54", MSK).is_err());
        assert!(Period::parse("2026-13", MSK).is_err());
        assert!(Period::parse("2026-11-15..2026-11-01", MSK).is_err());
    }

    #[test]
    fn periods_outside_the_years_or_too_long_are_refused_with_the_reason() {
        let reason = |input: &str| Period::parse(input, MSK).unwrap_err().reason;
        for input in ["-262143-W02", "262142-W52", "1969-12", "9999-W01", "9999-01", "9999-01-01..9999-01-02"] {
            assert!(reason(input).contains("1970 to 9998"), "{input}: {}", reason(input));
        }
        assert!(reason("2026-01-01..2027-01-02").contains("366 days"));
        assert!(reason("2026-W54").contains("no ISO week 54"));
        // The limits themselves are periods, with every neighbour a report reads.
        for input in ["1970-W01", "9998-W52", "1970-01", "9998-12", "2024-01-01..2024-12-31", "9998-01-01..9998-12-31"]
        {
            let p = Period::parse(input, MSK).unwrap_or_else(|e| panic!("{input}: {e}"));
            let _ = (p.previous(), p.year_before(), p.trailing(60), p.start(), p.end(), p.label());
        }
    }

    #[test]
    fn a_period_has_ended_at_its_end_instant() {
        let w = Period::parse("2026-W47", MSK).unwrap();
        let end = w.end().with_timezone(&chrono::Utc);
        assert!(!w.has_ended(end - Duration::seconds(1)));
        assert!(w.has_ended(end));
    }

    #[test]
    fn week_one_belongs_to_its_iso_year() {
        let w = Period::parse("2026-W01", MSK).unwrap();
        assert_eq!(w.first_day, NaiveDate::from_ymd_opt(2025, 12, 29).unwrap());
        assert_eq!(w.previous().label(), "2025-W52");
        assert_eq!(w.trailing(3).iter().map(Period::label).collect::<Vec<_>>(), ["2025-W51", "2025-W52", "2026-W01"]);
    }

    #[test]
    fn boundaries_are_half_open_in_local_time() {
        let w = Period::parse("2026-W47", MSK).unwrap();
        let sunday_last = DateTime::parse_from_rfc3339("2026-11-22T23:59:59+03:00").unwrap();
        let monday_first = DateTime::parse_from_rfc3339("2026-11-23T00:00:00+03:00").unwrap();
        // The same instant as Sunday 23:30 Moscow, served in UTC.
        let served_in_utc = DateTime::parse_from_rfc3339("2026-11-22T20:30:00+00:00").unwrap();
        assert!(w.contains(&sunday_last));
        assert!(!w.contains(&monday_first));
        assert!(w.contains(&served_in_utc));
    }
}
