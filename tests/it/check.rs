//! `salespulse check` proves a real set-up through the binary (issue 14 point 6): it asks
//! the portal (the Bitrix24 emulator) for the webhook's scopes and names a missing one,
//! logs in to the SMTP server (with STARTTLS and AUTH) without sending, compiles every
//! job's templates on the demo data, prints each job's next three slots in local time, and
//! exits 1 with what to change when anything is wrong.

use std::path::Path;
use std::process::{Command, Output};

use chrono::TimeZone;
use salespulse::crm::emulator::EmulatorOptions;

use crate::support::crm::{demo_emulator_with, portal_config};
use crate::support::smtp::{SmtpOptions, TestSmtp};

const BIN: &str = env!("CARGO_BIN_EXE_salespulse");

fn check(dir: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let out: Output = Command::new(BIN)
        .current_dir(dir)
        .arg("--config")
        .arg(config)
        .arg("check")
        .args(args)
        .envs(env.iter().copied())
        .env("SALESPULSE_LOG", "warn")
        .output()
        .expect("the binary runs");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The config at `path` with only the weekly job (the department job's rendering would
/// only make the test slower; its templates are checked the same way).
fn weekly_only(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap();
    let start = text.find("[[job]]\nname = \"department-monthly\"").expect("the demo config's department job");
    let end = text[start..].find("\n[targets").map_or(text.len(), |i| start + i + 1);
    std::fs::write(path, format!("{}{}", &text[..start], &text[end..])).unwrap();
}

#[test]
fn a_webhook_without_the_crm_scope_is_named_with_what_to_change() {
    let slot = chrono_tz::Europe::Moscow.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();

    // A webhook with every scope: all is well, and each job's next three slots are shown.
    let (runtime, emulator) = demo_emulator_with(slot, EmulatorOptions::default());
    let config = portal_config(dir.path(), &emulator);
    weekly_only(&config);
    let (code, out) = check(dir.path(), &config, &[], &[]);
    runtime.block_on(emulator.shutdown());
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("ok    crm: the webhook's scopes (crm, user, department)"), "{out}");
    let slots = out.lines().find(|l| l.contains("schedule of job manager-weekly")).expect("the job's slots");
    assert_eq!(slots.matches(" 08:00 MSK").count(), 3, "three slots in Moscow time: {slots}");
    assert_eq!(slots.matches("Mon ").count(), 3, "{slots}");
    assert!(out.contains("check: everything works"), "{out}");

    // The same portal, its webhook without `crm`.
    let options = EmulatorOptions { scopes: vec!["user".into(), "department".into()], ..EmulatorOptions::default() };
    let (runtime, emulator) = demo_emulator_with(slot, options);
    let config = portal_config(dir.path(), &emulator);
    weekly_only(&config);
    let (code, out) = check(dir.path(), &config, &[], &[]);
    runtime.block_on(emulator.shutdown());
    assert_eq!(code, Some(1), "{out}");
    let fail = out.lines().position(|l| l.starts_with("FAIL  crm: the webhook lacks the scope crm")).expect(&out);
    assert!(out.lines().nth(fail).unwrap().contains("it has: user, department"), "{out}");
    assert!(out.lines().nth(fail + 1).is_some_and(|l| l.contains("what to change") && l.contains("tick")), "{out}");
    assert!(out.contains("check: 1 problem(s) found"), "{out}");
    assert!(!out.contains(emulator_code()), "the webhook's code is never printed");
}

/// The emulator's webhook code (`EmulatorOptions::default().token`).
fn emulator_code() -> &'static str {
    "demo-webhook-code"
}

#[test]
fn a_wrong_smtp_password_fails_the_login_and_nothing_is_sent() {
    let server = TestSmtp::start(SmtpOptions::default());
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/salespulse.toml")).unwrap();
    let mail = server
        .mail_toml()
        .replace(&format!("password = \"{}\"\n", server.password), "password_env = \"SP_CHECK_PASSWORD\"\n");
    let start = demo.find("[mail]").unwrap();
    let end = start + demo[start..].find("\n[[job]]").unwrap() + 1;
    let config = dir.path().join("smtp.toml");
    std::fs::write(&config, format!("{}{mail}{}", &demo[..start], &demo[end..])).unwrap();
    weekly_only(&config);

    let (code, out) = check(dir.path(), &config, &[], &[("SP_CHECK_PASSWORD", &server.password)]);
    assert_eq!(code, Some(0), "the right password: {out}");
    assert!(out.contains(&format!("ok    mail: 127.0.0.1:{}, login as {}", server.port, server.username)), "{out}");

    let wrong = "wrong-password-4711";
    let (code, out) = check(dir.path(), &config, &[], &[("SP_CHECK_PASSWORD", wrong)]);
    assert_eq!(code, Some(1), "{out}");
    let fail = out.lines().position(|l| l.starts_with("FAIL  mail: 127.0.0.1")).expect(&out);
    assert!(out.lines().nth(fail + 1).is_some_and(|l| l.contains("username and the password")), "{out}");
    assert!(!out.contains(wrong), "the password is never printed: {out}");
    assert!(server.received().is_empty() && server.data_attempts() == 0, "check sends nothing");
}

#[test]
fn a_broken_template_is_named_with_its_line_and_check_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.typ");
    std::fs::write(&broken, "#let data = json(\"/data.json\")\n\n= #data.manager.nmae\n").unwrap();
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/salespulse.toml")).unwrap();
    let text = demo.replace(
        "name = \"manager-weekly\"\n",
        &format!("name = \"manager-weekly\"\ntemplate = '{}'\n", broken.display()),
    );
    let config = dir.path().join("broken.toml");
    std::fs::write(&config, text).unwrap();
    weekly_only(&config);

    let (code, out) = check(dir.path(), &config, &["--offline"], &[]);
    assert_eq!(code, Some(1), "{out}");
    let fail = out.lines().position(|l| l.starts_with("FAIL  templates of job manager-weekly")).expect(&out);
    let line = out.lines().nth(fail).unwrap();
    assert!(line.contains("broken.typ at line 3, column") && line.contains("nmae"), "{line}");
    assert!(out.lines().nth(fail + 1).is_some_and(|l| l.contains("--template") && l.contains("broken.typ")), "{out}");
    assert!(out.contains("schedule of job manager-weekly"), "the other checks still run: {out}");
}
