//! The Bitrix24 client with a local cache of fetched records ([`CachedClient`]): the first
//! run on a portal fetches the report window as the plain client does and keeps the rows
//! (`store::cache`); later runs ask the portal only for what changed and give the snapshot
//! a full fetch would give.
//!
//! What is cached, per portal, are five subsets of the portal, each defined by a filter
//! from the instant `covered_since` (cs, the earliest `since` a request asked for):
//!
//! | subset           | filter                               | refreshed by (incremental)      |
//! |------------------|--------------------------------------|---------------------------------|
//! | deals modified   | `>=DATE_MODIFY` cs                   | `>=DATE_MODIFY` mark            |
//! | deals open       | `STAGE_SEMANTIC_ID = P`              | `>=DATE_MODIFY` mark (the same) |
//! | leads            | `>=DATE_CREATE` cs                   | `>=DATE_MODIFY` mark            |
//! | activities       | `>=CREATED` cs, calls/e-mails out    | `>=LAST_UPDATED` mark           |
//! | stage history    | `>=CREATED_TIME` cs                  | `>=CREATED_TIME` mark           |
//!
//! plus the product rows of won deals (those of the deals won in a report's period are
//! fetched when missing, and refetched whenever their deal shows up modified: editing a
//! deal's products changes its `DATE_MODIFY`). Reference data (users,
//! departments, pipelines, stages, sources, currencies) is a handful of requests and is
//! always fetched fresh. The older leads that cached deals came from (created before cs;
//! a deal's first contact is its lead's `DATE_CREATE`) are cached too, by id: fetched by
//! `@ID` when a deal brings one the cache lacks, refreshed by the leads' `DATE_MODIFY`
//! delta, kept while a cached deal names them, and all asked for again at the periodic full
//! listing (below), which is when a deleted one is noticed. On a large portal they are
//! thousands of `@ID` commands, most of a second run's cost had they been asked each time.
//!
//! A mark is the newest value of the field among the cached rows, minus [`OVERLAP`] (an
//! hour): it covers clock skew, same-second updates and records changed while the previous
//! fetch was paging. Stage history is refreshed by `CREATED_TIME` rather than `>ID`: it is
//! append-only, but nothing promises that a portal hands out its ids in time order (the demo
//! portal does not), while the creation time of a new entry is always recent.
//!
//! Deletions. A deleted record produces no change to fetch, so every run also counts each
//! subset on the portal: one `start=0` command per subset, all five in the batch that
//! carries the deltas. After the deltas are applied the cache holds a superset of each
//! subset as the portal has it (everything changed since the mark was refetched), so equal
//! counts mean equal sets. A count that differs is narrowed down: the subset is counted
//! again in 30-day buckets of its time field (one batch), and the ids of just the buckets
//! that differ are listed (`select: ["ID"]`, 50 a page, 50 pages a batch); the cache is
//! dropped to them, and any id it lacks is fetched. A deletion therefore never outlives the
//! run after it, and costs about two requests plus a month's ids. In addition,
//! every subset is listed when the last full listing is older than
//! [`CacheSettings::reconcile_every`]: a backstop for what the counts cannot see (a record
//! moved into a subset with a back-dated field, say), kept rare because listing ids costs
//! as many requests as fetching the rows did.
//!
//! Requests, on the demo portal (15 months, 24 requests for a department report's reach
//! uncached): the same report again costs 2 (reference data with the changes and counts;
//! stages with the older leads and new product rows); a week later, with a week of changes
//! and the week that fell out of the demo's history seen as deletions, 7.
//!
//! Safety. Any cache fault (an unreadable or corrupt file, a schema from a newer build)
//! means a full fetch and a rebuilt file, never a wrong number; so does a request that
//! reaches before cs, a changed satisfaction field, or a "now" earlier than the last
//! fetch's (the demo portal rendering an older period). The cache is written only after a
//! complete fetch, in one transaction, and only if no other run saved in between.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Value, json};

use super::wire::Notes;
use super::{
    Assembly, Bitrix24Client, HISTORY_FIELDS, ListJob, PAGE, Paging, WireRow, activity_filter, deal_job, deal_select,
    history_job, lead_job, missing_lead_jobs, product_rows_job, reference_jobs, take_rows, wire,
};
use crate::crm::{CrmError, CrmSource, FetchRequest};
use crate::domain::{CrmSnapshot, Id, Timestamp};
use crate::store::cache::{CacheError, CacheUpdate, CachedPortal, CrmCache, Entity, PortalMeta, portal_key};

/// How far back of the newest cached change an incremental fetch starts.
pub const OVERLAP: chrono::Duration = chrono::Duration::hours(1);
/// Records older than this before a request's `since` are dropped from the cache: a year
/// and a quarter covers a year-ago comparison with its trend.
pub const RETAIN: chrono::Duration = chrono::Duration::days(450);

/// Where the cache lives and how often it is checked in full.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheSettings {
    /// The state directory; the cache is `crm-cache.sqlite3` in it.
    pub state_dir: PathBuf,
    /// Every cached id is listed against the portal at least this often.
    pub reconcile_every: chrono::Duration,
    /// What names the portal in the cache: by default the webhook URL with its code masked;
    /// the demo portal, served on a new port each run, passes a fixed name.
    pub portal_name: Option<String>,
}

/// How the last cached fetch went, for logs and tests.
#[derive(Clone, Debug, PartialEq)]
pub struct CacheRun {
    /// `None` for an incremental fetch, else why everything was fetched.
    pub full_reason: Option<String>,
    /// Subsets whose ids were listed against the portal this run.
    pub reconciled: Vec<&'static str>,
    /// Cached records the portal no longer has, dropped.
    pub dropped: usize,
    /// Whether the cache file was written.
    pub saved: bool,
}

/// The Bitrix24 client reading through the local cache. A source like the plain client:
/// a complete snapshot or an error.
pub struct CachedClient {
    client: Bitrix24Client,
    settings: CacheSettings,
    last: Mutex<Option<CacheRun>>,
}

/// The cached subsets (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Subset {
    DealsModified,
    DealsOpen,
    Leads,
    Activities,
    History,
}

const SUBSETS: [Subset; 5] =
    [Subset::DealsModified, Subset::DealsOpen, Subset::Leads, Subset::Activities, Subset::History];
const LEAD_SELECT: [&str; 6] =
    ["ID", "ASSIGNED_BY_ID", "DATE_CREATE", "STATUS_SEMANTIC_ID", "SOURCE_ID", "DATE_MODIFY"];
const ACTIVITY_SELECT: [&str; 7] =
    ["ID", "RESPONSIBLE_ID", "TYPE_ID", "DIRECTION", "COMPLETED", "CREATED", "LAST_UPDATED"];

impl Subset {
    fn name(self) -> &'static str {
        match self {
            Subset::DealsModified => "deals modified",
            Subset::DealsOpen => "open deals",
            Subset::Leads => "leads",
            Subset::Activities => "activities",
            Subset::History => "stage history",
        }
    }

    fn entity(self) -> Entity {
        match self {
            Subset::DealsModified | Subset::DealsOpen => Entity::Deal,
            Subset::Leads => Entity::Lead,
            Subset::Activities => Entity::Activity,
            Subset::History => Entity::History,
        }
    }

    /// The list of the subset on the portal.
    fn job(self, cs: &Timestamp, select: &[&str]) -> ListJob {
        let cs = Value::String(cs.to_rfc3339());
        match self {
            Subset::DealsModified => deal_job(json!({">=DATE_MODIFY": cs}), select),
            Subset::DealsOpen => deal_job(json!({"STAGE_SEMANTIC_ID": "P"}), select),
            Subset::Leads => lead_job(json!({">=DATE_CREATE": cs}), select),
            Subset::Activities => super::activity_job(">=CREATED", cs, select),
            Subset::History => history_job(json!({">=CREATED_TIME": cs}), select),
        }
    }

    /// The time field its ranges are cut by.
    fn field(self) -> &'static str {
        match self {
            Subset::DealsModified | Subset::DealsOpen => "DATE_MODIFY",
            Subset::Leads => "DATE_CREATE",
            Subset::Activities => "CREATED",
            Subset::History => "CREATED_TIME",
        }
    }

    /// The list of the part of the subset within `range`.
    fn job_in(self, cs: &Timestamp, range: &Range, select: &[&str]) -> ListJob {
        let mut job = self.job(cs, select);
        let field = self.field();
        let filter = job.params["filter"].as_object_mut().expect("every subset has a filter");
        if let Some(lower) = range.lower {
            // Replaces the subset's own `>=` bound: a range's lower end is never before cs.
            filter.insert(format!(">={field}"), json!(lower.to_rfc3339()));
        }
        if let Some(upper) = range.upper {
            filter.insert(format!("<{field}"), json!(upper.to_rfc3339()));
        }
        job
    }

    /// One command that counts the part within `range` (`start=0` makes the portal answer
    /// `total`).
    fn count_job(self, cs: &Timestamp, range: &Range) -> ListJob {
        let mut job = self.job_in(cs, range, &["ID"]);
        job.paging = Paging::Single;
        job.params["start"] = json!(0);
        job
    }

    fn in_range(self, row: &WireRow, cs: &Timestamp, range: &Range) -> bool {
        let field = self.field();
        self.contains(row, cs)
            && range.lower.is_none_or(|lower| at_or_after(row, field, &lower))
            && range
                .upper
                .is_none_or(|upper| wire::Row::new(row).text(&[field]).is_some() && !at_or_after(row, field, &upper))
    }

    /// Whether a cached row belongs to the subset, as the portal's filter decides it.
    fn contains(self, row: &WireRow, cs: &Timestamp) -> bool {
        match self {
            Subset::DealsModified => at_or_after(row, "DATE_MODIFY", cs),
            Subset::DealsOpen => wire::Row::new(row).text(&["STAGE_SEMANTIC_ID"]).as_deref() == Some("P"),
            Subset::Leads => at_or_after(row, "DATE_CREATE", cs),
            Subset::Activities => at_or_after(row, "CREATED", cs),
            Subset::History => at_or_after(row, "CREATED_TIME", cs),
        }
    }
}

/// A part of a subset: its records whose time field is in `[lower, upper)`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Range {
    lower: Option<Timestamp>,
    upper: Option<Timestamp>,
}

impl Range {
    const ALL: Range = Range { lower: None, upper: None };
}

/// How wide a part of a subset is counted on its own when the subset's count differs.
const BUCKET: chrono::Duration = chrono::Duration::days(30);

/// The subsets' time line from cs cut into [`BUCKET`]s, the first open below (open deals
/// can be older than cs) and the last open above (a portal clock ahead of ours).
fn buckets(cs: &Timestamp, now: &Timestamp) -> Vec<Range> {
    let mut out = Vec::new();
    let mut lower = None;
    let mut edge = *cs + BUCKET;
    while edge < *now {
        out.push(Range { lower, upper: Some(edge) });
        lower = Some(edge);
        edge += BUCKET;
    }
    out.push(Range { lower, upper: None });
    out
}

/// `field >= since` as the portal's `>=` filter compares: as instants when the value is
/// one, else as text; an empty field never matches.
fn at_or_after(row: &WireRow, field: &str, since: &Timestamp) -> bool {
    let r = wire::Row::new(row);
    match r.text(&[field]) {
        None => false,
        Some(text) => match wire::parse_date(&text) {
            Some(t) => t >= *since,
            None => text.as_str() >= since.to_rfc3339().as_str(),
        },
    }
}

/// The newest value of a time field among rows; `None` when a row lacks it (then nothing
/// says what changed, and the subset is fetched in full).
fn newest(rows: &BTreeMap<Id, WireRow>, field: &str) -> Option<Option<Timestamp>> {
    let mut max = None;
    for row in rows.values() {
        let t = wire::Row::new(row).date(&[field]).ok().flatten()?;
        max = max.max(Some(t));
    }
    Some(max)
}

fn row_id(row: &WireRow) -> Option<Id> {
    wire::Row::new(row).id(&["ID", "id"]).ok().flatten()
}

/// The rows of one fetch, by entity, as the cache holds them.
#[derive(Default)]
struct Rows {
    deals: BTreeMap<Id, WireRow>,
    leads: BTreeMap<Id, WireRow>,
    activities: BTreeMap<Id, WireRow>,
    history: BTreeMap<Id, WireRow>,
    /// Product rows by deal.
    products: BTreeMap<Id, Vec<WireRow>>,
}

impl Rows {
    fn of(&self, entity: Entity) -> &BTreeMap<Id, WireRow> {
        match entity {
            Entity::Deal => &self.deals,
            Entity::Lead => &self.leads,
            Entity::Activity => &self.activities,
            Entity::History | Entity::ProductRows => &self.history,
        }
    }

    fn of_mut(&mut self, entity: Entity) -> &mut BTreeMap<Id, WireRow> {
        match entity {
            Entity::Deal => &mut self.deals,
            Entity::Lead => &mut self.leads,
            Entity::Activity => &mut self.activities,
            Entity::History | Entity::ProductRows => &mut self.history,
        }
    }

    fn from_cache(cached: &CachedPortal) -> Result<Rows, String> {
        let mut rows = Rows::default();
        for (entity, by_id) in &cached.rows {
            for (id, value) in by_id {
                match (entity, value) {
                    (Entity::ProductRows, Value::Array(list)) => {
                        let list: Option<Vec<WireRow>> = list.iter().map(|v| v.as_object().cloned()).collect();
                        rows.products.insert(*id, list.ok_or(format!("product rows of deal {id} are not objects"))?);
                    }
                    (Entity::ProductRows, _) => return Err(format!("product rows of deal {id} are not a list")),
                    (_, Value::Object(m)) => {
                        rows.of_mut(*entity).insert(*id, m.clone());
                    }
                    _ => return Err(format!("the {} row {id} is not an object", entity.as_str())),
                }
            }
        }
        Ok(rows)
    }

    fn count(&self, subset: Subset, cs: &Timestamp, range: &Range) -> u64 {
        self.of(subset.entity()).values().filter(|r| subset.in_range(r, cs, range)).count() as u64
    }

    /// Inserts fetched rows of `entity`, keeping those that belong to the cache.
    fn upsert(&mut self, entity: Entity, rows: &[WireRow], cs: &Timestamp, changed: &mut Changes) {
        for row in rows {
            let Some(id) = row_id(row) else { continue };
            let keep = match entity {
                Entity::Deal => Subset::DealsModified.contains(row, cs) || Subset::DealsOpen.contains(row, cs),
                // An older lead a deal came from stays up to date too.
                Entity::Lead => Subset::Leads.contains(row, cs) || self.leads.contains_key(&id),
                Entity::Activity => Subset::Activities.contains(row, cs),
                Entity::History | Entity::ProductRows => Subset::History.contains(row, cs),
            };
            if !keep {
                continue;
            }
            if entity == Entity::Deal && self.products.remove(&id).is_some() {
                // The deal changed: its product rows may have too.
                changed.deleted.insert((Entity::ProductRows, id));
            }
            self.of_mut(entity).insert(id, row.clone());
            changed.upserted.insert((entity, id));
            changed.deleted.remove(&(entity, id));
        }
    }

    /// The leads of `ids` (deals' leads outside the window) to ask the portal for: those
    /// the cache lacks, or all of them when `all` (the periodic full reconcile: a deleted
    /// lead is noticed only by asking for it).
    fn leads_to_ask(&self, ids: &[Id], all: bool) -> Vec<Id> {
        ids.iter().copied().filter(|id| all || !self.leads.contains_key(id)).collect()
    }

    /// Keeps the leads asked for by id: the rows returned, and none of those not returned
    /// (deleted on the portal).
    fn set_asked_leads(&mut self, asked: &[Id], jobs: &[ListJob], changed: &mut Changes) {
        let mut returned = BTreeSet::new();
        for row in jobs.iter().flat_map(|j| &j.rows) {
            let Some(id) = row_id(row) else { continue };
            returned.insert(id);
            self.leads.insert(id, row.clone());
            changed.upserted.insert((Entity::Lead, id));
            changed.deleted.remove(&(Entity::Lead, id));
        }
        for id in asked.iter().filter(|id| !returned.contains(id)) {
            self.remove(Entity::Lead, *id, changed);
        }
    }

    /// The cached rows of `ids`' leads.
    fn leads_of(&self, ids: &[Id]) -> Vec<WireRow> {
        ids.iter().filter_map(|id| self.leads.get(id).cloned()).collect()
    }

    fn set_products(&mut self, deal: Id, list: Vec<WireRow>, changed: &mut Changes) {
        self.products.insert(deal, list);
        changed.deleted.remove(&(Entity::ProductRows, deal));
        changed.upserted.insert((Entity::ProductRows, deal));
    }

    fn remove(&mut self, entity: Entity, id: Id, changed: &mut Changes) {
        if self.of_mut(entity).remove(&id).is_some() {
            changed.upserted.remove(&(entity, id));
            changed.deleted.insert((entity, id));
        }
        if entity == Entity::Deal && self.products.remove(&id).is_some() {
            changed.upserted.remove(&(Entity::ProductRows, id));
            changed.deleted.insert((Entity::ProductRows, id));
        }
    }

    /// Drops what no subset from `cs` holds (after `cs` moved forward), but for the older
    /// leads that cached deals came from.
    fn prune(&mut self, cs: &Timestamp, changed: &mut Changes) {
        let origins: BTreeSet<Id> =
            self.deals.values().filter_map(|d| wire::Row::new(d).id(&["LEAD_ID"]).ok().flatten()).collect();
        for entity in [Entity::Deal, Entity::Lead, Entity::Activity, Entity::History] {
            let gone: Vec<Id> = self
                .of(entity)
                .iter()
                .filter(|(id, r)| {
                    let origin = entity == Entity::Lead && origins.contains(id);
                    !origin && !SUBSETS.iter().any(|s| s.entity() == entity && s.contains(r, cs))
                })
                .map(|(id, _)| *id)
                .collect();
            for id in gone {
                self.remove(entity, id, changed);
            }
        }
    }

    /// The rows of the subset at or after `since`, in ID order.
    fn select(&self, subset: Subset, since: &Timestamp) -> Vec<WireRow> {
        self.of(subset.entity()).values().filter(|r| subset.contains(r, since)).cloned().collect()
    }

    fn update(&self, changed: &Changes, replace: bool) -> CacheUpdate {
        let value = |entity: Entity, id: Id| -> Option<Value> {
            match entity {
                Entity::ProductRows => {
                    self.products.get(&id).map(|l| Value::Array(l.iter().cloned().map(Value::Object).collect()))
                }
                e => self.of(e).get(&id).cloned().map(Value::Object),
            }
        };
        if replace {
            let mut upserts = Vec::new();
            for entity in [Entity::Deal, Entity::Lead, Entity::Activity, Entity::History] {
                upserts.extend(self.of(entity).iter().map(|(id, r)| (entity, *id, Value::Object(r.clone()))));
            }
            upserts.extend(
                self.products
                    .keys()
                    .filter_map(|id| Some((Entity::ProductRows, *id, value(Entity::ProductRows, *id)?))),
            );
            return CacheUpdate { replace: true, upserts, deletes: Vec::new() };
        }
        CacheUpdate {
            replace: false,
            upserts: changed.upserted.iter().filter_map(|(e, id)| Some((*e, *id, value(*e, *id)?))).collect(),
            deletes: changed.deleted.iter().copied().collect(),
        }
    }
}

/// What a fetch changed in the cached rows.
#[derive(Default)]
struct Changes {
    upserted: BTreeSet<(Entity, Id)>,
    deleted: BTreeSet<(Entity, Id)>,
}

/// What loading the cache found.
enum Start {
    /// Fetch everything; `reset` the file first when it could not be read.
    Full {
        reason: String,
        reset: bool,
        generation: Option<i64>,
    },
    Incremental {
        cached: Box<CachedPortal>,
        rows: Rows,
    },
}

impl CachedClient {
    pub fn new(client: Bitrix24Client, settings: CacheSettings) -> CachedClient {
        CachedClient { client, settings, last: Mutex::new(None) }
    }

    pub fn client(&self) -> &Bitrix24Client {
        &self.client
    }

    /// How the last fetch went.
    pub fn last_run(&self) -> Option<CacheRun> {
        self.last.lock().expect("no panics while holding the last run").clone()
    }

    fn key(&self) -> (String, String) {
        let shown = self.settings.portal_name.clone().unwrap_or_else(|| self.client.redacted_url().to_owned());
        (portal_key(&shown), shown)
    }

    /// Reads the portal's cache (on a blocking thread: it is a file of some megabytes).
    async fn load(&self, request: &FetchRequest, now: &Timestamp) -> Start {
        let (key, _) = self.key();
        let dir = self.settings.state_dir.clone();
        let loaded = tokio::task::spawn_blocking(move || CrmCache::open(&dir)?.load(&key))
            .await
            .unwrap_or_else(|e| Err(CacheError::Corrupt { path: PathBuf::new(), detail: e.to_string() }));
        let cached = match loaded {
            Err(e) if e.is_busy() => {
                tracing::warn!(error = %e, "The CRM cache is busy; fetching everything.");
                return Start::Full { reason: format!("the cache is busy: {e}"), reset: false, generation: None };
            }
            Err(e) => {
                tracing::warn!(error = %e, "The CRM cache is unreadable; fetching everything and rebuilding it.");
                return Start::Full { reason: format!("the cache is unreadable: {e}"), reset: true, generation: None };
            }
            Ok(None) => return Start::Full { reason: "nothing cached yet".into(), reset: false, generation: None },
            Ok(Some(c)) => c,
        };
        let full =
            |reason: &str| Start::Full { reason: reason.to_owned(), reset: false, generation: Some(cached.generation) };
        if cached.meta.satisfaction_field != request.satisfaction_field {
            return full("the satisfaction field changed");
        }
        if request.since < cached.meta.covered_since {
            return full("the request reaches before the cached records");
        }
        if *now < cached.meta.fetched_at {
            return full("the cache was filled at a later time than now");
        }
        match Rows::from_cache(&cached) {
            Ok(rows) => Start::Incremental { cached: Box::new(cached), rows },
            Err(detail) => {
                tracing::warn!(detail = %detail, "The CRM cache holds a broken row; fetching everything and rebuilding it.");
                Start::Full { reason: format!("the cache holds a broken row: {detail}"), reset: true, generation: None }
            }
        }
    }

    /// Fetches what `request` needs as of `now` (the wall clock for a real portal; the
    /// slot for the demo portal, whose records are generated as of the slot).
    pub async fn fetch_at(&self, request: &FetchRequest, now: Timestamp) -> Result<CrmSnapshot, CrmError> {
        let c = &self.client;
        let (key, shown) = self.key();
        let start = self.load(request, &now).await;
        let deal_select = deal_select(request);
        let mut changed = Changes::default();
        let mut run = CacheRun { full_reason: None, reconciled: Vec::new(), dropped: 0, saved: false };
        tracing::info!(portal = %c.redacted_url(), since = %request.since.to_rfc3339(), "Fetching CRM records through the cache.");

        // First look: reference data, and the records' lists (or changes and counts),
        // which do not depend on it; all in the same batches.
        let mut jobs = reference_jobs();
        let reference = jobs.len();
        let assembly: Assembly;
        let (mut rows, mut meta, generation, reset, leads_due) = match start {
            Start::Full { reason, reset, generation } => {
                let cs = request.since;
                for subset in SUBSETS {
                    jobs.push(subset.job(&cs, select_of(subset.entity(), &deal_select)));
                }
                c.run(&mut jobs).await?;
                let lists = jobs.split_off(reference);
                assembly = Assembly::new(take_rows(std::mem::take(&mut jobs)));
                let mut rows = Rows::default();
                for (subset, job) in SUBSETS.iter().zip(&lists) {
                    rows.upsert(subset.entity(), &job.rows, &cs, &mut changed);
                }
                run.full_reason = Some(reason);
                run.reconciled = SUBSETS.iter().map(|s| s.name()).collect();
                let meta = PortalMeta {
                    shown,
                    satisfaction_field: request.satisfaction_field.clone(),
                    covered_since: cs,
                    fetched_at: now,
                    reconciled_at: now,
                    runs: 0,
                };
                (rows, meta, generation, reset, true)
            }
            Start::Incremental { cached, mut rows } => {
                let mut meta = cached.meta.clone();
                // Keep the cache from growing forever: what is older than RETAIN before
                // this request leaves it (a request for it later rebuilds).
                let cs = meta.covered_since.max(request.since - RETAIN);
                if cs > meta.covered_since {
                    rows.prune(&cs, &mut changed);
                    meta.covered_since = cs;
                }
                let from =
                    |mark: Option<Timestamp>| Value::String(mark.map_or(cs, |m| (m - OVERLAP).max(cs)).to_rfc3339());
                let deals_from = newest(&rows.deals, "DATE_MODIFY").map(from);
                let leads_from = newest(&rows.leads, "DATE_MODIFY").map(from);
                let activities_from = newest(&rows.activities, "LAST_UPDATED").map(from);
                let history_from = newest(&rows.history, "CREATED_TIME").map(from);
                // A subset without a usable mark is fetched in full and replaces its rows.
                let mut deltas: Vec<(Entity, bool, ListJob)> = Vec::new();
                match deals_from {
                    Some(v) => deltas.push((Entity::Deal, false, deal_job(json!({">=DATE_MODIFY": v}), &deal_select))),
                    None => {
                        deltas.push((Entity::Deal, true, Subset::DealsModified.job(&cs, &deal_select)));
                        deltas.push((Entity::Deal, true, Subset::DealsOpen.job(&cs, &deal_select)));
                    }
                }
                deltas.push(match leads_from {
                    Some(v) => (Entity::Lead, false, lead_job(json!({">=DATE_MODIFY": v}), &LEAD_SELECT)),
                    None => (Entity::Lead, true, Subset::Leads.job(&cs, &LEAD_SELECT)),
                });
                deltas.push(match activities_from {
                    Some(v) => (
                        Entity::Activity,
                        false,
                        ListJob::new(
                            "crm.activity.list",
                            json!({"order": {"ID": "ASC"}, "filter": activity_filter(">=LAST_UPDATED", v), "select": ACTIVITY_SELECT}),
                            Paging::Keyset,
                        ),
                    ),
                    None => (Entity::Activity, true, Subset::Activities.job(&cs, &ACTIVITY_SELECT)),
                });
                deltas.push(match history_from {
                    Some(v) => (Entity::History, false, history_job(json!({">=CREATED_TIME": v}), &HISTORY_FIELDS)),
                    None => (Entity::History, true, Subset::History.job(&cs, &HISTORY_FIELDS)),
                });
                let n_deltas = deltas.len();
                let mut kinds = Vec::new();
                for (entity, replace, job) in deltas {
                    kinds.push((entity, replace));
                    jobs.push(job);
                }
                // The counts go into the same batches as the deltas: one look at the portal.
                jobs.extend(SUBSETS.iter().map(|s| s.count_job(&cs, &Range::ALL)));
                c.run(&mut jobs).await?;
                let mut rest = jobs.split_off(reference);
                assembly = Assembly::new(take_rows(std::mem::take(&mut jobs)));
                let counts = rest.split_off(n_deltas);
                for (entity, _) in kinds.iter().filter(|k| k.1) {
                    let ids: Vec<Id> = rows.of(*entity).keys().copied().collect();
                    for id in ids {
                        rows.remove(*entity, id, &mut changed);
                    }
                }
                for ((entity, _), job) in kinds.iter().zip(&rest) {
                    rows.upsert(*entity, &job.rows, &cs, &mut changed);
                }

                // Deletions: list the ids of every subset whose count differs, or of all
                // of them when the last full listing is old.
                let due = now - meta.reconciled_at >= self.settings.reconcile_every;
                let to_list: Vec<(Subset, Range)> = if due {
                    meta.reconciled_at = now;
                    SUBSETS.iter().map(|s| (*s, Range::ALL)).collect()
                } else {
                    let differ: Vec<Subset> = SUBSETS
                        .iter()
                        .zip(&counts)
                        .filter(|(s, job)| job.total != Some(rows.count(**s, &cs, &Range::ALL)))
                        .map(|(s, _)| *s)
                        .collect();
                    self.narrow(&differ, &cs, &now, &rows).await?
                };
                if !to_list.is_empty() {
                    run.dropped = self.reconcile(&to_list, &cs, &deal_select, &mut rows, &mut changed).await?;
                    run.reconciled = to_list.iter().map(|(s, _)| s.name()).collect();
                    run.reconciled.dedup();
                }
                meta.fetched_at = now;
                (rows, meta, Some(cached.generation), false, due)
            }
        };
        meta.runs += 1;

        // The snapshot, from the cached rows as the plain client builds it from fresh ones.
        let mut assembly = assembly;
        let since = request.since;
        let modified = rows.select(Subset::DealsModified, &since);
        let open = rows.select(Subset::DealsOpen, &since);
        let leads = rows.select(Subset::Leads, &since);

        // Second look: the pipelines' stages, the older leads the deals came from that the
        // cache lacks (all of them at the periodic full reconcile), and the product rows the
        // cache lacks of the deals the portal serves as won and touched in the report's
        // period. The last two are read off the rows before the stages and the history are
        // known (a deal's lead does not depend on them; whether it was won in the period
        // can, rarely: then a third look follows).
        let missing = preview_missing_leads(request, &modified, &open, &leads);
        let asked = rows.leads_to_ask(&missing, leads_due);
        let guessed: Vec<Id> = modified
            .iter()
            .chain(&open)
            .filter(|r| {
                let r = wire::Row::new(r);
                let touched = ["DATE_MODIFY", "MOVED_TIME", "CLOSEDATE"]
                    .iter()
                    .any(|f| r.date(&[f]).ok().flatten().is_some_and(|t| t >= request.period_start));
                r.text(&["STAGE_SEMANTIC_ID"]).as_deref() == Some("S") && !r.flag(&["IS_RECURRING"]) && touched
            })
            .filter_map(row_id)
            .filter(|id| !rows.products.contains_key(id))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut jobs = assembly.stage_jobs();
        let stage_jobs = jobs.len();
        jobs.extend(missing_lead_jobs(&asked, &LEAD_SELECT));
        let lead_jobs = jobs.len() - stage_jobs;
        jobs.extend(guessed.iter().map(|id| product_rows_job(*id)));
        c.run(&mut jobs).await?;
        let mut lead_rows = jobs.split_off(stage_jobs);
        let product_jobs = lead_rows.split_off(lead_jobs);
        rows.set_asked_leads(&asked, &lead_rows, &mut changed);
        assembly.add_stages(jobs);
        for (id, job) in guessed.iter().zip(product_jobs) {
            rows.set_products(*id, job.rows, &mut changed);
        }
        assembly.add_window(
            request,
            &modified,
            &open,
            &leads,
            &rows.select(Subset::Activities, &since),
            &rows.select(Subset::History, &since),
        );
        let won = assembly.product_deals(request);
        let unknown_products: Vec<Id> = won.iter().copied().filter(|id| !rows.products.contains_key(id)).collect();
        let still_missing = assembly.missing_leads();
        let asked_more: Vec<Id> =
            rows.leads_to_ask(&still_missing, leads_due).into_iter().filter(|id| !asked.contains(id)).collect();
        if !asked_more.is_empty() || !unknown_products.is_empty() {
            let mut more = missing_lead_jobs(&asked_more, &LEAD_SELECT);
            let n_leads = more.len();
            more.extend(unknown_products.iter().map(|id| product_rows_job(*id)));
            c.run(&mut more).await?;
            let products = more.split_off(n_leads);
            rows.set_asked_leads(&asked_more, &more, &mut changed);
            for (id, job) in unknown_products.iter().zip(products) {
                rows.set_products(*id, job.rows, &mut changed);
            }
        }
        assembly.add_leads(&rows.leads_of(&still_missing));
        for id in &won {
            assembly.add_product_rows(*id, &rows.products[id]);
        }
        let snapshot = assembly.finish();

        // Saved only now that the fetch is complete.
        let update = rows.update(&changed, run.full_reason.is_some());
        let dir = self.settings.state_dir.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let mut cache = if reset { CrmCache::open_fresh(&dir) } else { CrmCache::open(&dir) }?;
            cache.save(&key, &meta, generation, &update)
        })
        .await;
        match saved {
            Ok(Ok(saved)) => run.saved = saved,
            Ok(Err(e)) => tracing::warn!(error = %e, "Could not save the CRM cache; the next run fetches more."),
            Err(e) => tracing::warn!(error = %e, "Could not save the CRM cache; the next run fetches more."),
        }
        tracing::info!(
            portal = %c.redacted_url(),
            requests = c.requests_made(),
            full = run.full_reason.as_deref().unwrap_or("no"),
            reconciled = %run.reconciled.join(", "),
            dropped = run.dropped,
            deals = snapshot.deals.len(),
            leads = snapshot.leads.len(),
            activities = snapshot.activities.len(),
            "CRM records fetched through the cache."
        );
        *self.last.lock().expect("no panics while holding the last run") = Some(run);
        Ok(snapshot)
    }

    /// The parts of the subsets whose counts differ that need their ids listed: each such
    /// subset is counted again by [`BUCKET`] (one batch for all), and only the buckets that
    /// differ are listed; a deletion or two then costs a month's ids, not the whole subset's.
    async fn narrow(
        &self,
        differ: &[Subset],
        cs: &Timestamp,
        now: &Timestamp,
        rows: &Rows,
    ) -> Result<Vec<(Subset, Range)>, CrmError> {
        if differ.is_empty() {
            return Ok(Vec::new());
        }
        let ranges = buckets(cs, now);
        let mut jobs: Vec<ListJob> = differ.iter().flat_map(|s| ranges.iter().map(|r| s.count_job(cs, r))).collect();
        self.client.run(&mut jobs).await?;
        let mut parts = Vec::new();
        for (subset, counts) in differ.iter().zip(jobs.chunks(ranges.len())) {
            let mine: Vec<(Subset, Range)> = ranges
                .iter()
                .zip(counts)
                .filter(|(r, job)| job.total != Some(rows.count(*subset, cs, r)))
                .map(|(r, _)| (*subset, *r))
                .collect();
            // Every bucket agreeing while the whole does not (a record without the time
            // field, say): the whole subset is listed.
            if mine.is_empty() {
                parts.push((*subset, Range::ALL));
            }
            parts.extend(mine);
        }
        Ok(parts)
    }

    /// Lists the ids of `parts` on the portal, drops cached records it no longer has and
    /// fetches the ones the cache lacks. Returns how many were dropped.
    async fn reconcile(
        &self,
        parts: &[(Subset, Range)],
        cs: &Timestamp,
        deal_select: &[&str],
        rows: &mut Rows,
        changed: &mut Changes,
    ) -> Result<usize, CrmError> {
        let mut jobs: Vec<ListJob> = parts.iter().map(|(s, range)| s.job_in(cs, range, &["ID"])).collect();
        self.client.run(&mut jobs).await?;
        let mut dropped = 0;
        let mut missing: Vec<(Entity, Vec<Id>)> = Vec::new();
        for ((subset, range), job) in parts.iter().zip(&jobs) {
            let listed: BTreeSet<Id> = job.rows.iter().filter_map(row_id).collect();
            let entity = subset.entity();
            let cached: BTreeSet<Id> =
                rows.of(entity).iter().filter(|(_, r)| subset.in_range(r, cs, range)).map(|(id, _)| *id).collect();
            for id in cached.difference(&listed) {
                rows.remove(entity, *id, changed);
                dropped += 1;
            }
            missing.push((entity, listed.difference(&cached).copied().collect()));
        }
        // Ids the cache lacks (a change it missed): fetched by id, 50 a command.
        let mut fetch: Vec<(Entity, ListJob)> = Vec::new();
        for (entity, ids) in &missing {
            for chunk in ids.chunks(PAGE) {
                let filter = json!({"@ID": chunk});
                let mut job = match entity {
                    Entity::Deal => deal_job(filter, deal_select),
                    Entity::Lead => lead_job(filter, &LEAD_SELECT),
                    Entity::Activity => ListJob::new(
                        "crm.activity.list",
                        json!({"order": {"ID": "ASC"}, "filter": filter, "select": ACTIVITY_SELECT}),
                        Paging::Keyset,
                    ),
                    Entity::History | Entity::ProductRows => history_job(filter, &HISTORY_FIELDS),
                };
                job.paging = Paging::Single;
                job.params["start"] = json!(-1);
                fetch.push((*entity, job));
            }
        }
        if !fetch.is_empty() {
            let (entities, mut jobs): (Vec<Entity>, Vec<ListJob>) = fetch.into_iter().unzip();
            self.client.run(&mut jobs).await?;
            for (entity, job) in entities.iter().zip(&jobs) {
                rows.upsert(*entity, &job.rows, cs, changed);
            }
        }
        if dropped > 0 {
            tracing::info!(portal = %self.client.redacted_url(), dropped, "Dropped cached CRM records the portal no longer has.");
        }
        Ok(dropped)
    }
}

/// The older leads the plain client would fetch for these rows: the deals' leads that are
/// not among the window's, as [`Assembly::missing_leads`] finds them once the stages are in
/// (which a deal's lead and its being read at all do not depend on).
fn preview_missing_leads(request: &FetchRequest, modified: &[WireRow], open: &[WireRow], leads: &[WireRow]) -> Vec<Id> {
    let mut scratch = Vec::new();
    let notes = &mut Notes { notes: &mut scratch };
    let known: BTreeSet<Id> = leads.iter().filter_map(|r| wire::lead(r, notes)).map(|l| l.id).collect();
    modified
        .iter()
        .chain(open)
        .filter_map(|r| wire::deal(r, request.satisfaction_field.as_deref(), |_| None, notes))
        .filter_map(|d| d.lead_id)
        .filter(|l| !known.contains(l))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The fields selected for an entity's rows in the cache.
fn select_of<'a>(entity: Entity, deal_select: &'a [&'a str]) -> &'a [&'a str] {
    match entity {
        Entity::Deal => deal_select,
        Entity::Lead => &LEAD_SELECT,
        Entity::Activity => &ACTIVITY_SELECT,
        Entity::History | Entity::ProductRows => &HISTORY_FIELDS,
    }
}

impl CrmSource for CachedClient {
    async fn fetch(&self, request: &FetchRequest) -> Result<CrmSnapshot, CrmError> {
        // A real portal's records change in real time: its "now" is the machine's clock.
        let now = crate::schedule::Clock::now(&crate::schedule::SystemClock);
        self.fetch_at(request, now.fixed_offset()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        chrono::DateTime::parse_from_rfc3339(s).unwrap()
    }

    fn deal(id: u64, modified: &str, semantic: &str) -> WireRow {
        json!({"ID": id.to_string(), "DATE_MODIFY": modified, "STAGE_SEMANTIC_ID": semantic})
            .as_object()
            .cloned()
            .unwrap()
    }

    #[test]
    fn the_buckets_cut_every_cached_record_into_exactly_one_part() {
        let cs = at("2026-01-01T00:00:00+03:00");
        let now = at("2026-04-11T00:00:00+03:00");
        let ranges = buckets(&cs, &now);
        assert_eq!(ranges.len(), 4, "edges at 30, 60 and 90 days: {ranges:?}");
        assert_eq!((ranges[0].lower, ranges[3].upper), (None, None));
        assert!(ranges.windows(2).all(|w| w[0].upper == w[1].lower));
        let rows = [
            deal(1, "2025-06-01T10:00:00+03:00", "P"),
            deal(2, "2026-01-01T00:00:00+03:00", "S"),
            deal(3, "2026-01-31T00:00:00+03:00", "F"),
            // The same instant as an edge, served in another offset.
            deal(4, "2026-01-30T21:00:00+00:00", "P"),
            deal(5, "2026-05-01T00:00:00+03:00", "P"),
            deal(6, "2025-12-31T23:59:59+03:00", "S"),
        ];
        for subset in [Subset::DealsModified, Subset::DealsOpen] {
            for row in &rows {
                let parts = ranges.iter().filter(|r| subset.in_range(row, &cs, r)).count();
                assert_eq!(parts, usize::from(subset.contains(row, &cs)), "{subset:?} {row:?}");
            }
        }
        assert!(!Subset::DealsModified.contains(&rows[5], &cs) && !Subset::DealsOpen.contains(&rows[5], &cs));
    }

    #[test]
    fn a_range_job_bounds_the_subsets_own_filter() {
        let cs = at("2026-01-01T00:00:00+03:00");
        let range = Range { lower: Some(cs + BUCKET), upper: Some(cs + BUCKET * 2) };
        let job = Subset::DealsModified.count_job(&cs, &range);
        assert_eq!(job.params["filter"][">=DATE_MODIFY"], "2026-01-31T00:00:00+03:00");
        assert_eq!(job.params["filter"]["<DATE_MODIFY"], "2026-03-02T00:00:00+03:00");
        assert_eq!(job.params["start"], 0);
        let open = Subset::DealsOpen.count_job(&cs, &Range { lower: None, upper: Some(cs) });
        assert_eq!(
            open.params["filter"],
            json!({"STAGE_SEMANTIC_ID": "P", "<DATE_MODIFY": "2026-01-01T00:00:00+03:00"})
        );
    }
}
