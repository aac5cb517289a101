//! Targets, the department as one population, the report frame.

use super::*;
use crate::kpi::targets::PeriodTargets;

fn targets() -> Targets {
    let set = |pairs: &[(Kpi, f64)]| pairs.iter().copied().collect();
    let mut t = Targets::default();
    t.default.week = set(&[(Kpi::Revenue, 200_000.0), (Kpi::CycleDaysMedian, 10.0), (Kpi::WinRate, 50.0)]);
    t.managers
        .insert(IVAN, PeriodTargets { week: set(&[(Kpi::DealsWon, 4.0), (Kpi::CallsMade, 20.0)]), month: set(&[]) });
    t.managers.insert(MARIA, PeriodTargets { week: set(&[(Kpi::DealsWon, 2.0)]), month: set(&[]) });
    t.department.week = set(&[(Kpi::LeadsTotal, 50.0)]);
    t
}

#[test]
fn targets_and_attainment_per_manager_and_for_the_department() {
    let mut s = portal();
    for (id, created) in [(1, "2026-11-10T12:00:00+03:00"), (2, "2026-11-12T12:00:00+03:00")] {
        let mut d = deal(id, IVAN, 75_000.0);
        d.created = t(created);
        win(&mut s, d, "2026-11-18T12:00:00+03:00"); // 8 and 6 days: median 7
    }
    win(&mut s, deal(3, MARIA, 10_000.0), "2026-11-18T12:00:00+03:00");
    let mut cfg = settings();
    cfg.targets = targets();
    let a = Analysis::new(&s, &cfg);
    let r = a.manager_report(&w47(), IVAN, slot());
    assert_eq!((r.kpis.deals_won.target, r.kpis.deals_won.attainment_pct), (Some(4.0), Some(50.0)));
    assert_eq!((r.kpis.revenue.target, r.kpis.revenue.attainment_pct), (Some(200_000.0), Some(75.0)));
    // Less is better: 10 days targeted, 7 achieved.
    assert!(close(r.kpis.cycle_days_median.attainment_pct, 10.0 / 7.0 * 100.0));
    assert_eq!(r.kpis.leads_total.target, None);

    let d = a.department_report(&w47(), slot());
    assert_eq!(d.kpis.deals_won.target, Some(6.0), "4 + 2: every manager has one");
    assert_eq!(d.kpis.revenue.target, Some(400_000.0), "both from the default");
    assert_eq!(d.kpis.calls_made.target, None, "Maria has no calls target");
    assert_eq!(d.kpis.leads_total.target, Some(50.0), "the department's own");
    assert_eq!(d.kpis.win_rate.target, None, "rates do not add up");
    assert_eq!(d.kpis.cycle_days_median.target, None);
    assert!(close(d.kpis.revenue.attainment_pct, 160_000.0 / 400_000.0 * 100.0));
    assert_eq!(d.trend.last().unwrap().target_deals_won, Some(6.0));

    let custom = Period::parse("2026-11-16..2026-11-22", MSK).unwrap();
    let c = a.department_report(&custom, slot());
    assert_eq!(c.kpis.deals_won.value, Some(3.0));
    assert!(Kpi::ALL.iter().all(|k| c.kpis.of(*k).target.is_none()));
    assert!(Kpi::ALL.iter().all(|k| a.manager_report(&custom, IVAN, slot()).kpis.of(*k).target.is_none()));
}

#[test]
fn the_department_is_one_population_and_out_of_scope_users_count_nowhere() {
    let mut s = portal();
    // Ivan: cycles 1, 2, 3 days, nothing lost. Maria: cycles 10 and 20 days, 2 lost.
    let won_after = |s: &mut CrmSnapshot, id: Id, who: Id, days: i64| {
        let mut d = deal(id, who, 1000.0 * days as f64);
        d.created = t("2026-11-21T00:00:00+03:00") - chrono::Duration::days(days);
        win(s, d, "2026-11-21T00:00:00+03:00");
    };
    for (id, who, days) in [(1, IVAN, 1), (2, IVAN, 2), (3, IVAN, 3), (4, MARIA, 10), (5, MARIA, 20)] {
        won_after(&mut s, id, who, days);
    }
    lose(&mut s, deal(6, MARIA, 1.0), "2026-11-19T12:00:00+03:00");
    lose(&mut s, deal(7, MARIA, 1.0), "2026-11-19T12:00:00+03:00");
    // Oleg (accounting) and Anna (inactive) sell too; none of it counts.
    won_after(&mut s, 8, OLEG, 100);
    won_after(&mut s, 9, ANNA, 100);
    s.leads.push(lead(1, OLEG, "2026-11-18T09:00:00+03:00", true, None));
    s.activities.push(activity(1, ANNA, ACTIVITY_CALL, DIRECTION_OUTGOING, true, "2026-11-18T09:00:00+03:00"));
    let cfg = settings();
    let a = Analysis::new(&s, &cfg);
    let d = a.department_report(&w47(), slot());
    assert_eq!(d.kpis.deals_won.value, Some(5.0));
    // The median of all five won deals, not (2 + 15) / 2, the median of the medians.
    assert_eq!(d.kpis.cycle_days_median.value, Some(3.0));
    assert!(close(d.kpis.cycle_days_mean.value, 36.0 / 5.0));
    // 5 / 7 from the totals, not the mean of 100 % and 50 %.
    assert!(close(d.kpis.win_rate.value, 500.0 / 7.0));
    assert_eq!(d.kpis.revenue.value, Some(36_000.0));
    assert_eq!(d.kpis.leads_total.value, Some(0.0));
    assert_eq!(d.kpis.calls_made.value, Some(0.0));
    assert_eq!(d.cycle_days.len(), 5);
    assert!(d.notes.iter().any(|n| n.contains("сделок 2, лидов 1, дел 1")), "{:?}", d.notes);

    // Managers by revenue, best first: Maria 30 000, Ivan 6 000.
    let rows = d.managers.as_ref().unwrap();
    let order: Vec<(&str, Option<&str>)> = rows.iter().map(|r| (r.name.as_str(), r.mark.as_deref())).collect();
    assert_eq!(order, [("Мария Сидорова", Some("best")), ("Иван Петров", Some("worst"))]);
    assert_eq!(rows[1].kpis.cycle_days_median.value, Some(2.0));
    assert!(rows[0].kpis.revenue.text.is_some());

    // Ivan's scorecard: second by revenue, team median over both managers.
    let r = a.manager_report(&w47(), IVAN, slot());
    let team = r.team.unwrap();
    assert_eq!((team.size, team.rank_revenue), (2, Some(2)));
    assert_eq!(team.medians["revenue"], Some(18_000.0));
    assert_eq!(team.medians["lead_conversion"], None);
    let mut no_ranks = settings();
    no_ranks.show_ranks = false;
    assert_eq!(Analysis::new(&s, &no_ranks).manager_report(&w47(), IVAN, slot()).team.unwrap().rank_revenue, None);

    // Sorting by cycle time puts the shortest first.
    let mut by_cycle = settings();
    by_cycle.sort_managers_by = Kpi::CycleDaysMedian;
    let rows = Analysis::new(&s, &by_cycle).department_report(&w47(), slot()).managers.unwrap();
    assert_eq!(rows[0].name, "Иван Петров");
}

#[test]
fn the_report_frame_carries_periods_slot_and_trend() {
    let mut s = portal();
    win(&mut s, deal(1, IVAN, 100.0), "2026-11-10T12:00:00+03:00");
    s.notes.push("строка 3 пропущена".into());
    let cfg = settings();
    let r = scorecard(&s, &cfg, &w47(), IVAN);
    assert_eq!(r.report, "manager");
    assert_eq!(r.generated_at, "2026-11-23T08:00:00+03:00");
    assert_eq!((r.period.label.as_str(), r.previous_period.label.as_str()), ("2026-W47", "2026-W46"));
    assert_eq!(r.year_ago_period.label, "2025-W47");
    assert_eq!(r.manager.as_ref().unwrap().name, "Иван Петров");
    let trend: Vec<(&str, u64)> = r.trend.iter().map(|p| (p.short.as_str(), p.deals_won)).collect();
    assert_eq!(trend, [("W45", 0), ("W46", 1), ("W47", 0)]);
    assert_eq!(r.labels["manager_report"], "Эффективность менеджера");
    assert_eq!(r.notes, ["строка 3 пропущена"]);
    assert!(r.charts.is_empty());
}
