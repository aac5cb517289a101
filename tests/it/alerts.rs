//! Alerts as an admin and a manager see them, on the demo portal: `salespulse alert NAME
//! --at` (what would go to whom; nothing sent), and the daemon over the real pipeline with
//! a `FixedClock` sending Wednesday's pace alert to exactly the managers behind pace (who
//! they are is worked out here from the portal's own records, not by salespulse), once,
//! and not again after a restart; a send cut short by a crash is sent again once, as it
//! was. The whole issue in one daemon: Wednesday's alert by e-mail and into the managers'
//! Bitrix24 dialogs, Monday's scorecards by e-mail and into the messenger with the PDF. The
//! rules' arithmetic by hand: `src/alert/rules.rs`; config mistakes: `src/config/tests.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use salespulse::config::Config;
use salespulse::daemon::{self, RunOptions};
use salespulse::pipeline::PipelineRunner;
use salespulse::schedule::{Clock, FixedClock};
use salespulse::store::{AlertSendKey, DeliveryState, NewAlertSend, Store};

use crate::support::bin::{ok, run};
use crate::support::smtp::{Received, SmtpOptions, TestSmtp};

const HEAD: &str = "head-of-sales@example.ru";

/// Wednesday 25 November 2026, 12:00 Moscow time.
const SLOT: &str = "2026-11-25T09:00:00Z";

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn config_text(state: &Path, mail: &str) -> String {
    format!(
        r#"timezone = "Europe/Moscow"
language = "ru"
state_dir = "{state}"

[crm]
source = "demo"
departments = [3]

{mail}

[calendar]
holidays = ["2026-11-04"]

[[alert]]
name = "pace-revenue"
schedule = "0 12 * * WED"
rule = "pace"
kpi = "revenue"
period = "week"
min_share = 0.6
recipients = ["{HEAD}"]

[targets.default.week]
revenue = 400000
"#,
        state = state.display()
    )
}

fn outbox_mail(dir: &Path) -> String {
    format!(
        "[mail]\ntransport = \"outbox\"\noutbox_dir = \"{}\"\nfrom = \"reports@example.ru\"\n",
        dir.join("outbox").display()
    )
}

/// Who is behind pace on Wednesday 12:00, from the demo portal's wire records alone: the
/// active users of the sales departments (3 and its sub-departments 5 and 7), the revenue
/// of their deals won (stage semantics `S`, not recurring, won at `MOVED_TIME`, the demo's
/// last stage change) from Monday 00:00 to Wednesday 12:00, in roubles at the portal's
/// rates, below 60 % × 400 000 × 2.5 / 5 = 120 000. Returns e-mail → revenue.
fn behind_by_hand() -> BTreeMap<String, f64> {
    let msk = chrono_tz::Europe::Moscow;
    let slot = msk.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let monday: DateTime<FixedOffset> = DateTime::parse_from_rfc3339("2026-11-23T00:00:00+03:00").unwrap();
    let portal = salespulse::crm::demo::portal(slot);
    let s = |v: &serde_json::Value| v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string());
    let rates: BTreeMap<String, f64> = portal
        .currencies
        .iter()
        .map(|c| {
            (s(&c["CURRENCY"]), s(&c["AMOUNT"]).parse::<f64>().unwrap() / s(&c["AMOUNT_CNT"]).parse::<f64>().unwrap())
        })
        .collect();
    let sales = ["3", "5", "7"];
    let managers: BTreeMap<String, String> = portal
        .users
        .iter()
        .filter(|u| u["ACTIVE"] == serde_json::json!(true))
        .filter(|u| u["UF_DEPARTMENT"].as_array().unwrap().iter().any(|d| sales.contains(&s(d).as_str())))
        .map(|u| (s(&u["ID"]), s(&u["EMAIL"])))
        .collect();
    assert_eq!(managers.len(), 8, "the demo's eight managers");
    let mut revenue: BTreeMap<String, f64> = managers.keys().map(|id| (id.clone(), 0.0)).collect();
    for d in &portal.deals {
        if s(&d["STAGE_SEMANTIC_ID"]) != "S" || s(&d["IS_RECURRING"]) == "Y" {
            continue;
        }
        let won = DateTime::parse_from_rfc3339(&s(&d["MOVED_TIME"])).unwrap();
        if won < monday || won >= slot.fixed_offset() {
            continue;
        }
        if let Some(r) = revenue.get_mut(&s(&d["ASSIGNED_BY_ID"])) {
            *r += s(&d["OPPORTUNITY"]).parse::<f64>().unwrap() * rates[&s(&d["CURRENCY_ID"])];
        }
    }
    revenue.into_iter().filter(|(_, r)| *r < 120_000.0).map(|(id, r)| (managers[&id].clone(), r)).collect()
}

fn body(r: &Received) -> String {
    let message = mail_parser::MessageParser::default().parse(&r.data).expect("a parsable message");
    format!("{}\n{}", message.subject().unwrap_or_default(), message.body_text(0).unwrap_or_default())
}

#[test]
fn the_alert_preview_names_exactly_the_managers_behind_pace_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.toml");
    std::fs::write(&path, config_text(&dir.path().join("state"), &outbox_mail(dir.path()))).unwrap();
    let out = ok(&run(dir.path(), &path, &["alert", "pace-revenue", "--at", "2026-11-25 12:00"]));

    let behind = behind_by_hand();
    assert!(!behind.is_empty() && behind.len() < 8, "the demo week has managers on and behind pace: {behind:?}");
    let first = out.lines().next().unwrap();
    assert_eq!(
        first,
        format!(
            "alert pace-revenue (pace), slot 2026-11-25T12:00+03:00: {} manager(s) concerned, {} message(s); nothing sent",
            behind.len(),
            behind.len() + 1
        )
    );
    let to: BTreeSet<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix("--- to "))
        .map(|l| l.split('<').nth(1).unwrap().split('>').next().unwrap().to_owned())
        .collect();
    let mut want: BTreeSet<String> = behind.keys().cloned().collect();
    want.insert(HEAD.to_owned());
    assert_eq!(to, want);
    // The numbers that show it: the pro-rated target, the days, each one's revenue.
    assert!(out.contains("прошло 2,5 из 5 рабочих дней, то есть 200\u{a0}000\u{a0}₽"), "{out}");
    for revenue in behind.values() {
        let shown = salespulse::locale::fmt_money(*revenue, "RUB", salespulse::locale::Language::Ru);
        assert!(out.contains(&format!("по 25.11.2026 12:00: {shown}.")), "{shown} in\n{out}");
    }
    assert!(out.contains("Позвоните сначала по самым крупным открытым сделкам:"), "{out}");
    // Nothing was sent or recorded.
    assert!(
        !dir.path().join("outbox").exists() || std::fs::read_dir(dir.path().join("outbox")).unwrap().next().is_none()
    );
    let status = ok(&run(dir.path(), &path, &["status"]));
    assert!(status.contains("alert pace-revenue (pace, \"0 12 * * WED\"): never run"), "{status}");

    // A mistake in --at is a usage error.
    let bad = run(dir.path(), &path, &["alert", "pace-revenue", "--at", "25.11.2026"]);
    assert_eq!(bad.status.code(), Some(2));
    let unknown = run(dir.path(), &path, &["alert", "nope"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("pace-revenue"));
}

type DaemonRun = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), daemon::DaemonError>>>>;

fn start(config: Arc<Config>, clock: Arc<dyn Clock>) -> (DaemonRun, tokio::sync::oneshot::Sender<()>) {
    let runner = PipelineRunner::new(config.clone()).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async {
        stopped.await.ok();
    };
    let options = RunOptions { tick: Duration::from_millis(10), notify_systemd: false, ..RunOptions::default() };
    (Box::pin(daemon::run_with(config, clock, shutdown, runner, options)), stop)
}

async fn eventually(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn write_config(dir: &Path, smtp: &TestSmtp) -> PathBuf {
    let path = dir.join("alerts.toml");
    std::fs::write(&path, config_text(&dir.join("state"), &smtp.mail_toml())).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sends_wednesdays_pace_alert_to_exactly_the_managers_behind_once_and_not_again_on_restart() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &smtp);
    let config = Arc::new(Config::load(&path).unwrap());
    let behind = behind_by_hand();
    let expected = behind.len() + 1;

    // A second before the slot, then at it.
    let clock = Arc::new(FixedClock::new(utc("2026-11-25T08:59:59Z")));
    let (daemon, stop) = start(config.clone(), clock.clone());
    let test = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(smtp.received().is_empty(), "nothing before the slot");
        clock.set(utc(SLOT));
        eventually("the alerts", 60, || smtp.received().len() >= expected).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();

    let received = smtp.received();
    assert_eq!(received.len(), expected, "one message to each manager behind and one summary");
    let to: Vec<String> = received.iter().flat_map(|r| r.to.clone()).collect();
    let mut want: Vec<String> = behind.keys().cloned().chain([HEAD.to_owned()]).collect();
    want.sort();
    let mut got = to.clone();
    got.sort();
    assert_eq!(got, want, "exactly the managers behind pace, once each, and the head of sales");
    let summary = received.iter().find(|r| r.to == [HEAD]).unwrap();
    let text = body(summary);
    assert!(
        text.contains(&format!("pace-revenue: отстают от плана («Выручка»), менеджеров: {}", behind.len())),
        "{text}"
    );
    let ids: BTreeSet<String> = received
        .iter()
        .map(|r| {
            let m = mail_parser::MessageParser::default().parse(&r.data).unwrap();
            m.message_id().unwrap().to_owned()
        })
        .collect();
    assert_eq!(ids.len(), expected, "each message its own Message-ID");

    // Restarted after the slot (a crash, a reload): the slot ran, nothing is sent again.
    let clock = Arc::new(FixedClock::new(utc("2026-11-25T09:05:00Z")));
    let (daemon, stop) = start(config.clone(), clock.clone());
    let test = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.send(()).unwrap();
    };
    let (result, ()) = tokio::join!(daemon, test);
    result.unwrap();
    assert_eq!(smtp.received().len(), expected, "nothing again after a restart");

    // Even the slot run again (its run record gone) finds every row sent.
    let store = Store::open(&dir.path().join("state")).unwrap();
    let rows = store.alert_sends("pace-revenue", "2026-11-25T12:00+03:00").unwrap();
    assert_eq!(rows.len(), expected);
    assert!(rows.iter().all(|r| r.state == DeliveryState::Sent && r.key.channel == "email"));
    let runner = PipelineRunner::new(config.clone()).unwrap();
    let slot = utc(SLOT).with_timezone(&config.timezone);
    let again = salespulse::alert::run(runner.builder(), runner.store(), runner.mailer(), &config.alerts[0], slot)
        .await
        .unwrap();
    assert_eq!((again.sent, again.skipped), (0, expected));
    assert_eq!(smtp.received().len(), expected);

    // `status` lists the alert's sends.
    let status = tokio::task::spawn_blocking(move || ok(&run(dir.path(), &path, &["status"]))).await.unwrap();
    assert!(
        status.contains("alert pace-revenue (pace, \"0 12 * * WED\"): last run for 2026-11-25T12:00+03:00"),
        "{status}"
    );
    assert!(status.contains(&format!("last sent: 2026-11-25T12:00+03:00, {expected} alert(s)")), "{status}");
    assert!(status.contains(&format!("email {HEAD} <{HEAD}> [{HEAD}]: sent")), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_cut_short_by_a_crash_is_sent_again_once_with_the_same_message_id() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), &smtp);
    let config = Config::load(&path).unwrap();
    let state = dir.path().join("state");
    let key = AlertSendKey {
        alert: "pace-revenue".into(),
        period: "2026-11-25T12:00+03:00".into(),
        recipient_key: "17".into(),
        channel: "email".into(),
    };
    let to = vec!["i.petrov@demo.salespulse.local".to_owned()];
    let slot = utc(SLOT).with_timezone(&config.timezone);
    let message = salespulse::alert::AlertMessage {
        recipient_key: "17".into(),
        recipient_name: "Иван Петров".into(),
        to: to.clone(),
        subject: "Отставание".into(),
        body: "Текст\n".into(),
    };
    let first_id = salespulse::alert::deliver::compose_email(&config, &key, &message, slot.into()).unwrap().message_id;
    {
        // A process that claimed the row and started its transaction, then died (its owner
        // lock goes with it).
        let dead = Store::open(&state).unwrap();
        let new = NewAlertSend {
            key: key.clone(),
            recipient_name: "Иван Петров",
            to: &to,
            subject: "Отставание",
            body: "Текст\n",
        };
        dead.record_alert(&new).unwrap();
        dead.claim_alert(&key, &[DeliveryState::Rendered]).unwrap().unwrap();
        dead.start_alert_attempt(&key, &first_id).unwrap();
    }
    let store = Store::open(&state).unwrap();
    let mailer = smtp.mailer_for(&config.mail);
    let (alert, period) = (key.alert.as_str(), key.period.as_str());
    assert_eq!(salespulse::alert::deliver::unsent_periods(&store).unwrap(), [(alert.to_owned(), period.to_owned())]);
    let done = salespulse::alert::deliver::resume(&store, &mailer, &config, alert, period, slot).await.unwrap();
    assert_eq!((done.sent, done.resent.as_slice()), (1, ["17".to_owned()].as_slice()));
    let row = store.alert_send(&key).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 2));
    let received = smtp.received();
    assert_eq!(received.len(), 1);
    assert!(body(&received[0]).contains("Текст"));
    // Its Message-ID is the one the interrupted attempt carried.
    let m = mail_parser::MessageParser::default().parse(&received[0].data).unwrap();
    assert_eq!(m.message_id(), Some(first_id.as_str()));
    assert_eq!(row.message_id.as_deref(), Some(first_id.as_str()));
    // Once: a second resume finds nothing to send, and a new evaluation skips the row.
    let again = salespulse::alert::deliver::resume(&store, &mailer, &config, alert, period, slot).await.unwrap();
    assert_eq!(again.sent, 0);
    assert!(salespulse::alert::deliver::unsent_periods(&store).unwrap().is_empty());
    assert_eq!(smtp.received().len(), 1);
}

fn three_messages() -> Vec<salespulse::alert::AlertMessage> {
    ["11", "13", "15"]
        .iter()
        .map(|id| salespulse::alert::AlertMessage {
            recipient_key: (*id).to_owned(),
            recipient_name: format!("Менеджер {id}"),
            to: vec![format!("m{id}@example.ru")],
            subject: "Отставание".into(),
            body: "Текст\n".into(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_address_fails_its_row_only_and_a_refused_login_stops_the_round() {
    let slot = utc(SLOT).with_timezone(&chrono_tz::Europe::Moscow);
    let period = "2026-11-25T12:00+03:00";
    // One address refused (550): that row fails for good, the others go.
    let smtp = TestSmtp::start(SmtpOptions { reject_recipients: vec!["m13@example.ru".into()], ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&write_config(dir.path(), &smtp)).unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let mailer = smtp.mailer_for(&config.mail);
    let done =
        salespulse::alert::deliver::deliver(&store, &mailer, &config, "pace-revenue", period, slot, &three_messages())
            .await
            .unwrap();
    assert_eq!((done.sent, done.failed.len()), (2, 1));
    assert_eq!(done.failed[0].0, "13");
    let rows = store.alert_sends("pace-revenue", period).unwrap();
    let failed = rows.iter().find(|r| r.key.recipient_key == "13").unwrap();
    assert!(failed.state == DeliveryState::Failed && failed.permanent, "{failed:?}");
    assert!(
        salespulse::alert::deliver::unsent_periods(&store).unwrap().is_empty(),
        "a refused address waits for a person"
    );

    // The login refused: the first row fails (not for good), the rest are not tried and
    // wait, recorded, for the next round.
    let smtp = TestSmtp::start(SmtpOptions { refuse_login: true, ..Default::default() });
    let dir = tempfile::tempdir().unwrap();
    let config = Config::load(&write_config(dir.path(), &smtp)).unwrap();
    let store = Store::open(&dir.path().join("state")).unwrap();
    let mailer = smtp.mailer_for(&config.mail);
    let done =
        salespulse::alert::deliver::deliver(&store, &mailer, &config, "pace-revenue", period, slot, &three_messages())
            .await
            .unwrap();
    assert_eq!((done.sent, done.failed.len()), (0, 1));
    assert!(done.login_refused.is_some());
    let states: Vec<(String, DeliveryState, bool)> = store
        .alert_sends("pace-revenue", period)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.recipient_key, r.state, r.permanent))
        .collect();
    assert_eq!(
        states,
        [
            ("11".to_owned(), DeliveryState::Failed, false),
            ("13".to_owned(), DeliveryState::Rendered, false),
            ("15".to_owned(), DeliveryState::Rendered, false)
        ]
    );
    assert_eq!(salespulse::alert::deliver::unsent_periods(&store).unwrap().len(), 1, "retried by the daemon");
}

/// The issue's promise in one daemon over the real pipeline, the portal a real `bitrix24`
/// source (the demo's records served by the Bitrix24 emulator, messenger included): at
/// Wednesday 12:00 the pace alert goes by e-mail to exactly the managers behind (and the
/// head of sales) and into each of those managers' own Bitrix24 dialog, as a message; on
/// Monday 08:00 every manager gets the scorecard by e-mail and in their dialog with the PDF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_sends_wednesdays_pace_alert_and_mondays_scorecards_by_email_and_into_the_bitrix24_chat() {
    use salespulse::crm::emulator::{Emulator, EmulatorOptions};
    let msk = chrono_tz::Europe::Moscow;
    let wednesday = msk.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap();
    let monday = msk.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
    let options = EmulatorOptions {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        scopes: ["crm", "user", "department", "im", "disk"].map(str::to_owned).to_vec(),
        ..EmulatorOptions::default()
    };
    let emulator = Emulator::start(salespulse::crm::demo::portal(wednesday), options).await.unwrap();
    let smtp = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let text = config_text(&dir.path().join("state"), &smtp.mail_toml())
        .replace(
            "source = \"demo\"",
            &format!(
                "source = \"bitrix24\"\nwebhook_url = \"{}\"\nrate_limit_per_sec = 10000.0\nrate_limit_burst = 10000",
                emulator.webhook_url()
            ),
        )
        .replace("min_share = 0.6\n", "min_share = 0.6\nchannels = [\"email\", \"bitrix24\"]\n")
        + "\n[[job]]\nname = \"manager-weekly\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\n\
           period = \"previous-week\"\nchannels = [\"email\", \"bitrix24\"]\n";
    let path = dir.path().join("alerts.toml");
    std::fs::write(&path, text).unwrap();
    let config = Arc::new(Config::load(&path).unwrap());
    let behind = behind_by_hand();
    let portal = salespulse::crm::demo::portal(wednesday);
    let id_of: BTreeMap<String, String> = portal
        .users
        .iter()
        .map(|u| (u["EMAIL"].as_str().unwrap_or_default().to_owned(), u["ID"].to_string().trim_matches('"').to_owned()))
        .collect();
    let behind_ids: BTreeSet<String> = behind.keys().map(|e| id_of[e].clone()).collect();

    let clock = Arc::new(FixedClock::new(utc("2026-11-25T08:59:59Z")));
    let (daemon, stop) = start(config.clone(), clock.clone());
    let test = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        clock.set(utc(SLOT));
        eventually("Wednesday's alerts", 60, || {
            smtp.received().len() > behind.len() && emulator.messages().len() >= behind.len()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let wednesday_mail = smtp.received().len();
        let wednesday_chat = emulator.messages();
        // The portal as it stands on Monday, and the clock at Monday 08:00.
        emulator.update(|d| *d = salespulse::crm::demo::portal(monday));
        clock.set(monday.with_timezone(&Utc));
        eventually("Monday's scorecards", 120, || {
            smtp.received().len() >= wednesday_mail + 8 && emulator.messages().len() >= wednesday_chat.len() + 8
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(()).unwrap();
        (wednesday_mail, wednesday_chat)
    };
    let (result, (wednesday_mail, wednesday_chat)) = tokio::join!(daemon, test);
    result.unwrap();

    assert_eq!(wednesday_mail, behind.len() + 1, "the managers behind and the head of sales, by e-mail");
    let dialogs: BTreeSet<String> = wednesday_chat.iter().map(|m| m.dialog.clone()).collect();
    assert_eq!(dialogs, behind_ids, "exactly the managers behind, each in their own dialog");
    assert_eq!(wednesday_chat.len(), behind.len(), "once each");
    assert!(
        wednesday_chat.iter().all(|m| m.files.is_empty() && m.text.starts_with("Отставание от плана: Выручка")),
        "{wednesday_chat:?}"
    );

    let received = smtp.received();
    let scorecards = &received[wednesday_mail..];
    assert_eq!(scorecards.len(), 8, "the eight managers' scorecards by e-mail");
    let chat = emulator.messages();
    let monday_chat = &chat[wednesday_chat.len()..];
    assert_eq!(monday_chat.len(), 8, "and in the messenger: {monday_chat:?}");
    let monday_dialogs: BTreeSet<&str> = monday_chat.iter().map(|m| m.dialog.as_str()).collect();
    assert_eq!(monday_dialogs.len(), 8, "each manager's own dialog");
    for m in monday_chat {
        assert_eq!(m.files.len(), 1, "the PDF attached");
        assert!(m.files[0].1.starts_with(b"%PDF-"), "a PDF");
        assert!(m.files[0].0.starts_with("2026-W48 "), "{}", m.files[0].0);
    }
    let store = Store::open(&dir.path().join("state")).unwrap();
    let rows = store.alert_sends("pace-revenue", "2026-11-25T12:00+03:00").unwrap();
    assert_eq!(rows.len(), 2 * behind.len() + 1, "a row per recipient and channel");
    assert!(rows.iter().all(|r| r.state == DeliveryState::Sent));
    emulator.shutdown().await;
}
