//! Input at and beyond its limits, through the real binary (issue 10, points 6 and 7): a
//! period or a config number out of range is a usage or config error (exit 2, the config's
//! file, line and key), never a panic; the largest values allowed work end to end; and
//! `send` refuses a period that has not ended, leaving the ledger untouched.

use std::path::Path;
use std::process::Output;

use chrono::Duration;
use salespulse::domain::Period;
use salespulse::schedule::{Clock, SystemClock};

use crate::support::bin::{DEMO_CONFIG, run};
use crate::support::smtp::{SmtpOptions, TestSmtp};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_exit(out: &Output, code: i32, what: &str) -> String {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{err}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!err.contains("panicked"), "{what}: a panic:\n{err}");
    err
}

#[test]
fn periods_out_of_range_are_usage_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(DEMO_CONFIG);
    for period in [
        "-262143-W02",
        "262142-W52",
        "262143-12",
        "-0001-01-01..-0001-01-02",
        "262142-12-30..262142-12-31",
        "1969-12",
        "1969-W52",
        "9999-W01",
        "9999-12",
        "9999-12-31..10000-01-01",
        "2026-01-01..2027-01-02",
        "2026-W00",
        "2026-W54",
        "2026-00",
    ] {
        for command in ["report", "send"] {
            let arg = format!("--period={period}");
            let out = run(dir.path(), config, &[command, "manager-weekly", &arg]);
            let err = assert_exit(&out, 2, &format!("{command} {arg}"));
            assert!(err.contains("failed to read period") && err.contains(period), "{command} {arg}: {err}");
        }
    }
    // Nothing was sent or recorded.
    assert!(!dir.path().join("outbox").exists() && !dir.path().join("state").exists());
}

#[test]
fn the_extreme_periods_allowed_render() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(DEMO_CONFIG);
    for (job, period) in [
        ("manager-weekly", "9998-W52"),
        ("manager-weekly", "1970-W01"),
        ("department-monthly", "9998-12"),
        ("department-monthly", "1970-01-01..1970-12-31"),
    ] {
        let out = run(dir.path(), config, &["report", job, "--period", period, "--only", "17", "--out", "out"]);
        assert_exit(&out, 0, &format!("report {job} --period {period}"));
    }
}

/// A config with `line` right under `[section]`, and the number of that line.
fn config_with(section: &str, line: &str) -> (String, usize) {
    let mail = if section == "mail-smtp" {
        "[mail]\ntransport = \"smtp\"\nhost = \"127.0.0.1\"\ntls = \"none\"\n"
    } else {
        "[mail]\ntransport = \"outbox\"\n"
    };
    let mut text = format!(
        "timezone = \"Europe/Moscow\"\nstate_dir = \"state\"\n\n[crm]\nsource = \"demo\"\ndepartments = [3]\n\n\
         {mail}from = \"reports@example.ru\"\n\n[report]\n\n[daemon]\n\n\
         [[job]]\nname = \"manager-weekly\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\nperiod = \"previous-week\"\n"
    );
    let header = match section {
        "mail-smtp" => "[mail]\n".to_owned(),
        s => format!("[{s}]\n"),
    };
    let at = text.find(&header).expect("the section exists") + header.len();
    text.insert_str(at, &format!("{line}\n"));
    let number = text[..at].matches('\n').count() + 1;
    (text, number)
}

#[test]
fn config_numbers_out_of_range_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("crm", "timeout_secs = 0"),
        ("crm", "timeout_secs = 18446744073709551615"),
        ("crm", "timeout_secs = -5"),
        ("crm", "operating_limit_secs = 0"),
        ("crm", "operating_limit_secs = 9223372036854775807"),
        ("crm", "rate_limit_per_sec = nan"),
        ("crm", "rate_limit_per_sec = -1.0"),
        ("crm", "rate_limit_per_sec = inf"),
        ("crm", "rate_limit_burst = 0"),
        ("crm", "rate_limit_burst = 1000001"),
        ("crm", "max_retries = 4294967295"),
        ("crm", "reconcile_days = 0"),
        ("crm", "reconcile_days = 4294967295"),
        ("crm", "stuck_after_days = -1.0"),
        ("crm", "stuck_after_days = nan"),
        ("crm", "satisfaction_scale = [1, inf]"),
        ("mail", "timeout_secs = 18446744073709551615"),
        ("mail", "timeout_secs = 0"),
        ("mail", "timeout_secs = -1"),
        ("mail-smtp", "port = 0"),
        ("mail-smtp", "port = 65536"),
        ("report", "trend_periods = 0"),
        ("report", "trend_periods = 18446744073709551615"),
        ("report", "max_stuck_deals = 18446744073709551615"),
        ("daemon", "catch_up_hours = 9223372036854775807"),
        ("daemon", "catch_up_hours = 18446744073709551615"),
        ("daemon", "catch_up_hours = -1"),
        ("daemon", "max_attempts = 0"),
        ("daemon", "max_attempts = 4294967295"),
        ("daemon", "retry_initial_secs = 18446744073709551615"),
        ("daemon", "retry_max_secs = 18446744073709551615"),
    ];
    let path = dir.path().join("bounds.toml");
    for (section, line) in cases {
        let (text, number) = config_with(section, line);
        std::fs::write(&path, &text).unwrap();
        let key = line.split(" =").next().unwrap();
        let out = run(dir.path(), &path, &["check", "--offline"]);
        let err = assert_exit(&out, 2, &format!("[{section}] {line}"));
        let at = format!("{}:{number}:", path.display());
        assert!(err.contains(&at) && err.contains(key), "[{section}] {line}: expected {at} and {key}:\n{err}");
    }

    // The two: the daemon refuses to start rather than panic at its first slot, and
    // `send` stops before anything is recorded (no row left `sending`).
    let (text, number) = config_with("daemon", "catch_up_hours = 9223372036854775807");
    std::fs::write(&path, text).unwrap();
    let err = assert_exit(&run(dir.path(), &path, &["run"]), 2, "run with catch_up_hours = i64::MAX");
    assert!(err.contains(&format!("bounds.toml:{number}:")) && err.contains("daemon.catch_up_hours"), "{err}");
    let (text, _) = config_with("mail", "timeout_secs = 18446744073709551615");
    std::fs::write(&path, text).unwrap();
    let err = assert_exit(&run(dir.path(), &path, &["send", "manager-weekly", "--period", "2026-W47"]), 2, "send");
    assert!(err.contains("mail.timeout_secs"), "{err}");
    assert!(!dir.path().join("state").exists(), "nothing recorded");
}

/// The largest value of every bounded key works end to end: a real delivery over SMTP.
#[test]
fn the_largest_values_allowed_deliver() {
    let dir = tempfile::tempdir().unwrap();
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mail = smtp.mail_toml().replace("timeout_secs = 10", "timeout_secs = 3600");
    let text = format!(
        "timezone = \"Europe/Moscow\"\nstate_dir = \"state\"\n\n\
         [crm]\nsource = \"demo\"\ndepartments = [3]\ntimeout_secs = 3600\noperating_limit_secs = 600\n\
         rate_limit_per_sec = 1000000.0\nrate_limit_burst = 1000000\nreconcile_days = 3650\nstuck_after_days = 3650\n\n\
         {mail}\n[report]\ntrend_periods = 60\nmax_stuck_deals = 1000\n\n\
         [daemon]\ncatch_up_hours = 8784\nmax_attempts = 100\nretry_initial_secs = 86400\nretry_max_secs = 86400\n\n\
         [[job]]\nname = \"department-monthly\"\nreport = \"department\"\nschedule = \"0 9 1 * *\"\n\
         period = \"previous-month\"\nrecipients = [\"ceo@example.ru\"]\n"
    );
    let path = dir.path().join("max.toml");
    std::fs::write(&path, text).unwrap();
    assert_exit(&run(dir.path(), &path, &["check", "--offline"]), 0, "check");
    let out = run(dir.path(), &path, &["send", "department-monthly", "--period", "2026-10"]);
    assert_exit(&out, 0, "send with the largest values");
    let received = smtp.received();
    assert_eq!(received.len(), 1, "one department report");
    assert_eq!(received[0].to, ["ceo@example.ru"]);
}

/// The week running now in Moscow (the demo's zone), or the next one if this one ends
/// within the minute, so the answer cannot change while the test runs.
fn a_running_week() -> Period {
    let now = SystemClock.now();
    let today = now.with_timezone(&chrono_tz::Europe::Moscow).date_naive();
    let week = Period::week_of(today, chrono_tz::Europe::Moscow);
    if week.end().with_timezone(&chrono::Utc) - now < Duration::minutes(1) {
        return Period::week_of(today + Duration::days(7), chrono_tz::Europe::Moscow);
    }
    week
}

#[test]
fn send_refuses_a_period_that_has_not_ended_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(DEMO_CONFIG);
    let week = a_running_week().label();
    // Today's month and a custom period around today (a minute before midnight on the last
    // day of a month would turn the month over: the week above already waits that out).
    let today = SystemClock.now().with_timezone(&chrono_tz::Europe::Moscow).date_naive();
    let month = today.format("%Y-%m").to_string();
    let custom = format!("{}..{}", today - Duration::days(3), today + Duration::days(3));
    for (job, period) in [
        ("manager-weekly", week.as_str()),
        ("manager-weekly", "2030-W01"),
        ("department-monthly", month.as_str()),
        ("department-monthly", "2030-01"),
        ("manager-weekly", custom.as_str()),
    ] {
        let out = run(dir.path(), config, &["send", job, "--period", period]);
        let err = assert_exit(&out, 2, &format!("send {job} --period {period}"));
        assert!(err.contains("has not ended"), "{err}");
        // It says what to do instead, with the config it was given.
        let preview = format!("salespulse --config {DEMO_CONFIG} report {job} --period {period}");
        assert!(err.contains(&preview), "expected {preview:?} in:\n{err}");
    }
    assert!(!dir.path().join("outbox").exists(), "nothing sent");
    assert!(!dir.path().join("state").exists(), "nothing recorded in the ledger");

    // What the admin does instead: a preview of the running week works and sends nothing.
    let out = run(dir.path(), config, &["report", "manager-weekly", "--period", &week, "--only", "17", "--out", "out"]);
    assert_exit(&out, 0, "report of the running week");
    assert!(dir.path().join("out/manager-weekly").join(&week).is_dir());
    assert!(!dir.path().join("outbox").exists(), "a preview sends nothing");
}
