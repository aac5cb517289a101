//! When jobs fire: a job's crontab line in the portal's IANA zone turned into instants
//! ("slots"), the period each slot reports on, and the clock. This is the only module that
//! reads the wall clock ([`SystemClock`]); everything else is handed a slot or a [`Clock`].
//!
//! Why our own loop over croner rather than tokio-cron-scheduler: that crate keeps a fixed
//! UTC offset per job, so a `0 8 * * MON` job drifts by an hour after a DST change (its
//! issues #87 and #107), and it has no notion of a slot missed while the process was down,
//! which the daemon must catch up. Croner only matches wall-clock fields; we walk LOCAL
//! NAIVE date-times with it and map each match to an instant ourselves, so the DST rules
//! live in one place ([`resolve_local`]) and are tested here:
//!
//! - a match that exists once is that instant;
//! - a match in a repeated hour (fall back: 01:30 happens twice) is the first occurrence
//!   only, so the job runs once;
//! - a match in a skipped hour (spring forward: 02:30 does not exist) runs at the first
//!   instant after the gap (03:00 local), and only once even when several matches fall into
//!   the same gap (they all map to that same instant).
//!
//! The mapping is monotonic (later naive times never map to earlier instants), which is what
//! lets the searches below stop at the first match past their bound.
//!
//! Scheduling the slots (sleeping, catching up) is the daemon's; what a slot renders is the
//! pipeline's.

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::config::PeriodRule;
pub use crate::domain::resolve_local;
use crate::domain::{Period, PeriodKind};

/// Searches start this far before their bound in naive time so no match is missed.
const MAX_SHIFT_HOURS: i64 = crate::domain::MAX_DST_SHIFT_HOURS;

/// Where the current time comes from.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock: the only `Utc::now()` in the crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[allow(clippy::disallowed_methods)] // The one sanctioned wall-clock read.
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that shows what it is told, for tests and for `report`-style runs at a fixed
/// instant. It does not tick.
#[derive(Debug)]
pub struct FixedClock(std::sync::Mutex<DateTime<Utc>>);

impl FixedClock {
    pub fn new(at: DateTime<Utc>) -> FixedClock {
        FixedClock(std::sync::Mutex::new(at))
    }

    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = at;
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t += by;
    }
}

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first slot strictly after `after`, in `tz`. `None` when the pattern never matches
/// again (`0 0 30 2 *`).
pub fn next_slot(cron: &croner::Cron, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Tz>> {
    let mut cursor = after.with_timezone(&tz).naive_local() - Duration::hours(MAX_SHIFT_HOURS);
    loop {
        let naive = cron.find_next_occurrence(&cursor, false).ok()?;
        let slot = resolve_local(tz, naive);
        if slot > after {
            return Some(slot);
        }
        cursor = naive;
    }
}

/// The latest slot at or before `at`.
pub fn latest_slot(cron: &croner::Cron, tz: Tz, at: DateTime<Utc>) -> Option<DateTime<Tz>> {
    let mut cursor = at.with_timezone(&tz).naive_local() + Duration::hours(MAX_SHIFT_HOURS);
    loop {
        let naive = cron.find_previous_occurrence(&cursor, false).ok()?;
        let slot = resolve_local(tz, naive);
        if slot <= at {
            return Some(slot);
        }
        cursor = naive;
    }
}

/// The period a slot reports on (docs/kpi.md "Periods"): the last complete period before the
/// slot's local time, derived from the slot and never from the clock, so a late or retried
/// run reports on the same period.
pub fn period_for_slot(rule: PeriodRule, slot: DateTime<Tz>) -> Period {
    let day = slot.date_naive();
    let tz = slot.timezone();
    // The period containing the slot has started but not ended (a slot at Monday 00:00
    // starts the new week), so the one before it is the last complete one.
    match rule {
        PeriodRule::PreviousWeek => Period::week_of(day, tz).previous(),
        PeriodRule::PreviousMonth => Period::month_of(day, tz).previous(),
    }
}

/// The slot a report of an explicit period is stamped with: the first slot at or after the
/// period's end, so `generated_at` and the CRM as-of time are the same whenever it runs. For
/// a custom period, or a pattern that never fires, the period's end.
pub fn slot_for_period(cron: &croner::Cron, tz: Tz, period: &Period) -> DateTime<Tz> {
    let end = period.end().with_timezone(&tz);
    if period.kind == PeriodKind::Custom {
        return end;
    }
    // Slots are whole minutes, so "strictly after one second before the end" is "at or after
    // the end".
    next_slot(cron, tz, end.with_timezone(&Utc) - Duration::seconds(1)).unwrap_or(end)
}

/// Slots in `(from, to]`, oldest first, for catch-up and for counting missed runs.
pub fn slots_between(cron: &croner::Cron, tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Tz>> {
    let mut out = Vec::new();
    let mut after = from;
    while let Some(slot) = next_slot(cron, tz, after) {
        if slot > to {
            break;
        }
        after = slot.with_timezone(&Utc);
        out.push(slot);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::{Datelike, NaiveDate, TimeZone};
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::{Berlin, Moscow};

    use super::*;

    fn cron(line: &str) -> croner::Cron {
        crate::config::parse_cron(line).unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// The next `n` slots after `from`, as local RFC 3339 strings.
    fn next_n(line: &str, tz: Tz, from: &str, n: usize) -> Vec<String> {
        let c = cron(line);
        let mut after = utc(from);
        let mut out = Vec::new();
        for _ in 0..n {
            let slot = next_slot(&c, tz, after).unwrap();
            out.push(slot.to_rfc3339());
            after = slot.with_timezone(&Utc);
        }
        out
    }

    #[test]
    fn a_job_in_the_skipped_hour_runs_once_just_after_the_gap_in_berlin() {
        // 2026-03-29: 02:00 CET becomes 03:00 CEST; 02:30 does not exist that day.
        assert_eq!(
            next_n("30 2 * * *", Berlin, "2026-03-27T12:00:00Z", 4),
            [
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
                "2026-03-31T02:30:00+02:00"
            ]
        );
        // 01:30 exists on both sides of the change.
        assert_eq!(
            next_n("30 1 * * *", Berlin, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:30:00+01:00", "2026-03-30T01:30:00+02:00"]
        );
    }

    #[test]
    fn several_matches_in_one_gap_fire_once() {
        // Every quarter hour: 02:00, 02:15, 02:30 and 02:45 all fall into the gap.
        let c = cron("*/15 * * * *");
        let slots = slots_between(&c, Berlin, utc("2026-03-29T00:30:00Z"), utc("2026-03-29T01:31:00Z"));
        let shown: Vec<String> = slots.iter().map(|s| s.to_rfc3339()).collect();
        assert_eq!(
            shown,
            [
                "2026-03-29T01:45:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:15:00+02:00",
                "2026-03-29T03:30:00+02:00"
            ]
        );
    }

    #[test]
    fn a_job_in_the_repeated_hour_runs_once_at_the_first_occurrence_in_berlin() {
        // 2026-10-25: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        assert_eq!(
            next_n("30 2 * * *", Berlin, "2026-10-24T12:00:00Z", 3),
            ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00", "2026-10-27T02:30:00+01:00"]
        );
        // Asking between the two occurrences does not yield the second one.
        let between = utc("2026-10-25T00:45:00Z"); // 02:45 CEST, before 02:30 CET
        assert_eq!(next_slot(&cron("30 2 * * *"), Berlin, between).unwrap().to_rfc3339(), "2026-10-26T02:30:00+01:00");
        assert_eq!(
            next_n("30 1 * * *", Berlin, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T01:30:00+02:00", "2026-10-26T01:30:00+01:00"]
        );
    }

    #[test]
    fn new_york_changes_at_two_in_the_morning_too() {
        // 2026-03-08: 02:00 EST becomes 03:00 EDT.
        assert_eq!(
            next_n("30 2 * * *", New_York, "2026-03-07T12:00:00Z", 3),
            ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00", "2026-03-10T02:30:00-04:00"]
        );
        // 2026-11-01: 02:00 EDT becomes 01:00 EST; 01:30 happens twice.
        assert_eq!(
            next_n("30 1 * * *", New_York, "2026-10-31T12:00:00Z", 3),
            ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00"]
        );
    }

    #[test]
    fn a_weekly_job_keeps_its_local_hour_across_dst() {
        assert_eq!(
            next_n("0 8 * * MON", Berlin, "2026-03-20T00:00:00Z", 3),
            ["2026-03-23T08:00:00+01:00", "2026-03-30T08:00:00+02:00", "2026-04-06T08:00:00+02:00"]
        );
        assert_eq!(
            next_n("0 8 * * MON", Berlin, "2026-10-20T00:00:00Z", 2),
            ["2026-10-26T08:00:00+01:00", "2026-11-02T08:00:00+01:00"]
        );
        assert_eq!(
            next_n("0 8 * * MON", New_York, "2026-03-03T00:00:00Z", 2),
            ["2026-03-09T08:00:00-04:00", "2026-03-16T08:00:00-04:00"]
        );
        assert_eq!(
            next_n("0 8 * * MON", New_York, "2026-10-27T00:00:00Z", 2),
            ["2026-11-02T08:00:00-05:00", "2026-11-09T08:00:00-05:00"]
        );
    }

    #[test]
    fn moscow_has_no_dst() {
        assert_eq!(
            next_n("30 2 * * *", Moscow, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T02:30:00+03:00", "2026-03-30T02:30:00+03:00"]
        );
        assert_eq!(next_n("0 8 * * MON", Moscow, "2026-11-27T12:00:00Z", 1), ["2026-11-30T08:00:00+03:00"]);
    }

    #[test]
    fn monthly_jobs_on_the_first_and_the_last_day() {
        assert_eq!(
            next_n("0 9 1 * *", Moscow, "2026-11-27T12:00:00Z", 3),
            ["2026-12-01T09:00:00+03:00", "2027-01-01T09:00:00+03:00", "2027-02-01T09:00:00+03:00"]
        );
        assert_eq!(
            next_n("0 9 L * *", Moscow, "2027-01-15T00:00:00Z", 3),
            ["2027-01-31T09:00:00+03:00", "2027-02-28T09:00:00+03:00", "2027-03-31T09:00:00+03:00"]
        );
    }

    #[test]
    fn the_latest_slot_is_at_or_before_the_instant() {
        let c = cron("0 8 * * MON");
        let monday_8 = utc("2026-11-23T05:00:00Z");
        assert_eq!(latest_slot(&c, Moscow, monday_8).unwrap().to_rfc3339(), "2026-11-23T08:00:00+03:00");
        let just_before = monday_8 - Duration::seconds(1);
        assert_eq!(latest_slot(&c, Moscow, just_before).unwrap().to_rfc3339(), "2026-11-16T08:00:00+03:00");
        // The first occurrence of a repeated 02:30 is the slot, even when asked after the second.
        let c = cron("30 2 * * *");
        assert_eq!(
            latest_slot(&c, Berlin, utc("2026-10-25T01:45:00Z")).unwrap().to_rfc3339(),
            "2026-10-25T02:30:00+02:00"
        );
        // The gap slot maps to 03:00 CEST.
        assert_eq!(
            latest_slot(&c, Berlin, utc("2026-03-29T01:10:00Z")).unwrap().to_rfc3339(),
            "2026-03-29T03:00:00+02:00"
        );
    }

    #[test]
    fn a_pattern_that_never_fires_has_no_slot() {
        let c = croner::Cron::from_str("0 0 30 2 *").unwrap();
        assert!(next_slot(&c, Moscow, utc("2026-01-01T00:00:00Z")).is_none());
    }

    #[test]
    fn a_slot_reports_on_the_last_complete_period() {
        let monday = Moscow.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
        assert_eq!(period_for_slot(PeriodRule::PreviousWeek, monday).label(), "2026-W47");
        let midnight = Moscow.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap();
        assert_eq!(period_for_slot(PeriodRule::PreviousWeek, midnight).label(), "2026-W47");
        let first = Moscow.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap();
        assert_eq!(period_for_slot(PeriodRule::PreviousMonth, first).label(), "2026-11");
        let new_year = Moscow.with_ymd_and_hms(2027, 1, 1, 9, 0, 0).unwrap();
        assert_eq!(period_for_slot(PeriodRule::PreviousMonth, new_year).label(), "2026-12");
        let week_one = Moscow.with_ymd_and_hms(2027, 1, 4, 8, 0, 0).unwrap();
        assert_eq!(period_for_slot(PeriodRule::PreviousWeek, week_one).label(), "2026-W53");
        // The slot's local date decides, not its UTC date: Monday 01:00 Berlin is Sunday in UTC.
        let early = Berlin.with_ymd_and_hms(2026, 11, 23, 0, 30, 0).unwrap();
        assert_eq!(period_for_slot(PeriodRule::PreviousWeek, early).label(), "2026-W47");
    }

    #[test]
    fn an_explicit_period_is_stamped_with_the_slot_that_would_have_reported_it() {
        let week = Period::parse("2026-W47", Moscow).unwrap();
        let slot = slot_for_period(&cron("0 8 * * MON"), Moscow, &week);
        assert_eq!(slot.to_rfc3339(), "2026-11-23T08:00:00+03:00");
        assert_eq!(period_for_slot(PeriodRule::PreviousWeek, slot), week);

        let month = Period::parse("2026-12", Moscow).unwrap();
        let slot = slot_for_period(&cron("0 0 1 * *"), Moscow, &month);
        // A slot exactly at the end counts.
        assert_eq!(slot.to_rfc3339(), "2027-01-01T00:00:00+03:00");
        assert_eq!(period_for_slot(PeriodRule::PreviousMonth, slot), month);

        let custom = Period::custom(
            NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            NaiveDate::from_ymd_opt(2026, 11, 15).unwrap(),
            Moscow,
        );
        assert_eq!(slot_for_period(&cron("0 8 * * MON"), Moscow, &custom).to_rfc3339(), "2026-11-16T00:00:00+03:00");
    }

    /// `send` refuses a period that has not ended (`Period::has_ended`); the slot that
    /// reports a period must never be refused, even a slot at the very midnight the period
    /// ends, in zones where that midnight is skipped or repeated by a DST change.
    #[test]
    fn every_slot_reports_a_period_that_has_ended_by_then() {
        let zones: [Tz; 8] = [
            Moscow,
            Berlin,
            New_York,
            chrono_tz::America::Havana,
            chrono_tz::America::Santiago,
            chrono_tz::America::Sao_Paulo,
            chrono_tz::Asia::Tehran,
            chrono_tz::Asia::Beirut,
        ];
        let mut at_midnight_gap = 0;
        for tz in zones {
            let mut day = NaiveDate::from_ymd_opt(1990, 1, 1).unwrap();
            while day.year() < 2030 {
                let mut rules = Vec::new();
                if day.weekday() == chrono::Weekday::Mon {
                    rules.push(PeriodRule::PreviousWeek);
                }
                if day.day() == 1 {
                    rules.push(PeriodRule::PreviousMonth);
                }
                for rule in rules {
                    // The slot of a job at 00:00 (`0 0 * * MON`, `0 0 1 * *`) and at 08:00.
                    for hour in [0, 8] {
                        let slot = resolve_local(tz, day.and_hms_opt(hour, 0, 0).unwrap());
                        let period = period_for_slot(rule, slot);
                        assert!(period.has_ended(slot.with_timezone(&Utc)), "{tz} {slot}: {period} not ended");
                        if hour == 0 && tz.from_local_datetime(&day.and_hms_opt(0, 0, 0).unwrap()).single().is_none() {
                            at_midnight_gap += 1;
                        }
                    }
                }
                day += Duration::days(1);
            }
        }
        assert!(at_midnight_gap > 0, "the zones above have a Monday or a 1st whose midnight a DST change moves");
    }

    #[test]
    fn missed_slots_are_listed_for_catch_up() {
        let c = cron("0 8 * * MON");
        // Down from Sunday to Wednesday: Monday's slot was missed.
        let missed = slots_between(&c, Moscow, utc("2026-11-22T12:00:00Z"), utc("2026-11-25T12:00:00Z"));
        assert_eq!(missed.iter().map(|s| s.to_rfc3339()).collect::<Vec<_>>(), ["2026-11-23T08:00:00+03:00"]);
        // The bounds are (from, to]: a slot at `from` ran already, one at `to` is due.
        let at = utc("2026-11-23T05:00:00Z");
        assert!(slots_between(&c, Moscow, at, at).is_empty());
        assert_eq!(slots_between(&c, Moscow, at - Duration::minutes(1), at).len(), 1);
        let four_weeks = slots_between(&c, Moscow, utc("2026-11-01T00:00:00Z"), utc("2026-11-23T05:00:00Z"));
        // Mondays 2, 9, 16 and 23 November.
        assert_eq!(four_weeks.len(), 4);
    }

    #[test]
    fn the_fixed_clock_shows_what_it_is_told() {
        let clock = FixedClock::new(utc("2026-11-23T05:00:00Z"));
        clock.advance(Duration::minutes(5));
        assert_eq!(clock.now(), utc("2026-11-23T05:05:00Z"));
    }
}
