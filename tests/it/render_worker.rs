//! Rendering in worker processes (`salespulse render-worker`), as the daemon does: the same
//! PDF as rendering in-process, a template error told with its line and column, a worker
//! killed mid-job costing only its report (retried by the daemon), stop signals ignored, a
//! worker that cannot start meaning in-process rendering, and the real daemon sending a
//! job's scorecards with no worker left behind once the job is done.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use salespulse::chart::{self, Chart};
use salespulse::config::{Config, ReportKind};
use salespulse::kpi::ReportData;
use salespulse::pipeline::{RenderRequest, ReportBuilder};
use salespulse::render::{RenderError, Renderer, Template};
use salespulse::render_worker::{Rendered, Worker};

use crate::support::bin::BIN;
use crate::support::delivery::{binary_config, week47, weekly};
use crate::support::fixtures;
use crate::support::smtp::{SmtpOptions, TestSmtp};

fn scorecard() -> (ReportData, Vec<Chart>) {
    let mut data = fixtures::manager_report();
    let charts = chart::manager_charts(&data).expect("manager charts");
    chart::attach(&mut data, &charts);
    (data, charts)
}

/// A worker of the real binary that has rendered one report, and its process id.
fn warm_worker(template: &Template, data: &ReportData, charts: &[Chart]) -> (Worker, u32) {
    let mut worker = Worker::start(Path::new(BIN)).expect("the worker starts");
    pdf(worker.render(template, data, charts));
    let pid = worker.pid().expect("a running worker");
    (worker, pid)
}

fn kill(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").arg(signal).arg(pid.to_string()).status().unwrap();
    assert!(status.success());
}

fn pdf(rendered: Rendered) -> Vec<u8> {
    match rendered {
        Rendered::Pdf(pdf) => pdf,
        Rendered::Failed(e) => panic!("the worker failed: {e}"),
        Rendered::Panicked(message) => panic!("the worker panicked: {message}"),
    }
}

#[test]
fn a_worker_renders_byte_for_byte_what_this_process_renders_and_a_template_error_keeps_its_position() {
    let (data, charts) = scorecard();
    let template = Template::builtin(ReportKind::Manager);
    let here = Renderer::new().render(&template, &data, &charts).expect("renders in-process");

    let mut worker = Worker::start(Path::new(BIN)).expect("the worker starts");
    let first = pdf(worker.render(&template, &data, &charts));
    assert_eq!(first, here, "the worker's PDF differs from the in-process one");
    // The same worker, the next report: the same bytes again (its caches emptied between).
    assert_eq!(pdf(worker.render(&template, &data, &charts)), here);

    let broken = Template {
        name: "/etc/salespulse/broken.typ".into(),
        source: "#let data = json(\"/data.json\")\nHello\n#text(size: 9pt, data.no_such_key)\n".into(),
    };
    match worker.render(&broken, &data, &charts) {
        Rendered::Failed(RenderError::Template { template, line, column, message }) => {
            assert_eq!(template, "/etc/salespulse/broken.typ");
            // Typst points at the missing field's name.
            let column_of_key = "#text(size: 9pt, data.no_such_key)".find("no_such_key").unwrap() + 1;
            assert_eq!((line, column), (3, column_of_key), "{message}");
            assert!(message.contains("no_such_key"), "{message}");
        }
        Rendered::Failed(other) => panic!("not a template error: {other}"),
        Rendered::Pdf(_) => panic!("a broken template rendered"),
        Rendered::Panicked(message) => panic!("the worker panicked: {message}"),
    }
    // The worker lives on after a report's error.
    assert_eq!(pdf(worker.render(&template, &data, &charts)), here);

    // CRM strings that look like Typst, JSON or a frame stay data across the pipe.
    let mut hostile = data.clone();
    // (Control characters never get this far: the wire strips them.)
    let name = "#set page(width: 1pt) \\\" ] } {\"id\": 1} Bcc: x@evil.example 😀😀😀";
    if let Some(manager) = hostile.manager.as_mut() {
        manager.name = name.into();
    }
    for deal in &mut hostile.stuck_deals {
        deal.title = format!("{name} {}", "\u{202E}".repeat(3));
    }
    let here = Renderer::new().render(&template, &hostile, &charts).expect("renders in-process");
    assert_eq!(pdf(worker.render(&template, &hostile, &charts)), here);
}

#[test]
fn a_worker_killed_mid_job_fails_only_the_report_it_had_and_the_next_one_gets_a_new_worker() {
    let (data, charts) = scorecard();
    let template = Template::builtin(ReportKind::Manager);
    let (mut worker, pid) = warm_worker(&template, &data, &charts);
    kill(pid, "-KILL");
    match worker.render(&template, &data, &charts) {
        Rendered::Failed(RenderError::Worker { template, message, killed }) => {
            assert_eq!(template, "builtin:manager.typ");
            assert!(message.contains("signal: 9"), "{message}");
            assert!(killed, "a SIGKILL is what the daemon retries: {message}");
        }
        Rendered::Failed(other) => panic!("not a worker error: {other}"),
        Rendered::Pdf(_) => panic!("a killed worker rendered"),
        Rendered::Panicked(message) => panic!("a panic instead of a dead worker: {message}"),
    }
    let again = pdf(worker.render(&template, &data, &charts));
    assert!(again.starts_with(b"%PDF"));
    assert_ne!(worker.pid(), Some(pid), "the same process again");
}

#[test]
fn a_worker_outlives_sigterm_so_a_stopping_daemon_can_finish_its_job() {
    let (data, charts) = scorecard();
    let template = Template::builtin(ReportKind::Manager);
    let (mut worker, pid) = warm_worker(&template, &data, &charts);
    for signal in ["-TERM", "-INT", "-HUP"] {
        kill(pid, signal);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(pdf(worker.render(&template, &data, &charts)).starts_with(b"%PDF"));
    assert_eq!(worker.pid(), Some(pid), "the worker was restarted: the signals killed it");
}

#[test]
fn a_worker_inherits_no_more_of_the_environment_than_logging_and_the_loader_need() {
    // cargo sets these for the test process; a secret given through `*_env` is one more.
    assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some(), "run under cargo test");
    let worker = Worker::start(Path::new(BIN)).expect("the worker starts");
    let pid = worker.pid().expect("a running worker");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).split('=').next().unwrap_or("").to_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with("CARGO")), "{names:?}");
    assert!(!names.iter().any(|n| n == "PATH" || n == "HOME"), "{names:?}");
}

#[test]
fn a_worker_that_cannot_start_is_an_error_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let Err(e) = Worker::start(&dir.path().join("no-such-salespulse")) else { panic!("a missing binary started") };
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_cannot_start_a_worker_renders_in_its_own_process() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::embedded();
    config.state_dir = dir.path().join("state");
    let config = Arc::new(config);
    let job = weekly(&config);
    let period = week47();
    let slot = period.end();
    let request = RenderRequest::default();
    let here = ReportBuilder::new(config.clone()).render_job(&job, &period, slot, &request).await.unwrap();
    let fallback = ReportBuilder::new(config.clone())
        .with_render_workers(dir.path().join("no-such-salespulse"))
        .render_job(&job, &period, slot, &request)
        .await
        .expect("rendered in-process when no worker starts");
    assert_eq!(fallback.len(), here.len());
    assert!(!here.is_empty());
    for (a, b) in fallback.iter().zip(&here) {
        assert_eq!(a.recipient_key, b.recipient_key);
        assert!(a.pdf == b.pdf, "{}'s PDF differs", a.recipient_key);
    }
    // And with the real binary's workers: the same PDFs again.
    let workers = ReportBuilder::new(config)
        .with_render_workers(BIN.into())
        .render_job(&job, &period, slot, &request)
        .await
        .expect("rendered in workers");
    for (a, b) in workers.iter().zip(&here) {
        assert!(a.pdf == b.pdf, "{}'s PDF from a worker differs", a.recipient_key);
    }
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // pid (comm) state ppid ...: comm may hold spaces and parentheses.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        if after.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            found.push(child);
        }
    }
    found
}

#[test]
fn the_daemon_renders_in_workers_and_none_is_left_once_the_job_is_sent() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&smtp, dir.path());
    // Every minute: the slot of the minute the daemon starts in is caught up at once.
    let text =
        std::fs::read_to_string(&config).unwrap().replace("schedule = \"0 8 * * MON\"", "schedule = \"* * * * *\"");
    assert!(text.contains("* * * * *"));
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("daemon.log");
    let mut daemon = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .arg("run")
        .env("SALESPULSE_LOG", "info,salespulse::render_worker=debug")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();

    // The demo's eight managers, each their scorecard with its PDF.
    let sent = smtp.wait_received(8, Duration::from_secs(120));
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(sent, "8 scorecards were not sent; the daemon logged:\n{}", logged());
    for message in smtp.received().iter().take(8) {
        assert!(message.text().contains("application/pdf"), "no PDF in:\n{}", message.text());
    }
    // The workers leave with the job: the daemon has no child process once it is done.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !children(daemon.id()).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let left = children(daemon.id());
    let _ = daemon.kill();
    let _ = daemon.wait();
    assert!(left.is_empty(), "render workers left behind: {left:?}; the daemon logged:\n{}", logged());
    let logged = logged();
    assert!(logged.contains("Render worker started."), "no render worker was started:\n{logged}");
    assert!(!logged.contains("Failed to start a render worker"), "{logged}");
    assert!(!logged.contains("render worker failed"), "{logged}");
}
