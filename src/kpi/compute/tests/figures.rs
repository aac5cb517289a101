//! The sixteen KPIs over hand-built portals.

use super::*;

/// The worked example of docs/kpi.md ("A week worked by hand"), record for record: if
/// this test changes, the document changes with it.
#[test]
fn the_worked_example_of_docs_kpi_md() {
    let mut s = portal();
    // Leads: one from before the week (the origin of deal 101), four created in it.
    s.leads.push(lead(1, IVAN, "2026-11-02T10:00:00+03:00", true, Some("WEB")));
    s.leads.push(lead(2, IVAN, "2026-11-16T11:00:00+03:00", true, Some("WEB")));
    s.leads.push(lead(3, IVAN, "2026-11-17T12:00:00+03:00", false, Some("CALL")));
    s.leads.push(lead(4, IVAN, "2026-11-18T13:00:00+03:00", false, None));
    s.leads.push(lead(5, IVAN, "2026-11-21T14:00:00+03:00", false, Some("WEB")));
    // 101: from lead 1, 120 000 RUB, won on Tuesday 17 November at 15:00, rated 5.
    let mut d101 = deal(101, IVAN, 120_000.0);
    d101.lead_id = Some(1);
    d101.created = t("2026-11-05T09:00:00+03:00");
    d101.satisfaction = Some("5".into());
    win(&mut s, d101, "2026-11-17T15:00:00+03:00");
    // 102: no lead, 1 000 USD at 90.50, a returning customer, won on Friday at 12:00.
    let mut d102 = deal(102, IVAN, 1_000.0);
    d102.currency = "USD".into();
    d102.created = t("2026-11-10T12:00:00+03:00");
    d102.is_return_customer = true;
    d102.satisfaction = Some("4".into());
    win(&mut s, d102, "2026-11-20T12:00:00+03:00");
    // 103: lost on Wednesday.
    lose(&mut s, deal(103, IVAN, 40_000.0), "2026-11-18T11:00:00+03:00");
    // 104: in "Предложение" since Monday 10:00, won half an hour after the week ended.
    entry(&mut s, 104, "PROPOSAL", "2026-11-16T10:00:00+03:00");
    win(&mut s, deal(104, IVAN, 70_000.0), "2026-11-23T00:30:00+03:00");
    // 105: in "Переговоры" since 30 October 12:00: stuck.
    let mut d105 = deal(105, IVAN, 50_000.0);
    d105.created = t("2026-10-20T10:00:00+03:00");
    d105.stage_id = "NEGOTIATION".into();
    entry(&mut s, 105, "NEGOTIATION", "2026-10-30T12:00:00+03:00");
    s.deals.push(d105);
    // 106: created on Thursday 09:00, still in its first stage.
    let mut d106 = deal(106, IVAN, 30_000.0);
    d106.created = t("2026-11-19T09:00:00+03:00");
    s.deals.push(d106);
    s.activities.extend([
        activity(1, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-16T10:00:00+03:00"),
        activity(2, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-17T10:00:00+03:00"),
        activity(3, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-19T10:00:00+03:00"),
        activity(4, IVAN, ACTIVITY_EMAIL, 1, true, "2026-11-19T11:00:00+03:00"), // incoming
        activity(5, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-20T10:00:00+03:00"),
        activity(6, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, false, "2026-11-20T11:00:00+03:00"), // planned
    ]);
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    let v = |k: &str| value(&r, k);
    assert_eq!(v("deals_won"), Some(2.0));
    assert_eq!(v("revenue"), Some(210_500.0));
    assert_eq!(v("avg_deal_value"), Some(105_250.0));
    assert_eq!(v("deals_lost"), Some(1.0));
    assert!(close(v("win_rate"), 200.0 / 3.0));
    assert_eq!((v("leads_total"), v("leads_converted"), v("lead_conversion")), (Some(4.0), Some(1.0), Some(25.0)));
    // 101: 2 Nov 10:00 to 17 Nov 15:00 = 15 days 5 hours; 102: 10 Nov to 20 Nov 12:00 = 10 days.
    let cycle = (15.0 + 5.0 / 24.0 + 10.0) / 2.0;
    assert!(close(v("cycle_days_median"), cycle) && close(v("cycle_days_mean"), cycle));
    assert_eq!((v("emails_sent"), v("calls_made")), (Some(3.0), Some(1.0)));
    assert_eq!((v("csat"), v("csat_responses"), v("repeat_share")), (Some(4.5), Some(2.0), Some(50.0)));
    // 104 (open at the week's end), 105 and 106.
    assert_eq!(v("open_pipeline_value"), Some(150_000.0));
    // 105: 30 Oct 12:00 to 23 Nov 00:00 = 23.5 days idle.
    assert_eq!(r.stuck_deals.len(), 1);
    assert_eq!((r.stuck_deals[0].id.as_str(), r.stuck_deals[0].days), ("105", 23.5));
    let text = |k: &str| r.kpis.get(k).unwrap().text.clone().unwrap().value;
    assert_eq!(text("revenue"), "210\u{a0}500\u{a0}₽");
    assert_eq!(text("win_rate"), "66,7\u{a0}%");
    assert_eq!(text("cycle_days_median"), "12,6");
}

#[test]
fn managers_are_active_users_of_the_sales_departments_and_their_subdepartments() {
    let s = portal();
    let cfg = settings();
    let names: Vec<_> = Analysis::new(&s, &cfg).managers().iter().map(|u| u.name.clone()).collect();
    assert_eq!(names, ["Иван Петров", "Мария Сидорова"]);

    let mut only_listed = settings();
    only_listed.scope.include_subdepartments = false;
    only_listed.scope.managers = vec![OLEG, ANNA];
    let names: Vec<_> = Analysis::new(&s, &only_listed).managers().iter().map(|u| u.id).collect();
    // Maria's sub-department is off; Oleg is listed; Anna is listed but inactive.
    assert_eq!(names, [IVAN, OLEG]);
}

#[test]
fn an_empty_week_has_zero_counts_and_null_ratios() {
    let s = portal();
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    for key in ["deals_won", "deals_lost", "leads_total", "leads_converted", "emails_sent", "calls_made"] {
        assert_eq!(value(&r, key), Some(0.0), "{key}");
    }
    assert_eq!(value(&r, "revenue"), Some(0.0));
    assert_eq!(value(&r, "open_pipeline_value"), Some(0.0));
    for key in [
        "avg_deal_value",
        "win_rate",
        "lead_conversion",
        "cycle_days_median",
        "cycle_days_mean",
        "csat",
        "repeat_share",
    ] {
        assert_eq!(value(&r, key), None, "{key}");
    }
    let won = &r.kpis.deals_won;
    assert_eq!((won.previous, won.delta, won.delta_pct), (Some(0.0), Some(0.0), None));
    assert_eq!(r.kpis.win_rate.delta, None);
    assert_eq!(r.kpis.avg_deal_value.text.as_ref().unwrap().value, "—");
    assert!(r.stuck_deals.is_empty() && r.cycle_days.is_empty() && r.notes.is_empty());
    let json = serde_json::to_string(&r).unwrap();
    assert!(!json.contains("NaN") && !json.contains("inf"), "{json}");
    assert_eq!(r.team.as_ref().unwrap().rank_revenue, Some(1), "both managers share first place at 0");
    assert_eq!(r.team.as_ref().unwrap().rank_conversion, None);
}

#[test]
fn a_deal_won_sunday_before_midnight_and_one_on_monday_fall_into_different_weeks() {
    let mut s = portal();
    win(&mut s, deal(1, IVAN, 100.0), "2026-11-22T23:59:59+03:00");
    win(&mut s, deal(2, IVAN, 200.0), "2026-11-23T00:00:00+03:00");
    // Sunday 23:30 in Moscow, served in UTC.
    win(&mut s, deal(3, IVAN, 400.0), "2026-11-22T20:30:00+00:00");
    // Monday 16.11 00:30 in Moscow, served in UTC as Sunday evening.
    win(&mut s, deal(4, IVAN, 800.0), "2026-11-15T21:30:00+00:00");
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "deals_won"), Some(3.0));
    assert_eq!(value(&r, "revenue"), Some(1300.0));
    let next = scorecard(&s, &cfg, &w47().previous(), IVAN);
    assert_eq!(value(&next, "deals_won"), Some(0.0), "W46 has none");
    let w48 = Period::parse("2026-W48", MSK).unwrap();
    assert_eq!(value(&scorecard(&s, &cfg, &w48, IVAN), "revenue"), Some(200.0));
}

#[test]
fn money_is_converted_into_the_base_currency_at_amount_per_amount_cnt() {
    let mut s = portal();
    let mut usd = deal(1, IVAN, 1000.0);
    usd.currency = "USD".into();
    win(&mut s, usd, "2026-11-18T12:00:00+03:00");
    win(&mut s, deal(2, IVAN, 10_000.0), "2026-11-18T12:00:00+03:00");
    let mut kzt = deal(3, IVAN, 50_000.0);
    kzt.currency = "KZT".into();
    win(&mut s, kzt, "2026-11-18T12:00:00+03:00");
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(r.currency, "RUB");
    // 1000 × 90.5 + 10 000 + the KZT deal at 0 (no rate).
    assert!(close(value(&r, "revenue"), 100_500.0));
    assert_eq!(value(&r, "deals_won"), Some(3.0));
    assert!(close(value(&r, "avg_deal_value"), 33_500.0));
    assert!(r.notes.iter().any(|n| n.contains("(KZT): 1")), "{:?}", r.notes);

    let mut in_usd = settings();
    in_usd.base_currency = Some("USD".into());
    let r = scorecard(&s, &in_usd, &w47(), IVAN);
    assert_eq!(r.currency, "USD");
    assert!(close(value(&r, "revenue"), 1000.0 + 10_000.0 / 90.5));
}

#[test]
fn a_deal_won_and_reopened_is_not_won_and_a_rewon_deal_counts_at_its_latest_win() {
    let mut s = portal();
    let mut reopened = deal(1, IVAN, 5000.0);
    entry(&mut s, 1, "WON", "2026-11-17T12:00:00+03:00");
    entry(&mut s, 1, "NEGOTIATION", "2026-11-19T12:00:00+03:00");
    reopened.stage_id = "NEGOTIATION".into();
    s.deals.push(reopened);
    // Won in W46, reopened, won again in W47: counts in W47 only.
    entry(&mut s, 2, "WON", "2026-11-10T12:00:00+03:00");
    entry(&mut s, 2, "NEGOTIATION", "2026-11-11T12:00:00+03:00");
    win(&mut s, deal(2, IVAN, 700.0), "2026-11-20T12:00:00+03:00");
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "deals_won"), Some(1.0));
    assert_eq!(value(&r, "revenue"), Some(700.0));
    assert_eq!(r.kpis.deals_won.previous, Some(0.0));
}

#[test]
fn recurring_templates_never_count() {
    let mut s = portal();
    let mut template = deal(1, IVAN, 9000.0);
    template.is_recurring = true;
    template.created = t("2026-09-01T10:00:00+03:00");
    s.deals.push(template.clone());
    template.id = 2;
    win(&mut s, template, "2026-11-18T12:00:00+03:00");
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "deals_won"), Some(0.0));
    assert_eq!(value(&r, "open_pipeline_value"), Some(0.0));
    assert!(r.stuck_deals.is_empty());
}

#[test]
fn lost_deals_and_the_win_rate() {
    let mut s = portal();
    for id in 1..=3 {
        win(&mut s, deal(id, IVAN, 100.0), "2026-11-18T12:00:00+03:00");
    }
    lose(&mut s, deal(4, IVAN, 100.0), "2026-11-19T12:00:00+03:00");
    // Lost, then brought back into work: not lost.
    entry(&mut s, 5, "LOSE", "2026-11-19T12:00:00+03:00");
    s.deals.push(deal(5, IVAN, 100.0));
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "deals_lost"), Some(1.0));
    assert_eq!(value(&r, "win_rate"), Some(75.0));
}

#[test]
fn the_cycle_runs_from_the_leads_creation_or_else_the_deals() {
    let mut s = portal();
    // The lead is assigned to Oleg (out of scope): still known, its date still counts.
    s.leads.push(lead(500, OLEG, "2026-11-01T10:00:00+03:00", true, None));
    let mut from_lead = deal(1, IVAN, 100.0);
    from_lead.lead_id = Some(500);
    from_lead.created = t("2026-11-05T10:00:00+03:00");
    win(&mut s, from_lead, "2026-11-18T10:00:00+03:00"); // 17 days
    let mut lead_gone = deal(2, IVAN, 100.0);
    lead_gone.lead_id = Some(999);
    lead_gone.created = t("2026-11-10T10:00:00+03:00");
    win(&mut s, lead_gone, "2026-11-18T10:00:00+03:00"); // 8 days
    let mut direct = deal(3, IVAN, 100.0);
    direct.created = t("2026-11-17T22:00:00+03:00");
    win(&mut s, direct, "2026-11-18T10:00:00+03:00"); // 0.5 days
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert!(close(value(&r, "cycle_days_median"), 8.0));
    assert!(close(value(&r, "cycle_days_mean"), (17.0 + 8.0 + 0.5) / 3.0));
    let mut cycles = r.cycle_days.clone();
    cycles.sort_by(f64::total_cmp);
    assert_eq!(cycles, [0.5, 8.0, 17.0]);
    assert!(r.notes.iter().any(|n| n.contains("лид удалён: 1")), "{:?}", r.notes);
}

#[test]
fn without_a_won_entry_the_won_time_falls_back_to_moved_time_then_closedate() {
    let mut s = portal();
    let mut moved = deal(1, IVAN, 100.0);
    moved.stage_id = "WON".into();
    moved.stage_semantics = Semantics::Success;
    moved.moved_time = Some(t("2026-11-18T10:00:00+03:00"));
    moved.close_date = Some(t("2026-11-30T03:00:00+03:00"));
    let mut closed = moved.clone();
    closed.id = 2;
    closed.moved_time = None;
    closed.close_date = Some(t("2026-11-20T03:00:00+03:00"));
    let mut nothing = closed.clone();
    nothing.id = 3;
    nothing.close_date = None;
    s.deals.extend([moved, closed, nothing]);
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "deals_won"), Some(2.0));
    assert!(r.notes.iter().any(|n| n.contains("MOVED_TIME или CLOSEDATE.") && n.contains(": 2;")), "{:?}", r.notes);
    assert!(r.notes.iter().any(|n| n.contains("без даты выигрыша") && n.contains(": 1;")), "{:?}", r.notes);
}

#[test]
fn leads_activities_csat_and_repeat_customers() {
    let mut s = portal();
    s.leads.push(lead(1, IVAN, "2026-11-16T09:00:00+03:00", true, Some("WEB")));
    s.leads.push(lead(2, IVAN, "2026-11-17T09:00:00+03:00", false, Some("WEB")));
    s.leads.push(lead(3, IVAN, "2026-11-18T09:00:00+03:00", true, None));
    s.leads.push(lead(4, IVAN, "2026-11-23T00:00:00+03:00", true, None)); // next week
    s.activities.extend([
        activity(1, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-17T10:00:00+03:00"),
        activity(2, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, true, "2026-11-18T10:00:00+03:00"),
        activity(3, IVAN, ACTIVITY_EMAIL, 1, true, "2026-11-18T10:00:00+03:00"), // incoming
        activity(4, IVAN, ACTIVITY_EMAIL, DIRECTION_OUTGOING, false, "2026-11-18T10:00:00+03:00"), // draft
        activity(5, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-19T10:00:00+03:00"),
        activity(6, IVAN, 1, DIRECTION_OUTGOING, true, "2026-11-19T10:00:00+03:00"), // a meeting
        activity(7, IVAN, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-24T10:00:00+03:00"), // next week
    ]);
    for (id, score, returning) in [
        (1, Some("4"), true),
        (2, Some("4.0"), false),
        (3, Some(""), false),
        (4, Some("7"), true),
        (5, Some("отлично"), false),
        (6, None, false),
        (7, Some(" 5 "), false),
    ] {
        let mut d = deal(id, IVAN, 100.0);
        d.satisfaction = score.map(str::to_owned);
        d.is_return_customer = returning;
        win(&mut s, d, "2026-11-20T12:00:00+03:00");
    }
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "leads_total"), Some(3.0));
    assert_eq!(value(&r, "leads_converted"), Some(2.0));
    assert!(close(value(&r, "lead_conversion"), 200.0 / 3.0));
    assert_eq!(value(&r, "emails_sent"), Some(2.0));
    assert_eq!(value(&r, "calls_made"), Some(1.0));
    // "4", "4.0" and " 5 " count; "", "7" (out of 1..5), a word and no value do not.
    assert_eq!(value(&r, "csat_responses"), Some(3.0));
    assert!(close(value(&r, "csat"), 13.0 / 3.0));
    assert!(close(value(&r, "repeat_share"), 200.0 / 7.0));
}
