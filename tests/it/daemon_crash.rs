//! Exactly once across crashes: the rows a process killed mid-delivery left in the ledger
//! are finished from the stored files (by `resume`, or by the next `send` with a new
//! rendering), and the real binary, SIGKILLed before, during and after SMTP's DATA, still
//! delivers every report once (a duplicate only where a kill fell between the server's 250
//! and the ledger's `sent`, and then the admin is told).
//!
//! The helpers shared with `delivery.rs` and `daemon.rs` are in `support/delivery.rs`.

use std::path::Path;
use std::time::Duration;

use salespulse::pipeline::deliver;
use salespulse::store::{DeliveryState, NewDelivery, Store};

use crate::support::bin::BIN;
use crate::support::delivery::{
    ADMIN, binary_config, config, deliver_week47, key, message_id, pdf_for, reports, to, week47, weekly,
};
use crate::support::smtp::{SmtpOptions, TestSmtp};

// ---- in-process: a ledger left as a killed process leaves it ----

#[tokio::test]
async fn rows_a_crash_left_behind_are_finished_from_the_stored_files() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let job = weekly(&config);
    crash_while_sending_to_maria(state.path());
    let store = Store::open(state.path()).unwrap();
    let pending = deliver::unsent_periods(&store).unwrap();
    assert_eq!(pending, [("manager-weekly".to_owned(), "2026-W47".to_owned())]);
    assert_eq!(store.delivery(&key("21")).unwrap().unwrap().state, DeliveryState::Unknown);

    let summary = deliver::resume(&store, &smtp.mailer(), &config, &job, &week47()).await.unwrap();
    assert_eq!(summary.sent, 2, "{summary:?}");
    let received = smtp.received();
    assert!(to(&received, "ivan@example.ru").is_empty(), "Ivan's report was sent before the crash");
    let maria = to(&received, "maria@example.ru");
    let oleg = to(&received, "oleg@example.ru");
    assert_eq!((maria.len(), oleg.len()), (1, 1));
    // The bytes stored before the crash are the bytes sent after it.
    let text = maria[0].text();
    assert!(
        text.contains("scorecard of 21, version 1") || text.contains(&base64_of(&pdf_for("21", 1))),
        "Maria's stored PDF is attached:\n{text}"
    );
    // Maria's interrupted send is reported: a duplicate is possible.
    assert_eq!(summary.unknown.len(), 1);
    assert_eq!(summary.unknown[0].recipient_key, "21");
    assert_eq!(to(&received, ADMIN).len(), 1, "the admin is told about the possible duplicate");
    for id in ["17", "21", "33"] {
        assert_eq!(store.delivery(&key(id)).unwrap().unwrap().state, DeliveryState::Sent);
    }
    assert!(deliver::unsent_periods(&store).unwrap().is_empty());

    // Nothing is left to resume.
    let again = deliver::resume(&store, &smtp.mailer(), &config, &job, &week47()).await.unwrap();
    assert_eq!(again.sent, 0);
    assert_eq!(smtp.received().len(), received.len());
}

/// Leaves the ledger as a process killed in the middle of a delivery does: all three rows
/// recorded (version 1 of the PDFs), Ivan's sent, Maria's SMTP transaction under way, Oleg's
/// not started.
/// The digest that tells of a possible duplicate is owed until it went out: a resend whose
/// digest the server refused (as a process killed between the resend and its digest leaves
/// it: the row `sent`, the admin not told) is told by the next run, and only once.
#[tokio::test]
async fn a_digest_lost_after_a_resend_is_sent_by_the_next_run() {
    let refusing = TestSmtp::start(SmtpOptions::default());
    refusing.reject_recipient(ADMIN);
    let state = tempfile::tempdir().unwrap();
    let config_refusing = config(&refusing, state.path(), 3);
    let job = weekly(&config_refusing);
    crash_while_sending_to_maria(state.path());
    let store = Store::open(state.path()).unwrap();

    let first = deliver::resume(&store, &refusing.mailer(), &config_refusing, &job, &week47()).await.unwrap();
    assert_eq!((first.sent, first.unknown.len()), (2, 1), "{first:?}");
    assert!(first.digest_error.is_some(), "the server refused the digest: {first:?}");
    assert!(to(&refusing.received(), ADMIN).is_empty());
    for id in ["17", "21", "33"] {
        assert_eq!(store.delivery(&key(id)).unwrap().unwrap().state, DeliveryState::Sent);
    }
    // Every report is sent, yet the period is still due: the admin is owed the digest.
    assert_eq!(deliver::unsent_periods(&store).unwrap(), [("manager-weekly".to_owned(), "2026-W47".to_owned())]);

    let smtp = TestSmtp::start(SmtpOptions::default());
    let config = config(&smtp, state.path(), 3);
    let second = deliver::resume(&store, &smtp.mailer(), &config, &job, &week47()).await.unwrap();
    assert_eq!(second.sent, 0, "no report is sent again: {second:?}");
    let received = smtp.received();
    assert_eq!(received.len(), 1, "only the digest");
    let digest = to(&received, ADMIN);
    assert_eq!(digest.len(), 1);
    let parsed = mail_parser::MessageParser::default().parse(&digest[0].data).expect("a parseable digest");
    let text = parsed.body_text(0).expect("a text body").into_owned();
    assert!(
        text.contains("maria@example.ru") && text.contains("Message-ID"),
        "the digest names Maria's resend:\n{text}"
    );
    assert!(!text.contains("oleg@example.ru"), "Oleg's first send is no news:\n{text}");
    assert!(deliver::unsent_periods(&store).unwrap().is_empty(), "nothing is owed any more");

    // A new `send` of the period after that tells nothing again.
    let third = deliver_week47(&store, &smtp, &config, &reports(2)).await;
    assert_eq!((third.sent, third.skipped), (0, 3), "{third:?}");
    assert_eq!(smtp.received().len(), 1, "the admin is told once");
}

fn crash_while_sending_to_maria(state: &Path) {
    let crashed = Store::open(state).unwrap();
    for r in reports(1) {
        let new = NewDelivery {
            key: key(&r.recipient_key),
            recipient_name: &r.recipient_name,
            to: &r.to,
            file_name: &r.file_name,
            pdf: &r.pdf,
            json: &r.json,
        };
        crashed.record(&new, false).unwrap();
    }
    crashed.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().unwrap();
    crashed.start_attempt(&key("17"), "ivan-id@example.ru").unwrap();
    crashed.mark_sent(&key("17"), None).unwrap();
    crashed.claim(&key("21"), &[DeliveryState::Rendered]).unwrap().unwrap();
    crashed.start_attempt(&key("21"), "maria-id@example.ru").unwrap();
    // Dropping the store releases its owner lock, as the kernel does for a killed process.
}

#[tokio::test]
async fn a_send_after_a_crash_finishes_the_interrupted_row_with_the_bytes_it_was_sending() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    crash_while_sending_to_maria(state.path());

    // The admin runs `send` again: the pipeline renders version 2 of every report.
    let store = Store::open(state.path()).unwrap();
    let summary = deliver_week47(&store, &smtp, &config, &reports(2)).await;
    assert_eq!((summary.sent, summary.skipped), (2, 1), "{summary:?}");
    assert_eq!(summary.unknown.iter().map(|u| u.recipient_key.as_str()).collect::<Vec<_>>(), ["21"]);
    let received = smtp.received();
    assert!(to(&received, "ivan@example.ru").is_empty());
    let maria = to(&received, "maria@example.ru");
    let oleg = to(&received, "oleg@example.ru");
    assert_eq!((maria.len(), oleg.len()), (1, 1));
    assert!(maria[0].text().contains("scorecard of 21, version 1"), "Maria gets the bytes being sent at the crash");
    assert!(oleg[0].text().contains("scorecard of 33, version 2"), "Oleg's unsent row takes the new rendering");
    assert_eq!(to(&received, ADMIN).len(), 1);
}

fn base64_of(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ---- the real binary, killed ----

fn send_command(config: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--config")
        .arg(config)
        .args(["send", "manager-weekly", "--period", "2026-W47"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    cmd
}

/// Starts `send` and SIGKILLs it as soon as `when` holds (or lets it finish if it never
/// does); says whether it was killed.
fn send_and_kill_when(config: &Path, mut when: impl FnMut() -> bool) -> bool {
    let mut child = send_command(config).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if when() {
            child.kill().unwrap(); // SIGKILL: no destructor, no ledger update runs
            child.wait().unwrap();
            return true;
        }
        assert!(std::time::Instant::now() < deadline, "send did not finish");
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn sends_killed_before_during_and_after_data_still_deliver_every_report_once() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let config = binary_config(&smtp, dir.path());

    // Killed while connecting (TLS, AUTH): before any DATA.
    let killed_before = send_and_kill_when(&config, || smtp.connections() >= 1);
    // Killed the moment the server has a message's final dot: the reply may not have
    // reached the client (the ambiguous case).
    let attempts = smtp.data_attempts();
    let killed_at_dot = send_and_kill_when(&config, || smtp.data_attempts() > attempts);
    // Killed after some messages were accepted and recorded.
    let accepted = smtp.received().len();
    let killed_after = send_and_kill_when(&config, || smtp.received().len() >= accepted + 3);
    // And the run that is left alone.
    assert!(!send_and_kill_when(&config, || false));
    assert!(killed_before && killed_at_dot, "the kills happened (before {killed_before}, at dot {killed_at_dot})");

    let store = Store::open(&dir.path().join("state")).unwrap();
    let rows = store.deliveries("manager-weekly", "2026-W47").unwrap();
    assert!(rows.len() >= 3, "the demo has managers: {rows:?}");
    let received = smtp.received();
    let mut duplicates = 0;
    for row in &rows {
        assert_eq!(row.state, DeliveryState::Sent, "{row:?}");
        let address = &row.to[0];
        let mine = to(&received, address);
        assert!(!mine.is_empty(), "{address} got no report");
        let ids: std::collections::BTreeSet<String> = mine.iter().map(message_id).collect();
        assert_eq!(ids.len(), 1, "{address}: one report, one Message-ID: {ids:?}");
        duplicates += mine.len() - 1;
    }
    // Only a kill between the server's 250 and the ledger's `sent` can duplicate a message,
    // and each kill interrupts at most one transaction.
    let kills = [killed_before, killed_at_dot, killed_after].iter().filter(|k| **k).count();
    println!(
        "{} reports, {} messages, {duplicates} duplicates, {kills} kills, {} data attempts",
        rows.len(),
        received.len(),
        smtp.data_attempts()
    );
    assert!(duplicates <= kills, "{duplicates} duplicates after {kills} kills");
    if duplicates > 0 {
        assert!(!to(&received, ADMIN).is_empty(), "a possible duplicate is reported to the admin");
    }
}
