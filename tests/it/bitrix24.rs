//! The Bitrix24 client against the Bitrix24 emulator over real HTTP on loopback, and the
//! client's parser against responses captured from real portals.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use salespulse::config::Secret;
use salespulse::crm::bitrix24::wire::{self, Envelope, Notes};
use salespulse::crm::bitrix24::{Bitrix24Client, ClientSettings};
use salespulse::crm::emulator::{Emulator, EmulatorOptions, EmulatorStats, PortalData, Record};
use salespulse::crm::{CrmSource, FetchRequest, Scope, demo};
use salespulse::domain::{CrmSnapshot, Semantics};
use serde_json::Value;

use crate::support::crm::{fast_client, fast_portal};
use crate::support::logs;

const AS_OF: &str = "2026-11-23T08:00:00+03:00";

fn as_of() -> DateTime<chrono_tz::Tz> {
    DateTime::parse_from_rfc3339(AS_OF).unwrap().with_timezone(&chrono_tz::Europe::Moscow)
}

fn request(days: i64) -> FetchRequest {
    let until = DateTime::parse_from_rfc3339(AS_OF).unwrap();
    FetchRequest {
        since: until - chrono::Duration::days(days),
        until,
        // The whole window is the period: product rows of every deal won in it.
        period_start: until - chrono::Duration::days(days),
        scope: Scope { departments: vec![3], managers: vec![], include_subdepartments: true },
        satisfaction_field: Some("UF_CRM_CSAT".into()),
    }
}

fn at(r: &Record, field: &str) -> Option<DateTime<FixedOffset>> {
    r.get(field).and_then(Value::as_str).and_then(|s| DateTime::parse_from_rfc3339(s).ok())
}

fn id(r: &Record) -> u64 {
    r["ID"].as_str().unwrap().parse().unwrap()
}

async fn fetch(data: PortalData, options: EmulatorOptions, days: i64) -> (CrmSnapshot, u64, Emulator) {
    let emulator = Emulator::start(data, options).await.unwrap();
    let client = fast_client(&emulator.webhook_url());
    let snapshot = client.fetch(&request(days)).await.unwrap();
    (snapshot, client.requests_made(), emulator)
}

#[tokio::test]
async fn a_fetch_returns_what_the_portal_holds_for_the_window() {
    let data = demo::portal(as_of());
    let req = request(100);
    let (snap, requests, emulator) = fetch(data.clone(), fast_portal(), 100).await;
    emulator.shutdown().await;
    assert!(snap.notes.is_empty(), "the demo portal is clean: {:?}", snap.notes);

    assert_eq!(snap.users.len(), data.users.len());
    assert_eq!(snap.departments.len(), 5);
    assert_eq!(snap.pipelines.iter().map(|p| (p.id, p.name.as_str())).collect::<Vec<_>>(), [(0, "Общая"), (1, "Опт")]);
    assert_eq!(snap.stages.len(), 13);
    let won = snap.stages.iter().find(|s| s.id == "C1:WON").unwrap();
    assert_eq!((won.pipeline_id, won.semantics, won.sort), (1, Semantics::Success, 40));
    assert_eq!(snap.sources.iter().find(|s| s.id == "WEB").unwrap().name, "Веб-сайт");
    assert_eq!(snap.currencies.iter().find(|c| c.code == "USD").unwrap().rate, 92.5);
    assert_eq!(snap.base_currency(None), "RUB");
    let ivan = snap.users.iter().find(|u| u.id == 17).unwrap();
    assert_eq!((ivan.name.as_str(), ivan.departments.as_slice(), ivan.active), ("Иван Петров", &[5][..], true));

    // Deals: modified in the window or open now, computed here from the portal's own rows.
    let expected: BTreeSet<u64> = data
        .deals
        .iter()
        .filter(|d| at(d, "DATE_MODIFY").unwrap() >= req.since || d["STAGE_SEMANTIC_ID"] == "P")
        .map(id)
        .collect();
    assert_eq!(snap.deals.iter().map(|d| d.id).collect::<BTreeSet<_>>(), expected);
    assert!(expected.len() > 500, "a window of 100 days holds hundreds of deals, got {}", expected.len());

    let leads: BTreeSet<u64> = data.leads.iter().map(id).collect();
    let expected_leads: BTreeSet<u64> = data
        .leads
        .iter()
        .filter(|l| at(l, "DATE_CREATE").unwrap() >= req.since)
        .map(id)
        .chain(snap.deals.iter().filter_map(|d| d.lead_id).filter(|l| leads.contains(l)))
        .collect();
    assert_eq!(snap.leads.iter().map(|l| l.id).collect::<BTreeSet<_>>(), expected_leads);

    let expected_activities = data
        .activities
        .iter()
        .filter(|a| at(a, "CREATED").unwrap() >= req.since && a["DIRECTION"] == "2")
        .filter(|a| a["TYPE_ID"] == "2" || a["TYPE_ID"] == "4")
        .count();
    assert_eq!(snap.activities.len(), expected_activities);
    let expected_history = data.stage_history.iter().filter(|h| at(h, "CREATED_TIME").unwrap() >= req.since).count();
    assert_eq!(snap.stage_history.len(), expected_history);

    // One won deal in foreign currency, field by field.
    let row = data
        .deals
        .iter()
        .find(|d| d["STAGE_SEMANTIC_ID"] == "S" && d["CURRENCY_ID"] == "USD" && expected.contains(&id(d)))
        .unwrap();
    let deal = snap.deals.iter().find(|d| d.id == id(row)).unwrap();
    assert_eq!(deal.title, row["TITLE"].as_str().unwrap());
    assert_eq!(deal.opportunity, row["OPPORTUNITY"].as_str().unwrap().parse::<f64>().unwrap());
    assert_eq!(deal.currency, "USD");
    assert_eq!(deal.stage_semantics, Semantics::Success);
    assert_eq!(deal.satisfaction.as_deref(), row["UF_CRM_CSAT"].as_str());
    assert_eq!(deal.created, at(row, "DATE_CREATE").unwrap());
    assert_eq!(deal.moved_time, at(row, "MOVED_TIME"));
    let rows: Vec<_> = snap.product_rows.iter().filter(|p| p.deal_id == deal.id).collect();
    assert_eq!(rows.len(), data.product_rows[&deal.id].len());
    let sum: f64 = rows.iter().map(|p| p.price * p.quantity).sum();
    assert!((sum - deal.opportunity).abs() < 0.01, "product rows add up to the deal: {sum} vs {}", deal.opportunity);

    // The awkward records come through as what they are.
    let specials = demo::special_deals(&data);
    let fetched: BTreeSet<u64> = snap.deals.iter().map(|d| d.id).collect();
    if let Some(d) = specials["recurring"].iter().find(|d| fetched.contains(d)) {
        assert!(snap.deals.iter().find(|x| x.id == *d).unwrap().is_recurring);
    }
    for d in specials["won_lead_deleted"].iter().filter(|d| fetched.contains(d)) {
        let deal = snap.deals.iter().find(|x| x.id == *d).unwrap();
        assert!(!snap.leads.iter().any(|l| Some(l.id) == deal.lead_id), "a deleted lead is absent");
    }

    // Packed into batches: far fewer requests than pages.
    let pages = (expected.len() + expected_leads.len() + expected_activities + expected_history) / 50;
    assert!((requests as usize) < pages / 10, "{requests} requests for {pages} pages");
}

#[tokio::test]
async fn product_rows_come_only_for_the_deals_won_in_the_reports_period() {
    let data = demo::portal(as_of());
    let emulator = Emulator::start(data.clone(), fast_portal()).await.unwrap();
    let whole = request(100);
    let week = FetchRequest { period_start: whole.until - chrono::Duration::days(7), ..whole.clone() };
    let client = fast_client(&emulator.webhook_url());
    let all = client.fetch(&whole).await.unwrap();
    let all_requests = client.requests_made();
    let client = fast_client(&emulator.webhook_url());
    let snap = client.fetch(&week).await.unwrap();
    let week_requests = client.requests_made();
    emulator.shutdown().await;

    // docs/kpi.md's won time, worked out here from the portal's own rows: the latest entry of
    // the window's stage history into a success stage, else MOVED_TIME, else CLOSEDATE.
    let fetched: BTreeSet<u64> = snap.deals.iter().map(|d| d.id).collect();
    let won_at = |deal: &Record| {
        let entry = data
            .stage_history
            .iter()
            .filter(|h| h["OWNER_ID"].as_str() == deal["ID"].as_str() && h["STAGE_SEMANTIC_ID"] == "S")
            .filter(|h| at(h, "CREATED_TIME").unwrap() >= week.since)
            .max_by_key(|h| (at(h, "CREATED_TIME").unwrap(), id(h)));
        entry.map(|h| at(h, "CREATED_TIME").unwrap()).or(at(deal, "MOVED_TIME")).or(at(deal, "CLOSEDATE"))
    };
    let expected: BTreeSet<u64> = data
        .deals
        .iter()
        .filter(|d| fetched.contains(&id(d)) && d["STAGE_SEMANTIC_ID"] == "S" && d["IS_RECURRING"] != "Y")
        .filter(|d| won_at(d).is_some_and(|t| t >= week.period_start && t < week.until))
        .map(id)
        .filter(|d| data.product_rows.get(d).is_some_and(|rows| !rows.is_empty()))
        .collect();
    let got: BTreeSet<u64> = snap.product_rows.iter().map(|p| p.deal_id).collect();
    assert_eq!(got, expected);
    assert!(expected.len() >= 5, "a week of the demo wins several deals with products: {expected:?}");
    let won_in_window: BTreeSet<u64> = all.product_rows.iter().map(|p| p.deal_id).collect();
    assert!(won_in_window.len() > 4 * expected.len(), "{} vs {}", won_in_window.len(), expected.len());
    assert!(week_requests < all_requests, "fewer product-row calls: {week_requests} vs {all_requests}");
    // Everything else is the same snapshot.
    assert_eq!(CrmSnapshot { product_rows: Vec::new(), ..snap }, CrmSnapshot { product_rows: Vec::new(), ..all });
}

#[tokio::test]
async fn faults_of_the_portal_do_not_change_the_snapshot() {
    let data = demo::portal(as_of());
    let (clean, _, emulator) = fetch(data.clone(), fast_portal(), 40).await;
    emulator.shutdown().await;
    let faulty = EmulatorOptions {
        server_errors: 0.1,
        rate_limit_errors: 0.1,
        garbage_bodies: 0.1,
        delays: 0.05,
        delay: Duration::from_millis(1500),
        command_errors: 0.01,
        seed: 42,
        ..fast_portal()
    };
    let emulator = Emulator::start(data, faulty).await.unwrap();
    let settings = ClientSettings {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        timeout: Duration::from_millis(700),
        max_retries: 20,
        ..ClientSettings::default()
    };
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings).unwrap();
    let snapshot = client.fetch(&request(40)).await.unwrap();
    let stats = emulator.stats();
    emulator.shutdown().await;
    assert!(stats.faults >= 2, "faults were injected: {stats:?}");
    assert!(client.requests_made() > stats.requests - stats.faults, "failed requests were retried");
    assert_eq!(snapshot, clean);
}

#[tokio::test]
async fn a_wrong_webhook_code_stops_with_a_permanent_error_that_hides_the_code() {
    let emulator = Emulator::start(demo::portal(as_of()), fast_portal()).await.unwrap();
    let url = emulator.webhook_url().replace("demo-webhook-code", "wr0ng-s3cret");
    let client = fast_client(&url);
    let err = client.fetch(&request(7)).await.unwrap_err();
    emulator.shutdown().await;
    let text = err.to_string();
    assert!(!err.is_transient(), "{text}");
    assert_eq!(client.requests_made(), 1, "a permanent error is not retried");
    assert!(text.contains("user.get") && text.contains("INVALID_CREDENTIALS"), "{text}");
    assert!(text.contains("webhook"), "the message tells the admin what to fix: {text}");
    assert!(!text.contains("wr0ng-s3cret") && !format!("{err:?}").contains("wr0ng-s3cret"), "{err:?}");
    assert!(!format!("{client:?}").contains("wr0ng-s3cret"));
}

#[tokio::test]
async fn a_command_the_webhook_may_not_call_stops_the_run_and_is_named() {
    let options = EmulatorOptions { denied_methods: vec!["crm.activity.list".into()], ..fast_portal() };
    let emulator = Emulator::start(demo::portal(as_of()), options).await.unwrap();
    let client = fast_client(&emulator.webhook_url());
    let err = client.fetch(&request(7)).await.unwrap_err();
    emulator.shutdown().await;
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(text.starts_with("failed to call crm.activity.list (") && text.contains("insufficient_scope"), "{text}");
    assert!(text.contains("scope"), "the admin learns which permission to grant: {text}");
}

#[tokio::test]
async fn a_portal_that_keeps_failing_is_a_transient_error_after_the_retries() {
    let options = EmulatorOptions { server_errors: 1.0, ..fast_portal() };
    let emulator = Emulator::start(demo::portal(as_of()), options).await.unwrap();
    let settings = ClientSettings {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        timeout: Duration::from_secs(5),
        max_retries: 3,
        ..ClientSettings::default()
    };
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings).unwrap();
    let err = client.fetch(&request(7)).await.unwrap_err();
    emulator.shutdown().await;
    assert!(err.is_transient(), "{err}");
    assert_eq!(client.requests_made(), 4, "one attempt and three retries");
    assert!(err.to_string().contains("INTERNAL_SERVER_ERROR") && err.to_string().contains("4 attempts"), "{err}");
}

#[tokio::test]
async fn an_html_page_instead_of_json_is_a_permanent_error() {
    let app = axum::Router::new()
        .fallback(|| async { axum::response::Html("<!DOCTYPE html><html>Авторизация</html>") });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = fast_client(&format!("http://{addr}/rest/1/abc/"));
    let err = client.fetch(&request(7)).await.unwrap_err();
    server.abort();
    assert!(!err.is_transient());
    assert!(err.to_string().contains("HTML") && err.to_string().contains("batch"), "{err}");
}

#[tokio::test]
async fn the_portal_bucket_refuses_a_flood_and_the_client_bucket_avoids_it() {
    let options = EmulatorOptions { rate_per_sec: 20.0, burst: 10, ..EmulatorOptions::default() };
    let emulator = Emulator::start(demo::portal(as_of()), options).await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}crm.currency.list", emulator.webhook_url());
    let mut refused = 0;
    for _ in 0..30 {
        let r = http.post(&url).json(&serde_json::json!({})).send().await.unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if body["error"] == "QUERY_LIMIT_EXCEEDED" {
            assert_eq!(status, 503);
            refused += 1;
        }
    }
    assert!(refused >= 15, "a flood of 30 requests into a bucket of 10 is mostly refused ({refused})");
    tokio::time::sleep(Duration::from_millis(600)).await;

    let before = emulator.stats().rate_limited;
    let settings = ClientSettings {
        rate_per_sec: 18.0,
        burst: 9,
        timeout: Duration::from_secs(10),
        max_retries: 0,
        ..ClientSettings::default()
    };
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings).unwrap();
    for _ in 0..3 {
        client.fetch(&request(3)).await.unwrap();
    }
    assert_eq!(emulator.stats().rate_limited, before, "the client's own bucket kept it under the portal's");
    assert!(client.requests_made() > 9, "more requests than one burst went out: {}", client.requests_made());
    emulator.shutdown().await;
}

#[test]
fn the_demo_portal_is_the_same_for_the_same_instant() {
    assert_eq!(demo::portal(as_of()), demo::portal(as_of()));
}

/// Every response captured from real portals decodes without loss.
#[test]
fn every_captured_real_response_parses() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bitrix24-real-responses");
    let mut seen = 0;
    let mut full_leads = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        seen += 1;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let envelopes: Vec<Value> = match json {
            Value::Array(pages) => pages,
            Value::Object(ref m) if m.contains_key("response") => vec![m["response"].clone()],
            other => vec![other],
        };
        for env in envelopes {
            let Envelope::Success { result, total, .. } = wire::decode_envelope(&env).unwrap() else {
                panic!("{name}: captured answers are successes");
            };
            let is_batch = result.get("result_error").is_some();
            let mut notes = Vec::new();
            if is_batch {
                let batch = wire::decode_batch(&result).unwrap_or_else(|e| panic!("{name}: {e}"));
                let raw = &result["result"];
                let count = match raw {
                    Value::Object(m) => m.len(),
                    Value::Array(a) => a.len(),
                    _ => 0,
                };
                assert_eq!(batch.results.len(), count, "{name}: every command's result is kept");
                for (key, value) in &batch.results {
                    if name.starts_with("crm_stagehistory") {
                        let rows = wire::rows(value).unwrap();
                        assert_eq!(rows.len() as u64, batch.totals[key], "{name}");
                        let parsed: Vec<_> = rows
                            .iter()
                            .filter_map(|r| wire::stage_change(r, |_| None, &mut Notes { notes: &mut notes }))
                            .collect();
                        assert_eq!(parsed.len(), rows.len(), "{name}: {notes:?}");
                    }
                    if name.starts_with("crm_lead_list") {
                        full_leads += leads_of(&name, &maps(&wire::rows(value).unwrap()));
                    }
                    if name == "call_single_success.json" {
                        // crm.lead.get: one lead with every field, as the portal stores it.
                        full_leads += leads_of(&name, &[value.as_object().unwrap().clone()]);
                    }
                    if name.starts_with("crm_item_productrow") {
                        let rows = wire::rows(value).unwrap();
                        let parsed: Vec<_> = rows
                            .iter()
                            .filter_map(|r| wire::product_row(1, r, &mut Notes { notes: &mut notes }))
                            .collect();
                        assert_eq!(parsed.len(), 2, "{name}: {notes:?}");
                        assert!(
                            parsed.iter().all(|p| p.quantity > 0.0 && p.product_id > 0 && !p.name.is_empty()),
                            "{parsed:?}"
                        );
                    }
                }
                if name == "crm_get_batch_mix_success_and_errors.json" {
                    assert_eq!(batch.errors.keys().collect::<Vec<_>>(), ["0", "1"]);
                    assert_eq!(batch.errors["1"].code, "");
                    assert_eq!(batch.errors["1"].description, "Not found");
                }
                if name == "batch_list_empty.json" {
                    assert_eq!(batch.totals["order0000000000"], 0);
                    assert!(wire::rows(&batch.results["order0000000000"]).unwrap().is_empty());
                }
                continue;
            }
            let rows = wire::rows(&result);
            if name.starts_with("crm_lead_list") {
                let rows = rows.unwrap();
                full_leads += leads_of(&name, &maps(&rows));
                assert!(total.unwrap() >= rows.len() as u64);
            } else if name == "stagehistory.json" {
                let rows = rows.unwrap();
                let changes: Vec<_> = rows
                    .iter()
                    .filter_map(|r| wire::stage_change(r, |_| None, &mut Notes { notes: &mut notes }))
                    .collect();
                assert_eq!(changes.len(), rows.len(), "{name}: {notes:?}");
                assert_eq!(total, Some(490));
            } else if name == "crm_category_list.json" {
                let rows = rows.unwrap();
                let pipelines: Vec<_> =
                    rows.iter().filter_map(|r| wire::pipeline(r, &mut Notes { notes: &mut notes })).collect();
                assert_eq!(pipelines.len(), 52);
                assert_eq!(pipelines[1].name, "Закупки");
            }
            assert!(notes.is_empty(), "{name}: {notes:?}");
        }
    }
    assert_eq!(seen, 19, "all captured files were read");
    assert!(full_leads >= 1, "the lead with every field became a lead ({full_leads})");
}

/// Packed rows as maps again.
fn maps(rows: &[wire::WireRow]) -> Vec<Record> {
    rows.iter().map(wire::WireRow::to_map).collect()
}

/// Lead rows into `domain::Lead`: rows served with the fields a lead needs all convert
/// without a note; rows selected down to `ID, TITLE` keep their id. Returns the leads made.
fn leads_of(name: &str, rows: &[Record]) -> usize {
    let mut made = 0;
    for row in rows {
        let mut notes = Vec::new();
        if row.contains_key("DATE_CREATE") {
            let lead = wire::lead(&wire::WireRow::from_map(row), &mut Notes { notes: &mut notes })
                .unwrap_or_else(|| panic!("{name}: {notes:?}"));
            assert!(notes.is_empty(), "{name}: {notes:?}");
            assert_eq!(lead.id.to_string(), row["ID"].as_str().unwrap());
            assert_eq!(lead.created, at(row, "DATE_CREATE").unwrap());
            made += 1;
        } else {
            assert!(wire::Row::new(&wire::WireRow::from_map(row)).id(&["ID"]).unwrap().is_some(), "{name}: {row:?}");
        }
    }
    made
}

#[tokio::test]
async fn fifteen_months_at_the_portals_own_pace_never_hit_its_limit() {
    let data = demo::portal(as_of());
    let emulator = Emulator::start(data, EmulatorOptions::default()).await.unwrap();
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), ClientSettings::default()).unwrap();
    let started = std::time::Instant::now();
    let snapshot = client.fetch(&request(440)).await.unwrap();
    let stats = emulator.stats();
    emulator.shutdown().await;
    eprintln!(
        "{} requests, {} commands, {} activities, {:?} (server {:?})",
        client.requests_made(),
        stats.commands,
        snapshot.activities.len(),
        started.elapsed(),
        stats.server_time
    );
    assert_eq!(stats.rate_limited, 0);
    // Packed 50 commands a batch, with a few partly filled batches where lists end.
    let requests = client.requests_made();
    assert!(requests <= stats.commands.div_ceil(50) + 6, "{requests} requests for {} commands", stats.commands);
    assert!(snapshot.activities.len() > 10_000);
}

/// A portal whose methods may run 350 ms within 2 s, each call costing 100 ms.
fn tight_operating_limit() -> EmulatorOptions {
    EmulatorOptions {
        operating_limit: Some(Duration::from_millis(350)),
        operating_window: Duration::from_secs(2),
        operating_cost_per_command: Duration::from_millis(100),
        ..fast_portal()
    }
}

async fn post(url: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new().post(url).json(&body).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn a_method_over_its_operating_time_is_refused_until_its_oldest_basket_drops_out() {
    let emulator = Emulator::start(demo::portal(as_of()), tight_operating_limit()).await.unwrap();
    let deals = format!("{}crm.deal.list", emulator.webhook_url());
    let leads = format!("{}crm.lead.list", emulator.webhook_url());
    let mut used = Vec::new();
    let mut resets_in = 0.0;
    // 3 calls use 300 ms (under 350), the 4th crosses the limit and is still served.
    for _ in 0..4 {
        let (status, body) = post(&deals, serde_json::json!({"start": -1})).await;
        assert_eq!(status, 200, "{body}");
        let time = &body["time"];
        used.push(time["operating"].as_f64().unwrap());
        resets_in = time["operating_reset_at"].as_f64().unwrap() - time["finish"].as_f64().unwrap();
        assert!(time["operating_reset_at"].is_u64(), "a unix time in whole seconds: {time}");
    }
    assert!(used.windows(2).all(|w| w[1] - w[0] >= 0.099), "each call adds its 100 ms: {used:?}");
    assert!(used[3] > 0.35, "{used:?}");
    assert!((0.0..=3.0).contains(&resets_in), "the oldest basket drops out within the 2 s window: {resets_in}");

    let (status, body) = post(&deals, serde_json::json!({"start": -1})).await;
    assert_eq!(status, 429);
    assert_eq!(
        body,
        serde_json::json!({"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."})
    );
    let (status, body) = post(&leads, serde_json::json!({"start": -1})).await;
    assert_eq!(status, 200, "another method is not blocked: {body}");

    // Inside a batch the refusal is the command's own; the batch and other methods are served.
    let batch = format!("{}batch", emulator.webhook_url());
    let cmd = serde_json::json!({"deals": "crm.deal.list?start=-1", "leads": "crm.lead.list?start=-1"});
    let (status, body) = post(&batch, serde_json::json!({"halt": 0, "cmd": cmd})).await;
    assert_eq!(status, 200, "{body}");
    let r = &body["result"];
    assert_eq!(
        r["result_error"],
        serde_json::json!({"deals": {"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked due to operation time limit."}})
    );
    assert_eq!(r["result"]["leads"].as_array().unwrap().len(), 50);
    let lead_time = &r["result_time"]["leads"];
    assert!(lead_time["operating"].as_f64().unwrap() >= 0.2, "the lead list's own sum: {lead_time}");
    assert_eq!(body["time"]["operating"], 0.0, "the outer batch is not accounted");
    assert_eq!(emulator.stats().operation_limited, 2);

    // At `operating_reset_at` the basket holding all four calls drops out.
    tokio::time::sleep(Duration::from_secs_f64(resets_in + 0.05)).await;
    let (status, body) = post(&deals, serde_json::json!({"start": -1})).await;
    assert_eq!(status, 200, "served again after the reset: {body}");
    assert!(body["time"]["operating"].as_f64().unwrap() < 0.2, "only this call is left: {}", body["time"]);
    assert_eq!(emulator.stats().operation_limited, 2);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_tiny_operating_limit_slows_the_fetch_but_does_not_change_its_snapshot() {
    let data = demo::portal(as_of());
    let (unlimited, _, emulator) = fetch(data.clone(), fast_portal(), 40).await;
    emulator.shutdown().await;

    // Every method may run 1 s within 2 s, and each command costs 20 ms: the deal,
    // activity and history lists need several windows.
    let limit = Duration::from_secs(1);
    let options = EmulatorOptions {
        operating_limit: Some(limit),
        operating_window: Duration::from_secs(2),
        operating_cost_per_command: Duration::from_millis(20),
        ..fast_portal()
    };
    let client_knowing = ClientSettings {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        timeout: Duration::from_secs(10),
        operating_limit: limit,
        ..ClientSettings::default()
    };
    let logs = logs::capture();
    let (snapshot, stats, took) = fetch_under(data.clone(), options.clone(), client_knowing.clone()).await;
    assert_eq!(snapshot, unlimited);
    assert!(took >= Duration::from_secs(2), "the client waited for resets: {took:?}");
    assert!(logs.count(WAITING_FOR_RESET) > 0, "the client says when it waits for a reset:\n{}", logs.text());
    drop(logs);
    // The client plans each batch under the limit from the cost per call it has seen, so
    // the portal does not need to refuse it.
    assert_eq!(stats.operation_limited, 0, "{stats:?}");

    // A client that believes the cloud's 480 s is refused, and recovers: it keeps the pages
    // answered before a refusal and asks for the rest after the reset the portal announced.
    let client_unaware = ClientSettings { operating_limit: Duration::from_secs(480), ..client_knowing };
    let (snapshot, stats, _) = fetch_under(data, options, client_unaware).await;
    assert_eq!(snapshot, unlimited);
    assert!(stats.operation_limited > 0, "{stats:?}");
}

async fn fetch_under(
    data: PortalData,
    options: EmulatorOptions,
    settings: ClientSettings,
) -> (CrmSnapshot, EmulatorStats, Duration) {
    let emulator = Emulator::start(data, options).await.unwrap();
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings).unwrap();
    let started = std::time::Instant::now();
    let snapshot = client.fetch(&request(40)).await.unwrap();
    let took = started.elapsed();
    let stats = emulator.stats();
    emulator.shutdown().await;
    eprintln!("{stats:?}, {} requests, {took:?}", client.requests_made());
    (snapshot, stats, took)
}

/// What the client logs before each wait for a method's operating-time reset: the tests
/// count these waits rather than time the fetch.
const WAITING_FOR_RESET: &str = "waiting for its reset";

/// Counted, not timed (a busy machine makes any fetch slow): the client logs no wait for a
/// reset, and its error says the reset is further away than a run waits.
#[tokio::test]
async fn a_reset_further_away_than_a_run_waits_is_a_transient_error_naming_the_method() {
    let limit = Duration::from_secs(1);
    let options = EmulatorOptions {
        operating_limit: Some(limit),
        operating_window: Duration::from_secs(30),
        operating_cost_per_command: Duration::from_millis(20),
        ..fast_portal()
    };
    let emulator = Emulator::start(demo::portal(as_of()), options).await.unwrap();
    let settings = ClientSettings {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        operating_limit: limit,
        max_operating_wait: Duration::from_secs(5),
        ..ClientSettings::default()
    };
    let client = Bitrix24Client::new(&Secret::new(emulator.webhook_url()), settings).unwrap();
    let logs = logs::capture();
    let err = client.fetch(&request(40)).await.unwrap_err();
    emulator.shutdown().await;
    assert_eq!(logs.count(WAITING_FOR_RESET), 0, "it did not wait for a reset 30 s away:\n{}", logs.text());
    assert!(err.is_transient(), "{err}");
    let text = err.to_string();
    assert!(text.contains("failed to call crm.") && text.contains("operating-time limit"), "{text}");
    let frees_up_in: u64 = text
        .split("frees up in ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|secs| secs.parse().ok())
        .unwrap_or_else(|| panic!("the error says when the method frees up: {text}"));
    assert!(
        (5..=30).contains(&frees_up_in) && text.contains("longer than a run waits (5 s)"),
        "the reset lies within the 30 s window, beyond the 5 s a run waits: {text}"
    );
    assert!(!text.contains("demo-webhook-code"), "{text}");
}
