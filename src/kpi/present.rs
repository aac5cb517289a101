//! How the KPI pass's numbers read: each KPI's name, unit and pre-formatted strings
//! (`KpiText`), period titles, the `labels` map templates print, and the data-quality
//! notes' sentences, in Russian or English.
//!
//! Number and date formats themselves live in `locale` (the e-mail's minijinja filters use
//! them too); which number to show is `compute`'s business.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration};

use crate::domain::{Period, PeriodKind};
use crate::locale::{self, DASH, Language, fmt_count, fmt_days, fmt_money, fmt_number, fmt_pct, signed};

use super::catalog::{Kpi, Unit};
use super::model::{Definition, KpiText, KpiValue, Kpis, PeriodInfo, ReportData};

/// A KPI value as shown; `—` for null. Money reads in whole units (`472 700 ₽`, never
/// `406 296,22 ₽` beside it): a KPI is a headline, and kopecks in one card and not in the
/// next look like a mistake. The data keeps full precision.
pub fn fmt_value(v: Option<f64>, unit: Unit, currency: &str, lang: Language) -> String {
    let Some(v) = v else { return DASH.to_owned() };
    match unit {
        Unit::Count => fmt_count(v, lang),
        Unit::Money => fmt_money_whole(v, currency, lang),
        Unit::Percent => fmt_pct(v, lang),
        Unit::Days => fmt_days(v, lang),
        Unit::Score => fmt_number(v, 1, lang),
    }
}

/// Money rounded to whole units; a value that rounds to zero reads `0`, not `−0`.
pub fn fmt_money_whole(v: f64, currency: &str, lang: Language) -> String {
    let whole = v.round();
    fmt_money(if whole == 0.0 { 0.0 } else { whole }, currency, lang)
}

/// A delta as shown: signed, percentage points labelled (`+3,2 п.п.`, `−1.5 pp`); `—` for
/// null.
pub fn fmt_delta(v: Option<f64>, unit: Unit, currency: &str, lang: Language) -> String {
    let Some(v) = v else { return DASH.to_owned() };
    let body = match unit {
        Unit::Percent => {
            let n = fmt_number(v, 1, lang);
            match lang {
                Language::Ru => format!("{n}{}п.п.", locale::NBSP),
                Language::En => format!("{n}{}pp", locale::NBSP),
            }
        }
        _ => fmt_value(Some(v), unit, currency, lang),
    };
    signed(v, &body)
}

/// A relative change: `+66,7 %`; `—` for null.
pub fn fmt_delta_pct(v: Option<f64>, lang: Language) -> String {
    v.map_or_else(|| DASH.to_owned(), |v| signed(v, &fmt_pct(v, lang)))
}

/// `up`, `down`, `flat`, or `none` without a delta.
pub fn direction(delta: Option<f64>) -> &'static str {
    match delta {
        None => "none",
        Some(d) if d.abs() < 1e-9 => "flat",
        Some(d) if d > 0.0 => "up",
        Some(_) => "down",
    }
}

/// Whether the change is good news: for cycle time and lost deals, less is better.
pub fn tone(kpi: Kpi, delta: Option<f64>) -> &'static str {
    match (direction(delta), kpi.lower_is_better()) {
        ("up", false) | ("down", true) => "good",
        ("up", true) | ("down", false) => "bad",
        _ => "neutral",
    }
}

/// The pre-formatted strings of one KPI.
pub fn kpi_text(kpi: Kpi, k: &KpiValue, currency: &str, lang: Language) -> KpiText {
    let unit = kpi.unit();
    KpiText {
        label: kpi.label(lang).to_owned(),
        value: fmt_value(k.value, unit, currency, lang),
        previous: fmt_value(k.previous, unit, currency, lang),
        delta: fmt_delta(k.delta, unit, currency, lang),
        delta_pct: fmt_delta_pct(k.delta_pct, lang),
        target: fmt_value(k.target, unit, currency, lang),
        attainment: k.attainment_pct.map_or_else(|| DASH.to_owned(), |a| fmt_pct(a, lang)),
        direction: direction(k.delta).to_owned(),
        tone: tone(kpi, k.delta).to_owned(),
    }
}

/// Fills `text` of every KPI.
pub fn present_kpis(kpis: &mut Kpis, currency: &str, lang: Language) {
    for kpi in Kpi::ALL {
        let k = kpis.of_mut(kpi);
        k.text = Some(kpi_text(kpi, k, currency, lang));
    }
}

/// Fills every pre-formatted string of the report data and its `labels`.
pub fn present(data: &mut ReportData, lang: Language) {
    let currency = data.currency.clone();
    present_kpis(&mut data.kpis, &currency, lang);
    if let Some(k) = data.kpis_year_ago.as_mut() {
        present_kpis(k, &currency, lang);
    }
    for row in data.managers.iter_mut().flatten() {
        present_kpis(&mut row.kpis, &currency, lang);
    }
    for s in &mut data.stuck_deals {
        s.value_text = Some(fmt_money_whole(s.value, &currency, lang));
    }
    let summary = &mut data.stuck_summary;
    summary.value_text = Some(fmt_money_whole(summary.value, &currency, lang));
    summary.more_text = (summary.more > 0).then(|| {
        let value = fmt_money_whole(summary.more_value, &currency, lang);
        more_deals(summary.more, &value, lang)
    });
    data.labels = labels(lang);
}

/// `И ещё 13 сделок на сумму 2 345 000 ₽.`: the sentence under a list of stuck deals that
/// was shortened (the ones left out are those idle for the fewest days).
pub fn more_deals(n: usize, value: &str, lang: Language) -> String {
    match lang {
        Language::Ru => {
            let word = match (n % 10, n % 100) {
                (1, r) if r != 11 => "сделка",
                (2..=4, r) if !(12..=14).contains(&r) => "сделки",
                _ => "сделок",
            };
            format!("И ещё {n} {word} на сумму {value}.")
        }
        Language::En => {
            let word = if n == 1 { "deal" } else { "deals" };
            format!("And {n} more {word} worth {value}.")
        }
    }
}

/// The department report's page "How the numbers are computed": the general rules, then
/// each KPI the report shows, in the report's language. docs/kpi.md says the same at
/// length, with a worked example.
pub fn definitions(stuck_after_days: f64, lang: Language) -> Vec<Definition> {
    let days = fmt_number(stuck_after_days, 0, lang);
    let general: [(&str, &str, &str, String, String); 5] = [
        (
            "period",
            "Период",
            "Period",
            "Неделя — с понедельника 00:00 до следующего понедельника 00:00, месяц — с 1-го числа 00:00 до 1-го числа следующего месяца, по часовому поясу портала. Сравнение — с предыдущей неделей или месяцем.".into(),
            "A week runs from Monday 00:00 to the next Monday 00:00, a month from the 1st 00:00 to the next 1st, in the portal's time zone. Comparisons are with the previous week or month.".into(),
        ),
        (
            "attribution",
            "Чьи записи",
            "Whose records",
            "Сделки, лиды и дела учитываются за их ответственным; в отчёт входят активные сотрудники отделов продаж. Показатели отдела считаются по всем записям отдела сразу, а не как сумма или среднее показателей менеджеров.".into(),
            "Deals and leads count for their responsible person (ASSIGNED_BY_ID), activities for theirs (RESPONSIBLE_ID); the report covers active users of the sales departments. The department's figures are computed over all of its records at once, not as a sum or average of the managers' figures.".into(),
        ),
        (
            "money",
            "Суммы",
            "Money",
            "Сумма сделки пересчитывается в базовую валюту по курсу портала на момент отчёта. Сделка выиграна (проиграна), если сейчас она в успешной (провальной) стадии; дата — переход в эту стадию по истории стадий, иначе время последней смены стадии, иначе дата закрытия.".into(),
            "A deal's amount (OPPORTUNITY) is converted into the base currency at the portal's rate when the report runs. A deal is won (lost) while its stage is a success (failure) stage; its date is its entry into that stage in the stage history, else MOVED_TIME, else CLOSEDATE.".into(),
        ),
        (
            "stage_at_end",
            "Стадия на конец периода",
            "Stage at the period's end",
            "Стадия сделки на конец периода — по последней записи истории стадий до конца периода; без такой записи — текущая стадия, со времени последней смены стадии. Сделка открыта, если эта стадия в работе.".into(),
            "A deal's stage at the period's end is the one of its latest stage-history entry before the end; without one, its current stage, since MOVED_TIME. The deal was open when that stage is in progress.".into(),
        ),
        (
            "stuck_deals",
            "Зависшие сделки",
            "Stuck deals",
            format!("Открытые на конец периода сделки, чья стадия не менялась дольше {days} дн. В отчёте — самые долгие; сколько ещё и на какую сумму, сказано под списком."),
            format!("Deals open at the period's end whose stage had not changed for more than {days} days. The report lists the longest; how many more and their total is said under the list."),
        ),
    ];
    let mut out: Vec<Definition> = general
        .into_iter()
        .map(|(key, ru_label, en_label, ru, en)| {
            let (label, text) = match lang {
                Language::Ru => (ru_label, ru),
                Language::En => (en_label, en),
            };
            Definition { key: key.to_owned(), label: label.to_owned(), text }
        })
        .collect();
    out.extend(Kpi::ALL.into_iter().map(|kpi| Definition {
        key: kpi.key().to_owned(),
        label: kpi.label(lang).to_owned(),
        text: kpi.definition(lang).to_owned(),
    }));
    out
}

/// The source name of records without a `SOURCE_ID`.
pub fn no_source_name(lang: Language) -> &'static str {
    match lang {
        Language::Ru => "Без источника",
        Language::En => "No source",
    }
}

/// A period for the report data, with RFC 3339 bounds in the zone and a title for people.
pub fn period_info(p: &Period, lang: Language) -> PeriodInfo {
    let kind = match p.kind {
        PeriodKind::Week => "week",
        PeriodKind::Month => "month",
        PeriodKind::Custom => "custom",
    };
    PeriodInfo {
        kind: kind.to_owned(),
        label: p.label(),
        start: p.start().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        end: p.end().to_rfc3339_opts(chrono::SecondsFormat::Secs, false),
        title: period_title(p, lang),
    }
}

/// `16.11.2026 – 22.11.2026`, `Ноябрь 2026`; `16 Nov – 22 Nov 2026`, `November 2026`.
pub fn period_title(p: &Period, lang: Language) -> String {
    let first = p.first_day;
    let last = p.end_day - Duration::days(1);
    match (p.kind, lang) {
        (PeriodKind::Month, _) => format!("{} {}", locale::month_name(first.month(), lang), first.year()),
        (_, Language::Ru) => format!("{} – {}", first.format("%d.%m.%Y"), last.format("%d.%m.%Y")),
        (_, Language::En) => {
            let day = |d: chrono::NaiveDate| format!("{} {}", d.day(), locale::month_short(d.month(), lang));
            if first.year() == last.year() {
                format!("{} – {} {}", day(first), day(last), last.year())
            } else {
                format!("{} {} – {} {}", day(first), first.year(), day(last), last.year())
            }
        }
    }
}

/// A trend chart's axis label: `W47`, `ноя` / `Nov`, or the first day `16.11`.
pub fn short_label(p: &Period, lang: Language) -> String {
    match p.kind {
        PeriodKind::Week => format!("W{:02}", p.first_day.iso_week().week()),
        PeriodKind::Month => locale::month_short(p.first_day.month(), lang).to_owned(),
        PeriodKind::Custom => p.first_day.format("%d.%m").to_string(),
    }
}

/// Labels that are a KPI's name, with a suffix, under another key: a built-in template's
/// column header and the charts' legends and axes (`chart::label`).
const KPI_NAMED: [(&str, Kpi, &str); 4] = [
    ("avg_deal", Kpi::AvgDealValue, ""),
    ("chart_revenue", Kpi::Revenue, ""),
    ("chart_deals_won", Kpi::DealsWon, ""),
    ("chart_conversion", Kpi::LeadConversion, ", %"),
];

/// The section titles and column headers templates print, by key.
const LABELS: &[(&str, &str, &str)] = &[
    ("manager_report", "Эффективность менеджера", "Manager performance"),
    ("department_report", "Эффективность менеджеров", "Sales team performance"),
    ("funnel", "Воронка продаж", "Sales funnel"),
    ("sources", "Источники лидов", "Lead sources"),
    ("products", "Товары", "Products"),
    ("stuck_deals", "Зависшие сделки", "Stuck deals"),
    ("trend", "Динамика", "Trend"),
    ("target", "Цель", "Target"),
    ("previous_period", "Прошлый период", "Previous period"),
    ("change", "Изменение", "Change"),
    ("attainment", "Выполнение плана", "Target attainment"),
    ("team_rank", "Место в команде", "Team rank"),
    ("team_median", "Медиана команды", "Team median"),
    ("hints", "Рекомендации", "Recommendations"),
    ("notes", "Примечания о данных", "Data notes"),
    ("no_data", "Нет данных", "No data"),
    ("period", "Период", "Period"),
    ("year_ago", "Год назад", "A year ago"),
    ("value", "Значение", "Value"),
    ("manager", "Менеджер", "Manager"),
    ("managers", "Менеджеры", "Managers"),
    ("deal", "Сделка", "Deal"),
    ("deals", "Сделок", "Deals"),
    ("entered", "Вошли", "Entered"),
    ("reached", "Дошли", "Reached"),
    ("stage", "Стадия", "Stage"),
    ("pipeline", "Воронка", "Pipeline"),
    ("days", "Дней", "Days"),
    ("amount", "Сумма", "Amount"),
    ("source", "Источник", "Source"),
    ("product", "Товар", "Product"),
    ("conversion", "Конверсия", "Conversion"),
    ("median_days", "Медиана, дн.", "Median, days"),
    ("cycle_distribution", "Распределение цикла сделки, дн.", "Deal cycle distribution, days"),
    ("best", "Лучший результат", "Best"),
    ("worst", "Худший результат", "Worst"),
    ("of", "из", "of"),
    ("generated_at", "Сформирован", "Generated"),
    ("currency", "Валюта", "Currency"),
    ("kpi", "Показатель", "KPI"),
    ("no_stuck_deals", "Зависших сделок нет", "No stuck deals"),
    ("definitions", "Как считаются показатели", "How the numbers are computed"),
    ("pp", "п.п.", "pp"),
    // Section titles and headers of the built-in templates, so that a template an admin
    // copies finds every string it prints in the data, in the report's language.
    ("previous", "Пред.", "Prev."),
    ("where_you_stand", "Ваше место в команде", "Where you stand"),
    ("rank_revenue", "Место по выручке", "Rank by revenue"),
    ("rank_conversion", "Место по конверсии лидов", "Rank by lead conversion"),
    ("you", "Вы", "You"),
    ("days_idle", "Дней без движения", "Days idle"),
    ("page", "Стр.", "Page"),
    ("totals", "Итоги отдела", "Department totals"),
    ("results", "Результаты", "Results"),
    ("activity", "Лиды и активность", "Leads and activity"),
    (
        "top_15",
        "Первые 15 по выручке; все менеджеры — в таблице ниже.",
        "Top 15 by revenue; every manager is in the tables below.",
    ),
    (
        "sources_top_15",
        "Первые 15 источников; все — в таблице «Источники лидов».",
        "The first 15 sources; all of them are in the table «Lead sources».",
    ),
    ("trend_last_12", "На графике — последние 12 периодов из {n}.", "The chart shows the last 12 of {n} periods."),
    ("revenue_by_manager", "Выручка по менеджерам", "Revenue by manager"),
    ("sources_chart", "Конверсия лидов по источникам", "Lead conversion by source"),
    ("no_source", "Без источника", "No source"),
    ("leads", "Лиды", "Leads"),
    ("converted", "Конвертировано", "Converted"),
    // The charts' legends and axes (`chart::label`).
    ("chart_target_revenue", "План по выручке", "Revenue target"),
    ("chart_target_deals", "План по сделкам", "Deals target"),
    ("chart_deals", "Сделок", "Deals"),
    ("chart_days", "дней", "days"),
];

/// The label under `key` in the report's language, as [`labels`] has it; `None` for a key
/// it does not have.
pub fn label(key: &str, lang: Language) -> Option<String> {
    if let Some(kpi) = Kpi::from_key(key) {
        return Some(kpi.label(lang).to_owned());
    }
    if let Some((_, kpi, suffix)) = KPI_NAMED.iter().find(|(k, ..)| *k == key) {
        return Some(format!("{}{suffix}", kpi.label(lang)));
    }
    LABELS.iter().find(|(k, ..)| *k == key).map(|(_, ru, en)| {
        match lang {
            Language::Ru => ru,
            Language::En => en,
        }
        .to_string()
    })
}

/// Every string the templates print, by key: the KPI names under their docs/kpi.md keys and the
/// section titles and column headers.
pub fn labels(lang: Language) -> BTreeMap<String, String> {
    let keys = Kpi::ALL.iter().map(|k| k.key()).chain(KPI_NAMED.iter().map(|n| n.0)).chain(LABELS.iter().map(|l| l.0));
    keys.map(|key| (key.to_owned(), label(key, lang).expect("a key of the tables above"))).collect()
}

/// The data-quality notes' sentences: counts, not one line per record; a note only when its
/// count is not zero.
pub struct Notes {
    lang: Language,
    lines: Vec<String>,
}

impl Notes {
    pub fn new(lang: Language) -> Notes {
        Notes { lang, lines: Vec::new() }
    }

    fn push(&mut self, n: usize, ru: String, en: String) {
        if n > 0 {
            self.lines.push(match self.lang {
                Language::Ru => ru,
                Language::En => en,
            });
        }
    }

    pub fn fallback_won_at(&mut self, n: usize) {
        self.push(
            n,
            format!("Выигранных сделок без перехода в успешную стадию в истории: {n}; дата выигрыша взята из MOVED_TIME или CLOSEDATE."),
            format!("Won deals without an entry into a won stage in the stage history: {n}; the won date is taken from MOVED_TIME or CLOSEDATE."),
        );
    }

    pub fn won_without_time(&mut self, n: usize) {
        self.push(
            n,
            format!("Выигранных сделок без даты выигрыша (нет истории, MOVED_TIME и CLOSEDATE): {n}; не учтены."),
            format!("Won deals without any won date (no history, MOVED_TIME or CLOSEDATE): {n}; not counted."),
        );
    }

    pub fn no_rate(&mut self, n: usize, codes: &str) {
        self.push(
            n,
            format!("Сделок в валюте без курса ({codes}): {n}; их сумма учтена как 0, сами сделки учтены."),
            format!("Deals in a currency without a rate ({codes}): {n}; their amount counts as 0, the deals themselves count."),
        );
    }

    pub fn won_without_value(&mut self, n: usize) {
        self.push(
            n,
            format!("Выигранных сделок без суммы: {n}; учтены в количестве и в среднем чеке как 0."),
            format!("Won deals without an amount: {n}; counted, with 0 in revenue and the average deal."),
        );
    }

    pub fn unknown_stage(&mut self, n: usize) {
        self.push(
            n,
            format!("Сделок в неизвестной стадии (нет в справочнике стадий): {n}."),
            format!("Deals in a stage the stage list does not have: {n}."),
        );
    }

    pub fn lead_gone(&mut self, n: usize) {
        self.push(
            n,
            format!("Выигранных сделок, чей лид удалён: {n}; цикл сделки считается от создания сделки."),
            format!("Won deals whose lead is deleted: {n}; their cycle counts from the deal's creation."),
        );
    }

    /// Deals, leads and activities of users out of scope.
    pub fn out_of_scope(&mut self, (deals, leads, activities): (usize, usize, usize)) {
        self.push(
            deals + leads + activities,
            format!("Не учтены записи пользователей вне отдела продаж или неактивных: сделок {deals}, лидов {leads}, дел {activities}."),
            format!("Records of inactive users or users outside the sales departments are not counted: {deals} deals, {leads} leads, {activities} activities."),
        );
    }

    pub fn into_lines(self) -> Vec<String> {
        self.lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSK: chrono_tz::Tz = chrono_tz::Europe::Moscow;

    #[test]
    fn a_kpi_reads_with_its_unit_sign_and_tone() {
        let won = kpi_text(
            Kpi::DealsWon,
            &KpiValue::compare(Kpi::DealsWon, Some(5.0), Some(3.0), Some(4.0)),
            "RUB",
            Language::Ru,
        );
        assert_eq!(won.value, "5");
        assert_eq!(won.delta, "+2");
        assert_eq!(won.delta_pct, "+66,7\u{a0}%");
        assert_eq!(won.attainment, "125,0\u{a0}%");
        assert_eq!((won.direction.as_str(), won.tone.as_str()), ("up", "good"));

        let rev = kpi_text(
            Kpi::Revenue,
            &KpiValue::compare(Kpi::Revenue, Some(1_234_567.0), Some(1_300_000.0), None),
            "RUB",
            Language::Ru,
        );
        assert_eq!(rev.value, "1\u{a0}234\u{a0}567\u{a0}₽");
        assert_eq!(rev.delta, "−65\u{a0}433\u{a0}₽");
        assert_eq!(rev.target, "—");
        assert_eq!(rev.tone, "bad");

        // Cards show whole roubles even when the data has kopecks, value and delta alike.
        let odd = kpi_text(
            Kpi::Revenue,
            &KpiValue::compare(Kpi::Revenue, Some(472_700.0), Some(406_296.222), None),
            "RUB",
            Language::Ru,
        );
        assert_eq!(odd.previous, "406\u{a0}296\u{a0}₽");
        assert_eq!(odd.delta, "+66\u{a0}404\u{a0}₽");
        let tiny = kpi_text(
            Kpi::Revenue,
            &KpiValue::compare(Kpi::Revenue, Some(100.0), Some(100.4), None),
            "RUB",
            Language::En,
        );
        assert_eq!(tiny.delta, "₽0");

        let conv = kpi_text(
            Kpi::LeadConversion,
            &KpiValue::compare(Kpi::LeadConversion, Some(25.0), Some(21.8), None),
            "RUB",
            Language::En,
        );
        assert_eq!(conv.value, "25.0%");
        assert_eq!(conv.delta, "+3.2\u{a0}pp");
        let conv_ru = kpi_text(
            Kpi::LeadConversion,
            &KpiValue::compare(Kpi::LeadConversion, Some(25.0), Some(21.8), None),
            "RUB",
            Language::Ru,
        );
        assert_eq!(conv_ru.delta, "+3,2\u{a0}п.п.");

        let cycle = kpi_text(
            Kpi::CycleDaysMedian,
            &KpiValue::compare(Kpi::CycleDaysMedian, Some(10.0), Some(12.5), Some(12.0)),
            "RUB",
            Language::Ru,
        );
        assert_eq!((cycle.delta.as_str(), cycle.direction.as_str(), cycle.tone.as_str()), ("−2,5", "down", "good"));
        assert_eq!(cycle.attainment, "120,0\u{a0}%");

        let lost = kpi_text(
            Kpi::DealsLost,
            &KpiValue::compare(Kpi::DealsLost, Some(4.0), Some(2.0), None),
            "RUB",
            Language::En,
        );
        assert_eq!(lost.tone, "bad");
    }

    #[test]
    fn nulls_read_as_a_dash_with_no_direction() {
        let t = kpi_text(
            Kpi::AvgDealValue,
            &KpiValue::compare(Kpi::AvgDealValue, None, Some(100.0), None),
            "USD",
            Language::En,
        );
        assert_eq!((t.value.as_str(), t.delta.as_str(), t.delta_pct.as_str()), ("—", "—", "—"));
        assert_eq!((t.direction.as_str(), t.tone.as_str()), ("none", "neutral"));
        let flat = kpi_text(
            Kpi::CallsMade,
            &KpiValue::compare(Kpi::CallsMade, Some(0.0), Some(0.0), None),
            "USD",
            Language::En,
        );
        assert_eq!((flat.delta.as_str(), flat.delta_pct.as_str(), flat.direction.as_str()), ("0", "—", "flat"));
    }

    #[test]
    fn periods_have_titles_for_people() {
        let w = Period::parse("2026-W47", MSK).unwrap();
        let info = period_info(&w, Language::Ru);
        assert_eq!(info.title, "16.11.2026 – 22.11.2026");
        assert_eq!(
            (info.start.as_str(), info.end.as_str()),
            ("2026-11-16T00:00:00+03:00", "2026-11-23T00:00:00+03:00")
        );
        assert_eq!(period_title(&w, Language::En), "16 Nov – 22 Nov 2026");
        let m = Period::parse("2026-11", MSK).unwrap();
        assert_eq!(period_title(&m, Language::Ru), "Ноябрь 2026");
        assert_eq!(period_title(&m, Language::En), "November 2026");
        let across = Period::parse("2026-W01", MSK).unwrap();
        assert_eq!(period_title(&across, Language::En), "29 Dec 2025 – 4 Jan 2026");
        assert_eq!(short_label(&w, Language::Ru), "W47");
        assert_eq!(short_label(&m, Language::Ru), "ноя");
    }

    #[test]
    fn labels_name_every_kpi_and_section_in_both_languages() {
        let ru = labels(Language::Ru);
        let en = labels(Language::En);
        for kpi in Kpi::ALL {
            assert!(!ru[kpi.key()].is_empty() && !en[kpi.key()].is_empty(), "{kpi}");
        }
        assert_eq!(ru["funnel"], "Воронка продаж");
        assert_eq!(en["funnel"], "Sales funnel");
        assert_eq!(ru["csat"], "Удовлетворённость клиентов");
        assert_eq!(ru.keys().collect::<Vec<_>>(), en.keys().collect::<Vec<_>>());
    }
}
