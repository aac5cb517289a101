//! Each rule evaluated over a snapshot built by hand, and the texts' handling of CRM strings.

use chrono::{DateTime, TimeZone};
use chrono_tz::Europe::Moscow;

use super::*;
use crate::domain::{
    ACTIVITY_CALL, ACTIVITY_EMAIL, Activity, Currency, DIRECTION_OUTGOING, Deal, Semantics, StageChange, User,
};
use crate::locale::Language;

fn at(s: &str) -> crate::domain::Timestamp {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn user(id: Id, name: &str) -> User {
    User { id, name: name.into(), email: Some(format!("m{id}@example.ru")), active: true, departments: vec![3] }
}

fn won(id: Id, manager: Id, money: f64, when: &str) -> (Deal, StageChange) {
    let deal = Deal::for_test(id, manager, ("WON", Semantics::Success), money, at("2026-11-01T10:00:00+03:00"));
    let change = StageChange {
        id: id * 10,
        deal_id: id,
        pipeline_id: 0,
        stage_id: "WON".into(),
        semantics: Semantics::Success,
        created: at(when),
    };
    (deal, change)
}

fn open(id: Id, manager: Id, money: f64, since: &str) -> (Deal, StageChange) {
    let deal = Deal::for_test(id, manager, ("NEW", Semantics::Process), money, at("2026-10-01T10:00:00+03:00"));
    let change = StageChange {
        id: id * 10,
        deal_id: id,
        pipeline_id: 0,
        stage_id: "NEW".into(),
        semantics: Semantics::Process,
        created: at(since),
    };
    (deal, change)
}

fn activity(id: Id, manager: Id, type_id: u32, when: &str) -> Activity {
    Activity { id, responsible: manager, type_id, direction: DIRECTION_OUTGOING, completed: true, created: at(when) }
}

const BASE: &str = r#"
[crm]
source = "demo"
departments = [3]
stuck_after_days = 14
[mail]
transport = "outbox"
from = "reports@example.ru"
[[alert]]
name = "pace"
schedule = "0 12 * * WED"
rule = "pace"
kpi = "revenue"
period = "week"
min_share = 0.6
[[alert]]
name = "quiet"
schedule = "0 10 * * MON-FRI"
rule = "silence"
working_days = 2
[[alert]]
name = "stuck"
schedule = "0 9 * * MON-FRI"
rule = "newly-stuck"
recipients = ["head@example.ru"]
[targets.managers."1".week]
revenue = 400000
[targets.managers."2".week]
revenue = 400000
[targets.managers."3".week]
revenue = 0
"#;

/// Four managers: 1 exactly at the threshold, 2 just below, 3 with a target of zero, 4
/// without a target; manager 2's open deals for the call list.
fn snapshot() -> CrmSnapshot {
    let mut s = CrmSnapshot {
        users: vec![user(1, "Анна"), user(2, "Борис\r\nBcc: evil@example.ru"), user(3, "Вера"), user(4, "Глеб")],
        currencies: vec![Currency { code: "RUB".into(), rate: 1.0, base: true }],
        ..CrmSnapshot::default()
    };
    let records = [
        // 120 000 by Wednesday noon: exactly 60 % of 200 000.
        won(11, 1, 100_000.0, "2026-11-23T10:00:00+03:00"),
        won(12, 1, 20_000.0, "2026-11-25T11:59:59+03:00"),
        // 119 999 by noon; the deal won at 12:00 is after the slot.
        won(21, 2, 119_999.0, "2026-11-24T10:00:00+03:00"),
        won(22, 2, 50_000.0, "2026-11-25T12:00:00+03:00"),
        // Won last week: not this week's.
        won(23, 2, 500_000.0, "2026-11-20T10:00:00+03:00"),
        open(24, 2, 10_000.0, "2026-11-10T09:00:00+03:00"),
        open(25, 2, 90_000.0, "2026-11-10T09:00:00+03:00"),
        open(26, 2, 50_000.0, "2026-11-20T09:00:00+03:00"),
        open(27, 2, 70_000.0, "2026-11-20T09:00:00+03:00"),
    ];
    for (d, h) in records {
        s.deals.push(d);
        s.stage_history.push(h);
    }
    s.deals[1].title = "Поставка\nTo: x@y".into();
    s.activities = vec![
        activity(1, 1, ACTIVITY_EMAIL, "2026-11-24T15:00:00+03:00"),
        activity(2, 3, ACTIVITY_CALL, "2026-11-23T00:00:00+03:00"),
        // Before the window of manager 4: Friday.
        activity(3, 4, ACTIVITY_CALL, "2026-11-20T18:00:00+03:00"),
    ];
    s
}

fn config() -> Config {
    Config::parse(BASE, "test.toml").unwrap()
}

#[test]
fn pace_on_wednesday_noon_finds_the_manager_just_below_and_lists_the_others_not_checked() {
    let c = config();
    let slot = Moscow.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let e = evaluate(&c, c.alert("pace").unwrap(), &snapshot(), slot);
    assert_eq!(e.period_key, "2026-11-25T12:00+03:00");
    let ids: Vec<Id> = e.findings.iter().map(|f| f.manager).collect();
    assert_eq!(ids, [2], "1 exactly at the threshold is on pace; 3 has a target of zero; 4 none");
    let Issue::Pace { figures, period, .. } = &e.findings[0].issue else { panic!() };
    assert_eq!(period.label(), "2026-W48");
    assert_eq!(
        (figures.value, figures.expected, figures.threshold, figures.elapsed),
        (119_999.0, 200_000.0, 120_000.0, 2.5)
    );
    let mut not_checked = e.not_checked.clone();
    not_checked.sort();
    assert_eq!(not_checked, [("Вера".to_owned(), "a target of zero"), ("Глеб".to_owned(), "no target")]);
    // The deals to call first: the open ones, most money first, three of four.
    let first: Vec<&str> = e.findings[0].call_first.iter().map(|d| d.id.as_str()).collect();
    assert_eq!((first, e.findings[0].more), (vec!["25", "27", "26"], 1));

    // Tuesday a holiday: 1.5 of 4 days, expected 150 000, threshold 90 000: nobody behind.
    let holiday = Config {
        calendar: crate::domain::Calendar {
            holidays: [slot.date_naive().pred_opt().unwrap()].into(),
            ..Default::default()
        },
        ..c.clone()
    };
    assert!(evaluate(&holiday, c.alert("pace").unwrap(), &snapshot(), slot).findings.is_empty());
}

#[test]
fn silence_counts_outgoing_mail_and_calls_over_working_days() {
    let c = config();
    let quiet = c.alert("quiet").unwrap();
    // Wednesday 10:00: the window starts Monday 00:00. 1 wrote, 3 called at Monday 00:00
    // (inside); 2 and 4 said nothing (4's call was on Friday).
    let slot = Moscow.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
    let e = evaluate(&c, quiet, &snapshot(), slot);
    let ids: Vec<Id> = e.findings.iter().map(|f| f.manager).collect();
    assert_eq!(ids, [2, 4]);
    assert!(matches!(e.findings[0].issue, Issue::Silence { working_days: 2, .. }));
    // Monday 10:00: the window starts Thursday; 4's Friday call counts.
    let monday = Moscow.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap();
    let ids: Vec<Id> = evaluate(&c, quiet, &snapshot(), monday).findings.iter().map(|f| f.manager).collect();
    assert_eq!(ids, [1, 2]);
}

#[test]
fn newly_stuck_reports_each_deal_at_the_slot_after_it_crossed() {
    let c = config();
    let stuck = c.alert("stuck").unwrap();
    // Deals 24 and 25 entered their stage on 10 November 09:00: 14 days on 24 November
    // 09:00, exactly at the limit (not stuck), crossing right after.
    let tuesday = Moscow.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).unwrap();
    assert!(evaluate(&c, stuck, &snapshot(), tuesday).findings.is_empty());
    let wednesday = Moscow.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap();
    let e = evaluate(&c, stuck, &snapshot(), wednesday);
    assert_eq!(e.findings.len(), 1);
    let Issue::NewlyStuck { deals, since, .. } = &e.findings[0].issue else { panic!() };
    assert_eq!(deals.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["25", "24"]);
    assert_eq!(*since, tuesday);
    // Thursday: stuck since yesterday already, not news.
    let thursday = Moscow.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap();
    assert!(evaluate(&c, stuck, &snapshot(), thursday).findings.is_empty());

    // One message to the manager, one summary to the fixed recipient.
    let m = message::messages(&c, stuck, &e);
    assert_eq!(m.iter().map(|m| m.recipient_key.as_str()).collect::<Vec<_>>(), ["2", "head@example.ru"]);
}

#[test]
fn crm_strings_cannot_add_a_line_to_a_message() {
    let c = config();
    let slot = Moscow.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let mut snap = snapshot();
    snap.deals[5].title = "Сделка\r\nBcc: evil@example.ru".into();
    let e = evaluate(&c, c.alert("pace").unwrap(), &snap, slot);
    for lang in [Language::Ru, Language::En] {
        let c = Config { language: lang, ..c.clone() };
        for m in message::messages(&c, c.alert("pace").unwrap(), &e) {
            assert!(!m.subject.contains(['\r', '\n']), "{:?}", m.subject);
            assert!(!m.recipient_name.contains(['\r', '\n']));
            assert!(!m.body.lines().any(|l| l.starts_with("Bcc:")), "{}", m.body);
            assert!(m.body.contains("Борис Bcc: evil@example.ru"), "the name flattened, not dropped: {}", m.body);
            let outgoing = crate::mail::compose_text(
                &c.mail,
                ["pace", &e.period_key, "2"],
                &["m2@example.ru".into()],
                &m.subject,
                &m.body,
                slot.into(),
            )
            .unwrap();
            let text = String::from_utf8_lossy(&outgoing.bytes);
            assert!(!text.lines().any(|l| l.starts_with("Bcc:")), "{text}");
        }
    }
}
