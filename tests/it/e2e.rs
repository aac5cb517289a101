//! The whole product through the real binary: `report` and `send` for both jobs on the demo
//! portal, checked against docs/kpi.md computed independently from the demo portal's wire
//! records (`support/reference.rs`, shared with `reports.rs`); delivery through a real SMTP
//! server with STARTTLS and AUTH; config errors with their exit code.

use std::path::{Path, PathBuf};
use std::process::Command;

use mail_parser::MimeHeaders;
use serde_json::Value;

use salespulse::crm::emulator::{PortalData, Record};

use crate::support::bin::{BIN, DEMO_CONFIG, Portal, ok, run};
use crate::support::crm::{demo_emulator, portal_config};
use crate::support::pdf;
use crate::support::reference::{Reference, moscow};
use crate::support::smtp::{SmtpOptions, TestSmtp};

fn value(data: &Value, kpi: &str) -> f64 {
    data["kpis"][kpi]["value"].as_f64().unwrap_or_else(|| panic!("kpis.{kpi}.value is a number in {data}"))
}

fn files_with(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == ext)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn manager_scorecards_match_kpi_md_on_the_demo_portal() {
    let dir = tempfile::tempdir().unwrap();
    let stdout = ok(&run(
        dir.path(),
        Path::new(DEMO_CONFIG),
        &["report", "manager-weekly", "--period", "2026-W47", "--out", "out"],
    ));
    let out = dir.path().join("out/manager-weekly/2026-W47");
    let pdfs = files_with(&out, "pdf");
    assert_eq!(stdout.lines().count(), pdfs.len(), "report prints each PDF it wrote");
    assert!(pdfs.len() >= 8, "one scorecard per active manager in scope, got {pdfs:?}");

    let portal = salespulse::crm::demo::portal(moscow(2026, 11, 23, 8));
    let (start, end) = (moscow(2026, 11, 16, 0), moscow(2026, 11, 23, 0));
    let mut seen_ivan = false;
    let mut any_won = false;
    for pdf_path in &pdfs {
        let data: Value = serde_json::from_slice(&std::fs::read(pdf_path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(data["report"], "manager");
        assert_eq!(data["period"]["label"], "2026-W47");
        assert_eq!(data["period"]["start"], "2026-11-16T00:00:00+03:00");
        assert_eq!(data["previous_period"]["label"], "2026-W46");
        let id = data["manager"]["id"].as_str().unwrap().to_owned();
        let managers = [id.as_str()];
        let want = Reference::new(&portal, &managers, start, end);
        let won = want.won().len();
        assert_eq!(value(&data, "deals_won") as usize, won, "deals_won of manager {id}");
        assert!((value(&data, "revenue") - want.revenue()).abs() < 0.005, "revenue of manager {id}");
        assert_eq!(value(&data, "leads_total") as usize, want.leads().len(), "leads_total of manager {id}");
        assert_eq!(value(&data, "emails_sent") as usize, want.emails_sent(), "emails_sent of manager {id}");
        any_won |= won > 0;

        // The PDF shows the same numbers, formatted as the data says.
        let bytes = std::fs::read(pdf_path).unwrap();
        assert!(bytes.starts_with(b"%PDF-"));
        let text = pdf::normalize(&pdf::text(&bytes));
        let name = data["manager"]["name"].as_str().unwrap();
        assert!(text.contains(&pdf::normalize(name)), "{name} in {}", pdf_path.display());
        for kpi in ["deals_won", "revenue", "emails_sent"] {
            let shown = pdf::normalize(data["kpis"][kpi]["text"]["value"].as_str().unwrap());
            assert!(text.contains(&shown), "{kpi} = {shown:?} of {name} is printed");
        }
        assert!(text.contains("Эффективность менеджера"));
        if id == "17" {
            seen_ivan = true;
            assert_eq!(pdf_path.file_name().unwrap().to_str().unwrap(), "2026-W47 Иван Петров (17).pdf");
        }
    }
    assert!(seen_ivan, "manager 17 (Иван Петров) has a scorecard");
    assert!(any_won, "the demo week has won deals to show");
}

#[test]
fn department_report_matches_kpi_md_and_is_one_population() {
    let dir = tempfile::tempdir().unwrap();
    ok(&run(
        dir.path(),
        Path::new(DEMO_CONFIG),
        &["report", "department-monthly", "--period", "2026-10", "--out", "out"],
    ));
    let out = dir.path().join("out/department-monthly/2026-10");
    let pdfs = files_with(&out, "pdf");
    assert_eq!(pdfs.len(), 1, "{pdfs:?}");
    let data: Value = serde_json::from_slice(&std::fs::read(pdfs[0].with_extension("json")).unwrap()).unwrap();
    assert_eq!(data["report"], "department");
    let managers: Vec<String> =
        data["managers"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert!(managers.len() >= 8);
    let ids: Vec<&str> = managers.iter().map(String::as_str).collect();

    // The department job's slot for October is 1 November 09:00.
    let portal = salespulse::crm::demo::portal(moscow(2026, 11, 1, 9));
    let want = Reference::new(&portal, &ids, moscow(2026, 10, 1, 0), moscow(2026, 11, 1, 0));
    let revenue = want.revenue();
    assert_eq!(value(&data, "deals_won") as usize, want.won().len());
    assert!((value(&data, "revenue") - revenue).abs() < 0.005);
    assert_eq!(value(&data, "leads_total") as usize, want.leads().len());
    assert_eq!(value(&data, "emails_sent") as usize, want.emails_sent());
    let summed: f64 = data["managers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kpis"]["revenue"]["value"].as_f64().unwrap_or(0.0))
        .sum();
    assert!((summed - revenue).abs() < 0.01, "revenue is additive over managers");
    // Breakdowns of docs/kpi.md: every pipeline's every stage, sources by revenue.
    let funnel = data["breakdowns"]["funnel"].as_array().unwrap();
    assert_eq!(funnel.len(), 2, "two pipelines");
    let sources = data["breakdowns"]["sources"].as_array().unwrap();
    let revenues: Vec<f64> = sources.iter().map(|s| s["revenue"].as_f64().unwrap()).collect();
    assert!(revenues.windows(2).all(|w| w[0] >= w[1]), "sources by revenue descending: {revenues:?}");

    let text = pdf::normalize(&pdf::text(&std::fs::read(&pdfs[0]).unwrap()));
    assert!(text.contains("Эффективность менеджеров"));
    for m in data["managers"].as_array().unwrap() {
        let name = pdf::normalize(m["name"].as_str().unwrap());
        assert!(text.contains(&name), "{name} in the department table");
    }
    assert!(text.contains(&pdf::normalize(data["kpis"]["revenue"]["text"]["value"].as_str().unwrap())));
}

#[test]
fn a_report_for_a_period_is_the_same_whenever_it_runs() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        ok(&run(
            dir.path(),
            Path::new(DEMO_CONFIG),
            &["report", "manager-weekly", "--period", "2026-W40", "--only", "17", "--out", "out"],
        ));
    }
    let file = "out/manager-weekly/2026-W40/2026-W40 Иван Петров (17).json";
    let ja = std::fs::read(a.path().join(file)).unwrap();
    assert_eq!(ja, std::fs::read(b.path().join(file)).unwrap());
    let data: Value = serde_json::from_slice(&ja).unwrap();
    assert_eq!(data["generated_at"], "2026-10-05T08:00:00+03:00", "generated_at is the slot, not the clock");
}

#[test]
fn send_to_the_outbox_gives_each_manager_their_own_scorecard_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = Path::new(DEMO_CONFIG);
    // README's main command, with the period pinned.
    let first = ok(&run(dir.path(), config, &["send", "manager-weekly", "--period", "2026-W47", "--out", "out"]));
    let pdfs = files_with(&dir.path().join("out/manager-weekly/2026-W47"), "pdf");
    assert!(pdfs.iter().any(|p| p.ends_with("2026-W47 Иван Петров (17).pdf")), "{pdfs:?}");
    assert!(first.contains(&format!("{} sent, 0 skipped", pdfs.len())), "{first}");
    let outbox = dir.path().join("outbox");
    let emls = files_with(&outbox, "eml");
    assert!(emls.len() >= 8, "{emls:?}");
    let mut recipients = Vec::new();
    for eml in &emls {
        let bytes = std::fs::read(eml).unwrap();
        let msg = mail_parser::MessageParser::default().parse(&bytes).expect("a parseable .eml");
        let to: Vec<String> =
            msg.to().map(|a| a.iter().filter_map(|x| x.address().map(str::to_owned)).collect()).unwrap_or_default();
        assert_eq!(to.len(), 1, "each scorecard goes to one manager alone: {to:?} in {}", eml.display());
        assert_eq!(msg.attachment_count(), 1);
        let name = msg.attachment(0).unwrap().attachment_name().unwrap().to_owned();
        assert!(name.starts_with("2026-W47 ") && name.ends_with(".pdf"), "{name}");
        recipients.push(to[0].clone());
    }
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), emls.len(), "no manager gets two");
    // The PDFs stay in the state directory.
    assert!(!files_with(&dir.path().join("state/reports/manager-weekly/2026-W47"), "pdf").is_empty());

    // Sending the same job and period again sends nothing; --resend --only resends one.
    ok(&run(dir.path(), config, &["send", "manager-weekly", "--period", "2026-W47"]));
    assert_eq!(files_with(&outbox, "eml").len(), emls.len());
    ok(&run(dir.path(), config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17", "--resend"]));
    let after = files_with(&outbox, "eml");

    // `status` tells what was delivered, what is next in local time, and that nothing waits.
    let status = ok(&run(dir.path(), config, &["status"]));
    let weekly = status.lines().position(|l| l.starts_with("manager-weekly (manager")).expect("a line per job");
    assert!(status.lines().nth(weekly).unwrap().contains("next "), "{status}");
    assert!(status.lines().nth(weekly).unwrap().contains("MSK"), "next slot in Moscow time: {status}");
    let delivered = format!("last delivered: 2026-W47, {} report(s)", emls.len());
    assert!(status.lines().nth(weekly + 1).is_some_and(|l| l.contains(&delivered)), "{status}");
    assert!(status.contains("department-monthly (department"), "{status}");
    assert!(status.contains("no deliveries pending or failed"), "{status}");
    assert!(after.len() == emls.len() + 1 || after.len() == emls.len(), "at most one more file: {after:?}");
}

#[test]
fn department_report_is_delivered_through_smtp_with_starttls_and_auth() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestSmtp::start(SmtpOptions::default());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let config_text = std::fs::read_to_string(DEMO_CONFIG).unwrap().replace(
        "[mail]\ntransport = \"outbox\"\noutbox_dir = \"outbox\"\n",
        &format!(
            "[mail]\ntransport = \"smtp\"\nhost = \"localhost\"\nport = {}\ntls = \"starttls\"\nusername = \"{}\"\npassword_env = \"SP_TEST_SMTP_PASSWORD\"\nca_file = \"{}\"\n",
            server.port,
            server.username,
            ca.display()
        ),
    );
    assert!(config_text.contains("transport = \"smtp\""), "the demo config's [mail] section was replaced");
    let config = dir.path().join("smtp.toml");
    std::fs::write(&config, config_text).unwrap();

    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["--config", config.to_str().unwrap(), "send", "department-monthly", "--period", "2026-10"])
        .env("SP_TEST_SMTP_PASSWORD", &server.password)
        .env("SALESPULSE_LOG", "warn")
        .output()
        .unwrap();
    ok(&out);
    let received = server.received();
    assert_eq!(received.len(), 1, "one message to the department's recipients");
    let msg = &received[0];
    let mut to = msg.to.clone();
    to.sort();
    assert_eq!(to, ["ceo@demo.salespulse.local", "head-of-sales@demo.salespulse.local"]);
    assert_eq!(msg.user.as_deref(), Some(server.username.as_str()), "the client authenticated");
    let text = msg.text();
    assert!(text.contains("Subject: "));

    // The attached PDF is byte-identical to the rendered one kept in the state directory.
    let stored = files_with(&dir.path().join("state/reports/department-monthly/2026-10"), "pdf");
    assert_eq!(stored.len(), 1);
    let rendered = std::fs::read(&stored[0]).unwrap();
    let parsed = mail_parser::MessageParser::default().parse(&msg.data).expect("a parseable message");
    let attachment = parsed.attachment(0).expect("a PDF attachment");
    assert_eq!(attachment.attachment_name(), Some("2026-10 Отдел продаж.pdf"));
    assert_eq!(attachment.contents(), rendered.as_slice());
    assert!(parsed.subject().is_some_and(|s| s.contains("2026") || s.contains("Октябрь")), "{:?}", parsed.subject());
}

#[test]
fn config_errors_exit_2_and_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "timezone = \"Europe/Moskva\"\n[crm]\nsource = \"demo\"\n[mail]\ntransport = \"outbox\"\nfrom = \"a@b.ru\"\n",
    )
    .unwrap();
    let out = run(dir.path(), &bad, &["check", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:1:") && err.contains("timezone"), "{err}");

    std::fs::write(&bad, "[crm]\nsource = \"demo\"\ncolour = 1\n[mail]\ntransport = \"outbox\"\nfrom = \"a@b.ru\"\n")
        .unwrap();
    let out = run(dir.path(), &bad, &["check", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3:") && err.contains("colour"), "{err}");

    let out = run(dir.path(), Path::new(DEMO_CONFIG), &["report", "no-such-job"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(dir.path(), Path::new(DEMO_CONFIG), &["report", "manager-weekly", "--period", "2026-W99"]);
    assert_eq!(out.status.code(), Some(2));
    ok(&run(dir.path(), Path::new(DEMO_CONFIG), &["check", "--offline"]));
}

/// CRM data is data: a manager named like Typst markup and a deal titled like HTML come
/// out literally in the PDF and the e-mail, through a real portal configuration
/// (`crm.source = "bitrix24"` against the emulator on loopback).
#[test]
fn crm_strings_print_literally_in_the_pdf_and_the_mail() {
    const NAME: &str = "#set page(width: 1cm) <b>Ivan</b>";
    const TITLE: &str = "*bold* <script>alert(1)</script> $x$";
    let portal = Portal::start(salespulse::crm::demo::portal(moscow(2026, 11, 23, 8)), Default::default());
    portal.emulator.update(|data| {
        let user = data.users.iter_mut().find(|u| u["ID"] == "17").expect("manager 17 exists");
        user.insert("NAME".into(), Value::from(NAME));
        user.insert("LAST_NAME".into(), Value::from(""));
        for deal in data.deals.iter_mut().filter(|d| d["ASSIGNED_BY_ID"] == "17") {
            deal.insert("TITLE".into(), Value::from(TITLE));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal.config(dir.path(), None);

    ok(&run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17"]));
    portal.stop();

    let pdfs = files_with(&dir.path().join("state/reports/manager-weekly/2026-W47"), "pdf");
    assert_eq!(pdfs.len(), 1);
    let pdf_bytes = std::fs::read(&pdfs[0]).unwrap();
    let text = pdf::normalize(&pdf::text(&pdf_bytes));
    assert!(text.contains(&pdf::normalize(NAME)), "the name prints literally: {text}");
    assert!(text.contains(&pdf::normalize("*bold* <script>alert(1)</script>")), "the title prints literally");
    assert!(pdf::page_sizes(&pdf_bytes).into_iter().all(pdf::is_a4), "the page stays A4");

    let emls = files_with(&dir.path().join("outbox"), "eml");
    assert_eq!(emls.len(), 1);
    let raw = std::fs::read(&emls[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    assert!(msg.subject().unwrap().contains(NAME), "{:?}", msg.subject());
    let html = msg.body_html(0).unwrap();
    assert!(html.contains("#set page(width: 1cm) &lt;b&gt;Ivan&lt;"), "the name is escaped in the HTML: {html}");
    assert!(!html.contains("<b>Ivan</b>"), "no live markup from CRM data in the HTML");
    let plain = msg.body_text(0).unwrap();
    assert!(plain.contains(NAME), "the plain text names the manager as written");
}

/// An admin previews a changed template without touching the config; a mistake in it is
/// reported with the file, line and column, and nothing is written.
#[test]
fn a_template_preview_reports_errors_with_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("mine.typ");
    std::fs::write(
        &good,
        "#let data = json(\"/data.json\")\n= Свой шаблон: #data.manager.name\n#data.kpis.revenue.text.value\n",
    )
    .unwrap();
    let stdout = ok(&run(
        dir.path(),
        Path::new(DEMO_CONFIG),
        &["report", "manager-weekly", "--period", "2026-W47", "--only", "17", "--template", good.to_str().unwrap()],
    ));
    let pdf_path = PathBuf::from(stdout.trim());
    let text = pdf::normalize(&pdf::text(&std::fs::read(dir.path().join(&pdf_path)).unwrap()));
    assert!(text.contains(&pdf::normalize("Свой шаблон: Иван Петров")), "{text}");

    let broken = dir.path().join("broken.typ");
    std::fs::write(&broken, "#let data = json(\"/data.json\")\n\n= #data.manager.nmae\n").unwrap();
    let out = run(
        dir.path(),
        Path::new(DEMO_CONFIG),
        &[
            "report",
            "manager-weekly",
            "--period",
            "2026-W47",
            "--out",
            "broken-out",
            "--template",
            broken.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("broken.typ at line 3, column"), "{err}");
    assert!(err.contains("nmae"), "Typst's message names the key: {err}");
    assert!(!dir.path().join("broken-out").exists(), "nothing is written from a broken template");
}

/// Issue 14 point 7 through the binary: `reply_to` in `[mail]` reaches the sent message,
/// which is marked `Auto-Submitted: auto-generated`; a bad `reply_to` is a config error
/// naming file, line and key.
#[test]
fn mail_from_send_is_automated_and_replies_go_to_reply_to() {
    let dir = tempfile::tempdir().unwrap();
    let demo = std::fs::read_to_string(DEMO_CONFIG).unwrap();
    let with = |reply_to: &str| {
        let text = demo.replace("[mail]\n", &format!("[mail]\nreply_to = \"{reply_to}\"\n"));
        assert!(text.contains("reply_to"), "the demo config has a [mail] section");
        let path = dir.path().join("reply.toml");
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = with("Отдел продаж <sales@demo.salespulse.local>");
    ok(&run(dir.path(), &config, &["send", "department-monthly", "--period", "2026-10"]));
    let emls = files_with(&dir.path().join("outbox"), "eml");
    assert_eq!(emls.len(), 1, "{emls:?}");
    let bytes = std::fs::read(&emls[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&bytes).unwrap();
    let auto = msg.header("Auto-Submitted").and_then(|h| h.as_text()).map(str::trim);
    assert_eq!(auto, Some("auto-generated"));
    let reply = msg.reply_to().and_then(|a| a.first()).and_then(|a| a.address());
    assert_eq!(reply, Some("sales@demo.salespulse.local"));

    let bad = with("sales at demo");
    let out = run(dir.path(), &bad, &["check", "--offline"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = demo.lines().position(|l| l == "[mail]").unwrap() + 2;
    assert!(err.contains(&format!("reply.toml:{line}:")) && err.contains("mail.reply_to"), "{err}");
}

/// Issue 14 point 2: nothing is cut silently. Manager 17 gets 23 more stuck deals on the
/// portal: the report data lists every stuck deal, while the PDF and the e-mail list the
/// longest `report.max_stuck_deals` (10) and say how many more there are and what they are
/// worth; the e-mail states the true count.
#[test]
fn every_stuck_deal_is_in_the_data_and_the_pdf_and_mail_say_how_many_more() {
    let (runtime, emulator) = demo_emulator(moscow(2026, 11, 23, 8));
    emulator.update(|data| {
        let open = open_deal_of_17(data);
        for i in 0..23 {
            let mut d = open.clone();
            // Idle 40 to 62 days at the week's end (2026-11-23 00:00 MSK); no stage history.
            let moved = moscow(2026, 10, 14, 12) - chrono::Duration::days(i);
            let stamp = moved.to_rfc3339();
            d.insert("ID".into(), Value::from((990_000 + i).to_string()));
            d.insert("TITLE".into(), Value::from(format!("Долгая сделка {i:02}")));
            d.insert("OPPORTUNITY".into(), Value::from(format!("{}.00", 1000 * (i + 1))));
            d.insert("CURRENCY_ID".into(), Value::from("RUB"));
            d.insert("LEAD_ID".into(), Value::Null);
            d.insert("DATE_CREATE".into(), Value::from("2026-01-05T10:00:00+03:00"));
            d.insert("MOVED_TIME".into(), Value::from(stamp.clone()));
            d.insert("DATE_MODIFY".into(), Value::from(stamp));
            data.deals.push(d);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal_config(dir.path(), &emulator);
    ok(&run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17", "--out", "out"]));
    runtime.block_on(emulator.shutdown());

    let json = files_with(&dir.path().join("out/manager-weekly/2026-W47"), "json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&json[0]).unwrap()).unwrap();
    let stuck = data["stuck_deals"].as_array().unwrap();
    let added: Vec<&Value> = stuck.iter().filter(|d| d["title"].as_str().unwrap().starts_with("Долгая")).collect();
    assert_eq!(added.len(), 23, "the data lists every stuck deal");
    assert!(stuck.len() > 23, "and the demo's own ones: {}", stuck.len());
    let days: Vec<f64> = stuck.iter().map(|d| d["days"].as_f64().unwrap()).collect();
    assert!(days.windows(2).all(|w| w[0] >= w[1]), "longest idle first: {days:?}");
    let summary = &data["stuck_summary"];
    assert_eq!(summary["count"], stuck.len());
    assert_eq!(summary["shown"], 10, "report.max_stuck_deals defaults to 10");
    let more = stuck.len() - 10;
    assert_eq!(more, 21, "manager 17's 8 stuck deals of the demo and the 23 added, less the 10 listed");
    assert_eq!(summary["more"], more);
    let more_value: f64 = stuck[10..].iter().map(|d| d["value"].as_f64().unwrap()).sum();
    assert!((summary["more_value"].as_f64().unwrap() - more_value).abs() < 1e-6);
    let more_text = format!(
        "И ещё {more} сделка на сумму {}.",
        salespulse::kpi::present::fmt_money_whole(more_value, "RUB", salespulse::locale::Language::Ru)
    );
    assert_eq!(summary["more_text"], more_text.as_str());

    let pdfs = files_with(&dir.path().join("out/manager-weekly/2026-W47"), "pdf");
    let text = pdf::normalize(&pdf::text(&std::fs::read(&pdfs[0]).unwrap()));
    let title = |d: &Value| pdf::normalize(d["title"].as_str().unwrap());
    for d in &stuck[..10] {
        assert!(text.contains(&title(d)), "the PDF lists {}", title(d));
    }
    for d in &stuck[10..] {
        assert!(!text.contains(&title(d)), "the PDF leaves out {}", title(d));
    }
    assert!(text.contains(&pdf::normalize(&more_text)), "the PDF says how many more: {text}");
    assert!(text.contains(&pdf::normalize(&format!("Зависшие сделки: {}", stuck.len()))), "{text}");

    let emls = files_with(&dir.path().join("outbox"), "eml");
    let raw = std::fs::read(&emls[0]).unwrap();
    let msg = mail_parser::MessageParser::default().parse(&raw).unwrap();
    for body in [msg.body_text(0).unwrap().into_owned(), msg.body_html(0).unwrap().into_owned()] {
        assert!(body.contains(&format!("Зависших сделок: {}", stuck.len())), "the true count: {body}");
        assert!(body.contains(&more_text), "how many more: {body}");
        assert!(body.contains(stuck[9]["title"].as_str().unwrap()), "the tenth is listed");
        assert!(!body.contains(stuck[10]["title"].as_str().unwrap()), "the eleventh is not");
    }
}

/// Issue 14 point 3 (docs/kpi.md, "The stage of a deal at the period's end"): salespulse
/// fetches the stage history from the start of the report's window. A deal whose only
/// entry lies before the window is taken in its current stage since `MOVED_TIME`, even
/// where that entry says otherwise; a deal with an entry in the window is idle since that
/// entry, even where `MOVED_TIME` says otherwise.
#[test]
fn the_stage_at_the_periods_end_follows_the_fetched_history_then_moved_time() {
    let (runtime, emulator) = demo_emulator(moscow(2026, 11, 23, 8));
    emulator.update(|data| {
        let open = open_deal_of_17(data);
        let stage = open["STAGE_ID"].clone();
        let category = open["CATEGORY_ID"].clone();
        // (id, title, the history entry's time, MOVED_TIME)
        for (id, title, entered, moved) in [
            (991_001, "История до окна", "2026-01-10T12:00:00+03:00", "2026-11-01T12:00:00+03:00"),
            (991_002, "История в окне", "2026-11-05T00:00:00+03:00", "2026-11-12T00:00:00+03:00"),
        ] {
            let mut d = open.clone();
            d.insert("ID".into(), Value::from(id.to_string()));
            d.insert("TITLE".into(), Value::from(title));
            d.insert("LEAD_ID".into(), Value::Null);
            d.insert("DATE_CREATE".into(), Value::from("2025-12-01T10:00:00+03:00"));
            d.insert("MOVED_TIME".into(), Value::from(moved));
            d.insert("DATE_MODIFY".into(), Value::from(moved));
            data.deals.push(d);
            let mut h = serde_json::Map::new();
            for (k, v) in [
                ("ID", Value::from((id * 100).to_string())),
                ("TYPE_ID", Value::from("2")),
                ("OWNER_ID", Value::from(id.to_string())),
                ("CREATED_TIME", Value::from(entered)),
                ("CATEGORY_ID", category.clone()),
                ("STAGE_SEMANTIC_ID", Value::from("P")),
                ("STAGE_ID", stage.clone()),
            ] {
                h.insert(k.into(), v);
            }
            data.stage_history.push(h);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = portal_config(dir.path(), &emulator);
    ok(&run(
        dir.path(),
        &config,
        &["report", "manager-weekly", "--period", "2026-W47", "--only", "17", "--out", "out"],
    ));
    runtime.block_on(emulator.shutdown());

    let json = files_with(&dir.path().join("out/manager-weekly/2026-W47"), "json");
    let data: Value = serde_json::from_str(&std::fs::read_to_string(&json[0]).unwrap()).unwrap();
    let days = |id: &str| {
        data["stuck_deals"].as_array().unwrap().iter().find(|d| d["id"] == id).map(|d| d["days"].as_f64().unwrap())
    };
    // The week ends on Monday 23 November 00:00. Before the window: since MOVED_TIME
    // (1 November 12:00), not since the January entry (317 days).
    assert_eq!(days("991001"), Some(21.5));
    // In the window: since the entry (5 November), not since MOVED_TIME (11 days, not stuck).
    assert_eq!(days("991002"), Some(18.0));
}

/// One of manager 17's open deals on the demo portal, to copy into new ones.
fn open_deal_of_17(data: &PortalData) -> Record {
    data.deals
        .iter()
        .find(|d| d["ASSIGNED_BY_ID"] == "17" && d["STAGE_SEMANTIC_ID"] == "P" && d["IS_RECURRING"] == "N")
        .expect("manager 17 has an open deal")
        .clone()
}
