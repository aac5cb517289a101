//! A synthetic sales company of any size, generated from a seed: the same records as a
//! `domain::CrmSnapshot` (for the KPI and render benchmarks, which skip the network) and
//! in Bitrix24's wire format as `emulator::PortalData` (for the fetch benchmark).
//!
//! The reference data (departments, pipelines and stages, lead sources, currencies) is the
//! demo portal's; the people and the records are generated here, as domain records first,
//! then written out in the wire format the demo portal uses. Deals, leads, activities and stage-history
//! rows are drawn with the counts asked for, so a benchmark's table states exactly what was
//! measured. Nothing here is a test fixture: the numbers are plausible, not checked.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::{Map, Value, json};

use salespulse::config::Config;
use salespulse::crm::emulator::{PortalData, Record};
use salespulse::domain::{
    Activity, CrmSnapshot, Currency, Deal, DealPipeline, Department, Id, Lead, ProductRow, Semantics, Source, Stage,
    StageChange, Timestamp, User,
};

/// The portal's (and the reports') time zone.
pub const TZ: Tz = chrono_tz::Europe::Moscow;
/// The sales department the config names; the generated teams sit below it.
pub const SALES_DEPARTMENT: Id = 3;
/// Managers per generated team (sub-department of [`SALES_DEPARTMENT`]).
const TEAM_SIZE: usize = 50;
/// First id of a generated team department and of a generated manager.
const FIRST_TEAM: Id = 101;
const FIRST_MANAGER: Id = 1000;
/// Days of history before `as_of`: a year-ago period and a 12-month trend need 13 months.
pub const HISTORY_DAYS: i64 = 450;
const DAY: i64 = 86_400;

/// How big the company is.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Spec {
    pub managers: usize,
    pub deals: usize,
    pub leads: usize,
    pub activities: usize,
    pub stage_history: usize,
    pub seed: u64,
}

impl Spec {
    /// The size issue 6 asks the KPI benchmark for: 500 managers, 200 000 deals, 300 000
    /// leads, 2 000 000 activities, 1 000 000 stage-history rows.
    pub fn issue6() -> Spec {
        Spec { managers: 500, deals: 200_000, leads: 300_000, activities: 2_000_000, stage_history: 1_000_000, seed: 6 }
    }

    /// The large portal issue 3 asks the fetch benchmark for (and the end-to-end run uses):
    /// 500 managers, 200 000 deals, 300 000 leads, 1 000 000 activities, 1 000 000
    /// stage-history rows.
    pub fn issue3() -> Spec {
        Spec { managers: 500, deals: 200_000, leads: 300_000, activities: 1_000_000, stage_history: 1_000_000, seed: 3 }
    }

    /// The same proportions for `managers` managers (400 deals, 600 leads, 4 000 activities
    /// and 2 000 stage-history rows per manager over 15 months).
    pub fn per_manager(managers: usize) -> Spec {
        Spec {
            managers,
            deals: managers * 400,
            leads: managers * 600,
            activities: managers * 4_000,
            stage_history: managers * 2_000,
            seed: 6,
        }
    }

    /// Every count divided by `by` (at least one manager and one deal).
    pub fn scaled_down(self, by: usize) -> Spec {
        let d = |n: usize| (n / by.max(1)).max(1);
        Spec {
            managers: d(self.managers),
            deals: d(self.deals),
            leads: d(self.leads),
            activities: d(self.activities),
            stage_history: d(self.stage_history),
            seed: self.seed,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} managers, {} deals, {} leads, {} activities, {} stage-history rows (seed {})",
            self.managers, self.deals, self.leads, self.activities, self.stage_history, self.seed
        )
    }
}

/// The instant the data ends: Monday 2026-11-23 08:00 Moscow, the slot of `manager-weekly`
/// for 2026-W47.
pub fn as_of() -> DateTime<Tz> {
    TZ.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).single().expect("08:00 exists in Moscow")
}

/// The config the benchmarks compute with: the demo config (departments = [3] with
/// sub-departments, targets, a 12-period trend) as shipped.
pub fn config() -> Config {
    Config::embedded()
}

/// Both forms of one generated company.
pub struct Company {
    pub snapshot: CrmSnapshot,
    /// Wire form; `None` unless asked for (it doubles the memory).
    pub portal: Option<PortalData>,
}

fn offset() -> FixedOffset {
    FixedOffset::east_opt(3 * 3600).expect("+03:00 is valid")
}

fn ts(unix: i64) -> Timestamp {
    offset().timestamp_opt(unix, 0).single().expect("a fixed offset maps every instant")
}

fn stamp(t: &Timestamp) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

fn obj(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

const FIRST_NAMES: [&str; 16] = [
    "Анна",
    "Дмитрий",
    "Елена",
    "Иван",
    "Мария",
    "Сергей",
    "Ольга",
    "Павел",
    "Наталья",
    "Алексей",
    "Татьяна",
    "Михаил",
    "Юлия",
    "Николай",
    "Ирина",
    "Глеб",
];
const LAST_NAMES: [&str; 16] = [
    "Кузнецова",
    "Волков",
    "Соколова",
    "Петров",
    "Лебедева",
    "Новиков",
    "Морозова",
    "Козлов",
    "Попова",
    "Смирнов",
    "Зайцева",
    "Белов",
    "Ковалёва",
    "Фёдоров",
    "Никитина",
    "Гусев",
];
/// The demo portal's first eight customers: the same names, one list.
fn companies() -> &'static [&'static str] {
    &salespulse::crm::demo::COMPANIES[..8]
}
const PRODUCTS: [(Id, &str); 6] = [
    (101, "Лицензия CRM"),
    (102, "Внедрение"),
    (103, "Обучение"),
    (104, "Техподдержка (год)"),
    (105, "Интеграция с 1С"),
    (106, "Доработка под заказ"),
];

/// A pipeline's id and its in-progress, won and lost stages, in order.
type PipelineStages<'a> = (Id, Vec<&'a Stage>, Vec<&'a Stage>, Vec<&'a Stage>);

/// Generates the company of `spec`; with `wire`, its Bitrix24 wire form as well.
pub fn company(spec: &Spec, wire: bool) -> Company {
    let end = as_of().timestamp();
    let start = end - HISTORY_DAYS * DAY;
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let mut snapshot = reference(spec);

    let managers: Vec<Id> = (0..spec.managers).map(|i| FIRST_MANAGER + i as Id).collect();
    // Some managers are busier than others: a skewed pick gives a realistic spread of ranks.
    let pick =
        |rng: &mut fastrand::Rng| managers[((rng.f64().powf(1.4)) * managers.len() as f64) as usize % managers.len()];
    // Working hours, Monday to Sunday alike (weekends do not matter to throughput).
    let when = |rng: &mut fastrand::Rng, from: i64| {
        let t = rng.i64(from..end.max(from + 1));
        let day = t - (t + 3 * 3600).rem_euclid(DAY);
        (day + 9 * 3600 + rng.i64(0..10 * 3600)).clamp(from, end - 60)
    };
    let sources: Vec<String> = snapshot.sources.iter().map(|s| s.id.clone()).collect();

    snapshot.leads.reserve(spec.leads);
    let mut converted: Vec<usize> = Vec::new();
    for i in 0..spec.leads {
        let r = rng.f64();
        let status_semantics = if r < 0.35 {
            Semantics::Success
        } else if r < 0.6 {
            Semantics::Failure
        } else {
            Semantics::Process
        };
        if status_semantics == Semantics::Success {
            converted.push(i);
        }
        snapshot.leads.push(Lead {
            id: 1 + i as Id,
            assigned_by: pick(&mut rng),
            created: ts(when(&mut rng, start)),
            status_semantics,
            source_id: Some(sources[rng.usize(..sources.len())].clone()),
        });
    }

    let pipelines: Vec<PipelineStages> = snapshot
        .pipelines
        .iter()
        .map(|p| {
            let of = |sem: Semantics| -> Vec<&Stage> {
                let mut v: Vec<&Stage> =
                    snapshot.stages.iter().filter(|s| s.pipeline_id == p.id && s.semantics == sem).collect();
                v.sort_by_key(|s| s.sort);
                v
            };
            (p.id, of(Semantics::Process), of(Semantics::Success), of(Semantics::Failure))
        })
        .collect();
    // Stage-history rows per deal: the first entry plus moves, on average `per_deal`.
    let per_deal = spec.stage_history as f64 / spec.deals.max(1) as f64;
    let mut history_left = spec.stage_history;
    let mut deals = Vec::with_capacity(spec.deals);
    let mut history = Vec::with_capacity(spec.stage_history);
    let mut rows = Vec::new();
    let rates: BTreeMap<&str, f64> = [("RUB", 1.0), ("USD", 92.5), ("EUR", 100.2)].into_iter().collect();
    for i in 0..spec.deals {
        let id = 1 + i as Id;
        let from_lead = (!converted.is_empty() && rng.f64() < 0.6)
            .then(|| &snapshot.leads[converted[rng.usize(..converted.len())]]);
        let (assigned_by, created, lead_id, source_id) = match from_lead {
            Some(l) => {
                let c = (l.created.timestamp() + rng.i64(3600..5 * DAY)).min(end - 120);
                (l.assigned_by, c, Some(l.id), l.source_id.clone())
            }
            None => (pick(&mut rng), when(&mut rng, start), None, Some(sources[rng.usize(..sources.len())].clone())),
        };
        let (pipeline_id, process, won, lost) = &pipelines[if rng.f64() < 0.75 { 0 } else { 1 % pipelines.len() }];
        let r = rng.f64();
        let fate: Option<&Stage> = if r < 0.35 {
            won.first().copied()
        } else if r < 0.6 {
            Some(lost[rng.usize(..lost.len())])
        } else {
            None
        };
        // Entries for this deal: spread `history_left` over the remaining deals.
        let remaining = (spec.deals - i) as f64;
        let want = if i + 1 == spec.deals {
            history_left
        } else {
            let mean = (history_left as f64 / remaining).max(1.0).min(per_deal * 3.0);
            (1 + rng.usize(..((2.0 * mean - 1.0).max(1.0) as usize))).min(history_left)
        };
        let moves = want.saturating_sub(1 + usize::from(fate.is_some()));
        // A deal's story stops at the instant the portal is seen: a move or an outcome that
        // would come later has not happened yet (clamping them to the last minute instead
        // piled thousands of changes into it, which no portal has).
        let mut t = created;
        let mut entries: Vec<(&Stage, i64)> = vec![(process[0], t)];
        for m in 0..moves {
            let next = t + rng.i64(DAY / 4..6 * DAY);
            // Mostly forward, sometimes back a stage, as deals do.
            let stage = process[(m + 1).min(process.len() - 1).saturating_sub(usize::from(rng.f64() < 0.15))];
            if next >= end - 60 {
                break;
            }
            t = next;
            entries.push((stage, t));
        }
        let outcome = rng.i64(DAY / 2..10 * DAY);
        if let Some(f) = fate.filter(|_| t + outcome < end - 30) {
            t += outcome;
            entries.push((f, t));
        }
        entries.truncate(want.max(1));
        history_left -= entries.len().min(history_left);
        let (stage, moved) = *entries.last().expect("at least the first entry");
        for (s, at) in &entries {
            // Unique, as a portal's are (a deal can have more than 16 entries).
            history.push(StageChange {
                id: history.len() as Id + 1,
                deal_id: id,
                pipeline_id: *pipeline_id,
                stage_id: s.id.clone(),
                semantics: s.semantics,
                created: ts(*at),
            });
        }
        let currency = match rng.f64() {
            x if x < 0.9 => "RUB",
            x if x < 0.97 => "USD",
            _ => "EUR",
        };
        let rub = rng.i64(2..50) as f64 * 10_000.0;
        let opportunity = (rub / rates[currency] * 100.0).round() / 100.0;
        let deal = Deal {
            id,
            title: format!(
                "{} — {}",
                companies()[rng.usize(..companies().len())],
                PRODUCTS[rng.usize(..PRODUCTS.len())].1
            ),
            pipeline_id: *pipeline_id,
            stage_id: stage.id.clone(),
            stage_semantics: stage.semantics,
            currency: currency.to_owned(),
            opportunity,
            lead_id,
            assigned_by,
            created: ts(created),
            moved_time: Some(ts(moved)),
            close_date: Some(ts(if stage.semantics == Semantics::Process { created + 30 * DAY } else { moved })),
            is_recurring: rng.f64() < 0.001,
            is_return_customer: rng.f64() < 0.15,
            source_id,
            satisfaction: (stage.semantics == Semantics::Success && rng.f64() < 0.6).then(|| rng.u8(1..=5).to_string()),
        };
        if deal.stage_semantics == Semantics::Success {
            let n = rng.usize(1..=3);
            for k in 0..n {
                let (product_id, name) = PRODUCTS[rng.usize(..PRODUCTS.len())];
                rows.push(ProductRow {
                    deal_id: id,
                    product_id,
                    name: name.to_owned(),
                    price: (opportunity / n as f64 * 100.0).round() / 100.0,
                    quantity: 1.0 + (k % 2) as f64,
                });
            }
        }
        deals.push(deal);
    }
    snapshot.deals = deals;
    snapshot.stage_history = history;
    snapshot.product_rows = rows;

    snapshot.activities.reserve(spec.activities);
    for i in 0..spec.activities {
        let type_id = match rng.f64() {
            x if x < 0.45 => salespulse::domain::ACTIVITY_CALL,
            x if x < 0.9 => salespulse::domain::ACTIVITY_EMAIL,
            _ => 6,
        };
        snapshot.activities.push(Activity {
            id: 1 + i as Id,
            responsible: pick(&mut rng),
            type_id,
            direction: if rng.f64() < 0.7 { salespulse::domain::DIRECTION_OUTGOING } else { 1 },
            completed: rng.f64() < 0.9,
            created: ts(when(&mut rng, start)),
        });
    }

    let portal = wire.then(|| to_wire(&snapshot));
    Company { snapshot, portal }
}

/// (STATUS_ID, NAME, SORT, semantics) of the two pipelines: the demo portal's stages.
const STAGES: [(Id, &str, &str, i64, Semantics); 13] = [
    (0, "NEW", "Новая", 10, Semantics::Process),
    (0, "PREPARATION", "Подготовка документов", 20, Semantics::Process),
    (0, "PREPAYMENT_INVOICE", "Счёт на предоплату", 30, Semantics::Process),
    (0, "EXECUTING", "В работе", 40, Semantics::Process),
    (0, "FINAL_INVOICE", "Финальный счёт", 50, Semantics::Process),
    (0, "WON", "Сделка успешна", 60, Semantics::Success),
    (0, "LOSE", "Сделка провалена", 70, Semantics::Failure),
    (0, "APOLOGY", "Анализ причины провала", 80, Semantics::Failure),
    (1, "C1:NEW", "Новая", 10, Semantics::Process),
    (1, "C1:NEGOTIATION", "Переговоры", 20, Semantics::Process),
    (1, "C1:CONTRACT", "Договор", 30, Semantics::Process),
    (1, "C1:WON", "Сделка успешна", 40, Semantics::Success),
    (1, "C1:LOSE", "Сделка провалена", 50, Semantics::Failure),
];
const SOURCES: [(&str, &str); 6] = [
    ("WEB", "Веб-сайт"),
    ("CALL", "Звонок"),
    ("EMAIL", "Электронная почта"),
    ("ADVERTISING", "Реклама"),
    ("PARTNER", "Партнёр"),
    ("RECOMMENDATION", "По рекомендации"),
];

/// The demo portal's departments, pipelines, stages, sources and currencies, plus the
/// generated teams and managers.
fn reference(spec: &Spec) -> CrmSnapshot {
    let dept = |id: Id, name: &str, parent: Option<Id>| Department { id, name: name.to_owned(), parent };
    let mut s = CrmSnapshot {
        departments: vec![
            dept(1, "ООО «Демо»", None),
            dept(SALES_DEPARTMENT, "Отдел продаж", Some(1)),
            dept(9, "Маркетинг", Some(1)),
        ],
        pipelines: vec![
            DealPipeline { id: 0, name: "Общая".into(), sort: 100 },
            DealPipeline { id: 1, name: "Опт".into(), sort: 200 },
        ],
        stages: STAGES
            .iter()
            .map(|(p, id, name, sort, semantics)| Stage {
                id: (*id).to_owned(),
                pipeline_id: *p,
                name: (*name).to_owned(),
                sort: *sort,
                semantics: *semantics,
            })
            .collect(),
        sources: SOURCES.iter().map(|(id, name)| Source { id: (*id).to_owned(), name: (*name).to_owned() }).collect(),
        currencies: [("RUB", 1.0, true), ("USD", 92.5, false), ("EUR", 100.2, false)]
            .iter()
            .map(|(code, rate, base)| Currency { code: (*code).to_owned(), rate: *rate, base: *base })
            .collect(),
        ..CrmSnapshot::default()
    };
    let teams = spec.managers.div_ceil(TEAM_SIZE);
    for t in 0..teams {
        s.departments.push(Department {
            id: FIRST_TEAM + t as Id,
            name: format!("Продажи: группа {}", t + 1),
            parent: Some(SALES_DEPARTMENT),
        });
    }
    s.users.push(User {
        id: 1,
        name: "Алексей Смирнов".into(),
        email: Some("director@bench.local".into()),
        active: true,
        departments: vec![1],
    });
    for i in 0..spec.managers {
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        let last = LAST_NAMES[(i / FIRST_NAMES.len()) % LAST_NAMES.len()];
        s.users.push(User {
            id: FIRST_MANAGER + i as Id,
            name: format!("{first} {last} {}", i / (FIRST_NAMES.len() * LAST_NAMES.len()) + 1),
            email: Some(format!("m{}@bench.local", FIRST_MANAGER + i as Id)),
            active: true,
            departments: vec![FIRST_TEAM + (i / TEAM_SIZE) as Id],
        });
    }
    s
}

/// The snapshot in Bitrix24's wire format, as the emulator serves it.
pub fn to_wire(s: &CrmSnapshot) -> PortalData {
    let code = |s: Semantics| match s {
        Semantics::Process => Value::Null,
        Semantics::Success => json!("S"),
        Semantics::Failure => json!("F"),
    };
    let mut p = PortalData::default();
    let mut status_id = 0;
    for src in &s.sources {
        status_id += 1;
        p.statuses.push(obj(json!({"ID": status_id.to_string(), "ENTITY_ID": "SOURCE", "STATUS_ID": src.id,
                                   "NAME": src.name, "SORT": (status_id * 10).to_string(), "SEMANTICS": null})));
    }
    for st in &s.stages {
        status_id += 1;
        let entity =
            if st.pipeline_id == 0 { "DEAL_STAGE".to_owned() } else { format!("DEAL_STAGE_{}", st.pipeline_id) };
        p.statuses.push(obj(json!({"ID": status_id.to_string(), "ENTITY_ID": entity, "STATUS_ID": st.id,
                                   "NAME": st.name, "SORT": st.sort.to_string(),
                                   "CATEGORY_ID": st.pipeline_id.to_string(), "SEMANTICS": code(st.semantics)})));
    }
    p.categories = s
        .pipelines
        .iter()
        .map(|c| {
            obj(json!({"id": c.id, "name": c.name, "sort": c.sort, "entityTypeId": 2,
                            "isDefault": if c.id == 0 { "Y" } else { "N" }}))
        })
        .collect();
    p.currencies = s
        .currencies
        .iter()
        .map(|c| {
            obj(json!({"CURRENCY": c.code, "AMOUNT_CNT": "1", "AMOUNT": format!("{:.4}", c.rate),
                            "BASE": if c.base { "Y" } else { "N" }}))
        })
        .collect();
    p.departments = s
        .departments
        .iter()
        .map(|d| {
            let mut m = obj(json!({"ID": d.id.to_string(), "NAME": d.name, "SORT": 500}));
            if let Some(parent) = d.parent {
                m.insert("PARENT".into(), json!(parent.to_string()));
            }
            m
        })
        .collect();
    p.users = s
        .users
        .iter()
        .map(|u| {
            let (first, last) = u.name.split_once(' ').unwrap_or((&u.name, ""));
            obj(json!({"ID": u.id.to_string(), "ACTIVE": u.active, "NAME": first, "LAST_NAME": last,
                       "EMAIL": u.email, "UF_DEPARTMENT": u.departments, "USER_TYPE": "employee"}))
        })
        .collect();
    let semantics = |s: Semantics| match s {
        Semantics::Process => "P",
        Semantics::Success => "S",
        Semantics::Failure => "F",
    };
    let opt = |t: &Option<Timestamp>| t.as_ref().map(stamp).unwrap_or_default();
    p.deals = s
        .deals
        .iter()
        .map(|d| {
            let moved = opt(&d.moved_time);
            obj(json!({
                "ID": d.id.to_string(), "TITLE": d.title, "TYPE_ID": "SALE", "STAGE_ID": d.stage_id,
                "CURRENCY_ID": d.currency, "OPPORTUNITY": format!("{:.2}", d.opportunity),
                "LEAD_ID": d.lead_id.map(|l| l.to_string()), "CLOSEDATE": opt(&d.close_date),
                "ASSIGNED_BY_ID": d.assigned_by.to_string(), "DATE_CREATE": stamp(&d.created), "DATE_MODIFY": moved,
                "CATEGORY_ID": d.pipeline_id.to_string(), "STAGE_SEMANTIC_ID": semantics(d.stage_semantics),
                "IS_RECURRING": if d.is_recurring { "Y" } else { "N" },
                "IS_RETURN_CUSTOMER": if d.is_return_customer { "Y" } else { "N" },
                "SOURCE_ID": d.source_id, "MOVED_TIME": moved,
                salespulse::crm::demo::SATISFACTION_FIELD: d.satisfaction.clone().unwrap_or_default(),
            }))
        })
        .collect();
    p.leads = s
        .leads
        .iter()
        .map(|l| {
            obj(json!({"ID": l.id.to_string(), "ASSIGNED_BY_ID": l.assigned_by.to_string(),
                       "DATE_CREATE": stamp(&l.created), "DATE_MODIFY": stamp(&l.created),
                       "STATUS_SEMANTIC_ID": semantics(l.status_semantics),
                       "SOURCE_ID": l.source_id, "TITLE": format!("Заявка {}", l.id)}))
        })
        .collect();
    p.activities = s
        .activities
        .iter()
        .map(|a| {
            obj(json!({"ID": a.id.to_string(), "RESPONSIBLE_ID": a.responsible.to_string(),
                       "TYPE_ID": a.type_id.to_string(), "DIRECTION": a.direction.to_string(),
                       "COMPLETED": if a.completed { "Y" } else { "N" }, "CREATED": stamp(&a.created),
                       "LAST_UPDATED": stamp(&a.created)}))
        })
        .collect();
    p.stage_history = s
        .stage_history
        .iter()
        .map(|h| {
            obj(json!({"ID": h.id, "TYPE_ID": 2, "OWNER_ID": h.deal_id, "CREATED_TIME": stamp(&h.created),
                       "CATEGORY_ID": h.pipeline_id, "STAGE_SEMANTIC_ID": semantics(h.semantics), "STAGE_ID": h.stage_id}))
        })
        .collect();
    for (i, r) in s.product_rows.iter().enumerate() {
        p.product_rows.entry(r.deal_id).or_default().push(obj(json!({
            "ID": (i + 1).to_string(), "OWNER_ID": r.deal_id.to_string(), "OWNER_TYPE": "D",
            "PRODUCT_ID": r.product_id.to_string(), "PRODUCT_NAME": r.name, "PRICE": format!("{:.2}", r.price),
            "QUANTITY": format!("{:.0}", r.quantity),
        })));
    }
    p
}

/// Approximate bytes of a wire record set (the JSON text), for the tables.
pub fn wire_bytes(rows: &[Map<String, Value>]) -> usize {
    rows.iter().map(|r| serde_json::to_string(r).map(|s| s.len()).unwrap_or(0)).sum()
}

/// The first day of the ISO week 2026-W47.
pub fn week47() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 16).expect("a valid date")
}
