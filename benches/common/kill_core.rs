//! Exactly once under SIGKILL (issue 10, point 8): the real binary's `send` to a real SMTP
//! server (STARTTLS, AUTH), killed at random points of its delivery again and again, then
//! run to the end; every ledger row must end `sent`, every recipient must have their
//! report, and no recipient may get two different messages. The same message twice (same
//! Message-ID, same PDF) is what the documented window between the server's 250 and the
//! ledger's `sent` allows; this counts how often it happens.
//!
//! A round is one delivery of one job and period from a fresh state directory: `send` is
//! started, and once it has reached the SMTP server (its first connection: rendering is
//! over, the rows are recorded) it is killed after a random delay drawn uniformly from
//! `[0, delivery)`, where `delivery` is how long an uninterrupted run's SMTP phase takes
//! (measured first). A `send` that finishes before its kill ends the round. Rounds go on
//! until `kills` kills were made.
//!
//! The SMTP server is the integration tests' (`tests/it/support/smtp.rs`), started here;
//! the binary is the caller's `CARGO_BIN_EXE_salespulse`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use salespulse::store::{DeliveryState, Store};

// The integration tests, which include this file through `bench_smoke.rs`, also load the
// server as `support::smtp`: two copies of one module, each used on its own.
#[allow(clippy::duplicate_mod)]
#[path = "../../tests/it/support/smtp.rs"]
mod smtp;

use smtp::{SmtpOptions, TestSmtp};

/// The admin's address in the test server's `[mail]` section: digests, not reports.
pub const ADMIN: &str = "it@example.ru";

/// What to run.
pub struct Options {
    pub bin: PathBuf,
    /// Working directory; each round gets `round-N/` under it.
    pub dir: PathBuf,
    pub kills: usize,
    pub seed: u64,
    /// The job and period `send` delivers (the demo portal's).
    pub job: String,
    pub period: String,
}

/// What happened.
#[derive(Debug, Default)]
pub struct Figures {
    pub kills: usize,
    pub rounds: usize,
    /// `send` processes started (kills + those that finished).
    pub processes: usize,
    /// Ledger rows over all rounds: one per recipient and round.
    pub reports: usize,
    /// Messages to recipients the server accepted.
    pub messages: usize,
    /// Extra copies of a message a recipient already had (same Message-ID and PDF).
    pub duplicates: usize,
    /// Rounds with at least one duplicate.
    pub rounds_with_duplicates: usize,
    /// Recipients who got two different messages in one round. Must be 0.
    pub different: usize,
    /// Recipients without any message at the end of a round. Must be 0.
    pub missing: usize,
    /// Rows not `sent` at the end of a round. Must be 0.
    pub unsent: usize,
    /// Rounds with a duplicate whose admin got no digest. Must be 0.
    pub duplicates_untold: usize,
    /// An uninterrupted `send`'s SMTP phase: the range kill delays are drawn from.
    pub delivery: Duration,
    /// Kill delays actually used.
    pub kill_delays: Vec<Duration>,
    pub wall: Duration,
}

impl Figures {
    /// Whether every report arrived exactly once, except for same-message duplicates the
    /// admin was told about.
    pub fn invariant_holds(&self) -> bool {
        self.different == 0 && self.missing == 0 && self.unsent == 0 && self.duplicates_untold == 0
    }
}

/// Starts the SMTP test server and runs rounds until `options.kills` kills were made.
pub fn run(options: &Options) -> Figures {
    let server = &TestSmtp::start(SmtpOptions::default());
    let started = Instant::now();
    let mut figures = Figures::default();
    let mut rng = fastrand::Rng::with_seed(options.seed);
    // The SMTP phase of an uninterrupted run, in a round of its own.
    let calibration = prepare(server, options, "calibration");
    let seen = server.received().len();
    let (status, delivery) = send_once(server, options, &calibration, None);
    assert!(status, "an uninterrupted send succeeds");
    figures.delivery = delivery.expect("the send reached the SMTP server");
    check_round(server, &calibration, options, seen, &mut figures);
    let mut round = 0;
    while figures.kills < options.kills {
        round += 1;
        let config = prepare(server, options, &format!("round-{round}"));
        let seen = server.received().len();
        loop {
            let want_kill = figures.kills < options.kills;
            let delay = want_kill.then(|| figures.delivery.mul_f64(rng.f64()));
            let (finished, _) = send_once(server, options, &config, delay);
            figures.processes += 1;
            if finished {
                break;
            }
            figures.kills += 1;
            figures.kill_delays.extend(delay);
        }
        figures.rounds += 1;
        check_round(server, &config, options, seen, &mut figures);
    }
    figures.wall = started.elapsed();
    figures
}

/// A fresh state directory and its config; returns the config's path.
fn prepare(server: &TestSmtp, options: &Options, name: &str) -> PathBuf {
    let dir = options.dir.join(name);
    std::fs::create_dir_all(&dir).expect("a round directory");
    let text = format!(
        "timezone = \"Europe/Moscow\"\nstate_dir = \"{state}\"\n\n[crm]\nsource = \"demo\"\ndepartments = [3]\n\n\
         {mail}\n[daemon]\n# Every kill counts as an attempt; the harness kills more often than any\n\
         # real process dies.\nmax_attempts = 100\nretry_initial_secs = 0\nretry_max_secs = 0\n\n\
         [[job]]\nname = \"{job}\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\nperiod = \"previous-week\"\n",
        state = dir.join("state").display(),
        mail = server.mail_toml(),
        job = options.job,
    );
    let path = dir.join("salespulse.toml");
    std::fs::write(&path, text).expect("the round's config");
    path
}

/// Starts `send`; with `kill_after`, SIGKILLs it that long after it first reached the SMTP
/// server. Returns whether it finished by itself (successfully), and how long after first
/// reaching the server it ended.
fn send_once(
    server: &TestSmtp,
    options: &Options,
    config: &Path,
    kill_after: Option<Duration>,
) -> (bool, Option<Duration>) {
    let connections = server.connections();
    let mut child = Command::new(&options.bin)
        .arg("--config")
        .arg(config)
        .args(["send", &options.job, "--period", &options.period])
        .env("SALESPULSE_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut reached: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().expect("wait for send") {
            return (status.success(), reached.map(|r| r.elapsed()));
        }
        if reached.is_none() && server.connections() > connections {
            reached = Some(Instant::now());
        }
        if let (Some(at), Some(after)) = (reached, kill_after)
            && at.elapsed() >= after
        {
            child.kill().expect("SIGKILL"); // no destructor, no ledger update runs
            child.wait().expect("reap the killed send");
            return (false, Some(at.elapsed()));
        }
        assert!(Instant::now() < deadline, "send did not finish within 10 minutes");
        // A short poll so that kill delays near zero land where they were drawn.
        std::thread::sleep(Duration::from_micros(50));
    }
}

/// The Message-ID header of a raw message.
fn message_id(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    text.lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("message-id").then(|| value.trim().to_owned())
        })
        .unwrap_or_default()
}

/// The first attachment's bytes.
fn attachment(raw: &[u8]) -> Vec<u8> {
    mail_parser::MessageParser::default()
        .parse(raw)
        .and_then(|m| m.attachment(0).map(|a| a.contents().to_vec()))
        .unwrap_or_default()
}

/// Checks one finished round against the ledger and the server's mail since `seen`.
fn check_round(server: &TestSmtp, config: &Path, options: &Options, seen: usize, figures: &mut Figures) {
    let state = config.parent().expect("the round dir").join("state");
    let store = Store::open(&state).expect("the round's ledger opens");
    let rows = store.deliveries(&options.job, &options.period).expect("the ledger reads");
    let received = server.received();
    let mut by_recipient: BTreeMap<String, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let mut admin = 0;
    for smtp::Received { to, data: raw, .. } in &received[seen..] {
        if to.iter().any(|t| t == ADMIN) {
            admin += 1;
            continue;
        }
        figures.messages += 1;
        for t in to {
            by_recipient.entry(t.clone()).or_default().push((message_id(raw), attachment(raw)));
        }
    }
    let mut duplicates = 0;
    for row in &rows {
        figures.reports += 1;
        if row.state != DeliveryState::Sent {
            figures.unsent += 1;
        }
        let Some(address) = row.to.first() else { continue };
        let Some(got) = by_recipient.get(address) else {
            figures.missing += 1;
            continue;
        };
        if got.iter().any(|m| m != &got[0]) {
            figures.different += 1;
        }
        duplicates += got.len() - 1;
    }
    figures.duplicates += duplicates;
    if duplicates > 0 {
        figures.rounds_with_duplicates += 1;
        if admin == 0 {
            figures.duplicates_untold += 1;
        }
    }
}

/// How long the ledger's writes around an SMTP transaction take, `rows` times each, on a
/// fresh ledger in `dir`: the claim and the attempt count before the transaction
/// (`synchronous = FULL`: on disk before the transaction starts), and `mark_sent` after the
/// 250 (the write inside the window; `NORMAL`, no fsync).
pub fn ledger_writes(dir: &Path, rows: usize) -> (Vec<Duration>, Vec<Duration>) {
    use salespulse::store::{DeliveryKey, NewDelivery};
    let store = Store::open(dir).expect("a fresh ledger");
    let to = vec!["m@example.ru".to_owned()];
    let (mut before, mut after) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    for i in 0..rows {
        let key = DeliveryKey::email("bench", "2026-W47", &format!("r{i}"));
        let new = NewDelivery {
            key: key.clone(),
            recipient_name: "M",
            to: &to,
            file_name: "x.pdf",
            pdf: b"%PDF-1.7",
            json: "{}",
        };
        store.record(&new, false).expect("record");
        let t = Instant::now();
        store.claim(&key, &[DeliveryState::Rendered]).expect("claim").expect("claimed");
        store.start_attempt(&key, "<id@example.ru>").expect("start attempt");
        before.push(t.elapsed());
        let t = Instant::now();
        store.mark_sent(&key, None).expect("mark sent");
        after.push(t.elapsed());
    }
    before.sort();
    after.sort();
    (before, after)
}
