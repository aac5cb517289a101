//! The fetch plan: which lists a [`FetchRequest`] needs, as [`ListJob`]s, with the filters
//! and fields docs/kpi.md needs of each. The plain client ([`super::Bitrix24Client`]) asks
//! for them as they are; the cache ([`super::cached`]) asks for the same lists narrowed to
//! what changed.
//!
//! In order: reference data (users, departments, deal pipelines, currencies, lead sources),
//! which depends on nothing; the stages of every pipeline, and the records of the report's
//! window (deals modified in it and open deals, leads, outgoing calls and e-mails, stage
//! history); then what those records point at: the older leads the window's deals came
//! from, and the product rows of the deals won in the report's period.

use serde_json::{Value, json};

use super::paging::{ListJob, PAGE, Paging};
use super::wire;
use crate::crm::FetchRequest;
use crate::domain::{DealPipeline, Id};

/// The stage history fields the client selects.
pub(super) const HISTORY_FIELDS: [&str; 6] =
    ["ID", "OWNER_ID", "CREATED_TIME", "CATEGORY_ID", "STAGE_SEMANTIC_ID", "STAGE_ID"];

/// The reference lists; they depend on nothing else. Users, departments, deal pipelines,
/// currencies and lead sources, in that order (`Assembly::new` takes them so).
pub(super) fn reference_jobs() -> Vec<ListJob> {
    vec![
        ListJob::new("user.get", json!({"sort": "ID", "order": "ASC"}), Paging::Offset),
        ListJob::new("department.get", json!({"sort": "ID", "order": "ASC"}), Paging::Offset),
        ListJob::new("crm.category.list", json!({"entityTypeId": 2}), Paging::Offset),
        ListJob::new("crm.currency.list", json!({}), Paging::Single),
        ListJob::new(
            "crm.status.list",
            json!({"filter": {"ENTITY_ID": "SOURCE"}, "order": {"SORT": "ASC"}}),
            Paging::Offset,
        ),
    ]
}

/// One `crm.status.list` job per pipeline, in pipeline order.
pub(super) fn stage_jobs(pipelines: &[DealPipeline]) -> Vec<ListJob> {
    pipelines
        .iter()
        .map(|p| {
            let entity = if p.id == 0 { "DEAL_STAGE".to_owned() } else { format!("DEAL_STAGE_{}", p.id) };
            ListJob::new(
                "crm.status.list",
                json!({"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}}),
                Paging::Offset,
            )
        })
        .collect()
}

/// The records of the window from `request.since`: deals modified, open deals, leads,
/// activities and stage history, in that order.
pub(super) fn window_jobs(request: &FetchRequest) -> Vec<ListJob> {
    let since = Value::String(request.since.to_rfc3339());
    let deal_select = deal_select(request);
    vec![
        deal_job(json!({">=DATE_MODIFY": since}), &deal_select),
        deal_job(json!({"STAGE_SEMANTIC_ID": "P"}), &deal_select),
        lead_job(json!({">=DATE_CREATE": since}), &wire::LEAD_FIELDS),
        activity_job(">=CREATED", since.clone(), &wire::ACTIVITY_FIELDS),
        history_job(json!({">=CREATED_TIME": since}), &HISTORY_FIELDS),
    ]
}

/// The deal fields to select: [`wire::DEAL_FIELDS`] and the satisfaction field.
pub(super) fn deal_select(request: &FetchRequest) -> Vec<&str> {
    wire::DEAL_FIELDS.iter().copied().chain(request.satisfaction_field.as_deref()).collect()
}

pub(super) fn deal_job(filter: Value, select: &[&str]) -> ListJob {
    ListJob::new("crm.deal.list", json!({"order": {"ID": "ASC"}, "filter": filter, "select": select}), Paging::Keyset)
}

pub(super) fn lead_job(filter: Value, select: &[&str]) -> ListJob {
    ListJob::new("crm.lead.list", json!({"order": {"ID": "ASC"}, "filter": filter, "select": select}), Paging::Keyset)
}

/// The activities docs/kpi.md counts (outgoing calls and e-mails) with `field` matching
/// `value` (a generic filter key such as `>=CREATED`).
pub(super) fn activity_job(field: &str, value: Value, select: &[&str]) -> ListJob {
    let filter = json!({field: value, "@TYPE_ID": [crate::domain::ACTIVITY_CALL, crate::domain::ACTIVITY_EMAIL],
                        "DIRECTION": crate::domain::DIRECTION_OUTGOING});
    activities_job(filter, select)
}

/// Activities by any filter (`@ID` for ids the cache lacks).
pub(super) fn activities_job(filter: Value, select: &[&str]) -> ListJob {
    ListJob::new(
        "crm.activity.list",
        json!({"order": {"ID": "ASC"}, "filter": filter, "select": select}),
        Paging::Keyset,
    )
}

pub(super) fn history_job(filter: Value, select: &[&str]) -> ListJob {
    ListJob::new(
        "crm.stagehistory.list",
        json!({"entityTypeId": 2, "order": {"ID": "ASC"}, "filter": filter, "select": select}),
        Paging::Keyset,
    )
    .wrapped_in("items")
}

/// Leads by id, 50 a command (a lead that is not returned was deleted).
pub(super) fn missing_lead_jobs(ids: &[Id], select: &[&str]) -> Vec<ListJob> {
    ids.chunks(PAGE)
        .map(|ids| {
            ListJob::new(
                "crm.lead.list",
                json!({"order": {"ID": "ASC"}, "filter": {"@ID": ids}, "select": select, "start": -1}),
                Paging::Single,
            )
        })
        .collect()
}

pub(super) fn product_rows_job(deal_id: Id) -> ListJob {
    ListJob::new("crm.deal.productrows.get", json!({"id": deal_id}), Paging::Single)
}
