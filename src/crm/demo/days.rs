//! The demo company's days: each calendar day's leads, deals, calls, e-mails, stage history
//! and product rows, generated from the day's own seeded PRNG and cut at `as_of`, and the
//! awkward records a real portal has, placed on the days that draw them.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate, Weekday};
use serde_json::json;

use super::{
    COMPANIES, CURRENCIES, DAY, FIRST_NAMES, FORMER_MANAGER_LEFT, FOUNDED, LAST_NAMES, OFFSET_SECS, PRODUCTS, Role,
    SATISFACTION_FIELD, SOURCES, money, obj, people, seed, stage_semantics, stamp,
};
use crate::crm::emulator::{PortalData, Record};

pub(super) struct Generator<'a> {
    /// `as_of` as a Unix time: nothing at or after it exists yet.
    cut: i64,
    data: &'a mut PortalData,
}

/// What a deal is, before it is cut at `as_of`.
struct DealPlan {
    id: u64,
    title: String,
    pipeline: u64,
    assigned: u64,
    created: i64,
    lead_id: Option<u64>,
    source: Option<&'static str>,
    return_customer: bool,
    recurring: bool,
    currency: usize,
    /// Product rows in RUB: (product, price, quantity).
    rows: Vec<(usize, f64, f64)>,
    /// Stage entries in time order, the first at `created`.
    history: Vec<(&'static str, i64)>,
    csat: String,
}

impl Generator<'_> {
    /// A generator adding to `data` what exists before `cut` (a Unix time).
    pub(super) fn new(cut: i64, data: &mut PortalData) -> Generator<'_> {
        Generator { cut, data }
    }

    /// Adds one calendar day's records.
    pub(super) fn day(&mut self, day: NaiveDate) {
        let day_no = (day - FOUNDED).num_days();
        let midnight = day.and_hms_opt(0, 0, 0).expect("valid").and_utc().timestamp() - i64::from(OFFSET_SECS);
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let left = NaiveDate::from_ymd_opt(FORMER_MANAGER_LEFT.0, FORMER_MANAGER_LEFT.1, FORMER_MANAGER_LEFT.2)
            .expect("valid date");
        let mut lead_seq = 0u64;
        let mut deal_seq = 0u64;
        let mut act_seq = 0u64;
        let mut specials = Specials::of(day_no);
        for person in people() {
            if person.id == 29 && day >= left {
                continue;
            }
            let mut rng = fastrand::Rng::with_seed(seed(day_no, person.id));
            // Weekends are quiet: a tenth of a weekday.
            let pace = if weekend { person.pace * 0.1 } else { person.pace };
            let work_time = |rng: &mut fastrand::Rng| midnight + 9 * 3600 + rng.i64(0..10 * 3600);
            let scaled = |rng: &mut fastrand::Rng, lo: usize, hi: usize| {
                let n = rng.usize(lo..=hi) as f64 * pace;
                n.floor() as usize + usize::from(rng.f64() < n.fract())
            };
            match person.role {
                Role::Manager => {
                    for _ in 0..scaled(&mut rng, 1, 4) {
                        lead_seq += 1;
                        let lead_id = day_no as u64 * 100 + lead_seq;
                        let created = work_time(&mut rng);
                        let source = SOURCES[rng.usize(..SOURCES.len())].0;
                        let converts = rng.f64() < 0.38 || specials.deleted_lead;
                        let fate_at = created + rng.i64(DAY / 2..7 * DAY);
                        let fate = if converts {
                            "CONVERTED"
                        } else if rng.bool() {
                            "JUNK"
                        } else {
                            "IN_PROCESS"
                        };
                        let deleted = std::mem::take(&mut specials.deleted_lead) && converts;
                        if !deleted {
                            self.lead(lead_id, person.id, created, source, fate, fate_at, &mut rng);
                        }
                        if converts {
                            deal_seq += 1;
                            let mut plan = self.plan_deal(day_no as u64 * 100 + deal_seq, person.id, fate_at, &mut rng);
                            plan.lead_id = Some(lead_id);
                            plan.source = Some(source);
                            if deleted {
                                force_won(&mut plan, &mut rng);
                            }
                            specials.apply(&mut plan, &mut rng);
                            self.deal(plan);
                        }
                    }
                    if rng.f64() < 0.3 * pace {
                        deal_seq += 1;
                        let created = work_time(&mut rng);
                        let mut plan = self.plan_deal(day_no as u64 * 100 + deal_seq, person.id, created, &mut rng);
                        plan.return_customer = rng.f64() < 0.6;
                        plan.source = [Some("RECOMMENDATION"), Some("PARTNER"), Some("CALL"), None][rng.usize(..4)];
                        specials.apply(&mut plan, &mut rng);
                        self.deal(plan);
                    }
                    for (type_id, direction, lo, hi) in [(4, 2, 3, 7), (2, 2, 2, 5), (4, 1, 1, 3), (2, 1, 0, 2)] {
                        for _ in 0..scaled(&mut rng, lo, hi) {
                            act_seq += 1;
                            let created = work_time(&mut rng);
                            self.activity(
                                day_no as u64 * 1000 + act_seq,
                                person.id,
                                type_id,
                                direction,
                                created,
                                &mut rng,
                            );
                        }
                    }
                }
                Role::Director => {
                    if !weekend && day_no % 10 == 0 {
                        deal_seq += 1;
                        let created = work_time(&mut rng);
                        let mut plan = self.plan_deal(day_no as u64 * 100 + deal_seq, person.id, created, &mut rng);
                        plan.rows.iter_mut().for_each(|r| r.1 *= 3.0);
                        self.deal(plan);
                    }
                }
                Role::Marketing => {
                    for _ in 0..scaled(&mut rng, 0, 3) {
                        lead_seq += 1;
                        let created = work_time(&mut rng);
                        let source = ["WEB", "ADVERTISING"][rng.usize(..2)];
                        let fate = if rng.bool() { "JUNK" } else { "NEW" };
                        let fate_at = created + rng.i64(DAY..5 * DAY);
                        self.lead(day_no as u64 * 100 + lead_seq, person.id, created, source, fate, fate_at, &mut rng);
                    }
                    if !weekend {
                        act_seq += 1;
                        let created = work_time(&mut rng);
                        self.activity(day_no as u64 * 1000 + act_seq, person.id, 4, 2, created, &mut rng);
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn lead(
        &mut self,
        id: u64,
        assigned: u64,
        created: i64,
        source: &str,
        fate: &str,
        fate_at: i64,
        rng: &mut fastrand::Rng,
    ) {
        if created >= self.cut {
            return;
        }
        let (status, moved, closed) = if fate_at < self.cut {
            (fate, fate_at, matches!(fate, "CONVERTED" | "JUNK"))
        } else if self.cut > created + DAY / 2 {
            // Taken into work half a day after it came in: from then on it shows the new
            // status and DATE_MODIFY, so a portal seen later never holds a change dated
            // before an earlier look (the CRM cache's incremental fetch relies on that).
            ("IN_PROCESS", created + DAY / 2, false)
        } else {
            ("NEW", created, false)
        };
        let status = if fate == "IN_PROCESS" && fate_at < self.cut { "IN_PROCESS" } else { status };
        let semantics = match status {
            "CONVERTED" => "S",
            "JUNK" => "F",
            _ => "P",
        };
        let moved = moved.min(self.cut - 1);
        let name = FIRST_NAMES[rng.usize(..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.usize(..LAST_NAMES.len())];
        let company = COMPANIES[rng.usize(..COMPANIES.len())];
        self.data.leads.push(obj(json!({
            "ID": id.to_string(), "TITLE": format!("Заявка: {company}"), "NAME": name, "LAST_NAME": last,
            "STATUS_ID": status, "STATUS_SEMANTIC_ID": semantics, "SOURCE_ID": source, "CURRENCY_ID": "RUB",
            "OPPORTUNITY": money(rng.i64(5..30) as f64 * 10_000.0), "ASSIGNED_BY_ID": assigned.to_string(),
            "CREATED_BY_ID": assigned.to_string(), "DATE_CREATE": stamp(created), "DATE_MODIFY": stamp(moved),
            "DATE_CLOSED": if closed { stamp(moved) } else { String::new() }, "MOVED_TIME": stamp(moved),
            "IS_RETURN_CUSTOMER": "N", "OPENED": "Y", "HAS_EMAIL": "Y", "COMPANY_TITLE": company,
        })));
    }

    fn activity(
        &mut self,
        id: u64,
        responsible: u64,
        type_id: u32,
        direction: u32,
        created: i64,
        rng: &mut fastrand::Rng,
    ) {
        if created >= self.cut {
            return;
        }
        // Outgoing e-mails are mostly sent; a few drafts stay not completed.
        let completed = if direction == 2 { rng.f64() < 0.9 } else { rng.f64() < 0.7 };
        let (provider, provider_type, subject) = match (type_id, direction) {
            (4, 2) => ("CRM_EMAIL", "EMAIL", "Коммерческое предложение"),
            (4, _) => ("CRM_EMAIL", "EMAIL", "Re: Коммерческое предложение"),
            (_, 2) => ("VOXIMPLANT_CALL", "CALL", "Исходящий звонок"),
            _ => ("VOXIMPLANT_CALL", "CALL", "Входящий звонок"),
        };
        self.data.activities.push(obj(json!({
            "ID": id.to_string(), "OWNER_ID": rng.u32(1..5000).to_string(), "OWNER_TYPE_ID": "3",
            "TYPE_ID": type_id.to_string(), "PROVIDER_ID": provider, "PROVIDER_TYPE_ID": provider_type,
            "SUBJECT": subject, "CREATED": stamp(created), "START_TIME": stamp(created), "END_TIME": stamp(created + 900),
            "LAST_UPDATED": stamp(created),
            "COMPLETED": if completed { "Y" } else { "N" }, "STATUS": if completed { "2" } else { "1" },
            "RESPONSIBLE_ID": responsible.to_string(), "DIRECTION": direction.to_string(), "AUTHOR_ID": responsible.to_string(),
        })));
    }

    fn plan_deal(&self, id: u64, assigned: u64, created: i64, rng: &mut fastrand::Rng) -> DealPlan {
        let pipeline = if rng.f64() < 0.25 { 1 } else { 0 };
        let process: &[&'static str] = if pipeline == 0 {
            &["NEW", "PREPARATION", "PREPAYMENT_INVOICE", "EXECUTING", "FINAL_INVOICE"]
        } else {
            &["C1:NEW", "C1:NEGOTIATION", "C1:CONTRACT"]
        };
        let (won, lost): (&'static str, &[&'static str]) =
            if pipeline == 0 { ("WON", &["LOSE", "LOSE", "LOSE", "APOLOGY"]) } else { ("C1:WON", &["C1:LOSE"]) };
        let roll = rng.f64();
        let mut history = vec![(process[0], created)];
        let mut t = created;
        // Some deals wait on one stage for weeks: stuck while they wait.
        let stuck_step = (rng.f64() < 0.15).then(|| rng.usize(1..process.len() + 1));
        let step = |rng: &mut fastrand::Rng, t: &mut i64, n: usize| {
            *t += rng.i64(DAY / 3..4 * DAY);
            if stuck_step == Some(n) {
                *t += rng.i64(15 * DAY..60 * DAY);
            }
        };
        let last_p = if roll < 0.58 { process.len() } else { rng.usize(1..=process.len()) };
        for (n, stage) in process.iter().enumerate().take(last_p).skip(1) {
            step(rng, &mut t, n);
            history.push((stage, t));
        }
        step(rng, &mut t, process.len());
        if roll < 0.58 {
            history.push((won, t));
        } else if roll < 0.92 {
            history.push((lost[rng.usize(..lost.len())], t));
        } else {
            // Forgotten: open for 30–75 days, then closed as lost.
            t += rng.i64(30 * DAY..75 * DAY);
            history.push((lost[0], t));
        }
        let n_rows = rng.usize(1..=3);
        let mut rows = Vec::new();
        for _ in 0..n_rows {
            let p = rng.usize(..PRODUCTS.len());
            if rows.iter().any(|r: &(usize, f64, f64)| r.0 == p) {
                continue;
            }
            let (_, _, (lo, hi), (qlo, qhi)) = PRODUCTS[p];
            rows.push((p, (rng.i64(lo / 100..=hi / 100) * 100) as f64, rng.i64(qlo..=qhi) as f64));
        }
        let currency = match rng.f64() {
            x if x < 0.85 => 0,
            x if x < 0.95 => 1,
            _ => 2,
        };
        let csat = match rng.f64() {
            x if x < 0.2 => String::new(),
            x if x < 0.25 => "4.0".to_owned(),
            _ => ["3", "4", "4", "5", "5", "5", "2", "1", "5", "4"][rng.usize(..10)].to_owned(),
        };
        let company = COMPANIES[rng.usize(..COMPANIES.len())];
        let what = ["Внедрение CRM", "Лицензии", "Поддержка", "Проект автоматизации", "Поставка"][rng.usize(..5)];
        DealPlan {
            id,
            title: format!("{what} — {company}"),
            pipeline,
            assigned,
            created,
            lead_id: None,
            source: None,
            return_customer: false,
            recurring: false,
            currency,
            rows,
            history,
            csat,
        }
    }

    fn deal(&mut self, plan: DealPlan) {
        if plan.created >= self.cut {
            return;
        }
        let history: Vec<&(&str, i64)> = plan.history.iter().filter(|(_, t)| *t < self.cut).collect();
        let &(stage, moved) = *history.last().expect("the first entry is at creation, before the cut");
        let semantics = stage_semantics(stage);
        let rate = CURRENCIES[plan.currency].2;
        let rows: Vec<(usize, f64, f64)> =
            plan.rows.iter().map(|(p, price, q)| (*p, (price / rate * 100.0).round() / 100.0, *q)).collect();
        // `+ 0.0`: an empty sum is -0.0, which would print as "-0.00".
        let opportunity: f64 = rows.iter().map(|(_, price, q)| price * q).sum::<f64>() + 0.0;
        let closed = semantics != "P";
        let close_day = if closed { moved } else { plan.created + 30 * DAY };
        // CLOSEDATE is a date; Bitrix24 serves it at local midnight with the offset.
        let close_date = stamp(close_day - (close_day + i64::from(OFFSET_SECS)).rem_euclid(DAY));
        let n = history.len();
        for (j, (s, t)) in history.iter().enumerate() {
            let type_id = if j == 0 {
                "1"
            } else if stage_semantics(s) != "P" {
                "3"
            } else {
                "2"
            };
            self.data.stage_history.push(obj(json!({
                "ID": (plan.id * 10 + j as u64).to_string(), "TYPE_ID": type_id, "OWNER_ID": plan.id.to_string(),
                "CREATED_TIME": stamp(*t), "CATEGORY_ID": plan.pipeline.to_string(),
                "STAGE_SEMANTIC_ID": stage_semantics(s), "STAGE_ID": s,
            })));
        }
        debug_assert!(n <= 10, "stage history ids leave room for ten entries");
        let assigned = plan.assigned.to_string();
        self.data.deals.push(obj(json!({
            "ID": plan.id.to_string(), "TITLE": plan.title, "TYPE_ID": "SALE", "STAGE_ID": stage,
            "PROBABILITY": null, "CURRENCY_ID": CURRENCIES[plan.currency].0, "OPPORTUNITY": money(opportunity),
            "IS_MANUAL_OPPORTUNITY": "N", "TAX_VALUE": "0.00", "LEAD_ID": plan.lead_id.map(|l| l.to_string()),
            "COMPANY_ID": null, "CONTACT_ID": null, "BEGINDATE": stamp(plan.created - (plan.created + i64::from(OFFSET_SECS)).rem_euclid(DAY)),
            "CLOSEDATE": close_date, "ASSIGNED_BY_ID": assigned, "CREATED_BY_ID": assigned, "MODIFY_BY_ID": assigned,
            "DATE_CREATE": stamp(plan.created), "DATE_MODIFY": stamp(moved), "OPENED": "Y",
            "CLOSED": if closed { "Y" } else { "N" }, "CATEGORY_ID": plan.pipeline.to_string(),
            "STAGE_SEMANTIC_ID": semantics, "IS_NEW": if n == 1 { "Y" } else { "N" },
            "IS_RECURRING": if plan.recurring { "Y" } else { "N" },
            "IS_RETURN_CUSTOMER": if plan.return_customer { "Y" } else { "N" }, "IS_REPEATED_APPROACH": "N",
            "SOURCE_ID": plan.source, "MOVED_BY_ID": assigned, "MOVED_TIME": stamp(moved),
            SATISFACTION_FIELD: if semantics == "S" { plan.csat.clone() } else { String::new() },
        })));
        let product_rows: Vec<Record> = rows
            .iter()
            .enumerate()
            .map(|(i, (p, price, q))| {
                let (pid, name, ..) = PRODUCTS[*p];
                obj(json!({
                    "ID": (plan.id * 10 + i as u64).to_string(), "OWNER_ID": plan.id.to_string(), "OWNER_TYPE": "D",
                    "PRODUCT_ID": pid.to_string(), "PRODUCT_NAME": name, "PRICE": money(*price),
                    "PRICE_EXCLUSIVE": money(*price), "QUANTITY": format!("{q:.0}"), "DISCOUNT_SUM": "0.00",
                    "TAX_RATE": null, "MEASURE_CODE": "796", "MEASURE_NAME": "шт",
                }))
            })
            .collect();
        if !product_rows.is_empty() {
            self.data.product_rows.insert(plan.id, product_rows);
        }
    }
}

fn force_won(plan: &mut DealPlan, rng: &mut fastrand::Rng) {
    let won = if plan.pipeline == 0 { "WON" } else { "C1:WON" };
    if let Some(last) = plan.history.last_mut() {
        last.0 = won;
    }
    if plan.csat.is_empty() {
        plan.csat = (rng.u8(3..=5)).to_string();
    }
}

/// The day's awkward records, each on the first deal of a day that draws it: every
/// 15-month window contains several of each.
struct Specials {
    deleted_lead: bool,
    reopened: bool,
    recurring: bool,
    zero: bool,
}

impl Specials {
    fn of(day_no: i64) -> Specials {
        Specials {
            deleted_lead: day_no % 45 == 3,
            reopened: day_no % 60 == 17,
            recurring: day_no % 90 == 29,
            zero: day_no % 30 == 11,
        }
    }

    fn apply(&mut self, plan: &mut DealPlan, rng: &mut fastrand::Rng) {
        if std::mem::take(&mut self.reopened) {
            force_won(plan, rng);
            let won_at = plan.history.last().map(|h| h.1).unwrap_or(plan.created);
            let back = if plan.pipeline == 0 { "EXECUTING" } else { "C1:CONTRACT" };
            plan.history.push((back, won_at + rng.i64(2 * DAY..5 * DAY)));
        } else if std::mem::take(&mut self.recurring) {
            plan.recurring = true;
            plan.history.truncate(1);
            plan.lead_id = None;
        } else if std::mem::take(&mut self.zero) {
            force_won(plan, rng);
            plan.rows.clear();
        }
    }
}

/// Deal ids of the demo's awkward records at `as_of`, for tests and docs.
pub fn special_deals(data: &PortalData) -> BTreeMap<&'static str, Vec<u64>> {
    let id = |r: &Record| r["ID"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut out: BTreeMap<&'static str, Vec<u64>> = BTreeMap::new();
    let lead_ids: std::collections::BTreeSet<&str> = data.leads.iter().filter_map(|l| l["ID"].as_str()).collect();
    for d in &data.deals {
        if d["IS_RECURRING"] == "Y" {
            out.entry("recurring").or_default().push(id(d));
        }
        if d["OPPORTUNITY"] == "0.00" {
            out.entry("zero_value").or_default().push(id(d));
        }
        if d["STAGE_SEMANTIC_ID"] == "S" && d["LEAD_ID"].as_str().is_some_and(|l| !lead_ids.contains(l)) {
            out.entry("won_lead_deleted").or_default().push(id(d));
        }
        if d["IS_RETURN_CUSTOMER"] == "Y" {
            out.entry("return_customer").or_default().push(id(d));
        }
    }
    let mut by_deal: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for h in &data.stage_history {
        by_deal
            .entry(h["OWNER_ID"].as_str().unwrap_or(""))
            .or_default()
            .push(h["STAGE_SEMANTIC_ID"].as_str().unwrap_or(""));
    }
    for (deal, sems) in by_deal {
        if sems.last() == Some(&"P") && sems.contains(&"S") {
            out.entry("won_then_reopened").or_default().push(deal.parse().unwrap_or(0));
        }
    }
    out
}
