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
//!
//! This file holds the company (its people, pipelines, products and customers) and its
//! reference data; `days` generates each day's leads, deals, activities and stage history.

mod days;

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate};
use chrono_tz::Tz;
use serde_json::{Value, json};

use super::emulator::{PortalData, Record};

use self::days::Generator;

pub use self::days::special_deals;

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

/// A row of [`PEOPLE`]: id, first and last name, e-mail local part, department, active,
/// pace and role (see [`Person`]).
type PersonRow = (u64, &'static str, &'static str, &'static str, u64, bool, f64, Role);

const PEOPLE: [PersonRow; 11] = [
    (1, "Алексей", "Смирнов", "a.smirnov", 1, true, 1.0, Role::Director),
    (11, "Анна", "Кузнецова", "a.kuznetsova", 5, true, 1.2, Role::Manager),
    (13, "Дмитрий", "Волков", "d.volkov", 5, true, 0.9, Role::Manager),
    (15, "Елена", "Соколова", "e.sokolova", 5, true, 1.0, Role::Manager),
    (17, "Иван", "Петров", "i.petrov", 5, true, 1.1, Role::Manager),
    (19, "Мария", "Лебедева", "m.lebedeva", 7, true, 0.8, Role::Manager),
    (21, "Сергей", "Новиков", "s.novikov", 7, true, 1.0, Role::Manager),
    (23, "Ольга", "Морозова", "o.morozova", 7, true, 0.9, Role::Manager),
    (25, "Павел", "Козлов", "p.kozlov", 7, true, 0.7, Role::Manager),
    (27, "Наталья", "Попова", "n.popova", 9, true, 1.0, Role::Marketing),
    (29, "Виктор", "Егоров", "v.egorov", 5, false, 1.0, Role::Manager),
];

/// The demo company's people.
fn people() -> impl Iterator<Item = Person> {
    PEOPLE.iter().map(|&(id, first, last, email, department, active, pace, role)| Person {
        id,
        first,
        last,
        email,
        department,
        active,
        pace,
        role,
    })
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
    let mut g = Generator::new(cut, &mut data);
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
    d.users = people()
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

#[cfg(test)]
mod tests;
