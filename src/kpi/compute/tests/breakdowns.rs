//! The funnel, sources and products.

use super::*;

#[test]
fn the_funnel_lists_every_stage_in_sort_order_with_zeros() {
    let mut s = portal();
    entry(&mut s, 1, "NEW", "2026-11-16T10:00:00+03:00");
    entry(&mut s, 1, "PROPOSAL", "2026-11-17T10:00:00+03:00");
    entry(&mut s, 1, "NEGOTIATION", "2026-11-18T10:00:00+03:00");
    entry(&mut s, 1, "PROPOSAL", "2026-11-19T10:00:00+03:00"); // back again: one deal
    entry(&mut s, 2, "NEW", "2026-11-18T10:00:00+03:00");
    entry(&mut s, 2, "PROPOSAL", "2026-11-10T10:00:00+03:00"); // W46
    s.deals.extend([deal(1, IVAN, 1.0), deal(2, IVAN, 1.0)]);
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    let funnel: Vec<(&str, Vec<(&str, u64)>)> = r
        .breakdowns
        .funnel
        .iter()
        .map(|p| (p.pipeline.as_str(), p.stages.iter().map(|st| (st.id.as_str(), st.deals)).collect()))
        .collect();
    assert_eq!(
        funnel,
        [
            ("Крупные клиенты", vec![("C1:NEW", 0), ("C1:WON", 0)]),
            ("Общая", vec![("NEW", 2), ("PROPOSAL", 1), ("NEGOTIATION", 1), ("WON", 0), ("LOSE", 0)]),
        ]
    );
    let general = &r.breakdowns.funnel[1].stages;
    assert_eq!(general[1].conversion_pct, Some(50.0));
    assert_eq!(general[0].conversion_pct, None);
    assert_eq!(general[4].conversion_pct, None, "failure stages have no conversion");
    // Deal 1 stayed one day in NEW; deal 2 has not left it.
    assert_eq!(general[0].median_days, Some(1.0));
}

#[test]
fn funnel_conversion_counts_deals_that_skipped_a_stage_and_never_exceeds_100() {
    let mut s = portal();
    entry(&mut s, 1, "NEW", "2026-11-16T10:00:00+03:00");
    entry(&mut s, 1, "PROPOSAL", "2026-11-17T10:00:00+03:00");
    entry(&mut s, 1, "NEGOTIATION", "2026-11-18T10:00:00+03:00");
    entry(&mut s, 2, "NEW", "2026-11-18T10:00:00+03:00");
    // Deal 3 entered NEW last week and jumps straight to NEGOTIATION this week.
    entry(&mut s, 3, "NEW", "2026-11-12T10:00:00+03:00");
    entry(&mut s, 3, "NEGOTIATION", "2026-11-19T10:00:00+03:00");
    s.deals.extend([deal(1, IVAN, 1.0), deal(2, IVAN, 1.0), deal(3, IVAN, 1.0)]);
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    let general = &r.breakdowns.funnel[1].stages;
    let rows: Vec<(&str, u64, u64, Option<f64>)> =
        general.iter().map(|st| (st.id.as_str(), st.deals, st.reached, st.conversion_pct)).collect();
    // Entered: NEW {1, 2}, PROPOSAL {1}, NEGOTIATION {1, 3}. Furthest: 1 and 3 at
    // NEGOTIATION, 2 at NEW; so reached NEW 3, PROPOSAL 2, NEGOTIATION 2, WON 0.
    assert_eq!(
        rows,
        [
            ("NEW", 2, 3, None),
            ("PROPOSAL", 1, 2, Some(2.0 * 100.0 / 3.0)),
            ("NEGOTIATION", 2, 2, Some(100.0)),
            ("WON", 0, 0, Some(0.0)),
            ("LOSE", 0, 0, None),
        ]
    );
}

#[test]
fn sources_and_products_are_ordered_by_revenue_then_id() {
    let mut s = portal();
    s.leads.push(lead(1, IVAN, "2026-11-16T09:00:00+03:00", true, None));
    s.leads.push(lead(2, IVAN, "2026-11-16T09:00:00+03:00", false, Some("WEB")));
    for (id, source, amount) in [(1, "WEB", 100.0), (2, "CALL", 300.0), (3, "ADVERTISING", 100.0)] {
        let mut d = deal(id, IVAN, amount);
        d.source_id = Some(source.into());
        win(&mut s, d, "2026-11-18T12:00:00+03:00");
    }
    let mut usd = deal(4, IVAN, 10.0);
    usd.currency = "USD".into();
    win(&mut s, usd, "2026-11-18T12:00:00+03:00");
    let row = |deal_id, product_id, name: &str, price, quantity| ProductRow {
        deal_id,
        product_id,
        name: name.into(),
        price,
        quantity,
    };
    s.product_rows.extend([
        row(1, 12, "Лицензия", 1000.0, 2.0),
        row(2, 12, "Лицензия", 1000.0, 1.0),
        row(2, 0, "Внедрение", 5000.0, 1.0),
        row(4, 7, "Поддержка", 10.0, 1.0),
        row(99, 12, "Лицензия", 1e9, 1.0), // a deal not won this week
    ]);
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    let sources: Vec<(&str, &str, u64, u64, f64)> = r
        .breakdowns
        .sources
        .iter()
        .map(|x| (x.id.as_str(), x.name.as_str(), x.leads_total, x.deals_won, x.revenue))
        .collect();
    assert_eq!(
        sources,
        [
            ("", "Без источника", 1, 1, 905.0),
            ("CALL", "Звонок", 0, 1, 300.0),
            ("ADVERTISING", "Реклама", 0, 1, 100.0),
            ("WEB", "Веб-сайт", 1, 1, 100.0),
        ]
    );
    assert_eq!(r.breakdowns.sources[0].lead_conversion, Some(100.0));
    assert_eq!(r.breakdowns.sources[1].lead_conversion, None);
    let products: Vec<(&str, u64, f64, Option<f64>)> =
        r.breakdowns.products.iter().map(|p| (p.id.as_str(), p.deals_won, p.revenue, p.avg_deal_value)).collect();
    assert_eq!(
        products,
        [("Внедрение", 1, 5000.0, Some(5000.0)), ("12", 2, 3000.0, Some(1500.0)), ("7", 1, 905.0, Some(905.0))]
    );
}
