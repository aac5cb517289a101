use super::*;

fn at(s: &str) -> DateTime<Tz> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono_tz::Europe::Moscow)
}

#[test]
fn stamps_are_moscow_time() {
    assert_eq!(stamp(0), "1970-01-01T03:00:00+03:00");
    assert_eq!(
        stamp(1_795_420_800),
        chrono::DateTime::from_timestamp(1_795_420_800, 0)
            .unwrap()
            .with_timezone(&FixedOffset::east_opt(OFFSET_SECS).unwrap())
            .to_rfc3339()
    );
}

#[test]
fn the_same_instant_gives_the_same_portal() {
    let started = std::time::Instant::now();
    let a = portal(at("2026-11-23T08:00:00+03:00"));
    eprintln!(
        "generated in {:?}: {} deals, {} leads, {} activities",
        started.elapsed(),
        a.deals.len(),
        a.leads.len(),
        a.activities.len()
    );
    let b = portal(at("2026-11-23T08:00:00+03:00"));
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
}

#[test]
fn records_do_not_depend_on_as_of() {
    let earlier = portal(at("2026-10-01T12:00:00+03:00"));
    let later = portal(at("2026-11-23T08:00:00+03:00"));
    let lead = |d: &PortalData, id: &str| d.leads.iter().find(|l| l["ID"] == id).cloned();
    // A lead from mid-summer, long settled by both dates, is the same record in both.
    let summer = earlier.leads.iter().find(|l| l["DATE_CREATE"].as_str().unwrap().starts_with("2026-07-15")).unwrap();
    let id = summer["ID"].as_str().unwrap();
    assert_eq!(lead(&earlier, id), lead(&later, id));
    assert!(later.deals.iter().any(|d| d["DATE_CREATE"].as_str().unwrap() > "2026-10-02"));
    assert!(earlier.deals.iter().all(|d| d["DATE_CREATE"].as_str().unwrap() < "2026-10-01T12:00:00+03:00"));
}

#[test]
fn the_demo_has_every_awkward_record() {
    let data = portal(at("2026-11-23T08:00:00+03:00"));
    let specials = special_deals(&data);
    for kind in ["recurring", "zero_value", "won_lead_deleted", "return_customer", "won_then_reopened"] {
        assert!(specials.get(kind).is_some_and(|v| !v.is_empty()), "no {kind} deal in {specials:?}");
    }
    assert!(data.users.iter().any(|u| u["ID"] == "17" && u["ACTIVE"] == true));
    assert!(data.users.iter().any(|u| u["ACTIVE"] == false));
    assert!(
        data.deals.iter().any(|d| d["CURRENCY_ID"] == "USD") && data.deals.iter().any(|d| d["CURRENCY_ID"] == "EUR")
    );
    assert!(data.deals.iter().any(|d| d["UF_CRM_CSAT"] == "4.0"));
}

#[test]
fn a_manager_wins_a_few_deals_a_week() {
    let data = portal(at("2026-11-23T00:00:00+03:00"));
    // Deals of manager 17 won (final entry S) in the 8 weeks before as_of.
    let from = "2026-09-28T00:00:00+03:00";
    let won: std::collections::BTreeSet<&str> = data
        .stage_history
        .iter()
        .filter(|h| h["STAGE_SEMANTIC_ID"] == "S" && h["CREATED_TIME"].as_str().unwrap() >= from)
        .filter_map(|h| h["OWNER_ID"].as_str())
        .collect();
    let mine =
        data.deals.iter().filter(|d| d["ASSIGNED_BY_ID"] == "17" && won.contains(d["ID"].as_str().unwrap())).count();
    let per_week = mine as f64 / 8.0;
    assert!((2.0..=6.5).contains(&per_week), "manager 17 won {per_week} deals a week");
    let rate = |c: &str| CURRENCIES.iter().find(|x| x.0 == c).unwrap().2;
    let revenue: f64 = data
        .deals
        .iter()
        .filter(|d| d["ASSIGNED_BY_ID"] == "17" && won.contains(d["ID"].as_str().unwrap()))
        .map(|d| d["OPPORTUNITY"].as_str().unwrap().parse::<f64>().unwrap() * rate(d["CURRENCY_ID"].as_str().unwrap()))
        .sum::<f64>()
        / 8.0;
    assert!((250_000.0..=700_000.0).contains(&revenue), "manager 17 earned {revenue} RUB a week");
    let leads =
        data.leads.iter().filter(|l| l["ASSIGNED_BY_ID"] == "17" && l["DATE_CREATE"].as_str().unwrap() >= from).count()
            as f64
            / 8.0;
    assert!((8.0..=22.0).contains(&leads), "manager 17 got {leads} leads a week");
    // Open deals whose stage has not moved for 15–60 days: the stuck list is never empty.
    let now = DateTime::parse_from_rfc3339("2026-11-23T00:00:00+03:00").unwrap();
    let stuck = data
        .deals
        .iter()
        .filter(|d| d["STAGE_SEMANTIC_ID"] == "P" && d["IS_RECURRING"] == "N")
        .filter(|d| {
            let moved = DateTime::parse_from_rfc3339(d["MOVED_TIME"].as_str().unwrap()).unwrap();
            (15..=60).contains(&(now - moved).num_days())
        })
        .count();
    assert!(stuck >= 8, "{stuck} stuck deals");
    eprintln!("manager 17: {per_week} won, {revenue:.0} RUB, {leads} leads a week; {stuck} stuck deals");
    let emails = data
        .activities
        .iter()
        .filter(|a| a["RESPONSIBLE_ID"] == "17" && a["TYPE_ID"] == "4" && a["DIRECTION"] == "2")
        .filter(|a| a["CREATED"].as_str().unwrap() >= from)
        .count() as f64
        / 8.0;
    assert!((20.0..=45.0).contains(&emails), "manager 17 sent {emails} e-mails a week");
}
