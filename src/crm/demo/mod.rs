//! The demo portal: a deterministic Bitrix24-like company, served by `super::emulator` so
//! that the default run goes through the real client.
//!
//! Two sales departments with eight managers (one of them id 17), a director, a marketing
//! user and a former manager who left; leads from six sources, deals in two pipelines with
//! stage history, e-mails and calls, three currencies, products and a satisfaction field,
//! plus the awkward records a real portal has (a recurring template, a won deal reopened, a
//! won deal whose lead was deleted, a zero-value deal, stuck deals, repeat customers).
//!
//! Every calendar day is generated from its own seeded PRNG, so a record's existence and
//! fields never depend on `as_of`; [`portal`] only cuts the days' output at `as_of` (records
//! created before it, stage history before it, the current stage being the last entry
//! before it). It serves the ~15 months (450 days) before `as_of`.
//!
//! Every change carries its time: a deal's `DATE_MODIFY` is its last stage change before
//! `as_of`, a lead's its last status change, an activity's `LAST_UPDATED` its creation (the
//! demo's activities never change afterwards). So the portal at a later `as_of` differs from
//! an earlier one only by records whose change time lies between the two, which is what the
//! CRM cache's incremental fetch assumes of a real portal.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, Weekday};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::emulator::{PortalData, Record};

/// Days of history served before `as_of`.
pub const HISTORY_DAYS: i64 = 450;

/// The demo company's first day.
const FOUNDED: NaiveDate = NaiveDate::from_ymd_opt(2020, 1, 1).expect("valid date");
/// The satisfaction field the default config names.
pub const SATISFACTION_FIELD: &str = "UF_CRM_CSAT";
/// The day the former manager (id 29) stopped getting new work.
const FORMER_MANAGER_LEFT: (i32, u32, u32) = (2026, 2, 1);

const DAY: i64 = 86_400;
/// The demo portal's server time zone: Moscow, UTC+3 all year since 2014.
const OFFSET_SECS: i32 = 3 * 3600;

struct Person {
    id: u64,
    first: &'static str,
    last: &'static str,
    email: &'static str,
    department: u64,
    active: bool,
    /// How much work a day brings them (1.0 = typical manager).
    pace: f64,
    role: Role,
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Manager,
    Director,
    Marketing,
}

const PEOPLE: [Person; 11] = [
    p(1, "Алексей", "Смирнов", "a.smirnov", 1, true, 1.0, Role::Director),
    p(11, "Анна", "Кузнецова", "a.kuznetsova", 5, true, 1.2, Role::Manager),
    p(13, "Дмитрий", "Волков", "d.volkov", 5, true, 0.9, Role::Manager),
    p(15, "Елена", "Соколова", "e.sokolova", 5, true, 1.0, Role::Manager),
    p(17, "Иван", "Петров", "i.petrov", 5, true, 1.1, Role::Manager),
    p(19, "Мария", "Лебедева", "m.lebedeva", 7, true, 0.8, Role::Manager),
    p(21, "Сергей", "Новиков", "s.novikov", 7, true, 1.0, Role::Manager),
    p(23, "Ольга", "Морозова", "o.morozova", 7, true, 0.9, Role::Manager),
    p(25, "Павел", "Козлов", "p.kozlov", 7, true, 0.7, Role::Manager),
    p(27, "Наталья", "Попова", "n.popova", 9, true, 1.0, Role::Marketing),
    p(29, "Виктор", "Егоров", "v.egorov", 5, false, 1.0, Role::Manager),
];

#[allow(clippy::too_many_arguments)]
const fn p(
    id: u64,
    first: &'static str,
    last: &'static str,
    email: &'static str,
    department: u64,
    active: bool,
    pace: f64,
    role: Role,
) -> Person {
    Person { id, first, last, email, department, active, pace, role }
}

const SOURCES: [(&str, &str); 6] = [
    ("WEB", "Веб-сайт"),
    ("CALL", "Звонок"),
    ("EMAIL", "Электронная почта"),
    ("ADVERTISING", "Реклама"),
    ("PARTNER", "Партнёр"),
    ("RECOMMENDATION", "По рекомендации"),
];

/// (STATUS_ID, NAME, SORT, SEMANTICS) of pipeline 0 and pipeline 1.
const STAGES_0: [(&str, &str, u32, &str); 8] = [
    ("NEW", "Новая", 10, ""),
    ("PREPARATION", "Подготовка документов", 20, ""),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", 30, ""),
    ("EXECUTING", "В работе", 40, ""),
    ("FINAL_INVOICE", "Финальный счёт", 50, ""),
    ("WON", "Сделка успешна", 60, "S"),
    ("LOSE", "Сделка провалена", 70, "F"),
    ("APOLOGY", "Анализ причины провала", 80, "F"),
];
const STAGES_1: [(&str, &str, u32, &str); 5] = [
    ("C1:NEW", "Новая", 10, ""),
    ("C1:NEGOTIATION", "Переговоры", 20, ""),
    ("C1:CONTRACT", "Договор", 30, ""),
    ("C1:WON", "Сделка успешна", 40, "S"),
    ("C1:LOSE", "Сделка провалена", 50, "F"),
];
const LEAD_STATUSES: [(&str, &str, u32, &str); 5] = [
    ("NEW", "Не обработан", 10, ""),
    ("IN_PROCESS", "В работе", 20, ""),
    ("PROCESSED", "Обработан", 30, ""),
    ("CONVERTED", "Качественный лид", 40, "S"),
    ("JUNK", "Некачественный лид", 50, "F"),
];

/// (PRODUCT_ID, name, price range in RUB, quantity range).
type Product = (u64, &'static str, (i64, i64), (i64, i64));
const PRODUCTS: [Product; 6] = [
    (101, "Лицензия CRM", (9_000, 15_000), (3, 12)),
    (102, "Внедрение", (40_000, 120_000), (1, 1)),
    (103, "Обучение", (15_000, 30_000), (1, 3)),
    (104, "Техподдержка (год)", (36_000, 60_000), (1, 1)),
    (105, "Интеграция с 1С", (30_000, 80_000), (1, 1)),
    (106, "Доработка под заказ", (20_000, 90_000), (1, 2)),
];

/// Customers deal titles are made of.
pub const COMPANIES: [&str; 16] = [
    "ООО «Альфа-Трейд»",
    "АО «Северный ветер»",
    "ООО «Ромашка»",
    "ИП Григорьев",
    "ООО «СтройМонтаж»",
    "ООО «Вектор»",
    "АО «Уральские сети»",
    "ООО «Логистик Плюс»",
    "ООО «Медиагрупп»",
    "ООО «ТехноПарк»",
    "ООО «Пекарня №1»",
    "АО «Волга-Агро»",
    "ООО «Сибирский лес»",
    "ООО «Городские окна»",
    "ООО «Фармация»",
    "ООО «Балтийский берег»",
];
const FIRST_NAMES: [&str; 10] =
    ["Андрей", "Татьяна", "Михаил", "Юлия", "Николай", "Светлана", "Артём", "Ирина", "Глеб", "Вера"];
const LAST_NAMES: [&str; 10] =
    ["Орлов", "Зайцева", "Белов", "Ковалёва", "Фёдоров", "Никитина", "Гусев", "Романова", "Титов", "Киселёва"];

/// (code, rate in RUB).
const CURRENCIES: [(&str, &str, f64); 3] =
    [("RUB", "Российский рубль", 1.0), ("USD", "Доллар США", 92.5), ("EUR", "Евро", 100.2)];

/// The demo portal as it looks at `as_of` (same `as_of` -> same data, byte for byte).
pub fn portal(as_of: DateTime<Tz>) -> PortalData {
    let cut = as_of.timestamp();
    let offset = FixedOffset::east_opt(OFFSET_SECS).expect("+03:00 is valid");
    let last_day = as_of.with_timezone(&offset).date_naive();
    let mut data = reference_data();
    let mut g = Generator { cut, data: &mut data };
    // The demo company opened on 2020-01-01 (record ids count days from then): as of an
    // earlier date it has no history yet.
    let mut day = (last_day - Duration::days(HISTORY_DAYS)).max(FOUNDED);
    while day <= last_day {
        g.day(day);
        day += Duration::days(1);
    }
    data
}

fn obj(v: Value) -> Record {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("json! of an object literal is an object"),
    }
}

fn reference_data() -> PortalData {
    let mut d = PortalData { users: Vec::new(), ..PortalData::default() };
    d.users = PEOPLE
        .iter()
        .map(|p| {
            obj(json!({
                "ID": p.id.to_string(), "ACTIVE": p.active, "NAME": p.first, "LAST_NAME": p.last, "SECOND_NAME": "",
                "EMAIL": format!("{}@demo.salespulse.local", p.email), "UF_DEPARTMENT": [p.department],
                "WORK_POSITION": match p.role { Role::Director => "Генеральный директор", Role::Marketing => "Маркетолог", Role::Manager => "Менеджер по продажам" },
                "USER_TYPE": "employee",
            }))
        })
        .collect();
    d.departments = vec![
        obj(json!({"ID": "1", "NAME": "ООО «Демо»", "SORT": 500})),
        obj(json!({"ID": "3", "NAME": "Отдел продаж", "SORT": 500, "PARENT": "1", "UF_HEAD": "1"})),
        obj(json!({"ID": "5", "NAME": "Продажи: Москва", "SORT": 500, "PARENT": "3", "UF_HEAD": "17"})),
        obj(json!({"ID": "7", "NAME": "Продажи: регионы", "SORT": 500, "PARENT": "3", "UF_HEAD": "21"})),
        obj(json!({"ID": "9", "NAME": "Маркетинг", "SORT": 500, "PARENT": "1", "UF_HEAD": "27"})),
    ];
    let mut next_id = 1;
    let mut status = |entity: &str, category: Option<u64>, (id, name, sort, sem): (&str, &str, u32, &str)| {
        next_id += 1;
        let semantics = if sem.is_empty() { Value::Null } else { json!(sem) };
        obj(json!({
            "ID": next_id.to_string(), "ENTITY_ID": entity, "STATUS_ID": id, "NAME": name, "NAME_INIT": name,
            "SORT": sort.to_string(), "SYSTEM": "Y", "CATEGORY_ID": category.map(|c| c.to_string()),
            "SEMANTICS": semantics,
        }))
    };
    for (i, (id, name)) in SOURCES.iter().enumerate() {
        d.statuses.push(status("SOURCE", None, (id, name, (i as u32 + 1) * 10, "")));
    }
    for s in LEAD_STATUSES {
        d.statuses.push(status("STATUS", None, s));
    }
    for s in STAGES_0 {
        d.statuses.push(status("DEAL_STAGE", Some(0), s));
    }
    for s in STAGES_1 {
        d.statuses.push(status("DEAL_STAGE_1", Some(1), s));
    }
    d.categories = vec![
        obj(json!({"id": 0, "name": "Общая", "sort": 100, "entityTypeId": 2, "isDefault": "Y"})),
        obj(
            json!({"id": 1, "name": "Опт", "sort": 200, "entityTypeId": 2, "isDefault": "N", "originId": "", "originatorId": ""}),
        ),
    ];
    d.currencies = CURRENCIES
        .iter()
        .enumerate()
        .map(|(i, (code, name, rate))| {
            obj(json!({
                "CURRENCY": code, "AMOUNT_CNT": "1", "AMOUNT": format!("{rate:.4}"), "SORT": ((i + 1) * 100).to_string(),
                "BASE": if *code == "RUB" { "Y" } else { "N" }, "FULL_NAME": name, "LID": "ru",
            }))
        })
        .collect();
    d
}

fn seed(day_no: i64, salt: u64) -> u64 {
    // splitmix64: neighbouring days get unrelated streams.
    let mut z = (day_no as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn stamp(ts: i64) -> String {
    // By hand rather than through chrono's format strings: this runs ~150 000 times per
    // portal, and a debug build of the formatter made generation take most of a second.
    let local = ts + i64::from(OFFSET_SECS);
    let (days, secs) = (local.div_euclid(DAY), local.rem_euclid(DAY));
    let date = NaiveDate::from_num_days_from_ce_opt(days as i32 + 719_163).expect("in range");
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+03:00",
        date.year(),
        date.month(),
        date.day(),
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn money(x: f64) -> String {
    format!("{x:.2}")
}

fn stage_semantics(stage: &str) -> &'static str {
    match stage {
        "WON" | "C1:WON" => "S",
        "LOSE" | "APOLOGY" | "C1:LOSE" => "F",
        _ => "P",
    }
}

struct Generator<'a> {
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
    fn day(&mut self, day: NaiveDate) {
        let day_no = (day - FOUNDED).num_days();
        let midnight = day.and_hms_opt(0, 0, 0).expect("valid").and_utc().timestamp() - i64::from(OFFSET_SECS);
        let weekend = matches!(day.weekday(), Weekday::Sat | Weekday::Sun);
        let left = NaiveDate::from_ymd_opt(FORMER_MANAGER_LEFT.0, FORMER_MANAGER_LEFT.1, FORMER_MANAGER_LEFT.2)
            .expect("valid date");
        let mut lead_seq = 0u64;
        let mut deal_seq = 0u64;
        let mut act_seq = 0u64;
        let mut specials = Specials::of(day_no);
        for person in &PEOPLE {
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

#[cfg(test)]
mod tests {
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
        let summer =
            earlier.leads.iter().find(|l| l["DATE_CREATE"].as_str().unwrap().starts_with("2026-07-15")).unwrap();
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
            data.deals.iter().any(|d| d["CURRENCY_ID"] == "USD")
                && data.deals.iter().any(|d| d["CURRENCY_ID"] == "EUR")
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
        let mine = data
            .deals
            .iter()
            .filter(|d| d["ASSIGNED_BY_ID"] == "17" && won.contains(d["ID"].as_str().unwrap()))
            .count();
        let per_week = mine as f64 / 8.0;
        assert!((2.0..=6.5).contains(&per_week), "manager 17 won {per_week} deals a week");
        let rate = |c: &str| CURRENCIES.iter().find(|x| x.0 == c).unwrap().2;
        let revenue: f64 = data
            .deals
            .iter()
            .filter(|d| d["ASSIGNED_BY_ID"] == "17" && won.contains(d["ID"].as_str().unwrap()))
            .map(|d| {
                d["OPPORTUNITY"].as_str().unwrap().parse::<f64>().unwrap() * rate(d["CURRENCY_ID"].as_str().unwrap())
            })
            .sum::<f64>()
            / 8.0;
        assert!((250_000.0..=700_000.0).contains(&revenue), "manager 17 earned {revenue} RUB a week");
        let leads = data
            .leads
            .iter()
            .filter(|l| l["ASSIGNED_BY_ID"] == "17" && l["DATE_CREATE"].as_str().unwrap() >= from)
            .count() as f64
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
}
