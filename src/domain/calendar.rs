//! Working days: the weekdays worked less the holidays, for alerts (docs/kpi.md "Alerts").

use chrono::{Datelike, NaiveDate, NaiveDateTime};

use super::Period;

/// Working days (docs/kpi.md "Alerts"): the weekdays that are worked, less the
/// holidays, all in local dates of the configured zone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Calendar {
    /// Monday first.
    pub working_weekdays: [bool; 7],
    pub holidays: std::collections::BTreeSet<NaiveDate>,
}

impl Default for Calendar {
    /// Monday to Friday, no holidays.
    fn default() -> Calendar {
        Calendar { working_weekdays: [true, true, true, true, true, false, false], holidays: Default::default() }
    }
}

impl Calendar {
    pub fn is_working(&self, day: NaiveDate) -> bool {
        self.working_weekdays[day.weekday().num_days_from_monday() as usize] && !self.holidays.contains(&day)
    }

    /// Working days in `[first, end)`.
    pub fn working_days(&self, first: NaiveDate, end: NaiveDate) -> u32 {
        first.iter_days().take_while(|d| *d < end).filter(|d| self.is_working(*d)).count() as u32
    }

    /// Working days of `period` elapsed at the local wall-clock time `at`: each working day
    /// before `at`'s date counts 1, `at`'s own date (if working) the share of its 24 hours
    /// passed (12:00 counts 0.5), clamped to the period. Wednesday 12:00 of a Monday–Friday
    /// week is 2.5.
    pub fn elapsed(&self, period: &Period, at: NaiveDateTime) -> f64 {
        let day = at.date();
        if day < period.first_day {
            return 0.0;
        }
        if day >= period.end_day {
            return f64::from(self.working_days(period.first_day, period.end_day));
        }
        let whole = f64::from(self.working_days(period.first_day, day));
        let seconds = f64::from(chrono::Timelike::num_seconds_from_midnight(&at.time()));
        let today = if self.is_working(day) { seconds / 86_400.0 } else { 0.0 };
        whole + today
    }

    /// The first day of the window of `n` working days before `day` (`day` itself not
    /// counted): with Monday–Friday, 2 working days before Wednesday start on Monday. Looks
    /// back at most ten years; a calendar with no working day in them gives the day ten
    /// years back.
    pub fn working_days_back(&self, day: NaiveDate, n: u32) -> NaiveDate {
        let mut found = 0;
        let mut d = day;
        for _ in 0..3660 {
            if found >= n {
                return d;
            }
            d = match d.pred_opt() {
                Some(p) => p,
                None => return d,
            };
            if self.is_working(d) {
                found += 1;
            }
        }
        d
    }
}
