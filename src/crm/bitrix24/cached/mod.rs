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

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{Value, json};

mod rows;
mod subset;

use super::Bitrix24Client;
use super::assembly::Assembly;
use super::paging::{ListJob, PAGE, take_rows};
use super::plan::{self, HISTORY_FIELDS};
use super::wire::{self, Notes, WireRow};
use crate::crm::{CrmError, CrmSource, FetchRequest};
use crate::domain::{CrmSnapshot, Id, Timestamp};
use crate::store::cache::{CacheError, CacheUpdate, CachedPortal, CrmCache, Entity, PortalMeta, portal_key};

use self::rows::{Changes, Rows};
use self::subset::{ACTIVITY_SELECT, LEAD_SELECT, Range, SUBSETS, Subset, buckets, newest, row_id, select_of};

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

/// One cached fetch under way: what its steps read, and what they change.
struct Fetch<'r> {
    request: &'r FetchRequest,
    now: Timestamp,
    deal_select: Vec<&'r str>,
    changed: Changes,
    run: CacheRun,
}

/// What the first look at the portal leaves: the reference data, the cached rows brought
/// up to date, and what saving them needs.
struct FirstLook {
    assembly: Assembly,
    rows: Rows,
    meta: PortalMeta,
    generation: Option<i64>,
    reset: bool,
    /// Whether every older lead is asked for again (the periodic full listing).
    leads_due: bool,
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
        let mut cached = cached;
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
        match Rows::from_cache(std::mem::take(&mut cached.rows)) {
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
        let (key, shown) = self.key();
        let start = self.load(request, &now).await;
        let mut fetch = Fetch {
            request,
            now,
            deal_select: plan::deal_select(request),
            changed: Changes::default(),
            run: CacheRun { full_reason: None, reconciled: Vec::new(), dropped: 0, saved: false },
        };
        tracing::info!(portal = %self.client.redacted_url(), since = %request.since.to_rfc3339(), "Fetching CRM records through the cache.");

        // First look: reference data, and the records' lists (or changes and counts),
        // which do not depend on it; all in the same batches.
        let FirstLook { assembly, mut rows, mut meta, generation, reset, leads_due } = match start {
            Start::Full { reason, reset, generation } => {
                self.first_look_full(&mut fetch, shown, reason, reset, generation).await?
            }
            Start::Incremental { cached, rows } => self.first_look_incremental(&mut fetch, *cached, rows).await?,
        };
        meta.runs += 1;

        // The snapshot, from the cached rows as the plain client builds it from fresh ones.
        let snapshot = self.assemble(&mut fetch, assembly, &mut rows, leads_due).await?;

        // Saved only now that the fetch is complete.
        let Fetch { changed, mut run, .. } = fetch;
        let update = rows.into_update(&changed, run.full_reason.is_some());
        run.saved = self.save(reset, key, meta, generation, update).await;
        tracing::info!(
            portal = %self.client.redacted_url(),
            requests = self.client.requests_made(),
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

    /// The first look without a usable cache: reference data and every subset listed in
    /// full from the request's `since`, which becomes cs.
    async fn first_look_full(
        &self,
        fetch: &mut Fetch<'_>,
        shown: String,
        reason: String,
        reset: bool,
        generation: Option<i64>,
    ) -> Result<FirstLook, CrmError> {
        let cs = fetch.request.since;
        let mut jobs = plan::reference_jobs();
        let reference = jobs.len();
        for subset in SUBSETS {
            jobs.push(subset.job(&cs, select_of(subset.entity(), &fetch.deal_select)));
        }
        self.client.run(&mut jobs).await?;
        let lists = jobs.split_off(reference);
        let assembly = Assembly::new(take_rows(jobs));
        let mut rows = Rows::default();
        for (subset, job) in SUBSETS.iter().zip(lists) {
            rows.upsert(subset.entity(), job.into_rows(), &cs, &mut fetch.changed);
        }
        fetch.run.full_reason = Some(reason);
        fetch.run.reconciled = SUBSETS.iter().map(|s| s.name()).collect();
        let meta = PortalMeta {
            shown,
            satisfaction_field: fetch.request.satisfaction_field.clone(),
            covered_since: cs,
            fetched_at: fetch.now,
            reconciled_at: fetch.now,
            runs: 0,
        };
        Ok(FirstLook { assembly, rows, meta, generation, reset, leads_due: true })
    }

    /// The first look with the cache: reference data, what changed since each subset's
    /// mark and every subset's count, in the same batches; then the deletions.
    async fn first_look_incremental(
        &self,
        fetch: &mut Fetch<'_>,
        cached: CachedPortal,
        mut rows: Rows,
    ) -> Result<FirstLook, CrmError> {
        let mut meta = cached.meta.clone();
        // Keep the cache from growing forever: what is older than RETAIN before
        // this request leaves it (a request for it later rebuilds).
        let cs = meta.covered_since.max(fetch.request.since - RETAIN);
        if cs > meta.covered_since {
            rows.prune(&cs, &mut fetch.changed);
            meta.covered_since = cs;
        }
        let deltas = delta_jobs(&rows, &cs, &fetch.deal_select);
        let n_deltas = deltas.len();
        let mut jobs = plan::reference_jobs();
        let reference = jobs.len();
        let mut kinds = Vec::new();
        for (entity, replace, job) in deltas {
            kinds.push((entity, replace));
            jobs.push(job);
        }
        // The counts go into the same batches as the deltas: one look at the portal.
        jobs.extend(SUBSETS.iter().map(|s| s.count_job(&cs, &Range::ALL)));
        self.client.run(&mut jobs).await?;
        let mut rest = jobs.split_off(reference);
        let assembly = Assembly::new(take_rows(jobs));
        let counts = rest.split_off(n_deltas);
        for (entity, _) in kinds.iter().filter(|k| k.1) {
            let ids: Vec<Id> = rows.by_id(*entity).keys().copied().collect();
            for id in ids {
                rows.remove(*entity, id, &mut fetch.changed);
            }
        }
        for ((entity, _), job) in kinds.iter().zip(rest) {
            rows.upsert(*entity, job.into_rows(), &cs, &mut fetch.changed);
        }
        let due = self.deletions(fetch, &mut meta, &cs, &counts, &mut rows).await?;
        meta.fetched_at = fetch.now;
        Ok(FirstLook { assembly, rows, meta, generation: Some(cached.generation), reset: false, leads_due: due })
    }

    /// Deletions: lists the ids of every subset whose count differs, or of all of them when
    /// the last full listing is old (then returns true, and `meta` says it was done now).
    async fn deletions(
        &self,
        fetch: &mut Fetch<'_>,
        meta: &mut PortalMeta,
        cs: &Timestamp,
        counts: &[ListJob],
        rows: &mut Rows,
    ) -> Result<bool, CrmError> {
        let now = fetch.now;
        let due = now - meta.reconciled_at >= self.settings.reconcile_every;
        let to_list: Vec<(Subset, Range)> = if due {
            meta.reconciled_at = now;
            SUBSETS.iter().map(|s| (*s, Range::ALL)).collect()
        } else {
            let differ: Vec<Subset> = SUBSETS
                .iter()
                .zip(counts)
                .filter(|(s, job)| job.total() != Some(rows.count(**s, cs, &Range::ALL)))
                .map(|(s, _)| *s)
                .collect();
            self.narrow(&differ, cs, &now, rows).await?
        };
        if !to_list.is_empty() {
            fetch.run.dropped = self.reconcile(&to_list, cs, &fetch.deal_select, rows, &mut fetch.changed).await?;
            fetch.run.reconciled = to_list.iter().map(|(s, _)| s.name()).collect();
            fetch.run.reconciled.dedup();
        }
        Ok(due)
    }

    /// The second look: the pipelines' stages, the older leads the deals came from that the
    /// cache lacks (all of them at the periodic full reconcile), and the product rows the
    /// cache lacks of the deals the portal serves as won and touched in the report's
    /// period. The last two are read off the rows before the stages and the history are
    /// known (a deal's lead does not depend on them; whether it was won in the period
    /// can, rarely: then a third look follows). Then the snapshot.
    async fn assemble(
        &self,
        fetch: &mut Fetch<'_>,
        mut assembly: Assembly,
        rows: &mut Rows,
        leads_due: bool,
    ) -> Result<CrmSnapshot, CrmError> {
        let request = fetch.request;
        let changed = &mut fetch.changed;
        let since = request.since;
        // The window's leads as cached now: leads asked for below do not join them (the
        // older ones are added after the window's, as the plain client adds them).
        let (window_leads, missing, guessed) = {
            let modified = rows.select(Subset::DealsModified, &since);
            let open = rows.select(Subset::DealsOpen, &since);
            let leads = rows.select(Subset::Leads, &since);
            let window_leads: Vec<Id> = leads.iter().filter_map(|r| row_id(r)).collect();
            let missing = preview_missing_leads(request, &modified, &open, &leads);
            (window_leads, missing, preview_won_deals(request, &modified, &open, rows))
        };
        let asked = rows.leads_to_ask(&missing, leads_due);
        let mut jobs = plan::stage_jobs(assembly.pipelines());
        let stage_jobs = jobs.len();
        jobs.extend(plan::missing_lead_jobs(&asked, &LEAD_SELECT));
        let lead_jobs = jobs.len() - stage_jobs;
        jobs.extend(guessed.iter().map(|id| plan::product_rows_job(*id)));
        self.client.run(&mut jobs).await?;
        let mut lead_rows = jobs.split_off(stage_jobs);
        let product_jobs = lead_rows.split_off(lead_jobs);
        rows.set_asked_leads(&asked, lead_rows, changed);
        assembly.add_stages(jobs.iter().map(ListJob::rows));
        for (id, job) in guessed.iter().zip(product_jobs) {
            rows.set_products(*id, job.into_rows(), changed);
        }
        assembly.add_window(
            request,
            rows.select(Subset::DealsModified, &since),
            rows.select(Subset::DealsOpen, &since),
            rows.leads_of(&window_leads),
            rows.select(Subset::Activities, &since),
            rows.select(Subset::History, &since),
        );

        // The third look, when the guesses missed: leads and product rows still unknown.
        let won = assembly.product_deals(request);
        let unknown_products: Vec<Id> = won.iter().copied().filter(|id| !rows.products.contains_key(id)).collect();
        let still_missing = assembly.missing_leads();
        let asked_more: Vec<Id> =
            rows.leads_to_ask(&still_missing, leads_due).into_iter().filter(|id| !asked.contains(id)).collect();
        if !asked_more.is_empty() || !unknown_products.is_empty() {
            let mut more = plan::missing_lead_jobs(&asked_more, &LEAD_SELECT);
            let n_leads = more.len();
            more.extend(unknown_products.iter().map(|id| plan::product_rows_job(*id)));
            self.client.run(&mut more).await?;
            let products = more.split_off(n_leads);
            rows.set_asked_leads(&asked_more, more, changed);
            for (id, job) in unknown_products.iter().zip(products) {
                rows.set_products(*id, job.into_rows(), changed);
            }
        }
        assembly.add_leads(rows.leads_of(&still_missing));
        for id in &won {
            assembly.add_product_rows(*id, &rows.products[id]);
        }
        Ok(assembly.finish())
    }

    /// Writes what changed to the cache file (on a blocking thread); whether it was written.
    /// A failure costs the next run more requests, never a wrong number.
    async fn save(
        &self,
        reset: bool,
        key: String,
        meta: PortalMeta,
        generation: Option<i64>,
        update: CacheUpdate,
    ) -> bool {
        let dir = self.settings.state_dir.clone();
        let saved = tokio::task::spawn_blocking(move || {
            let mut cache = if reset { CrmCache::open_fresh(&dir) } else { CrmCache::open(&dir) }?;
            cache.save(&key, &meta, generation, &update)
        })
        .await;
        match saved {
            Ok(Ok(saved)) => saved,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "Could not save the CRM cache; the next run fetches more.");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "Could not save the CRM cache; the next run fetches more.");
                false
            }
        }
    }

    /// The parts of the subsets whose counts differ that need their ids listed: each such
    /// subset is counted again by [`BUCKET`](subset::BUCKET) (one batch for all), and only the buckets that
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
                .filter(|(r, job)| job.total() != Some(rows.count(*subset, cs, r)))
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
            let listed: BTreeSet<Id> = job.rows().iter().filter_map(row_id).collect();
            let entity = subset.entity();
            let cached: BTreeSet<Id> =
                rows.by_id(entity).iter().filter(|(_, r)| subset.in_range(r, cs, range)).map(|(id, _)| *id).collect();
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
                let job = match entity {
                    Entity::Deal => plan::deal_job(filter, deal_select),
                    Entity::Lead => plan::lead_job(filter, &LEAD_SELECT),
                    Entity::Activity => plan::activities_job(filter, &ACTIVITY_SELECT),
                    Entity::History | Entity::ProductRows => plan::history_job(filter, &HISTORY_FIELDS),
                }
                .single(-1);
                fetch.push((*entity, job));
            }
        }
        if !fetch.is_empty() {
            let (entities, mut jobs): (Vec<Entity>, Vec<ListJob>) = fetch.into_iter().unzip();
            self.client.run(&mut jobs).await?;
            for (entity, job) in entities.iter().zip(jobs) {
                rows.upsert(*entity, job.into_rows(), cs, changed);
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
fn preview_missing_leads(
    request: &FetchRequest,
    modified: &[&WireRow],
    open: &[&WireRow],
    leads: &[&WireRow],
) -> Vec<Id> {
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

/// The deals whose product rows the cache lacks among those the portal serves as won and
/// touched in the report's period: a guess, read off the rows before the stages and the
/// history are known, of the deals [`Assembly::product_deals`] will find.
fn preview_won_deals(request: &FetchRequest, modified: &[&WireRow], open: &[&WireRow], rows: &Rows) -> Vec<Id> {
    modified
        .iter()
        .chain(open)
        .filter(|r| {
            let r = wire::Row::new(r);
            let touched = ["DATE_MODIFY", "MOVED_TIME", "CLOSEDATE"]
                .iter()
                .any(|f| r.date(&[f]).ok().flatten().is_some_and(|t| t >= request.period_start));
            r.text(&["STAGE_SEMANTIC_ID"]).as_deref() == Some("S") && !r.flag(&["IS_RECURRING"]) && touched
        })
        .filter_map(|r| row_id(r))
        .filter(|id| !rows.products.contains_key(id))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The lists of what changed in each subset since its mark (the newest value of its field
/// among the cached rows, less [`OVERLAP`]), with whether the list replaces the entity's
/// cached rows: a subset without a usable mark is fetched in full.
fn delta_jobs(rows: &Rows, cs: &Timestamp, deal_select: &[&str]) -> Vec<(Entity, bool, ListJob)> {
    let cs = *cs;
    let from = |mark: Option<Timestamp>| Value::String(mark.map_or(cs, |m| (m - OVERLAP).max(cs)).to_rfc3339());
    let deals_from = newest(&rows.deals, "DATE_MODIFY").map(from);
    let leads_from = newest(&rows.leads, "DATE_MODIFY").map(from);
    let activities_from = newest(&rows.activities, "LAST_UPDATED").map(from);
    let history_from = newest(&rows.history, "CREATED_TIME").map(from);
    let mut deltas: Vec<(Entity, bool, ListJob)> = Vec::new();
    match deals_from {
        Some(v) => deltas.push((Entity::Deal, false, plan::deal_job(json!({">=DATE_MODIFY": v}), deal_select))),
        None => {
            deltas.push((Entity::Deal, true, Subset::DealsModified.job(&cs, deal_select)));
            deltas.push((Entity::Deal, true, Subset::DealsOpen.job(&cs, deal_select)));
        }
    }
    deltas.push(match leads_from {
        Some(v) => (Entity::Lead, false, plan::lead_job(json!({">=DATE_MODIFY": v}), &LEAD_SELECT)),
        None => (Entity::Lead, true, Subset::Leads.job(&cs, &LEAD_SELECT)),
    });
    deltas.push(match activities_from {
        Some(v) => (Entity::Activity, false, plan::activity_job(">=LAST_UPDATED", v, &ACTIVITY_SELECT)),
        None => (Entity::Activity, true, Subset::Activities.job(&cs, &ACTIVITY_SELECT)),
    });
    deltas.push(match history_from {
        Some(v) => (Entity::History, false, plan::history_job(json!({">=CREATED_TIME": v}), &HISTORY_FIELDS)),
        None => (Entity::History, true, Subset::History.job(&cs, &HISTORY_FIELDS)),
    });
    deltas
}

impl CrmSource for CachedClient {
    async fn fetch(&self, request: &FetchRequest) -> Result<CrmSnapshot, CrmError> {
        // A real portal's records change in real time: its "now" is the machine's clock.
        let now = crate::schedule::Clock::now(&crate::schedule::SystemClock);
        self.fetch_at(request, now.fixed_offset()).await
    }
}
