//! The fetch benchmark's core: serve a generated portal from the Bitrix24 emulator on
//! loopback and fetch what a job of the demo config needs through the real client,
//! counting requests, wall time and the emulator's own time.

use std::time::{Duration, Instant};

use salespulse::config::{Config, ReportKind, Secret};
use salespulse::crm::bitrix24::cached::{CacheRun, CacheSettings, CachedClient};
use salespulse::crm::bitrix24::{Bitrix24Client, ClientSettings};
use salespulse::crm::emulator::{Emulator, EmulatorOptions, EmulatorStats, PortalData};
use salespulse::crm::{CrmError, FetchRequest};
use salespulse::domain::{CrmSnapshot, Period};

use super::synth;

pub struct FetchRun {
    pub wall: Duration,
    /// HTTP requests the client sent, retries included.
    pub client_requests: u64,
    pub emulator: EmulatorStats,
    pub snapshot: CrmSnapshot,
    /// How the cache served the run (full or incremental, what it reconciled).
    pub cache: Option<CacheRun>,
}

/// What a job of the demo config asks the CRM for, exactly as the pipeline builds it:
/// `manager-weekly` for 2026-W47 (its 12-week trend), `department-monthly` for 2026-10 (its
/// 12-month trend and October 2025).
pub fn request(config: &Config, job: &str) -> FetchRequest {
    let job = config.job(job).unwrap_or_else(|| panic!("the demo config has a job {job}"));
    let period = match job.report {
        ReportKind::Manager => Period::week_of(synth::week47(), synth::TZ),
        ReportKind::Department => {
            Period::month_of(chrono::NaiveDate::from_ymd_opt(2026, 10, 1).expect("a valid date"), synth::TZ)
        }
    };
    salespulse::pipeline::fetch_request(config, job, &period)
}

/// Time for the bucket limits to allow `requests` requests: the burst goes at once, the rest
/// at `rate` per second.
pub fn floor(requests: u64, rate: f64, burst: u32) -> Duration {
    Duration::from_secs_f64(requests.saturating_sub(u64::from(burst)) as f64 / rate.max(1e-9))
}

/// Starts an emulator over `portal` (inside the current tokio runtime).
pub async fn serve(portal: PortalData, options: EmulatorOptions) -> Emulator {
    Emulator::start(portal, options).await.expect("the emulator binds 127.0.0.1:0")
}

/// The first run of a job on an empty CRM cache and the second run right after it, as the
/// product fetches by default (`crm.cache = true`): through the cached client, each run
/// with its own client and request count, against one fresh emulator.
pub struct FetchRuns {
    pub first: FetchRun,
    pub second: FetchRun,
}

/// [`FetchRuns`] of `request` over `portal`; the cache lives in a temporary directory.
pub async fn run(
    portal: PortalData,
    options: EmulatorOptions,
    settings: ClientSettings,
    request: &FetchRequest,
) -> Result<FetchRuns, CrmError> {
    let emulator = serve(portal, options).await;
    let dir = tempfile::tempdir().expect("a temporary directory for the CRM cache");
    let cache = CacheSettings {
        state_dir: dir.path().to_owned(),
        reconcile_every: chrono::Duration::days(28),
        portal_name: Some("bench".into()),
    };
    let mut runs = Vec::new();
    for _ in 0..2 {
        let client = CachedClient::new(
            Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings.clone())?,
            cache.clone(),
        );
        let before = emulator.stats();
        let t = Instant::now();
        let snapshot = client.fetch_at(request, synth::as_of().fixed_offset()).await;
        let wall = t.elapsed();
        let after = emulator.stats();
        let served = EmulatorStats {
            requests: after.requests - before.requests,
            commands: after.commands - before.commands,
            rate_limited: after.rate_limited - before.rate_limited,
            faults: after.faults - before.faults,
            server_time: after.server_time - before.server_time,
            operation_limited: after.operation_limited - before.operation_limited,
        };
        let client_requests = client.client().requests_made();
        match snapshot {
            Ok(snapshot) => {
                runs.push(FetchRun { wall, client_requests, emulator: served, snapshot, cache: client.last_run() })
            }
            Err(e) => {
                emulator.shutdown().await;
                return Err(e);
            }
        }
    }
    emulator.shutdown().await;
    let second = runs.pop().expect("two runs");
    let first = runs.pop().expect("two runs");
    Ok(FetchRuns { first, second })
}

/// What a first full fetch of `snapshot` (as a portal) must transfer, counted from the
/// records themselves with the client's filters and packing, without any HTTP: pages per
/// list and the `batch` requests they need. For portals too big to fetch here.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// (list, rows, pages of 50).
    pub lists: Vec<(&'static str, usize, usize)>,
    /// Single-command calls after the lists: lead look-ups by `@ID` and product rows of the
    /// deals won in the report's period.
    pub singles: usize,
    pub requests: u64,
}

/// The request count of a first run on an empty CRM cache (`crm::bitrix24::cached`) for
/// `snapshot` as the portal: one round of probes for the reference lists and the five record
/// lists, their remaining pages packed 50 to a `batch`, then the stage lists with the
/// single-command calls packed the same way, and a third look for product rows the first
/// guess missed.
pub fn estimate(snapshot: &CrmSnapshot, request: &FetchRequest) -> Estimate {
    use salespulse::domain::{ACTIVITY_CALL, ACTIVITY_EMAIL, DIRECTION_OUTGOING, Semantics};
    const PAGE: usize = salespulse::crm::bitrix24::PAGE;
    let since = request.since;
    let pages = |rows: usize| rows.div_ceil(PAGE).max(1);
    let modified: Vec<_> = snapshot.deals.iter().filter(|d| d.moved_time.is_some_and(|t| t >= since)).collect();
    let open: Vec<_> = snapshot.deals.iter().filter(|d| d.stage_semantics == Semantics::Process).collect();
    let leads: std::collections::BTreeSet<u64> =
        snapshot.leads.iter().filter(|l| l.created >= since).map(|l| l.id).collect();
    let activities = snapshot
        .activities
        .iter()
        .filter(|a| a.created >= since && [ACTIVITY_CALL, ACTIVITY_EMAIL].contains(&a.type_id))
        .filter(|a| a.direction == DIRECTION_OUTGOING)
        .count();
    let history = snapshot.stage_history.iter().filter(|h| h.created >= since).count();
    let deals: std::collections::BTreeMap<u64, &salespulse::domain::Deal> =
        modified.iter().chain(&open).map(|d| (d.id, *d)).collect();
    let missing: std::collections::BTreeSet<u64> =
        deals.values().filter_map(|d| d.lead_id).filter(|l| !leads.contains(l)).collect();
    // Product rows: the deals the client guesses from the rows (won now, and modified, moved
    // or closed in the report's period; the generated `DATE_MODIFY` is `MOVED_TIME`), then
    // any deal won in the period by the window's stage history that the guess missed.
    let period_start = request.period_start;
    let guessed: std::collections::BTreeSet<u64> = deals
        .values()
        .filter(|d| d.stage_semantics == Semantics::Success && !d.is_recurring)
        .filter(|d| [d.moved_time, d.close_date].iter().flatten().any(|t| *t >= period_start))
        .map(|d| d.id)
        .collect();
    let window_history = snapshot.stage_history.iter().filter(|h| h.created >= since);
    let won = salespulse::domain::deals_won_in(deals.values().copied(), window_history, period_start, request.until);
    let unguessed = won.iter().filter(|id| !guessed.contains(id)).count();
    let lists = vec![
        ("crm.deal.list (modified in the window)", modified.len(), pages(modified.len())),
        ("crm.deal.list (open)", open.len(), pages(open.len())),
        ("crm.lead.list", leads.len(), pages(leads.len())),
        ("crm.activity.list (outgoing calls and e-mails)", activities, pages(activities)),
        ("crm.stagehistory.list", history, pages(history)),
    ];
    // First look: the reference lists and the five record lists probed in one batch, then
    // the rest of their pages; second look: the stages, older leads and guessed product rows.
    let after_probes: usize = lists.iter().map(|(_, _, p)| p - 1).sum::<usize>() + pages(snapshot.users.len()) - 1;
    let singles = missing.len().div_ceil(PAGE) + guessed.len() + unguessed;
    let second = snapshot.pipelines.len() + missing.len().div_ceil(PAGE) + guessed.len();
    let requests =
        1 + after_probes.div_ceil(BATCH) as u64 + second.div_ceil(BATCH) as u64 + unguessed.div_ceil(BATCH) as u64;
    Estimate { lists, singles, requests }
}

const BATCH: usize = salespulse::crm::bitrix24::BATCH_MAX;
