//! Stuck deals and the open pipeline at the period's end.

use super::*;

#[test]
fn open_pipeline_and_stuck_deals_are_seen_at_the_periods_end_through_the_history() {
    let mut s = portal();
    // In negotiation since 01.11 12:00 at the week's end (won only afterwards): 21.5 days.
    entry(&mut s, 1, "NEW", "2026-10-01T10:00:00+03:00");
    entry(&mut s, 1, "NEGOTIATION", "2026-11-01T12:00:00+03:00");
    entry(&mut s, 1, "WON", "2026-11-25T12:00:00+03:00");
    let mut d1 = deal(1, IVAN, 1000.0);
    d1.created = t("2026-10-01T10:00:00+03:00");
    (d1.stage_id, d1.stage_semantics) = ("WON".into(), Semantics::Success);
    // Created on 20.11 without history: 3 days, open but not stuck.
    let mut d2 = deal(2, IVAN, 2000.0);
    d2.created = t("2026-11-20T00:00:00+03:00");
    // Created after the week: not in the pipeline at its end.
    let mut d3 = deal(3, IVAN, 4000.0);
    d3.created = t("2026-11-25T00:00:00+03:00");
    // Lost before the end.
    entry(&mut s, 4, "LOSE", "2026-11-10T10:00:00+03:00");
    let mut d4 = deal(4, IVAN, 8000.0);
    (d4.stage_id, d4.stage_semantics) = ("LOSE".into(), Semantics::Failure);
    // No history, moved on 20.10: 34 days; deal 5 and deal 6 tie, the lower id first.
    let mut d6 = deal(6, IVAN, 16_000.0);
    d6.created = t("2026-09-01T00:00:00+03:00");
    d6.moved_time = Some(t("2026-10-20T00:00:00+03:00"));
    let mut d5 = d6.clone();
    d5.id = 5;
    d5.opportunity = 32_000.0;
    // Moved after the end: the creation date counts, 53 days.
    let mut d7 = deal(7, IVAN, 64_000.0);
    d7.created = t("2026-10-01T00:00:00+03:00");
    d7.moved_time = Some(t("2026-11-25T00:00:00+03:00"));
    s.deals.extend([d1, d2, d3, d4, d6, d5, d7]);
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(value(&r, "open_pipeline_value"), Some(1000.0 + 2000.0 + 16_000.0 + 32_000.0 + 64_000.0));
    let stuck: Vec<(&str, f64)> = r.stuck_deals.iter().map(|d| (d.id.as_str(), d.days)).collect();
    assert_eq!(stuck, [("7", 53.0), ("5", 34.0), ("6", 34.0), ("1", 21.5)]);
    assert_eq!(r.stuck_deals[3].stage, "Переговоры");
    assert_eq!(r.stuck_deals[0].value_text.as_deref(), Some("64\u{a0}000\u{a0}₽"));
    assert_eq!(r.stuck_deals[0].manager, "Иван Петров");

    assert_eq!((r.stuck_summary.count, r.stuck_summary.shown, r.stuck_summary.more), (4, 4, 0));
    assert_eq!(r.stuck_summary.more_text, None);

    // A shorter list: the data still holds every stuck deal; the summary counts the rest.
    let mut few = settings();
    few.max_stuck_deals = 2;
    let r2 = scorecard(&s, &few, &w47(), IVAN);
    assert_eq!(r2.stuck_deals, r.stuck_deals);
    let sum = &r2.stuck_summary;
    assert_eq!((sum.count, sum.shown, sum.more), (4, 2, 2));
    assert_eq!(sum.value, r.stuck_deals.iter().map(|d| d.value).sum::<f64>());
    assert_eq!(sum.more_value, r.stuck_deals[2].value + r.stuck_deals[3].value);
    let more = present::fmt_money_whole(sum.more_value, "RUB", Language::Ru);
    assert_eq!(sum.more_text.as_deref(), Some(format!("И ещё 2 сделки на сумму {more}.").as_str()));
    few.max_stuck_deals = 0;
    assert_eq!(scorecard(&s, &few, &w47(), IVAN).stuck_summary.shown, 0);
}

#[test]
fn the_sentence_under_a_shortened_list_agrees_with_its_number() {
    let ru = |n| present::more_deals(n, "1\u{a0}₽", Language::Ru);
    assert_eq!(ru(1), "И ещё 1 сделка на сумму 1\u{a0}₽.");
    assert_eq!(ru(3), "И ещё 3 сделки на сумму 1\u{a0}₽.");
    assert_eq!(ru(11), "И ещё 11 сделок на сумму 1\u{a0}₽.");
    assert_eq!(ru(13), "И ещё 13 сделок на сумму 1\u{a0}₽.");
    assert_eq!(ru(21), "И ещё 21 сделка на сумму 1\u{a0}₽.");
    assert_eq!(ru(112), "И ещё 112 сделок на сумму 1\u{a0}₽.");
    assert_eq!(present::more_deals(1, "$1", Language::En), "And 1 more deal worth $1.");
    assert_eq!(present::more_deals(13, "$1", Language::En), "And 13 more deals worth $1.");
}
