//! The KPIs of docs/kpi.md, once: each one's key (as in the report data and in
//! `[targets]`), unit, which way is better, whether it adds up across managers, and its
//! name and definition in each language. Everything else that names a KPI (the config's
//! targets, the KPI pass, the formatted strings, the charts, the e-mail) goes through
//! [`Kpi`], so a KPI is added or renamed here and nowhere else.

use std::fmt;

use crate::locale::Language;

/// One KPI of docs/kpi.md; [`Kpi::ALL`] lists them in its table's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kpi {
    DealsWon,
    Revenue,
    AvgDealValue,
    DealsLost,
    WinRate,
    LeadsTotal,
    LeadsConverted,
    LeadConversion,
    CycleDaysMedian,
    CycleDaysMean,
    EmailsSent,
    CallsMade,
    Csat,
    CsatResponses,
    RepeatShare,
    OpenPipelineValue,
}

/// What a KPI counts, which decides its format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Money,
    /// A percentage; its delta is in percentage points.
    Percent,
    Days,
    /// A satisfaction score.
    Score,
}

/// Which way a KPI is good news.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    HigherIsBetter,
    /// Cycle time and lost deals: a fall is good news, and the department report orders
    /// managers ascending.
    LowerIsBetter,
}

impl Kpi {
    /// Every KPI, in docs/kpi.md's table order (the order of the report data's `kpis`).
    pub const ALL: [Kpi; 16] = [
        Kpi::DealsWon,
        Kpi::Revenue,
        Kpi::AvgDealValue,
        Kpi::DealsLost,
        Kpi::WinRate,
        Kpi::LeadsTotal,
        Kpi::LeadsConverted,
        Kpi::LeadConversion,
        Kpi::CycleDaysMedian,
        Kpi::CycleDaysMean,
        Kpi::EmailsSent,
        Kpi::CallsMade,
        Kpi::Csat,
        Kpi::CsatResponses,
        Kpi::RepeatShare,
        Kpi::OpenPipelineValue,
    ];

    /// The docs/kpi.md key: `deals_won`, the field of the report data's `kpis`.
    pub const fn key(self) -> &'static str {
        match self {
            Kpi::DealsWon => "deals_won",
            Kpi::Revenue => "revenue",
            Kpi::AvgDealValue => "avg_deal_value",
            Kpi::DealsLost => "deals_lost",
            Kpi::WinRate => "win_rate",
            Kpi::LeadsTotal => "leads_total",
            Kpi::LeadsConverted => "leads_converted",
            Kpi::LeadConversion => "lead_conversion",
            Kpi::CycleDaysMedian => "cycle_days_median",
            Kpi::CycleDaysMean => "cycle_days_mean",
            Kpi::EmailsSent => "emails_sent",
            Kpi::CallsMade => "calls_made",
            Kpi::Csat => "csat",
            Kpi::CsatResponses => "csat_responses",
            Kpi::RepeatShare => "repeat_share",
            Kpi::OpenPipelineValue => "open_pipeline_value",
        }
    }

    /// The KPI of a docs/kpi.md key; `None` for any other string.
    pub fn from_key(key: &str) -> Option<Kpi> {
        Kpi::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Its position in [`Kpi::ALL`], for tables indexed by KPI.
    pub const fn index(self) -> usize {
        self as usize
    }

    pub const fn unit(self) -> Unit {
        match self {
            Kpi::Revenue | Kpi::AvgDealValue | Kpi::OpenPipelineValue => Unit::Money,
            Kpi::WinRate | Kpi::LeadConversion | Kpi::RepeatShare => Unit::Percent,
            Kpi::CycleDaysMedian | Kpi::CycleDaysMean => Unit::Days,
            Kpi::Csat => Unit::Score,
            Kpi::DealsWon
            | Kpi::DealsLost
            | Kpi::LeadsTotal
            | Kpi::LeadsConverted
            | Kpi::EmailsSent
            | Kpi::CallsMade
            | Kpi::CsatResponses => Unit::Count,
        }
    }

    pub const fn direction(self) -> Direction {
        match self {
            Kpi::CycleDaysMedian | Kpi::CycleDaysMean | Kpi::DealsLost => Direction::LowerIsBetter,
            _ => Direction::HigherIsBetter,
        }
    }

    pub const fn lower_is_better(self) -> bool {
        matches!(self.direction(), Direction::LowerIsBetter)
    }

    /// Whether it adds up across managers, so that a department target may be the sum of
    /// the managers' targets (docs/kpi.md "Comparisons and targets"); averages, rates and
    /// medians do not add up.
    pub const fn is_additive(self) -> bool {
        matches!(
            self,
            Kpi::DealsWon
                | Kpi::Revenue
                | Kpi::DealsLost
                | Kpi::LeadsTotal
                | Kpi::LeadsConverted
                | Kpi::EmailsSent
                | Kpi::CallsMade
                | Kpi::CsatResponses
                | Kpi::OpenPipelineValue
        )
    }

    /// `attainment_pct` of docs/kpi.md: `value / target × 100`; for the cycle time, where
    /// less is better, `target / value × 100`, so beating the target reads above 100 %.
    ///
    /// Only the cycle time is inverted, as docs/kpi.md says: `deals_lost` is lower-is-better
    /// too (tone, sort order) but its attainment stays `value / target`, as it always was.
    pub fn attainment_pct(self, value: Option<f64>, target: Option<f64>) -> Option<f64> {
        match (value, target) {
            (Some(v), Some(t)) if matches!(self, Kpi::CycleDaysMedian | Kpi::CycleDaysMean) => {
                (v > 0.0).then(|| t / v * 100.0)
            }
            (Some(v), Some(t)) => (t != 0.0).then(|| v / t * 100.0),
            _ => None,
        }
    }

    /// Its name in the report's language.
    pub const fn label(self, lang: Language) -> &'static str {
        let (ru, en) = match self {
            Kpi::DealsWon => ("Выиграно сделок", "Deals won"),
            Kpi::Revenue => ("Выручка", "Revenue"),
            Kpi::AvgDealValue => ("Средний чек", "Average deal"),
            Kpi::DealsLost => ("Проиграно сделок", "Deals lost"),
            Kpi::WinRate => ("Доля выигранных", "Win rate"),
            Kpi::LeadsTotal => ("Новые лиды", "New leads"),
            Kpi::LeadsConverted => ("Конвертировано лидов", "Leads converted"),
            Kpi::LeadConversion => ("Конверсия лидов", "Lead conversion"),
            Kpi::CycleDaysMedian => ("Цикл сделки (медиана), дн.", "Deal cycle (median), days"),
            Kpi::CycleDaysMean => ("Цикл сделки (среднее), дн.", "Deal cycle (mean), days"),
            Kpi::EmailsSent => ("Отправлено писем", "E-mails sent"),
            Kpi::CallsMade => ("Звонков", "Calls made"),
            Kpi::Csat => ("Удовлетворённость клиентов", "Customer satisfaction"),
            Kpi::CsatResponses => ("Оценок", "Ratings"),
            Kpi::RepeatShare => ("Повторные клиенты", "Repeat customers"),
            Kpi::OpenPipelineValue => ("Открытая воронка", "Open pipeline"),
        };
        match lang {
            Language::Ru => ru,
            Language::En => en,
        }
    }

    /// Its rule in a sentence or two, for the department report's definitions page.
    pub const fn definition(self, lang: Language) -> &'static str {
        let (ru, en) = match self {
            Kpi::DealsWon => ("Сделки, выигранные в периоде.", "Deals won in the period."),
            Kpi::Revenue => ("Сумма выигранных в периоде сделок.", "The total amount of the deals won in the period."),
            Kpi::AvgDealValue => {
                ("Выручка, делённая на число выигранных сделок.", "Revenue divided by the number of deals won.")
            }
            Kpi::DealsLost => ("Сделки, проигранные в периоде.", "Deals lost in the period."),
            Kpi::WinRate => (
                "Выигранные сделки от выигранных и проигранных в периоде, в процентах.",
                "Deals won as a share of deals won and lost in the period, in per cent.",
            ),
            Kpi::LeadsTotal => ("Лиды, созданные в периоде.", "Leads created in the period (DATE_CREATE)."),
            Kpi::LeadsConverted => (
                "Из них — лиды, которые сейчас в успешном статусе.",
                "Of those, the leads whose status is now a success status.",
            ),
            Kpi::LeadConversion => (
                "Конвертированные лиды от всех новых лидов периода, в процентах.",
                "Converted leads as a share of the period's new leads, in per cent.",
            ),
            Kpi::CycleDaysMedian => (
                "Медиана дней от создания лида (или сделки, если лида нет) до выигрыша, по сделкам, выигранным в периоде.",
                "The median of the days from the lead's creation (or the deal's, without a lead) to the win, over the deals won in the period.",
            ),
            Kpi::CycleDaysMean => ("То же, среднее арифметическое.", "The same, as an arithmetic mean."),
            Kpi::EmailsSent => (
                "Исходящие завершённые письма (дела), созданные в периоде.",
                "Outgoing, completed e-mail activities created in the period.",
            ),
            Kpi::CallsMade => (
                "Исходящие завершённые звонки (дела), созданные в периоде.",
                "Outgoing, completed call activities created in the period.",
            ),
            Kpi::Csat => (
                "Средняя оценка клиента по выигранным в периоде сделкам, у которых она есть и лежит в шкале.",
                "The mean customer rating over the deals won in the period that have one within the scale.",
            ),
            Kpi::CsatResponses => ("Число таких оценок.", "The number of such ratings."),
            Kpi::RepeatShare => (
                "Доля выигранных сделок с повторными клиентами, в процентах.",
                "The share of won deals with returning customers, in per cent.",
            ),
            Kpi::OpenPipelineValue => {
                ("Сумма сделок, открытых на конец периода.", "The total amount of the deals open at the period's end.")
            }
        };
        match lang {
            Language::Ru => ru,
            Language::En => en,
        }
    }
}

impl fmt::Display for Kpi {
    /// The key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_read_back() {
        for (i, kpi) in Kpi::ALL.into_iter().enumerate() {
            assert_eq!(kpi.index(), i, "{kpi}");
            assert_eq!(Kpi::from_key(kpi.key()), Some(kpi));
        }
        assert_eq!(Kpi::from_key("deals_wonn"), None);
    }

    #[test]
    fn every_kpi_has_a_name_and_a_definition_in_both_languages() {
        for kpi in Kpi::ALL {
            for lang in [Language::Ru, Language::En] {
                assert!(!kpi.label(lang).is_empty() && !kpi.definition(lang).is_empty(), "{kpi}");
            }
        }
    }

    #[test]
    fn less_is_better_for_cycle_time_and_lost_deals() {
        let lower: Vec<&str> = Kpi::ALL.into_iter().filter(|k| k.lower_is_better()).map(Kpi::key).collect();
        assert_eq!(lower, ["deals_lost", "cycle_days_median", "cycle_days_mean"]);
        // Attainment is inverted for the cycle time only (docs/kpi.md).
        assert_eq!(Kpi::CycleDaysMedian.attainment_pct(Some(10.0), Some(12.0)), Some(120.0));
        assert_eq!(Kpi::DealsLost.attainment_pct(Some(4.0), Some(5.0)), Some(80.0));
        assert_eq!(Kpi::Revenue.attainment_pct(Some(1.0), Some(0.0)), None);
        assert_eq!(Kpi::CycleDaysMean.attainment_pct(Some(0.0), Some(3.0)), None);
    }
}
