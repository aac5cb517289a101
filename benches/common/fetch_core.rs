//! The fetch benchmark's core: serve a generated portal from the Bitrix24 emulator on
//! loopback and fetch what a job of the demo config needs through the real client,
//! counting requests, wall time and the emulator's own time.

use std::time::{Duration, Instant};

use salespulse::config::{Config, ReportKind, Secret};
use salespulse::crm::bitrix24::{Bitrix24Client, ClientSettings};
use salespulse::crm::emulator::{Emulator, EmulatorOptions, EmulatorStats, PortalData};
use salespulse::crm::{CrmError, CrmSource, FetchRequest};
use salespulse::domain::{CrmSnapshot, Period};

use super::synth;

pub struct FetchRun {
    pub wall: Duration,
    /// HTTP requests the client sent, retries included.
    pub client_requests: u64,
    pub emulator: EmulatorStats,
    pub snapshot: CrmSnapshot,
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

/// One full fetch through the client from a fresh emulator.
pub async fn run(
    portal: PortalData,
    options: EmulatorOptions,
    settings: ClientSettings,
    request: &FetchRequest,
) -> Result<FetchRun, CrmError> {
    let emulator = serve(portal, options).await;
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings)?;
    let t = Instant::now();
    let snapshot = client.fetch(request).await;
    let wall = t.elapsed();
    let emulator_stats = emulator.stats();
    let client_requests = client.requests_made();
    emulator.shutdown().await;
    Ok(FetchRun { wall, client_requests, emulator: emulator_stats, snapshot: snapshot? })
}

/// What a first full fetch of `snapshot` (as a portal) must transfer, counted from the
/// records themselves with the client's filters and packing, without any HTTP: pages per
/// list and the `batch` requests they need. For portals too big to fetch here.
#[derive(Clone, Debug, PartialEq)]
pub struct Estimate {
    /// (list, rows, pages of 50).
    pub lists: Vec<(&'static str, usize, usize)>,
    /// Single-command calls after the lists: lead look-ups by `@ID` and product rows of won deals.
    pub singles: usize,
    pub requests: u64,
}

/// The client's request count for `snapshot` as the portal: reference lists (2 requests:
/// probes, then the rest of `user.get`), one round of probes for the stage lists and the
/// five record lists, then their remaining pages packed 50 to a `batch`, then the
/// single-command calls packed the same way.
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
    let won = deals.values().filter(|d| d.stage_semantics == Semantics::Success && !d.is_recurring).count();
    let lists = vec![
        ("crm.deal.list (modified in the window)", modified.len(), pages(modified.len())),
        ("crm.deal.list (open)", open.len(), pages(open.len())),
        ("crm.lead.list", leads.len(), pages(leads.len())),
        ("crm.activity.list (outgoing calls and e-mails)", activities, pages(activities)),
        ("crm.stagehistory.list", history, pages(history)),
    ];
    let after_probes: usize = lists.iter().map(|(_, _, p)| p - 1).sum();
    let singles = missing.len().div_ceil(PAGE) + won;
    let users_pages = pages(snapshot.users.len());
    let reference = 1 + u64::from(users_pages > 1);
    let requests = reference + 1 + after_probes.div_ceil(BATCH) as u64 + singles.div_ceil(BATCH) as u64;
    Estimate { lists, singles, requests }
}

const BATCH: usize = salespulse::crm::bitrix24::BATCH_MAX;
