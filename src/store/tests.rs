//! Tests of the store: the ledger's states and claims, runs, locks, migrations.

use super::*;

fn key(r: &str) -> DeliveryKey {
    DeliveryKey::email("manager-weekly", "2026-W47", r)
}

fn record(store: &Store, r: &str, pdf: &[u8]) -> Recorded {
    let to = vec![format!("m{r}@example.ru")];
    store
        .record(
            &NewDelivery {
                key: key(r),
                recipient_name: "Иван Петров",
                to: &to,
                file_name: "2026-W47 Иван Петров (17).pdf",
                pdf,
                json: "{}",
            },
            false,
        )
        .unwrap()
}

#[test]
fn a_row_goes_from_rendered_to_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(record(&store, "17", b"%PDF-1"), Recorded::Ready);
    let row = store.delivery(&key("17")).unwrap().unwrap();
    assert_eq!(row.state, DeliveryState::Rendered);
    assert_eq!(row.to, ["m17@example.ru"]);
    assert_eq!(store.read_pdf(&row).unwrap(), b"%PDF-1");
    assert!(row.pdf_path.starts_with(dir.path().canonicalize().unwrap().join("reports/manager-weekly/2026-W47")));

    let claimed = store.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().unwrap();
    assert_eq!(claimed.state, DeliveryState::Sending);
    store.start_attempt(&key("17"), "abc@salespulse").unwrap();
    store.mark_sent(&key("17"), None).unwrap();
    let row = store.delivery(&key("17")).unwrap().unwrap();
    assert_eq!((row.state, row.attempts), (DeliveryState::Sent, 1));
    assert_eq!(row.message_id.as_deref(), Some("abc@salespulse"));
    assert!(row.sent_at.is_some());

    // A sent row is not claimed again, and a new rendering does not reopen it.
    assert!(store.claim(&key("17"), &[DeliveryState::Rendered, DeliveryState::Failed]).unwrap().is_none());
    assert_eq!(record(&store, "17", b"%PDF-2"), Recorded::AlreadySent);
    assert_eq!(store.read_pdf(&store.delivery(&key("17")).unwrap().unwrap()).unwrap(), b"%PDF-1");
    // Unless asked to (resend).
    assert!(store.claim(&key("17"), &[DeliveryState::Sent]).unwrap().is_some());
}

#[test]
fn a_failed_row_keeps_its_reason_and_can_be_rerecorded() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    record(&store, "21", b"%PDF-1");
    store.claim(&key("21"), &[DeliveryState::Rendered]).unwrap().unwrap();
    store.start_attempt(&key("21"), "x@y").unwrap();
    store.mark_failed(&key("21"), "550 mailbox unknown", true).unwrap();
    let row = store.delivery(&key("21")).unwrap().unwrap();
    assert_eq!((row.state, row.permanent), (DeliveryState::Failed, true));
    assert_eq!(row.last_error.as_deref(), Some("550 mailbox unknown"));
    assert_eq!(store.unsent().unwrap().len(), 1);

    assert_eq!(record(&store, "21", b"%PDF-2"), Recorded::Ready);
    let row = store.delivery(&key("21")).unwrap().unwrap();
    assert_eq!((row.state, row.attempts, row.permanent), (DeliveryState::Rendered, 0, false));
    assert_eq!(store.read_pdf(&row).unwrap(), b"%PDF-2");
}

#[test]
fn of_two_connections_claiming_one_row_only_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = Store::open(dir.path()).unwrap();
    record(&a, "17", b"%PDF");
    let barrier = std::sync::Barrier::new(2);
    let wins: Vec<bool> = std::thread::scope(|s| {
        let ha = s.spawn(|| {
            barrier.wait();
            a.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().is_some()
        });
        let hb = s.spawn(|| {
            barrier.wait();
            b.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().is_some()
        });
        vec![ha.join().unwrap(), hb.join().unwrap()]
    });
    assert_eq!(wins.iter().filter(|w| **w).count(), 1, "{wins:?}");
    // The loser cannot finish the winner's row either.
    let (winner, loser) = if wins[0] { (&a, &b) } else { (&b, &a) };
    loser.mark_sent(&key("17"), None).unwrap();
    assert_eq!(winner.delivery(&key("17")).unwrap().unwrap().state, DeliveryState::Sending);
    // And a row in flight in a live process is not taken for interrupted.
    assert!(loser.recover_interrupted().unwrap().is_empty());
    assert_eq!(record(loser, "17", b"%PDF-2"), Recorded::InFlight);
}

#[test]
fn a_row_left_sending_by_a_dead_process_becomes_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    record(&store, "17", b"%PDF");
    store.claim(&key("17"), &[DeliveryState::Rendered]).unwrap().unwrap();
    store.start_attempt(&key("17"), "m@id").unwrap();
    // As a killed process leaves it: the claim names an owner whose lock file exists but
    // is locked by nobody.
    fs::write(dir.path().join("owners/1-dead.lock"), "").unwrap();
    store.conn().execute("UPDATE deliveries SET claimed_by = '1-dead'", []).unwrap();
    let unknown = store.recover_interrupted().unwrap();
    assert_eq!(unknown.len(), 1);
    assert_eq!(unknown[0].state, DeliveryState::Unknown);
    assert_eq!(unknown[0].attempts, 1);
    assert_eq!(unknown[0].message_id.as_deref(), Some("m@id"));
    assert!(!dir.path().join("owners/1-dead.lock").exists());
    // A new rendering does not replace the files the interrupted send was carrying.
    assert_eq!(record(&store, "17", b"%PDF-2"), Recorded::Interrupted);
    assert_eq!(store.read_pdf(&store.delivery(&key("17")).unwrap().unwrap()).unwrap(), b"%PDF");
    assert!(store.claim(&key("17"), &[DeliveryState::Unknown]).unwrap().is_some());
}

#[test]
fn lock_files_of_dead_processes_are_swept_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let live = Store::open(dir.path()).unwrap();
    fs::write(dir.path().join("owners/1-dead.lock"), "").unwrap();
    let _other = Store::open(dir.path()).unwrap();
    assert!(!dir.path().join("owners/1-dead.lock").exists());
    assert!(live.owner.path.exists());
    let path = live.owner.path.clone();
    drop(live);
    assert!(!path.exists(), "a store closed normally removes its own file");
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let first = Store::lock_daemon(dir.path()).unwrap();
    let second = Store::lock_daemon(dir.path()).unwrap_err();
    assert!(matches!(second, StoreError::Locked { .. }));
    assert!(second.to_string().contains("another salespulse daemon is already running"), "{second}");
    drop(first);
    Store::lock_daemon(dir.path()).unwrap();
}

#[test]
fn runs_are_remembered_by_slot() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert!(store.last_run("manager-weekly").unwrap().is_none());
    let slot = DateTime::parse_from_rfc3339("2026-11-23T05:00:00Z").unwrap().with_timezone(&Utc);
    let id = store.start_run("manager-weekly", slot - chrono::Duration::days(7), "2026-W46").unwrap();
    store.finish_run(id, 3, 0, RunOutcome::Ok, None).unwrap();
    let id = store.start_run("manager-weekly", slot, "2026-W47").unwrap();
    assert_eq!(store.last_run("manager-weekly").unwrap().unwrap().outcome, RunOutcome::Running);
    store.finish_run(id, 2, 1, RunOutcome::Partial, Some("1 failed")).unwrap();
    let last = store.last_run("manager-weekly").unwrap().unwrap();
    assert_eq!((last.slot, last.period.as_str(), last.sent, last.failed), (slot, "2026-W47", 2, 1));
    assert_eq!(last.outcome, RunOutcome::Partial);
    assert!(last.finished_at.is_some());
}

#[test]
fn reopening_keeps_the_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    let store = Store::open(dir.path()).unwrap();
    let v: i64 = store.conn().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
    assert_eq!(v as usize, MIGRATIONS.len());
    store.conn().pragma_update(None, "user_version", 99).unwrap();
    drop(store);
    assert!(matches!(Store::open(dir.path()), Err(StoreError::TooNew { found: 99, .. })));
}

/// A ledger written before channels (schema 4) keeps its rows' meaning: each is the e-mail
/// row of its report, with its state, attempts and Message-ID, and a chat row of the same
/// report is a row of its own.
#[test]
fn rows_from_before_channels_are_email_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    {
        let mut conn = Connection::open(&path).unwrap();
        assert!(run_migrations(&mut conn, &MIGRATIONS[..4]).is_ok());
        conn.execute(
            "INSERT INTO deliveries (job, period, recipient_key, recipient_name, addresses, file_name, pdf_path,
                json_path, state, attempts, message_id, sent_at, generation)
             VALUES ('manager-weekly', '2026-W47', '17', 'Иван', '[\"ivan@example.ru\"]', 'f.pdf', 'p', 'j', 'sent', 1,
                'mid@example.ru', '2026-11-23T05:00:01.000Z', 2)",
            [],
        )
        .unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let row = store.delivery(&key("17")).unwrap().expect("the old row is the e-mail row");
    assert_eq!((row.key.channel.as_str(), row.key.destination.as_str()), ("email", ""));
    assert_eq!((row.state, row.attempts, row.generation), (DeliveryState::Sent, 1, 2));
    assert_eq!(row.message_id.as_deref(), Some("mid@example.ru"));
    assert_eq!(row.to, ["ivan@example.ru"]);
    assert_eq!(store.last_sent("manager-weekly").unwrap().map(|(p, _, n)| (p, n)), Some(("2026-W47".into(), 1)));
    let chat = DeliveryKey { channel: "bitrix24".into(), destination: "17".into(), ..key("17") };
    assert!(store.delivery(&chat).unwrap().is_none());
    let new = NewDelivery {
        key: chat.clone(),
        recipient_name: "Иван",
        to: &["17".into()],
        file_name: "f.pdf",
        pdf: b"%PDF",
        json: "{}",
    };
    assert_eq!(store.record(&new, false).unwrap(), Recorded::Ready);
    assert_eq!(store.delivery(&chat).unwrap().unwrap().state, DeliveryState::Rendered);
    assert_eq!(store.delivery(&key("17")).unwrap().unwrap().state, DeliveryState::Sent, "the e-mail row is untouched");
    assert_eq!(store.deliveries("manager-weekly", "2026-W47").unwrap().len(), 2);
}
