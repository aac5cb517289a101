//! Hand-built report data for tests: a manager scorecard and a department report with
//! Cyrillic names, written out the way `kpi` fills them (numbers plus pre-formatted
//! strings), so that rendering and delivery can be tested without a CRM.
//!
//! The formatted strings here are this file's own; tests compare the PDF against what the
//! fixture says, never against literals of their own.

#![allow(dead_code)]

use std::collections::BTreeMap;

use salespulse::kpi::compute::stuck_summary;
use salespulse::kpi::{
    Breakdowns, FunnelPipeline, FunnelStage, Hint, KpiText, KpiValue, Kpis, ManagerRef, ManagerRow, PeriodInfo,
    ProductRowOut, ReportData, SourceRow, StuckDeal, TeamContext, TrendPoint,
};
use salespulse::locale::Language;

/// The manager the scorecard is for.
pub const MANAGER_NAME: &str = "Иван Петров";

/// How a KPI's number is written.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    Money,
    Percent,
    Days,
    Score,
}

/// Groups thousands with a no-break space and uses a decimal comma (ru) or point (en).
fn number(value: f64, decimals: usize, en: bool) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i).is_multiple_of(3) {
            grouped.push(if en { ',' } else { '\u{a0}' });
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 { "−" } else { "" };
    match frac {
        Some(f) => format!("{sign}{grouped}{}{f}", if en { '.' } else { ',' }),
        None => format!("{sign}{grouped}"),
    }
}

fn with_unit(value: f64, unit: Unit, en: bool) -> String {
    match unit {
        Unit::Count => number(value, 0, en),
        Unit::Money if en => format!("₽{}", number(value, 0, en)),
        Unit::Money => format!("{}\u{a0}₽", number(value, 0, en)),
        Unit::Percent => format!("{}\u{a0}%", number(value, 1, en)),
        Unit::Days if en => format!("{} d", number(value, 1, en)),
        Unit::Days => format!("{}\u{a0}дн.", number(value, 1, en)),
        Unit::Score => number(value, 1, en),
    }
}

/// A KPI with its comparison and its strings, as `kpi` + `present` would produce it.
fn kpi(label: &str, value: Option<f64>, previous: Option<f64>, target: Option<f64>, unit: Unit, en: bool) -> KpiValue {
    let lower_is_better = matches!(unit, Unit::Days);
    let delta = value.zip(previous).map(|(v, p)| v - p);
    let delta_pct = value.zip(previous).and_then(|(v, p)| (p != 0.0).then(|| (v - p) / p * 100.0));
    let attainment_pct = value.zip(target).and_then(|(v, t)| (t != 0.0).then(|| v / t * 100.0));
    let dash = "—".to_string();
    let fmt = |v: Option<f64>| v.map_or_else(|| dash.clone(), |v| with_unit(v, unit, en));
    let direction = match delta {
        None => "none",
        Some(d) if d > 0.0 => "up",
        Some(d) if d < 0.0 => "down",
        Some(_) => "flat",
    };
    let tone = match (direction, lower_is_better) {
        ("up", false) | ("down", true) => "good",
        ("down", false) | ("up", true) => "bad",
        _ => "neutral",
    };
    let signed = |d: f64, s: String| if d > 0.0 { format!("+{s}") } else { s };
    let text = KpiText {
        label: label.to_string(),
        value: fmt(value),
        previous: fmt(previous),
        delta: delta.map_or_else(
            || dash.clone(),
            |d| match unit {
                Unit::Percent => signed(d, format!("{}\u{a0}{}", number(d, 1, en), if en { "pp" } else { "п.п." })),
                _ => signed(d, with_unit(d, unit, en)),
            },
        ),
        delta_pct: delta_pct.map_or_else(|| dash.clone(), |d| signed(d, format!("{}\u{a0}%", number(d, 1, en)))),
        target: fmt(target),
        attainment: attainment_pct.map_or_else(|| dash.clone(), |a| format!("{}\u{a0}%", number(a, 0, en))),
        direction: direction.to_string(),
        tone: tone.to_string(),
    };
    KpiValue { value, previous, delta, delta_pct, target, attainment_pct, text: Some(text) }
}

/// A full KPI set from a few base numbers: (deals won, revenue, leads, converted, cycle).
struct Base {
    won: f64,
    lost: f64,
    revenue: f64,
    leads: f64,
    converted: f64,
    cycle: f64,
    emails: f64,
    calls: f64,
    csat: Option<f64>,
}

fn kpis(now: &Base, before: &Base, targets: (Option<f64>, Option<f64>, Option<f64>), en: bool) -> Kpis {
    let l = |ru: &'static str, english: &'static str| if en { english } else { ru };
    let ratio = |a: f64, b: f64| (b != 0.0).then(|| a / b * 100.0);
    let avg = |b: &Base| (b.won != 0.0).then(|| b.revenue / b.won);
    Kpis {
        deals_won: kpi(l("Выиграно сделок", "Deals won"), Some(now.won), Some(before.won), targets.0, Unit::Count, en),
        revenue: kpi(l("Выручка", "Revenue"), Some(now.revenue), Some(before.revenue), targets.1, Unit::Money, en),
        avg_deal_value: kpi(l("Средний чек", "Average deal"), avg(now), avg(before), None, Unit::Money, en),
        deals_lost: fewer_is_better(kpi(
            l("Проиграно сделок", "Deals lost"),
            Some(now.lost),
            Some(before.lost),
            None,
            Unit::Count,
            en,
        )),
        win_rate: kpi(
            l("Доля выигранных", "Win rate"),
            ratio(now.won, now.won + now.lost),
            ratio(before.won, before.won + before.lost),
            None,
            Unit::Percent,
            en,
        ),
        leads_total: kpi(l("Лиды", "Leads"), Some(now.leads), Some(before.leads), None, Unit::Count, en),
        leads_converted: kpi(
            l("Конвертировано лидов", "Leads converted"),
            Some(now.converted),
            Some(before.converted),
            None,
            Unit::Count,
            en,
        ),
        lead_conversion: kpi(
            l("Конверсия лидов", "Lead conversion"),
            ratio(now.converted, now.leads),
            ratio(before.converted, before.leads),
            targets.2,
            Unit::Percent,
            en,
        ),
        cycle_days_median: kpi(
            l("Цикл сделки (медиана)", "Sales cycle (median)"),
            Some(now.cycle),
            Some(before.cycle),
            None,
            Unit::Days,
            en,
        ),
        cycle_days_mean: kpi(
            l("Цикл сделки (среднее)", "Sales cycle (mean)"),
            Some(now.cycle + 2.5),
            Some(before.cycle + 1.0),
            None,
            Unit::Days,
            en,
        ),
        emails_sent: kpi(
            l("Отправлено писем", "E-mails sent"),
            Some(now.emails),
            Some(before.emails),
            None,
            Unit::Count,
            en,
        ),
        calls_made: kpi(l("Звонки", "Calls"), Some(now.calls), Some(before.calls), None, Unit::Count, en),
        csat: kpi(l("Удовлетворённость (CSAT)", "CSAT"), now.csat, before.csat, None, Unit::Score, en),
        csat_responses: kpi(l("Ответов CSAT", "CSAT responses"), Some(6.0), Some(4.0), None, Unit::Count, en),
        repeat_share: kpi(l("Повторные продажи", "Repeat business"), Some(20.0), Some(25.0), None, Unit::Percent, en),
        open_pipeline_value: kpi(
            l("Открытые сделки", "Open pipeline"),
            Some(now.revenue * 2.1),
            Some(before.revenue * 1.7),
            None,
            Unit::Money,
            en,
        ),
    }
}

/// For lost deals a rise is bad news.
fn fewer_is_better(mut k: KpiValue) -> KpiValue {
    if let Some(t) = k.text.as_mut() {
        t.tone = match t.tone.as_str() {
            "good" => "bad".into(),
            "bad" => "good".into(),
            other => other.into(),
        };
    }
    k
}

fn period(kind: &str, label: &str, start: &str, end: &str, title: &str) -> PeriodInfo {
    PeriodInfo { kind: kind.into(), label: label.into(), start: start.into(), end: end.into(), title: title.into() }
}

fn trend(weekly: bool, en: bool) -> Vec<TrendPoint> {
    let months_ru = ["дек", "янв", "фев", "мар", "апр", "май", "июн", "июл", "авг", "сен", "окт", "ноя"];
    let months_en = ["Dec", "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov"];
    (0..12)
        .map(|i| {
            let won = [2u64, 4, 3, 5, 1, 3, 4, 6, 2, 3, 3, 5][i];
            let scale = if weekly { 95_000.0 } else { 1_050_000.0 };
            let (label, short) = if weekly {
                (format!("2026-W{}", 36 + i), format!("W{}", 36 + i))
            } else {
                let m = if en { months_en[i] } else { months_ru[i] };
                (format!("2026-{:02}", (i % 12) + 1), m.to_string())
            };
            TrendPoint {
                label,
                short,
                deals_won: won,
                revenue: won as f64 * scale * (1.0 + (i as f64) * 0.03),
                lead_conversion: Some(18.0 + i as f64),
                avg_deal_value: Some(scale),
                target_deals_won: Some(if weekly { 3.0 } else { 12.0 }),
                target_revenue: Some(if weekly { 400_000.0 } else { 4_000_000.0 }),
            }
        })
        .collect()
}

fn funnel(scale: u64) -> Vec<FunnelPipeline> {
    let stage = |id: &str, name: &str, deals: u64, semantics: &str, conv: Option<f64>, days: Option<f64>| FunnelStage {
        id: id.into(),
        name: name.into(),
        deals: deals * scale,
        reached: deals * scale,
        semantics: semantics.into(),
        conversion_pct: conv,
        median_days: days,
    };
    vec![
        FunnelPipeline {
            pipeline_id: "0".into(),
            pipeline: "Общая".into(),
            stages: vec![
                stage("NEW", "Новая", 31, "P", None, Some(1.5)),
                stage("PREPARATION", "Подготовка документов", 22, "P", Some(71.0), Some(3.0)),
                stage("PREPAYMENT_INVOICE", "Счёт на предоплату", 14, "P", Some(63.6), Some(4.5)),
                stage("EXECUTING", "В работе", 11, "P", Some(78.6), Some(6.0)),
                stage("WON", "Сделка успешна", 8, "S", Some(72.7), None),
                stage("LOSE", "Сделка провалена", 5, "F", None, None),
            ],
        },
        FunnelPipeline {
            pipeline_id: "3".into(),
            pipeline: "Дилеры".into(),
            stages: vec![
                stage("C3:NEW", "Заявка", 6, "P", None, Some(2.0)),
                stage("C3:WON", "Отгружено", 2, "S", Some(33.3), None),
                stage("C3:LOSE", "Отказ", 1, "F", None, None),
            ],
        },
    ]
}

fn stuck(en: bool) -> Vec<StuckDeal> {
    let deal = |id: &str, title: &str, stage: &str, days: f64, value: f64, manager: &str| StuckDeal {
        id: id.into(),
        title: title.into(),
        stage: stage.into(),
        pipeline: "Общая".into(),
        days,
        value,
        manager: manager.into(),
        value_text: Some(with_unit(value, Unit::Money, en)),
    };
    vec![
        deal("410", "Поставка серверов для ООО «Ромашка»", "Переговоры", 23.0, 150_000.0, MANAGER_NAME),
        deal("388", "Лицензии 1С на 25 мест", "Счёт на предоплату", 17.0, 420_000.0, MANAGER_NAME),
        deal("377", "Внедрение CRM — филиал в Новосибирске", "В работе", 15.0, 1_250_000.0, "Мария Соколова"),
    ]
}

/// The labels exactly as `kpi::present` fills them, so that the templates are tested
/// against the real keys.
fn labels(en: bool) -> BTreeMap<String, String> {
    salespulse::kpi::present::labels(if en { Language::En } else { Language::Ru })
}

fn charts(names: &[&str]) -> BTreeMap<String, String> {
    names.iter().map(|n| (n.to_string(), format!("/charts/{n}.svg"))).collect()
}

/// Ivan Petrov's weekly scorecard for 2026-W47, in Russian.
pub fn manager_report() -> ReportData {
    manager_report_in("ru")
}

/// The same scorecard in `language` (`ru` or `en`).
pub fn manager_report_in(language: &str) -> ReportData {
    let en = language == "en";
    let now = Base {
        won: 5.0,
        lost: 2.0,
        revenue: 1_234_567.0,
        leads: 24.0,
        converted: 6.0,
        cycle: 12.0,
        emails: 48.0,
        calls: 61.0,
        csat: Some(4.6),
    };
    let before = Base {
        won: 3.0,
        lost: 3.0,
        revenue: 980_000.0,
        leads: 20.0,
        converted: 6.0,
        cycle: 14.5,
        emails: 52.0,
        calls: 61.0,
        csat: Some(4.8),
    };
    let mut medians = BTreeMap::new();
    medians.insert("revenue".to_string(), Some(1_050_000.0));
    medians.insert("lead_conversion".to_string(), Some(22.0));
    medians.insert("deals_won".to_string(), Some(4.0));
    ReportData {
        report: "manager".into(),
        generated_at: "2026-11-23T08:00:03+03:00".into(),
        period: period(
            "week",
            "2026-W47",
            "2026-11-16T00:00:00+03:00",
            "2026-11-23T00:00:00+03:00",
            if en { "Nov 16 – 22, 2026" } else { "16.11.2026 – 22.11.2026" },
        ),
        previous_period: period(
            "week",
            "2026-W46",
            "2026-11-09T00:00:00+03:00",
            "2026-11-16T00:00:00+03:00",
            if en { "Nov 9 – 15, 2026" } else { "09.11.2026 – 15.11.2026" },
        ),
        year_ago_period: period(
            "week",
            "2025-W47",
            "2025-11-17T00:00:00+03:00",
            "2025-11-24T00:00:00+03:00",
            if en { "Nov 17 – 23, 2025" } else { "17.11.2025 – 23.11.2025" },
        ),
        currency: "RUB".into(),
        language: language.into(),
        manager: Some(ManagerRef { id: "17".into(), name: MANAGER_NAME.into(), email: Some("ivan@example.ru".into()) }),
        kpis: kpis(&now, &before, (Some(3.0), Some(1_000_000.0), Some(25.0)), en),
        kpis_year_ago: None,
        stuck_summary: stuck_summary(
            &stuck(en).into_iter().filter(|d| d.manager == MANAGER_NAME).collect::<Vec<_>>(),
            10,
        ),
        stuck_deals: stuck(en).into_iter().filter(|d| d.manager == MANAGER_NAME).collect(),
        managers: None,
        breakdowns: Breakdowns { sources: Vec::new(), funnel: funnel(1), products: Vec::new() },
        trend: trend(true, en),
        cycle_days: vec![4.0, 9.0, 12.0, 15.0, 30.0],
        team: Some(TeamContext { size: 6, rank_revenue: Some(2), rank_conversion: Some(4), medians }),
        hints: vec![Hint {
            rule: "conversion_fell_leads_rose".into(),
            text: if en {
                "Leads rose by 4 but conversion fell: call back this week's new leads within a day.".into()
            } else {
                "Лидов стало на 4 больше, а конверсия упала: перезвоните новым лидам этой недели в течение дня.".into()
            },
        }],
        notes: vec![if en {
            "2 calls without a responsible user were not attributed.".into()
        } else {
            "2 звонка без ответственного не учтены.".into()
        }],
        definitions: Vec::new(),
        labels: labels(en),
        charts: charts(&["trend", "funnel"]),
    }
}

/// One department manager: a name and a scale of their figures.
fn manager_row(id: &str, name: &str, k: f64, mark: Option<&str>) -> ManagerRow {
    let now = Base {
        won: (12.0 * k).round(),
        lost: (5.0 * k).round(),
        revenue: (4_100_000.0 * k).round(),
        leads: (80.0 * k).round(),
        converted: (19.0 * k * k).round(),
        cycle: 20.0 / k,
        emails: (200.0 * k).round(),
        calls: (240.0 * k).round(),
        csat: if k > 0.6 { Some(4.0 + k / 2.0) } else { None },
    };
    let before = Base { won: (10.0 * k).round(), revenue: (3_700_000.0 * k).round(), cycle: 22.0 / k, ..now };
    ManagerRow {
        id: id.into(),
        name: name.into(),
        kpis: kpis(&now, &before, (Some(12.0), Some(4_000_000.0), Some(25.0)), false),
        mark: mark.map(str::to_string),
    }
}

/// The department report for November 2026, in Russian, with six managers (one with a
/// very long name).
pub fn department_report() -> ReportData {
    let managers = vec![
        manager_row("17", MANAGER_NAME, 1.0, None),
        manager_row("21", "Мария Соколова", 1.3, Some("best")),
        manager_row("25", "Алексей Смирнов", 0.8, None),
        manager_row("29", "Ольга Кузнецова", 1.1, None),
        manager_row("33", "Константин Константинопольский-Верхнеднепровский", 0.9, None),
        manager_row("37", "Дмитрий Волков", 0.5, Some("worst")),
    ];
    let mut data = manager_report();
    data.report = "department".into();
    data.manager = None;
    data.period = period("month", "2026-11", "2026-11-01T00:00:00+03:00", "2026-12-01T00:00:00+03:00", "ноябрь 2026");
    data.previous_period =
        period("month", "2026-10", "2026-10-01T00:00:00+03:00", "2026-11-01T00:00:00+03:00", "октябрь 2026");
    data.year_ago_period =
        period("month", "2025-11", "2025-11-01T00:00:00+03:00", "2025-12-01T00:00:00+03:00", "ноябрь 2025");
    data.generated_at = "2026-12-01T09:00:02+03:00".into();
    let now = Base {
        won: 68.0,
        lost: 29.0,
        revenue: 23_780_000.0,
        leads: 450.0,
        converted: 118.0,
        cycle: 19.0,
        emails: 1100.0,
        calls: 1340.0,
        csat: Some(4.5),
    };
    let before = Base { won: 61.0, revenue: 21_500_000.0, leads: 410.0, converted: 101.0, cycle: 21.0, ..now };
    data.kpis = kpis(&now, &before, (Some(72.0), Some(24_000_000.0), Some(25.0)), false);
    let year_ago = Base { won: 50.0, revenue: 17_900_000.0, leads: 380.0, converted: 80.0, cycle: 25.0, ..now };
    let mut ya = kpis(&year_ago, &year_ago, (None, None, None), false);
    for key in ["deals_won", "revenue", "lead_conversion", "avg_deal_value", "cycle_days_median"] {
        if let Some(k) = ya.get_mut(key) {
            k.previous = None;
            k.delta = None;
            k.delta_pct = None;
        }
    }
    data.kpis_year_ago = Some(ya);
    data.managers = Some(managers);
    data.team = None;
    data.stuck_deals = stuck(false);
    data.stuck_summary = stuck_summary(&data.stuck_deals, 20);
    data.trend = trend(false, false);
    data.cycle_days = (0..68).map(|i| ((i * 37) % 61) as f64 + (i % 5) as f64 * 0.5).collect();
    data.breakdowns = Breakdowns {
        sources: vec![
            source("WEB", "Веб-сайт", 180, 52, 30, 10_900_000.0),
            source("CALL", "Звонок", 120, 33, 19, 6_100_000.0),
            source("RECOMMENDATION", "По рекомендации", 40, 17, 11, 4_300_000.0),
            source("ADVERTISING", "Реклама", 90, 12, 6, 1_900_000.0),
            source("", "Без источника", 20, 4, 2, 580_000.0),
        ],
        funnel: funnel(6),
        products: vec![
            product("12", "Лицензия «Бизнес»", 30, 9_000_000.0),
            product("15", "Внедрение под ключ", 9, 8_100_000.0),
            product("18", "Техподдержка, год", 22, 4_400_000.0),
            product("20", "Обучение сотрудников", 7, 560_000.0),
        ],
    };
    data.hints = Vec::new();
    data.notes = vec!["3 сделки без ответственного не учтены.".into(), "Курс USD взят на дату закрытия сделки.".into()];
    data.charts = charts(&["revenue_by_manager", "sources", "trend", "cycle", "funnel"]);
    data
}

fn source(id: &str, name: &str, leads: u64, converted: u64, won: u64, revenue: f64) -> SourceRow {
    SourceRow {
        id: id.into(),
        name: name.into(),
        leads_total: leads,
        leads_converted: converted,
        lead_conversion: (leads > 0).then(|| converted as f64 / leads as f64 * 100.0),
        deals_won: won,
        revenue,
        avg_deal_value: (won > 0).then(|| revenue / won as f64),
    }
}

fn product(id: &str, name: &str, won: u64, revenue: f64) -> ProductRowOut {
    ProductRowOut {
        id: id.into(),
        name: name.into(),
        deals_won: won,
        revenue,
        avg_deal_value: (won > 0).then(|| revenue / won as f64),
    }
}

/// A scorecard with nothing in it: no trend, no funnel, no deals, every KPI null.
pub fn empty_manager_report() -> ReportData {
    let mut data = manager_report();
    let en = false;
    for key in salespulse::kpi::Kpi::ALL.map(|k| k.key()) {
        let label = data.kpis.get(key).and_then(|k| k.text.as_ref()).map(|t| t.label.clone()).unwrap_or_default();
        *data.kpis.get_mut(key).expect("a docs/kpi.md key") = kpi(&label, None, None, None, Unit::Count, en);
    }
    data.trend.clear();
    data.breakdowns = Breakdowns::default();
    data.stuck_deals.clear();
    data.cycle_days.clear();
    data.team = None;
    data.hints.clear();
    data.notes.clear();
    data
}
