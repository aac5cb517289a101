//! An alert's texts, in the configured language: to each manager concerned their own
//! message, to each fixed recipient one summary of every manager concerned. Each says
//! what is off, by how much, the numbers that show it, and the deals to call first.
//!
//! CRM strings (names, deal titles, stages) are data: each is flattened to one line
//! (`text::one_line`) and cut, so none can add a line to a body or a header.

use std::fmt::Write as _;

use chrono::DateTime;
use chrono_tz::Tz;

use super::{AlertMessage, Evaluation, Finding, Issue};
use crate::config::{AlertConfig, AlertRule, Config};
use crate::kpi::{Kpi, StuckDeal, Unit};
use crate::locale::{Language, fmt_count, fmt_date, fmt_money, fmt_number, fmt_pct};
use crate::text::{cut_bytes, one_line};

/// The longest a CRM string may be in an alert, in bytes.
const CRM_TEXT_BYTES: usize = 120;

/// A CRM string as an alert prints it: one line, cut.
fn crm(s: &str) -> String {
    let flat = one_line(s);
    let cut = cut_bytes(&flat, CRM_TEXT_BYTES);
    if cut.len() < flat.len() { format!("{cut}…") } else { flat }
}

/// A KPI value in its unit: money in the currency, counts whole or with one decimal (a
/// pro-rated target of 1.5 deals).
fn value(kpi: Kpi, v: f64, currency: &str, lang: Language) -> String {
    match kpi.unit() {
        Unit::Money => fmt_money(v, currency, lang),
        _ if (v - v.round()).abs() < 1e-9 => fmt_count(v, lang),
        _ => fmt_number(v, 1, lang),
    }
}

fn when(t: DateTime<Tz>, lang: Language) -> String {
    format!("{} {}", fmt_date(t.date_naive(), lang), t.format("%H:%M"))
}

fn days(v: f64, lang: Language) -> String {
    fmt_number(v, if (v - v.round()).abs() < 1e-9 { 0 } else { 1 }, lang)
}

/// The messages of an evaluation: one per manager concerned (when `to_manager`), then one
/// summary per fixed recipient; none when nobody is concerned.
pub fn messages(config: &Config, alert: &AlertConfig, e: &Evaluation) -> Vec<AlertMessage> {
    let lang = config.language;
    let mut out = Vec::new();
    if e.findings.is_empty() {
        return out;
    }
    if alert.to_manager {
        for f in &e.findings {
            let (subject, body) = manager_text(f, e, lang);
            out.push(AlertMessage {
                recipient_key: f.manager.to_string(),
                recipient_name: crm(&f.name),
                to: f.email.iter().cloned().collect(),
                subject,
                body,
            });
        }
    }
    for address in &alert.recipients {
        let (subject, body) = summary_text(alert, e, lang);
        out.push(AlertMessage {
            recipient_key: address.to_ascii_lowercase(),
            recipient_name: address.clone(),
            to: vec![address.clone()],
            subject,
            body,
        });
    }
    out
}

/// The gist of a finding in one line: what, how much.
fn gist(f: &Finding, e: &Evaluation, lang: Language) -> String {
    let cur = &e.currency;
    match (&f.issue, lang) {
        (Issue::Pace { kpi, figures: p, .. }, _) => {
            let share = p.share_pct().map(|s| fmt_pct(s, lang)).unwrap_or_default();
            match lang {
                Language::Ru => format!(
                    "{}: {} из {} к этому времени ({share}), не хватает {}",
                    kpi.label(lang),
                    value(*kpi, p.value, cur, lang),
                    value(*kpi, p.expected, cur, lang),
                    value(*kpi, p.gap(), cur, lang)
                ),
                Language::En => format!(
                    "{}: {} of {} due by now ({share}), {} short",
                    kpi.label(lang),
                    value(*kpi, p.value, cur, lang),
                    value(*kpi, p.expected, cur, lang),
                    value(*kpi, p.gap(), cur, lang)
                ),
            }
        }
        (Issue::Silence { since, working_days }, Language::Ru) => {
            format!("ни одного исходящего письма или звонка с {} ({working_days} раб. дн.)", fmt_date(*since, lang))
        }
        (Issue::Silence { since, working_days }, Language::En) => {
            format!("no outgoing e-mail or call since {} ({working_days} working days)", fmt_date(*since, lang))
        }
        (Issue::NewlyStuck { deals, stuck_after_days, .. }, Language::Ru) => format!(
            "{} сдел. без движения больше {} дн. на {}",
            deals.len(),
            days(*stuck_after_days, lang),
            fmt_money(deals.iter().map(|d| d.value).sum(), cur, lang)
        ),
        (Issue::NewlyStuck { deals, stuck_after_days, .. }, Language::En) => format!(
            "{} deal(s) without a stage change for more than {} days, worth {}",
            deals.len(),
            days(*stuck_after_days, lang),
            fmt_money(deals.iter().map(|d| d.value).sum(), cur, lang)
        ),
    }
}

fn deal_line(d: &StuckDeal, currency: &str, stuck: bool, lang: Language) -> String {
    let idle = match lang {
        Language::Ru => format!(", {} дн. без движения", days(d.days, lang)),
        Language::En => format!(", {} days without a stage change", days(d.days, lang)),
    };
    format!(
        "{} ({}): {}, {}{}",
        crm(&d.title),
        d.id,
        crm(&d.stage),
        fmt_money(d.value, currency, lang),
        if stuck { idle.as_str() } else { "" }
    )
}

/// The deals to call first, numbered, with how many more there are.
fn call_first(out: &mut String, f: &Finding, currency: &str, indent: &str, lang: Language) {
    let stuck = matches!(f.issue, Issue::NewlyStuck { .. });
    if f.call_first.is_empty() {
        let none = match lang {
            Language::Ru => "Открытых сделок нет: пора искать новые.",
            Language::En => "No open deals: time to find new ones.",
        };
        let _ = writeln!(out, "{indent}{none}");
        return;
    }
    let head = match (stuck, lang) {
        (false, Language::Ru) => "Позвоните сначала по самым крупным открытым сделкам:",
        (false, Language::En) => "Call first about your largest open deals:",
        (true, Language::Ru) => "Позвоните по ним, начиная с самых крупных:",
        (true, Language::En) => "Call about them, largest first:",
    };
    let _ = writeln!(out, "{indent}{head}");
    for (i, d) in f.call_first.iter().enumerate() {
        let _ = writeln!(out, "{indent}{}. {}", i + 1, deal_line(d, currency, stuck, lang));
    }
    if f.more > 0 {
        let more = match lang {
            Language::Ru => format!("и ещё {}", f.more),
            Language::En => format!("and {} more", f.more),
        };
        let _ = writeln!(out, "{indent}{more}");
    }
}

/// A manager's own message.
fn manager_text(f: &Finding, e: &Evaluation, lang: Language) -> (String, String) {
    let cur = &e.currency;
    let name = crm(&f.name);
    let at = when(e.slot, lang);
    let mut body = String::new();
    let subject = match (&f.issue, lang) {
        (Issue::Pace { kpi, period, figures: p }, _) => {
            let share = p.share_pct().map(|s| fmt_pct(s, lang)).unwrap_or_default();
            let v = |x: f64| value(*kpi, x, cur, lang);
            let kind = period.kind.target_key().unwrap_or("week");
            match lang {
                Language::Ru => {
                    let span = if kind == "month" { "месяц" } else { "неделю" };
                    let _ = writeln!(body, "{name}, отставание от плана: {}.", kpi.label(lang));
                    let _ = writeln!(body);
                    let _ = writeln!(body, "С начала периода {} по {at}: {}.", period.label(), v(p.value));
                    let _ = writeln!(
                        body,
                        "План на {span}: {}; к этому времени прошло {} из {} рабочих дней, то есть {}.",
                        v(p.target),
                        days(p.elapsed, lang),
                        p.working_days,
                        v(p.expected)
                    );
                    let _ = writeln!(
                        body,
                        "Это {share} плана на сегодня (порог {}): не хватает {}.",
                        fmt_pct(p.min_share * 100.0, lang),
                        v(p.gap())
                    );
                    format!("Отставание от плана: {} {} из {} к {at}", kpi.label(lang), v(p.value), v(p.expected))
                }
                Language::En => {
                    let _ = writeln!(body, "{name}, you are behind pace on {}.", kpi.label(lang));
                    let _ = writeln!(body);
                    let _ = writeln!(body, "From the start of {} to {at}: {}.", period.label(), v(p.value));
                    let _ = writeln!(
                        body,
                        "The {kind}'s target is {}; {} of {} working days have passed, so {} was due by now.",
                        v(p.target),
                        days(p.elapsed, lang),
                        p.working_days,
                        v(p.expected)
                    );
                    let _ = writeln!(
                        body,
                        "That is {share} of it (the alert is below {}): {} short.",
                        fmt_pct(p.min_share * 100.0, lang),
                        v(p.gap())
                    );
                    format!("Behind pace: {} {} of {} due by {at}", kpi.label(lang), v(p.value), v(p.expected))
                }
            }
        }
        (Issue::Silence { since, working_days }, Language::Ru) => {
            let _ = writeln!(
                body,
                "{name}, с {} ({working_days} раб. дн. до {at}) в Bitrix24 нет ни одного вашего исходящего письма или звонка.",
                fmt_date(*since, lang)
            );
            format!("Тишина {working_days} раб. дн.: ни писем, ни звонков с {}", fmt_date(*since, lang))
        }
        (Issue::Silence { since, working_days }, Language::En) => {
            let _ = writeln!(
                body,
                "{name}, Bitrix24 has no outgoing e-mail or call of yours since {} ({working_days} working days to {at}).",
                fmt_date(*since, lang)
            );
            format!("Silent for {working_days} working days: no e-mail or call since {}", fmt_date(*since, lang))
        }
        (Issue::NewlyStuck { deals, since, stuck_after_days }, Language::Ru) => {
            let _ = writeln!(
                body,
                "{name}, с {} по {at} {} сдел. простояли на одной стадии больше {} дн.",
                when(*since, lang),
                deals.len(),
                days(*stuck_after_days, lang)
            );
            format!("Зависли сделки: {} без движения больше {} дн.", deals.len(), days(*stuck_after_days, lang))
        }
        (Issue::NewlyStuck { deals, since, stuck_after_days }, Language::En) => {
            let _ = writeln!(
                body,
                "{name}, between {} and {at} {} deal(s) went more than {} days without a stage change.",
                when(*since, lang),
                deals.len(),
                days(*stuck_after_days, lang)
            );
            format!(
                "Newly stuck: {} deal(s) without a stage change for more than {} days",
                deals.len(),
                days(*stuck_after_days, lang)
            )
        }
    };
    let _ = writeln!(body);
    call_first(&mut body, f, cur, "", lang);
    (one_line(&subject), body)
}

/// The summary a fixed recipient (the head of sales) gets: every manager concerned, one
/// paragraph each.
fn summary_text(alert: &AlertConfig, e: &Evaluation, lang: Language) -> (String, String) {
    let n = e.findings.len();
    let at = when(e.slot, lang);
    let what = match (&alert.rule, lang) {
        (AlertRule::Pace { kpi, .. }, Language::Ru) => format!("отстают от плана по показателю «{}»", kpi.label(lang)),
        (AlertRule::Pace { kpi, .. }, Language::En) => format!("behind pace on {}", kpi.label(lang)),
        (AlertRule::Silence { working_days }, Language::Ru) => format!("без писем и звонков {working_days} раб. дн."),
        (AlertRule::Silence { working_days }, Language::En) => format!("silent for {working_days} working days"),
        (AlertRule::NewlyStuck, Language::Ru) => "с новыми зависшими сделками".to_owned(),
        (AlertRule::NewlyStuck, Language::En) => "with newly stuck deals".to_owned(),
    };
    let what_short = match (&alert.rule, lang) {
        (AlertRule::Pace { kpi, .. }, Language::Ru) => format!("отстают от плана («{}»)", kpi.label(lang)),
        _ => what.clone(),
    };
    let subject = match lang {
        Language::Ru => format!("{}: {what_short}, менеджеров: {n} ({at})", alert.name),
        Language::En => format!("{}: {n} manager(s) {what} ({at})", alert.name),
    };
    let mut body = String::new();
    let _ = match lang {
        Language::Ru => writeln!(body, "Менеджеры, которые {what}, на {at}:"),
        Language::En => writeln!(body, "Managers {what} at {at}:"),
    };
    for f in &e.findings {
        let _ = writeln!(body);
        let _ = writeln!(body, "- {}: {}", crm(&f.name), gist(f, e, lang));
        call_first(&mut body, f, &e.currency, "  ", lang);
    }
    (one_line(&subject), body)
}
