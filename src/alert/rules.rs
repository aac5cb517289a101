//! The alert rules' arithmetic (docs/kpi.md "Alerts"), as pure functions the tests work
//! by hand: a pace against a target pro-rated by working days, and when a deal became
//! stuck.

/// The figures of a pace check, all in the KPI's unit.
#[derive(Clone, Debug, PartialEq)]
pub struct Pace {
    /// The KPI from the period's start to the slot.
    pub value: f64,
    /// The whole period's target.
    pub target: f64,
    /// Working days elapsed at the slot (a part of the slot's own day counts).
    pub elapsed: f64,
    /// Working days in the whole period.
    pub working_days: u32,
    /// `target × elapsed ÷ working_days`: the target pro-rated to the slot.
    pub expected: f64,
    pub min_share: f64,
    /// `min_share × expected`: below it, the manager is behind pace.
    pub threshold: f64,
}

impl Pace {
    /// The value as a share of the pro-rated target, in %; `None` when nothing is expected.
    pub fn share_pct(&self) -> Option<f64> {
        (self.expected > 0.0).then(|| self.value / self.expected * 100.0)
    }

    /// How far the value is below the pro-rated target (0 when not below).
    pub fn gap(&self) -> f64 {
        (self.expected - self.value).max(0.0)
    }
}

/// What a pace check found for one manager.
#[derive(Clone, Debug, PartialEq)]
pub enum PaceOutcome {
    /// The manager has no target for the KPI and period (neither their own nor the
    /// default): not checked.
    NoTarget,
    /// A target of zero: nothing is expected, so nobody is behind.
    ZeroTarget,
    /// The period has no working day (all holidays): nothing can be pro-rated, nobody is
    /// behind.
    NoWorkingDays,
    /// At or above the threshold (a value exactly at it is not behind).
    OnPace(Pace),
    /// Strictly below the threshold.
    Behind(Pace),
}

/// The pace check: `value` below `min_share × target × elapsed ÷ working_days` is behind.
/// Before the first working hour of the period (`elapsed` 0) nothing is expected, so
/// nobody is behind.
pub fn pace(value: f64, target: Option<f64>, elapsed: f64, working_days: u32, min_share: f64) -> PaceOutcome {
    let Some(target) = target else { return PaceOutcome::NoTarget };
    if target <= 0.0 {
        return PaceOutcome::ZeroTarget;
    }
    if working_days == 0 {
        return PaceOutcome::NoWorkingDays;
    }
    let elapsed = elapsed.clamp(0.0, f64::from(working_days));
    let expected = target * elapsed / f64::from(working_days);
    let threshold = min_share * expected;
    let figures = Pace { value, target, elapsed, working_days, expected, min_share, threshold };
    if value < threshold { PaceOutcome::Behind(figures) } else { PaceOutcome::OnPace(figures) }
}

/// Whether a deal idle `days` at this slot crossed `stuck_after` days since the previous
/// slot, `window_days` before: stuck now (more than `stuck_after`) and not stuck then (at
/// most `stuck_after`, in the same stage). A deal exactly at `stuck_after` at the previous
/// slot was not stuck then.
pub fn newly_stuck(days: f64, stuck_after: f64, window_days: f64) -> bool {
    days > stuck_after && days - window_days <= stuck_after
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;
    use chrono_tz::Europe::Moscow;

    use super::*;
    use crate::domain::{Calendar, Period};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn at(s: &str) -> chrono::NaiveDateTime {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap()
    }

    /// Week 2026-W48: Monday 23 to Sunday 29 November.
    fn w48() -> Period {
        Period::week_of(day("2026-11-25"), Moscow)
    }

    #[test]
    fn wednesday_noon_is_two_and_a_half_of_five_working_days() {
        let c = Calendar::default();
        assert_eq!(c.working_days(w48().first_day, w48().end_day), 5);
        assert_eq!(c.elapsed(&w48(), at("2026-11-25 12:00")), 2.5);
        assert_eq!(c.elapsed(&w48(), at("2026-11-23 00:00")), 0.0);
        assert_eq!(c.elapsed(&w48(), at("2026-11-23 06:00")), 0.25);
        // A weekend slot: the whole working week has elapsed, Saturday adds nothing.
        assert_eq!(c.elapsed(&w48(), at("2026-11-28 10:00")), 5.0);
        // After the period, all of it.
        assert_eq!(c.elapsed(&w48(), at("2026-12-02 10:00")), 5.0);
        assert_eq!(c.elapsed(&w48(), at("2026-11-01 10:00")), 0.0);
    }

    #[test]
    fn a_holiday_leaves_the_week_and_the_days_elapsed() {
        // Tuesday 24 November a holiday: 4 working days; by Wednesday noon Monday (1) and
        // half of Wednesday (0.5) have elapsed.
        let c = Calendar { holidays: [day("2026-11-24")].into(), ..Calendar::default() };
        assert_eq!(c.working_days(w48().first_day, w48().end_day), 4);
        assert_eq!(c.elapsed(&w48(), at("2026-11-25 12:00")), 1.5);
        // A slot on the holiday itself: only Monday counts.
        assert_eq!(c.elapsed(&w48(), at("2026-11-24 18:00")), 1.0);
        // Revenue target 400 000, 60 %: expected 400 000 × 1.5 / 4 = 150 000, threshold 90 000.
        let PaceOutcome::Behind(p) = pace(89_999.0, Some(400_000.0), 1.5, 4, 0.6) else { panic!() };
        assert_eq!((p.expected, p.threshold), (150_000.0, 90_000.0));
        assert!(matches!(pace(90_000.0, Some(400_000.0), 1.5, 4, 0.6), PaceOutcome::OnPace(_)));
    }

    #[test]
    fn a_week_of_holidays_has_no_working_days_and_nobody_is_behind() {
        let c = Calendar { holidays: (23..=27).map(|d| day(&format!("2026-11-{d}"))).collect(), ..Calendar::default() };
        assert_eq!(c.working_days(w48().first_day, w48().end_day), 0);
        assert_eq!(pace(0.0, Some(400_000.0), 0.0, 0, 0.6), PaceOutcome::NoWorkingDays);
    }

    #[test]
    fn a_manager_exactly_at_the_threshold_is_not_behind() {
        // Revenue 400 000 a week, Wednesday noon: expected 200 000, 60 % = 120 000.
        let PaceOutcome::OnPace(p) = pace(120_000.0, Some(400_000.0), 2.5, 5, 0.6) else { panic!() };
        assert_eq!((p.expected, p.threshold), (200_000.0, 120_000.0));
        assert_eq!(p.share_pct(), Some(60.0));
        let PaceOutcome::Behind(p) = pace(119_999.0, Some(400_000.0), 2.5, 5, 0.6) else { panic!() };
        assert_eq!(p.gap(), 80_001.0);
        // Deals won, 3 a week: expected 1.5, threshold 0.9; 1 deal is on pace, 0 behind.
        assert!(matches!(pace(1.0, Some(3.0), 2.5, 5, 0.6), PaceOutcome::OnPace(_)));
        assert!(matches!(pace(0.0, Some(3.0), 2.5, 5, 0.6), PaceOutcome::Behind(_)));
    }

    #[test]
    fn no_target_and_a_zero_target_are_never_behind() {
        assert_eq!(pace(0.0, None, 2.5, 5, 0.6), PaceOutcome::NoTarget);
        assert_eq!(pace(0.0, Some(0.0), 2.5, 5, 0.6), PaceOutcome::ZeroTarget);
        // Monday 00:00: nothing expected yet.
        assert!(matches!(pace(0.0, Some(3.0), 0.0, 5, 0.6), PaceOutcome::OnPace(_)));
    }

    #[test]
    fn a_month_counts_its_working_days() {
        // December 2026: 23 working days Monday to Friday; with 31 December a holiday, 22.
        let dec = Period::month_of(day("2026-12-01"), Moscow);
        let c = Calendar::default();
        assert_eq!(c.working_days(dec.first_day, dec.end_day), 23);
        // Thursday 3 December 18:00: Tuesday 1 and Wednesday 2 whole, 3 for 0.75.
        assert_eq!(c.elapsed(&dec, at("2026-12-03 18:00")), 2.75);
        let c = Calendar { holidays: [day("2026-12-31"), day("2026-12-31")].into(), ..c };
        assert_eq!(c.working_days(dec.first_day, dec.end_day), 22);
    }

    #[test]
    fn silence_looks_back_over_working_days_only() {
        let c = Calendar::default();
        // Wednesday: 2 working days back is Monday.
        assert_eq!(c.working_days_back(day("2026-11-25"), 2), day("2026-11-23"));
        // Monday: 2 working days back is the Thursday before (the weekend skipped).
        assert_eq!(c.working_days_back(day("2026-11-23"), 2), day("2026-11-19"));
        // With Friday a holiday, Wednesday.
        let c = Calendar { holidays: [day("2026-11-20")].into(), ..c };
        assert_eq!(c.working_days_back(day("2026-11-23"), 2), day("2026-11-18"));
        // Sundays only: one working day back from Monday is the Sunday before.
        let none =
            Calendar { working_weekdays: [false, false, false, false, false, false, true], ..Calendar::default() };
        assert_eq!(none.working_days_back(day("2026-11-23"), 1), day("2026-11-22"));
    }

    #[test]
    fn a_deal_is_newly_stuck_once_when_it_crosses_the_limit() {
        // Stuck after 14 days, slots a day apart.
        assert!(!newly_stuck(14.0, 14.0, 1.0)); // at the limit: not stuck yet
        assert!(newly_stuck(14.5, 14.0, 1.0)); // crossed since yesterday
        assert!(newly_stuck(15.0, 14.0, 1.0)); // exactly at the limit yesterday: crossed since
        assert!(!newly_stuck(15.5, 14.0, 1.0)); // stuck yesterday already
        // Weekly slots: anything that crossed in the week.
        assert!(newly_stuck(20.0, 14.0, 7.0));
        assert!(!newly_stuck(21.5, 14.0, 7.0));
    }
}
