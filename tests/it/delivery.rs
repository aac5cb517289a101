//! Delivery as an admin relies on it: every recipient gets a report exactly once through the
//! ledger (a real SQLite file) and a real SMTP server on loopback (STARTTLS, AUTH), retries
//! of what can succeed, one bad address failing only its own row, a digest to the admin,
//! resends on request, and a send by hand leaving alone a row another process is sending.
//!
//! Rows a crash left behind, and the binary killed mid-send: `daemon_crash.rs`. The daemon
//! loop that calls this delivery on its schedule: `daemon.rs`. The three managers, their
//! scorecards and the config: `support/delivery.rs`.

use salespulse::pipeline::deliver::{self, DeliverOptions};
use salespulse::store::{DeliveryState, NewDelivery, Store};

use crate::support::delivery::{
    ADMIN, MANAGERS, config, deliver_week47, key, message_id, pdf_for, report_for, reports, to, week47, weekly,
};
use crate::support::smtp::{SmtpOptions, TestSmtp};

#[tokio::test]
async fn every_manager_gets_their_scorecard_exactly_once() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let job = weekly(&config);
    let store = Store::open(state.path()).unwrap();
    let mailer = smtp.mailer();

    let first = deliver::deliver(&store, &mailer, &config, &job, &week47(), &reports(1), &DeliverOptions::default())
        .await
        .unwrap();
    assert_eq!((first.sent, first.skipped, first.failed.len()), (3, 0, 0), "{first:?}");
    let received = smtp.received();
    assert_eq!(received.len(), 3);
    for (id, _, address) in MANAGERS {
        let mine = to(&received, address);
        assert_eq!(mine.len(), 1, "{address} got {} messages", mine.len());
        assert_eq!(mine[0].to, [address], "a scorecard goes to its manager only");
        let row = store.delivery(&key(id)).unwrap().unwrap();
        assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 1));
        assert_eq!(std::fs::read(&row.pdf_path).unwrap(), pdf_for(id, 1), "the ledger keeps the bytes sent");
        assert_eq!(row.message_id.as_deref().map(|m| format!("<{m}>")), Some(message_id(&mine[0])));
    }

    // The same job and period again (the daemon retrying, an admin's `send`): nothing new.
    let again = deliver::deliver(&store, &mailer, &config, &job, &week47(), &reports(2), &DeliverOptions::default())
        .await
        .unwrap();
    assert_eq!((again.sent, again.skipped), (0, 3), "{again:?}");
    assert_eq!(smtp.received().len(), 3);
}

#[tokio::test]
async fn a_server_saying_try_later_is_tried_again_until_it_accepts() {
    let smtp = TestSmtp::start(SmtpOptions { refuse_data: 2, ..SmtpOptions::default() });
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let store = Store::open(state.path()).unwrap();
    let only_ivan = &reports(1)[..1];

    let summary = deliver_week47(&store, &smtp, &config, only_ivan).await;
    assert_eq!((summary.sent, summary.failed.len()), (1, 0), "{summary:?}");
    assert_eq!(smtp.data_attempts(), 3, "two 451s, then the accepted one");
    assert_eq!(to(&smtp.received(), "ivan@example.ru").len(), 1);
    let row = store.delivery(&key("17")).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 3));
}

#[tokio::test]
async fn a_server_that_keeps_saying_try_later_fails_the_row_after_max_attempts() {
    let smtp = TestSmtp::start(SmtpOptions { refuse_data: 10, ..SmtpOptions::default() });
    let state = tempfile::tempdir().unwrap();
    let mut config = config(&smtp, state.path(), 2);
    // The digest would be refused too; it is not what this test is about.
    config.mail.admin_to.clear();
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)[..1]).await;
    assert_eq!(summary.sent, 0);
    assert_eq!(summary.failed.len(), 1);
    assert!(!summary.failed[0].permanent);
    assert!(summary.failed[0].reason.contains("gave up after 2 attempts"), "{}", summary.failed[0].reason);
    assert_eq!(smtp.data_attempts(), 2);
    let row = store.delivery(&key("17")).unwrap().unwrap();
    assert_eq!((row.state, row.permanent), (DeliveryState::Failed, false));
}

#[tokio::test]
async fn one_unknown_mailbox_fails_only_its_own_row_and_the_admin_hears_about_it() {
    let smtp =
        TestSmtp::start(SmtpOptions { reject_recipients: vec!["maria@example.ru".into()], ..SmtpOptions::default() });
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!(summary.sent, 2, "{summary:?}");
    assert_eq!(summary.failed.len(), 1);
    let failure = &summary.failed[0];
    assert_eq!((failure.recipient_key.as_str(), failure.permanent), ("21", true));
    assert_eq!(summary.digest_error, None);

    let received = smtp.received();
    assert_eq!(to(&received, "ivan@example.ru").len(), 1);
    assert_eq!(to(&received, "oleg@example.ru").len(), 1);
    assert!(to(&received, "maria@example.ru").is_empty());
    // A 550 is not retried: one transaction for Maria.
    let maria = store.delivery(&key("21")).unwrap().unwrap();
    assert_eq!((maria.state, maria.attempts, maria.permanent), (DeliveryState::Failed, 1, true));
    assert!(maria.last_error.is_some());

    let digest = to(&received, ADMIN);
    assert_eq!(digest.len(), 1, "one digest to the admin");
    let text = digest[0].text();
    assert!(text.contains("maria@example.ru") || text.contains("21"), "the digest names the failed row:\n{text}");

    // Delivering again does not send the others twice, and does not retry Maria in a loop
    // without a person's fix... unless a new rendering comes (here: same address, still 550).
    let again = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!((again.sent, again.skipped), (0, 2), "{again:?}");
    assert_eq!(to(&smtp.received(), "ivan@example.ru").len(), 1);
}

#[tokio::test]
async fn a_manager_without_an_address_is_a_failure_the_admin_hears_about() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let store = Store::open(state.path()).unwrap();
    let reports = vec![report_for("17", "Иван Петров", "ivan@example.ru", 1), report_for("40", "Пётр Новиков", "", 1)];

    let summary = deliver_week47(&store, &smtp, &config, &reports).await;
    assert_eq!(summary.sent, 1);
    assert_eq!(summary.failed.len(), 1);
    assert!(summary.failed[0].reason.contains("no usable e-mail address"), "{:?}", summary.failed[0]);
    assert_eq!(to(&smtp.received(), ADMIN).len(), 1);
}

#[tokio::test]
async fn a_pdf_too_large_to_attach_is_sent_without_it_and_the_admin_is_told() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let mut config = config(&smtp, state.path(), 3);
    config.mail.max_attachment_bytes = 16;
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)[..1]).await;
    assert_eq!((summary.sent, summary.failed.len(), summary.notices.len()), (1, 0, 1), "{summary:?}");
    assert!(summary.notices[0].reason.contains("max_attachment_bytes"), "{:?}", summary.notices[0]);
    assert_eq!(store.delivery(&key("17")).unwrap().unwrap().state, DeliveryState::Sent);
    assert_eq!(to(&smtp.received(), ADMIN).len(), 1);
}

#[tokio::test]
async fn resend_sends_one_report_again_and_no_other() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let store = Store::open(state.path()).unwrap();
    let job = weekly(&config);
    deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!(smtp.received().len(), 3);

    // `send manager-weekly --period 2026-W47 --only 21 --resend`: the pipeline renders only
    // Maria's report, with today's data.
    let maria = vec![report_for("21", "Мария Соколова", "maria@example.ru", 2)];
    let summary = deliver::deliver(
        &store,
        &smtp.mailer(),
        &config,
        &job,
        &week47(),
        &maria,
        &DeliverOptions { resend: true, ..Default::default() },
    )
    .await
    .unwrap();
    assert_eq!((summary.sent, summary.skipped), (1, 0));
    let received = smtp.received();
    assert_eq!(received.len(), 4);
    let to_maria = to(&received, "maria@example.ru");
    assert_eq!(to_maria.len(), 2);
    assert_eq!(to(&received, "ivan@example.ru").len(), 1);
    // A deliberate resend is a new message: mail systems that drop a repeated Message-ID
    // must still show it.
    let ids: Vec<String> = to_maria.iter().map(message_id).collect();
    assert_ne!(ids[0], ids[1], "a resend gets its own Message-ID");
    let row = store.delivery(&key("21")).unwrap().unwrap();
    assert_eq!(row.generation, 1);
    assert_eq!(row.state, DeliveryState::Sent);
    assert_eq!(std::fs::read(&row.pdf_path).unwrap(), pdf_for("21", 2), "the resend carries the new rendering");

    // Without --resend the same request sends nothing.
    let summary = deliver_week47(&store, &smtp, &config, &maria).await;
    assert_eq!((summary.sent, summary.skipped), (0, 1));
}

#[tokio::test]
async fn a_send_by_hand_while_another_process_sends_the_row_leaves_it_alone() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let config = config(&smtp, state.path(), 3);
    let daemon_store = Store::open(state.path()).unwrap();
    let by_hand = Store::open(state.path()).unwrap();
    let r = &reports(1)[0];
    let new = NewDelivery {
        key: key("17"),
        recipient_name: &r.recipient_name,
        to: &r.to,
        file_name: &r.file_name,
        pdf: &r.pdf,
        json: &r.json,
    };
    daemon_store.record(&new, false).unwrap();
    daemon_store.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().unwrap();

    let summary = deliver::deliver(
        &by_hand,
        &smtp.mailer(),
        &config,
        &weekly(&config),
        &week47(),
        &reports(1)[..1],
        &Default::default(),
    )
    .await
    .unwrap();
    assert_eq!((summary.sent, summary.skipped), (0, 1));
    assert!(smtp.received().is_empty());
    // Not mistaken for a crash either: the daemon's process is alive.
    assert!(deliver::unsent_periods(&by_hand).unwrap().is_empty());
    assert_eq!(by_hand.delivery(&key("17")).unwrap().unwrap().state, DeliveryState::Sending);
}
