//! Coaching hints for a scorecard: a few plain sentences from explicit rules. Each rule is
//! a function of the computed report data that either stays silent or says what it saw,
//! with the numbers that triggered it: a manager must be able to check every hint against
//! the table above it. The numbers come from `compute`; this module only decides and words.

use crate::locale::{Language, fmt_count, fmt_number, fmt_pct};

use super::present::fmt_money_whole as fmt_money;

use super::catalog::Kpi;
use super::model::{Hint, Kpis, ReportData, StuckDeal, TeamContext};

/// At most this many hints: more would read as a lecture.
pub const MAX_HINTS: usize = 4;
/// Conversion must fall by at least this many percentage points to be worth a word.
pub const CONVERSION_DROP_PP: f64 = 10.0;
/// The win rate must rise by at least this many percentage points to be praised.
pub const WIN_RATE_RISE_PP: f64 = 5.0;
/// How many stuck deals make a hint.
pub const STUCK_DEALS_MIN: usize = 2;
/// Revenue below this share of the target (in %) makes a hint.
pub const REVENUE_ATTAINMENT_LOW_PCT: f64 = 50.0;

/// The hints of a scorecard, problems first, at most [`MAX_HINTS`].
pub fn scorecard_hints(data: &ReportData, lang: Language) -> Vec<Hint> {
    let k = &data.kpis;
    let currency = data.currency.as_str();
    let mut out: Vec<Hint> = [
        revenue_below_half_target(k, currency, lang),
        conversion_fell_while_leads_rose(k, lang),
        deals_stuck(&data.stuck_deals, lang),
        avg_deal_below_team_median(k, data.team.as_ref(), currency, lang),
        no_emails_sent(k, lang),
        win_rate_improved(k, lang),
    ]
    .into_iter()
    .flatten()
    .collect();
    out.truncate(MAX_HINTS);
    out
}

fn hint(rule: &str, lang: Language, ru: String, en: String) -> Hint {
    Hint {
        rule: rule.to_owned(),
        text: match lang {
            Language::Ru => ru,
            Language::En => en,
        },
    }
}

fn pp(v: f64, lang: Language) -> String {
    let n = fmt_number(v.abs(), 1, lang);
    match lang {
        Language::Ru => format!("{n}\u{a0}п.п."),
        Language::En => format!("{n}\u{a0}pp"),
    }
}

/// Lead conversion fell by at least [`CONVERSION_DROP_PP`] points while more leads came in.
pub fn conversion_fell_while_leads_rose(k: &Kpis, lang: Language) -> Option<Hint> {
    let conv = &k.lead_conversion;
    let (now, before, delta) = (conv.value?, conv.previous?, conv.delta?);
    let (leads, leads_before) = (k.leads_total.value?, k.leads_total.previous?);
    if delta > -CONVERSION_DROP_PP || leads <= leads_before {
        return None;
    }
    Some(hint(
        "conversion_fell_leads_rose",
        lang,
        format!(
            "Конверсия лидов упала с {} до {} (на {}), хотя новых лидов стало больше: {} против {}. Стоит разобрать, почему новые лиды не доходят до сделки.",
            fmt_pct(before, lang),
            fmt_pct(now, lang),
            pp(delta, lang),
            fmt_count(leads, lang),
            fmt_count(leads_before, lang)
        ),
        format!(
            "Lead conversion fell from {} to {} (by {}) while new leads rose from {} to {}. Worth finding out why the new leads do not turn into deals.",
            fmt_pct(before, lang),
            fmt_pct(now, lang),
            pp(delta, lang),
            fmt_count(leads_before, lang),
            fmt_count(leads, lang)
        ),
    ))
}

/// At least [`STUCK_DEALS_MIN`] deals are stuck in one stage (the list `compute` made with
/// the configured `stuck_after_days`, longest first).
pub fn deals_stuck(stuck: &[StuckDeal], lang: Language) -> Option<Hint> {
    if stuck.len() < STUCK_DEALS_MIN {
        return None;
    }
    let longest = &stuck[0];
    let days = fmt_number(longest.days, 1, lang);
    Some(hint(
        "deals_stuck",
        lang,
        format!(
            "Зависших сделок: {}; дольше всех стоит «{}» — {} дн. в стадии «{}». Назначьте по каждой следующий шаг или закройте её.",
            stuck.len(),
            longest.title,
            days,
            longest.stage
        ),
        format!(
            "{} deals are stuck; the longest, “{}”, has been in “{}” for {} days. Give each a next step or close it.",
            stuck.len(),
            longest.title,
            longest.stage,
            days
        ),
    ))
}

/// The average deal is below the team's median average deal (a team of two or more).
pub fn avg_deal_below_team_median(
    k: &Kpis,
    team: Option<&TeamContext>,
    currency: &str,
    lang: Language,
) -> Option<Hint> {
    let team = team.filter(|t| t.size >= 2)?;
    let median = team.medians.get(Kpi::AvgDealValue.key()).copied().flatten()?;
    let own = k.avg_deal_value.value?;
    if own >= median {
        return None;
    }
    Some(hint(
        "avg_deal_below_team_median",
        lang,
        format!(
            "Средний чек {} ниже медианы команды {}. Посмотрите, где клиенту можно предложить больше.",
            fmt_money(own, currency, lang),
            fmt_money(median, currency, lang)
        ),
        format!(
            "Your average deal of {} is below the team median of {}. Look for deals where the customer could take more.",
            fmt_money(own, currency, lang),
            fmt_money(median, currency, lang)
        ),
    ))
}

/// Revenue reached less than [`REVENUE_ATTAINMENT_LOW_PCT`] % of its target.
pub fn revenue_below_half_target(k: &Kpis, currency: &str, lang: Language) -> Option<Hint> {
    let r = &k.revenue;
    let (value, target, attainment) = (r.value?, r.target?, r.attainment_pct?);
    if attainment >= REVENUE_ATTAINMENT_LOW_PCT {
        return None;
    }
    Some(hint(
        "revenue_below_half_target",
        lang,
        format!(
            "Выручка {} — это {} от цели {}. Сосредоточьтесь на сделках, которые ближе всего к оплате.",
            fmt_money(value, currency, lang),
            fmt_pct(attainment, lang),
            fmt_money(target, currency, lang)
        ),
        format!(
            "Revenue of {} is {} of the {} target. Focus on the deals closest to payment.",
            fmt_money(value, currency, lang),
            fmt_pct(attainment, lang),
            fmt_money(target, currency, lang)
        ),
    ))
}

/// Not one outgoing e-mail in the period.
pub fn no_emails_sent(k: &Kpis, lang: Language) -> Option<Hint> {
    if k.emails_sent.value? != 0.0 {
        return None;
    }
    let before = k.emails_sent.previous.unwrap_or(0.0);
    let (ru_tail, en_tail) = if before > 0.0 {
        (
            format!(" (в прошлом периоде — {})", fmt_count(before, lang)),
            format!(" (last period: {})", fmt_count(before, lang)),
        )
    } else {
        (String::new(), String::new())
    };
    Some(hint(
        "no_emails_sent",
        lang,
        format!(
            "За период не отправлено ни одного письма клиентам{ru_tail}. Письмо после звонка закрепляет договорённости."
        ),
        format!(
            "Not one e-mail to customers was sent in the period{en_tail}. An e-mail after a call makes the agreement stick."
        ),
    ))
}

/// The win rate rose by at least [`WIN_RATE_RISE_PP`] points.
pub fn win_rate_improved(k: &Kpis, lang: Language) -> Option<Hint> {
    let w = &k.win_rate;
    let (now, before, delta) = (w.value?, w.previous?, w.delta?);
    if delta < WIN_RATE_RISE_PP {
        return None;
    }
    Some(hint(
        "win_rate_improved",
        lang,
        format!(
            "Доля выигранных сделок выросла с {} до {} (на {}). Так держать.",
            fmt_pct(before, lang),
            fmt_pct(now, lang),
            pp(delta, lang)
        ),
        format!(
            "Your win rate rose from {} to {} (by {}). Keep it up.",
            fmt_pct(before, lang),
            fmt_pct(now, lang),
            pp(delta, lang)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::model::KpiValue;

    /// (key, value, previous, target).
    type Row<'k> = (&'k str, Option<f64>, Option<f64>, Option<f64>);

    fn kpis(pairs: &[Row]) -> Kpis {
        let mut k = Kpis::default();
        for (key, value, previous, target) in pairs {
            let kpi = Kpi::from_key(key).unwrap();
            *k.of_mut(kpi) = KpiValue::compare(kpi, *value, *previous, *target);
        }
        k
    }

    fn stuck(id: &str, days: f64) -> StuckDeal {
        StuckDeal {
            id: id.into(),
            title: format!("Поставка №{id}"),
            stage: "Переговоры".into(),
            pipeline: "Общая".into(),
            days,
            value: 1000.0,
            manager: "Иван Петров".into(),
            value_text: None,
        }
    }

    #[test]
    fn falling_conversion_with_more_leads_is_named_with_both_numbers() {
        let k =
            kpis(&[("lead_conversion", Some(20.0), Some(32.0), None), ("leads_total", Some(15.0), Some(10.0), None)]);
        let h = conversion_fell_while_leads_rose(&k, Language::Ru).unwrap();
        assert!(h.text.contains("с 32,0\u{a0}% до 20,0\u{a0}%") && h.text.contains("12,0\u{a0}п.п."), "{}", h.text);
        assert!(h.text.contains("15 против 10"), "{}", h.text);
        // Fewer leads, or a drop under 10 points: silent.
        let fewer =
            kpis(&[("lead_conversion", Some(20.0), Some(32.0), None), ("leads_total", Some(8.0), Some(10.0), None)]);
        assert!(conversion_fell_while_leads_rose(&fewer, Language::Ru).is_none());
        let small =
            kpis(&[("lead_conversion", Some(25.0), Some(32.0), None), ("leads_total", Some(15.0), Some(10.0), None)]);
        assert!(conversion_fell_while_leads_rose(&small, Language::Ru).is_none());
    }

    #[test]
    fn two_stuck_deals_make_a_hint_naming_the_longest() {
        assert!(deals_stuck(&[stuck("7", 53.0)], Language::Ru).is_none());
        let h = deals_stuck(&[stuck("7", 53.0), stuck("5", 21.5)], Language::En).unwrap();
        assert!(
            h.text.starts_with("2 deals are stuck") && h.text.contains("“Поставка №7”") && h.text.contains("53.0 days"),
            "{}",
            h.text
        );
    }

    #[test]
    fn an_average_deal_below_the_team_median_is_compared_with_it() {
        let k = kpis(&[("avg_deal_value", Some(50_000.0), None, None)]);
        let mut team = TeamContext { size: 5, ..TeamContext::default() };
        team.medians.insert("avg_deal_value".into(), Some(80_000.0));
        let h = avg_deal_below_team_median(&k, Some(&team), "RUB", Language::Ru).unwrap();
        assert!(h.text.contains("50\u{a0}000\u{a0}₽") && h.text.contains("80\u{a0}000\u{a0}₽"), "{}", h.text);
        team.medians.insert("avg_deal_value".into(), Some(40_000.0));
        assert!(avg_deal_below_team_median(&k, Some(&team), "RUB", Language::Ru).is_none());
        team.size = 1;
        team.medians.insert("avg_deal_value".into(), Some(80_000.0));
        assert!(avg_deal_below_team_median(&k, Some(&team), "RUB", Language::Ru).is_none());
    }

    #[test]
    fn revenue_under_half_the_target_says_how_far() {
        let k = kpis(&[("revenue", Some(75_000.0), None, Some(200_000.0))]);
        let h = revenue_below_half_target(&k, "RUB", Language::Ru).unwrap();
        assert!(h.text.contains("37,5\u{a0}%") && h.text.contains("200\u{a0}000\u{a0}₽"), "{}", h.text);
        let half = kpis(&[("revenue", Some(100_000.0), None, Some(200_000.0))]);
        assert!(revenue_below_half_target(&half, "RUB", Language::Ru).is_none());
        let no_target = kpis(&[("revenue", Some(1.0), None, None)]);
        assert!(revenue_below_half_target(&no_target, "RUB", Language::Ru).is_none());
    }

    #[test]
    fn no_emails_at_all_is_said_with_last_periods_count() {
        let h = no_emails_sent(&kpis(&[("emails_sent", Some(0.0), Some(12.0), None)]), Language::Ru).unwrap();
        assert!(h.text.contains("в прошлом периоде — 12"), "{}", h.text);
        assert!(no_emails_sent(&kpis(&[("emails_sent", Some(1.0), Some(12.0), None)]), Language::Ru).is_none());
    }

    #[test]
    fn a_better_win_rate_is_praised_with_its_numbers() {
        let h = win_rate_improved(&kpis(&[("win_rate", Some(60.0), Some(40.0), None)]), Language::En).unwrap();
        assert!(h.text.contains("from 40.0% to 60.0% (by 20.0\u{a0}pp)"), "{}", h.text);
        assert!(win_rate_improved(&kpis(&[("win_rate", Some(42.0), Some(40.0), None)]), Language::En).is_none());
    }

    #[test]
    fn a_scorecard_gets_at_most_four_hints_problems_first() {
        let k = kpis(&[
            ("revenue", Some(75_000.0), None, Some(200_000.0)),
            ("lead_conversion", Some(20.0), Some(32.0), None),
            ("leads_total", Some(15.0), Some(10.0), None),
            ("avg_deal_value", Some(50_000.0), None, None),
            ("emails_sent", Some(0.0), Some(0.0), None),
            ("win_rate", Some(60.0), Some(40.0), None),
        ]);
        let mut team = TeamContext { size: 3, ..TeamContext::default() };
        team.medians.insert("avg_deal_value".into(), Some(80_000.0));
        let data = ReportData {
            report: "manager".into(),
            generated_at: String::new(),
            period: crate::kpi::present::period_info(
                &crate::domain::Period::parse("2026-W47", chrono_tz::Europe::Moscow).unwrap(),
                Language::Ru,
            ),
            previous_period: crate::kpi::present::period_info(
                &crate::domain::Period::parse("2026-W46", chrono_tz::Europe::Moscow).unwrap(),
                Language::Ru,
            ),
            year_ago_period: crate::kpi::present::period_info(
                &crate::domain::Period::parse("2025-W47", chrono_tz::Europe::Moscow).unwrap(),
                Language::Ru,
            ),
            currency: "RUB".into(),
            language: "ru".into(),
            manager: None,
            kpis: k,
            kpis_year_ago: None,
            stuck_deals: vec![stuck("7", 53.0), stuck("5", 21.5)],
            stuck_summary: Default::default(),
            managers: None,
            breakdowns: Default::default(),
            trend: vec![],
            cycle_days: vec![],
            team: Some(team),
            hints: vec![],
            notes: vec![],
            definitions: vec![],
            labels: Default::default(),
            charts: Default::default(),
        };
        let rules: Vec<String> = scorecard_hints(&data, Language::Ru).into_iter().map(|h| h.rule).collect();
        assert_eq!(
            rules,
            ["revenue_below_half_target", "conversion_fell_leads_rose", "deals_stuck", "avg_deal_below_team_median"]
        );
    }
}
