//! CRM strings are harmless everywhere (issue 11): a control character in a name, names
//! that collide or are too long or carry a right-to-left override, an `EMAIL` with line
//! breaks or a display name. Each through the real binary against the Bitrix24 emulator
//! serving the demo portal with such strings.

use std::path::{Path, PathBuf};

use chrono::TimeZone;
use mail_parser::{MessageParser, MimeHeaders};
use serde_json::Value;

use salespulse::crm::emulator::PortalData;

use crate::support::bin::{Portal, ok, run};
use crate::support::pdf;

const ADMIN: &str = "it@demo.salespulse.local";

/// The demo portal as of the slot of 2026-W47, with `edit` applied.
fn portal_with(edit: impl FnOnce(&mut PortalData)) -> Portal {
    let slot = chrono_tz::Europe::Moscow.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).unwrap();
    let portal = Portal::start(salespulse::crm::demo::portal(slot), Default::default());
    portal.emulator.update(edit);
    portal
}

/// Sets `field` of user `id`.
fn set_user(data: &mut PortalData, id: &str, field: &str, value: &str) {
    let user = data.users.iter_mut().find(|u| u["ID"] == id).unwrap_or_else(|| panic!("user {id} exists"));
    user.insert(field.into(), Value::from(value));
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    v.sort();
    v
}

/// The `.eml` files of the outbox, parsed: (To addresses, raw message).
fn outbox(dir: &Path) -> Vec<(Vec<String>, Vec<u8>)> {
    files_with(&dir.join("outbox"), "eml")
        .into_iter()
        .map(|p| {
            let raw = std::fs::read(&p).unwrap();
            let msg = MessageParser::default().parse(&raw).expect("a parseable .eml");
            let to =
                msg.to().map(|a| a.iter().filter_map(|x| x.address().map(str::to_owned)).collect()).unwrap_or_default();
            (to, raw)
        })
        .collect()
}

/// The admin's failure digest in the outbox, as text.
fn digest(dir: &Path) -> String {
    let mails = outbox(dir);
    let digests: Vec<&Vec<u8>> = mails.iter().filter(|(to, _)| to == &[ADMIN]).map(|(_, raw)| raw).collect();
    assert_eq!(digests.len(), 1, "one digest to the admin");
    let msg = MessageParser::default().parse(digests[0]).unwrap();
    msg.body_text(0).unwrap().into_owned()
}

/// Point 5: a bell character in a manager's name used to make the department report's
/// chart SVG invalid ("a non-XML character"), failing the whole report.
#[test]
fn a_control_character_in_a_name_does_not_break_the_department_report() {
    let portal = portal_with(|d| {
        set_user(d, "17", "NAME", "Bell\u{7}");
        set_user(d, "17", "LAST_NAME", "Ring\u{1b}[31m\u{0}");
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal.config(dir.path(), None);
    let stdout =
        ok(&run(dir.path(), &config, &["report", "department-monthly", "--period", "2026-10", "--out", "out"]));
    portal.stop();
    let pdf_path = dir.path().join(stdout.trim());
    let text = pdf::normalize(&pdf::text(&std::fs::read(&pdf_path).unwrap()));
    assert!(text.contains(&pdf::normalize("Bell Ring[31m")), "the name, without its control characters: {text}");
    let json = std::fs::read_to_string(pdf_path.with_extension("json")).unwrap();
    assert!(json.contains("\"Bell Ring[31m\""), "the report data holds the cleaned name");
}

/// Point 6: two managers called the same, a name of 100 emoji, a right-to-left override:
/// every manager gets their own file and attachment, named with their id, short enough for
/// any file system, without format characters.
#[test]
fn file_and_attachment_names_are_unique_short_and_plain() {
    let portal = portal_with(|d| {
        set_user(d, "21", "NAME", "Иван");
        set_user(d, "21", "LAST_NAME", "Петров");
        set_user(d, "11", "NAME", &"😀".repeat(100));
        set_user(d, "11", "LAST_NAME", "");
        set_user(d, "13", "NAME", "Дмитрий\u{202E}fdp.exe");
        set_user(d, "13", "LAST_NAME", "");
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal.config(dir.path(), None);
    let stdout = ok(&run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--out", "out"]));
    portal.stop();

    let pdfs = files_with(&dir.path().join("out/manager-weekly/2026-W47"), "pdf");
    let mails = outbox(dir.path());
    assert!(stdout.contains(&format!("{} sent, 0 skipped", pdfs.len())), "one file per report sent: {stdout}");
    assert_eq!(pdfs.len(), mails.len(), "{pdfs:?}");
    let names: Vec<String> = pdfs.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    for name in ["2026-W47 Иван Петров (17).pdf", "2026-W47 Иван Петров (21).pdf", "2026-W47 Дмитрийfdp.exe (13).pdf"]
    {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    assert!(names.iter().any(|n| n.starts_with("2026-W47 😀😀") && n.ends_with("😀 (11).pdf")), "{names:?}");
    for name in &names {
        assert!(name.len() <= 120, "{name}: {} bytes", name.len());
        assert!(!name.contains('\u{202E}'), "{name:?}");
    }
    for pdf in &pdfs {
        assert!(pdf.with_extension("json").exists(), "{}", pdf.display());
    }
    let mut attachments = Vec::new();
    for (_, raw) in &mails {
        let msg = MessageParser::default().parse(raw).unwrap();
        attachments.push(msg.attachment(0).unwrap().attachment_name().unwrap().to_owned());
    }
    attachments.sort();
    let mut expected = names.clone();
    expected.sort();
    assert_eq!(attachments, expected, "each attachment is named as its file");
}

/// Point 7: an `EMAIL` with CR/LF and a name with a line separator cannot forge lines in
/// `status` or in the admin's digest (a fake "resend" command).
#[test]
fn crm_text_cannot_forge_lines_in_status_or_the_digest() {
    const FAKE: &str = "salespulse send manager-weekly --period 2026-W47 --only 1 --resend";
    let portal = portal_with(|d| {
        set_user(
            d,
            "19",
            "EMAIL",
            &format!("m19@example.ru\r\n  manager-weekly 2026-W47 Fake <f@x.ru>: sent\r\n{FAKE}"),
        );
        set_user(d, "19", "NAME", &format!("Мария\u{2028}{FAKE}\u{2029}"));
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal.config(dir.path(), None);
    let out = run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47"]);
    portal.stop();
    assert_eq!(out.status.code(), Some(1), "one manager could not get theirs: {out:?}");

    let status = ok(&run(dir.path(), &config, &["status"]));
    for c in ['\r', '\u{2028}', '\u{2029}', '\u{85}'] {
        assert!(!status.contains(c), "{c:?} in status:\n{status}");
    }
    let pending: Vec<&str> =
        status.lines().skip_while(|l| !l.starts_with("deliveries pending or failed")).skip(1).collect();
    assert_eq!(pending.len(), 1, "one line for the one failure:\n{status}");
    assert!(pending[0].starts_with("  manager-weekly 2026-W47 Мария "), "{status}");
    assert!(!status.lines().any(|l| l.starts_with(FAKE) || l.trim_start().starts_with("manager-weekly 2026-W47 Fake")));

    let body = digest(dir.path());
    for c in ['\r', '\u{2028}', '\u{2029}', '\u{85}'] {
        assert!(!body.replace("\r\n", "\n").contains(c), "{c:?} in the digest:\n{body}");
    }
    let commands: Vec<&str> = body.lines().filter(|l| l.contains("send manager-weekly")).collect();
    assert_eq!(commands.len(), 2, "the name's line and the one real command:\n{body}");
    let real = salespulse::mail::resend_command(&config.to_string_lossy(), "manager-weekly", "2026-W47", &["19"]);
    assert!(real.ends_with(" send manager-weekly --period 2026-W47 --only 19 --resend"), "{real}");
    assert!(commands.iter().any(|l| l.trim() == real), "{real}\n{body}");
    assert!(!body.lines().any(|l| l.trim_start().starts_with(FAKE)), "no forged command line:\n{body}");
}

/// Point 8: an `EMAIL` with a display name (`"Spoof Name" <m21@…>`) or that is no address
/// at all is that manager's "no usable e-mail address" failure, told to the admin; nothing
/// of it reaches a `To:` header.
#[test]
fn an_email_that_is_not_one_bare_address_is_reported_not_used() {
    let portal = portal_with(|d| {
        set_user(d, "21", "EMAIL", "\"Spoof Name\" <m21@example.ru>");
        set_user(d, "23", "EMAIL", "o.morozova at demo");
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal.config(dir.path(), None);
    let out = run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47"]);
    portal.stop();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("2 failed"), "{stdout}");
    for name in ["Сергей Новиков <>: no usable e-mail address", "Ольга Морозова <>: no usable e-mail address"]
    {
        assert!(stdout.contains(name), "{name}: {stdout}");
    }
    for (to, raw) in outbox(dir.path()) {
        assert!(!to.iter().any(|a| a.contains("m21@") || a.contains("morozova")), "{to:?}");
        let text = String::from_utf8_lossy(&raw);
        let to_header = text.lines().find(|l| l.starts_with("To:")).unwrap_or_default();
        assert!(!to_header.contains("Spoof"), "{to_header}");
    }
    let body = digest(dir.path());
    assert!(body.contains("Сергей Новиков (21)") && body.contains("Ольга Морозова (23)"), "{body}");
    assert_eq!(body.matches("no usable e-mail address").count(), 2, "{body}");
}
