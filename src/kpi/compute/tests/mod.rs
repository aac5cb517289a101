//! Hand-built portals with a few records each; every expected number is worked out by
//! hand in the comments, as a sales director would check it in Bitrix24.

mod breakdowns;
mod figures;
mod lists;
mod reports;

use chrono::{DateTime, TimeZone};
use chrono_tz::Tz;

use super::*;
use crate::domain::{
    ACTIVITY_CALL, ACTIVITY_EMAIL, Activity, CrmSnapshot, Currency, DIRECTION_OUTGOING, Deal, DealPipeline, Department,
    Lead, ProductRow, Scope, Semantics, Source, Stage, StageChange, Timestamp, User,
};
use crate::kpi::model::ReportData;
use crate::kpi::targets::Targets;
use crate::locale::Language;

const MSK: Tz = chrono_tz::Europe::Moscow;
const IVAN: Id = 17;
const MARIA: Id = 18;
/// In the accounting department: out of scope.
const OLEG: Id = 19;
/// In the sales department but inactive: out of scope.
const ANNA: Id = 20;

fn t(s: &str) -> Timestamp {
    DateTime::parse_from_rfc3339(s).unwrap()
}

fn w47() -> Period {
    Period::parse("2026-W47", MSK).unwrap()
}

fn slot() -> DateTime<Tz> {
    MSK.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap()
}

fn settings() -> KpiSettings {
    KpiSettings {
        scope: Scope { departments: vec![1], managers: vec![], include_subdepartments: true },
        targets: Targets::default(),
        base_currency: None,
        stuck_after_days: 14.0,
        satisfaction_scale: (1.0, 5.0),
        trend_periods: 3,
        show_ranks: true,
        sort_managers_by: Kpi::Revenue,
        max_stuck_deals: 10,
        max_stuck_deals_department: 20,
        definitions_page: true,
        language: Language::Ru,
    }
}

fn user(id: Id, name: &str, dept: Id, active: bool) -> User {
    User { id, name: name.to_owned(), email: Some(format!("u{id}@example.ru")), active, departments: vec![dept] }
}

fn stage(id: &str, pipeline_id: Id, name: &str, sort: i64, semantics: Semantics) -> Stage {
    Stage { id: id.to_owned(), pipeline_id, name: name.to_owned(), sort, semantics }
}

/// Ivan and Maria sell (Maria in a sub-department); Oleg is in accounting, Anna left.
fn portal() -> CrmSnapshot {
    CrmSnapshot {
        users: vec![
            user(MARIA, "Мария Сидорова", 2, true),
            user(IVAN, "Иван Петров", 1, true),
            user(OLEG, "Олег Кузнецов", 3, true),
            user(ANNA, "Анна Смирнова", 1, false),
        ],
        departments: vec![
            Department { id: 1, name: "Отдел продаж".into(), parent: None },
            Department { id: 2, name: "Продажи Москва".into(), parent: Some(1) },
            Department { id: 3, name: "Бухгалтерия".into(), parent: None },
        ],
        pipelines: vec![
            DealPipeline { id: 0, name: "Общая".into(), sort: 10 },
            DealPipeline { id: 1, name: "Крупные клиенты".into(), sort: 5 },
        ],
        // Listed out of SORT order on purpose: the funnel must follow SORT.
        stages: vec![
            stage("NEW", 0, "Новая", 10, Semantics::Process),
            stage("NEGOTIATION", 0, "Переговоры", 30, Semantics::Process),
            stage("PROPOSAL", 0, "Предложение", 20, Semantics::Process),
            stage("LOSE", 0, "Сделка провалена", 50, Semantics::Failure),
            stage("WON", 0, "Сделка успешна", 40, Semantics::Success),
            stage("C1:NEW", 1, "Новая", 10, Semantics::Process),
            stage("C1:WON", 1, "Успех", 20, Semantics::Success),
        ],
        sources: vec![
            Source { id: "WEB".into(), name: "Веб-сайт".into() },
            Source { id: "CALL".into(), name: "Звонок".into() },
            Source { id: "ADVERTISING".into(), name: "Реклама".into() },
        ],
        // USD: AMOUNT 9050 / AMOUNT_CNT 100, as crm.currency.list serves it.
        currencies: vec![
            Currency { code: "RUB".into(), rate: 1.0, base: true },
            Currency { code: "USD".into(), rate: 9050.0 / 100.0, base: false },
        ],
        ..CrmSnapshot::default()
    }
}

/// A deal in progress in the general pipeline, created long before W47.
fn deal(id: Id, manager: Id, opportunity: f64) -> Deal {
    Deal {
        title: format!("Сделка №{id}"),
        ..Deal::for_test(id, manager, ("NEW", Semantics::Process), opportunity, t("2026-11-02T10:00:00+03:00"))
    }
}

fn entry(s: &mut CrmSnapshot, deal_id: Id, stage_id: &str, at: &str) {
    let st = s.stages.iter().find(|x| x.id == stage_id).expect("known stage");
    let id = s.stage_history.len() as Id + 1;
    s.stage_history.push(StageChange {
        id,
        deal_id,
        pipeline_id: st.pipeline_id,
        stage_id: stage_id.into(),
        semantics: st.semantics,
        created: t(at),
    });
}

/// A deal won at `at` (with its history entry into WON).
fn win(s: &mut CrmSnapshot, mut d: Deal, at: &str) {
    d.stage_id = "WON".into();
    d.stage_semantics = Semantics::Success;
    entry(s, d.id, "WON", at);
    s.deals.push(d);
}

fn lose(s: &mut CrmSnapshot, mut d: Deal, at: &str) {
    d.stage_id = "LOSE".into();
    d.stage_semantics = Semantics::Failure;
    entry(s, d.id, "LOSE", at);
    s.deals.push(d);
}

fn lead(id: Id, manager: Id, created: &str, converted: bool, source: Option<&str>) -> Lead {
    Lead {
        id,
        assigned_by: manager,
        created: t(created),
        status_semantics: if converted { Semantics::Success } else { Semantics::Process },
        source_id: source.map(str::to_owned),
    }
}

fn activity(id: Id, manager: Id, type_id: u32, direction: u32, completed: bool, created: &str) -> Activity {
    Activity { id, responsible: manager, type_id, direction, completed, created: t(created) }
}

fn scorecard(s: &CrmSnapshot, cfg: &KpiSettings, period: &Period, manager: Id) -> ReportData {
    Analysis::new(s, cfg).manager_report(period, manager, slot())
}

fn value(r: &ReportData, key: &str) -> Option<f64> {
    r.kpis.get(key).unwrap().value
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}
