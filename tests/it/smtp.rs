//! E-mail as recipients and the admin see it: a report composed, sent over STARTTLS with
//! AUTH to a real (in-process) SMTP server, and read back with an independent MIME parser;
//! failures classified so the ledger retries what can succeed and stops on what cannot.

use mail_parser::{MessageParser, MimeHeaders};
use salespulse::config::{
    Channel, Config, JobConfig, MailConfig, MailTransportKind, PeriodRule, ReportKind, Secret, TlsMode, parse_cron,
};
use salespulse::kpi::ReportData;
use salespulse::mail::{
    AnyMailer, DigestLine, MailError, Mailer, OutboxMailer, Outgoing, ReportMail, SmtpMailer, check_connection,
    compose, compose_digest, mailer_from_config,
};

use crate::support::fixtures::{department_report, manager_report, manager_report_in};
use crate::support::smtp::{SmtpOptions, TestSmtp};

/// The headline KPIs every report e-mail shows.
const HEADLINE: [&str; 7] =
    ["deals_won", "revenue", "avg_deal_value", "lead_conversion", "cycle_days_median", "csat", "emails_sent"];

fn job(kind: ReportKind, subject: Option<&str>) -> JobConfig {
    let (name, schedule, period) = match kind {
        ReportKind::Manager => ("manager-weekly", "0 8 * * MON", PeriodRule::PreviousWeek),
        ReportKind::Department => ("department-monthly", "0 9 1 * *", PeriodRule::PreviousMonth),
    };
    JobConfig {
        name: name.to_owned(),
        report: kind,
        schedule: schedule.to_owned(),
        cron: parse_cron(schedule).unwrap(),
        period,
        recipients: Vec::new(),
        template: None,
        subject: subject.map(str::to_owned),
        channels: vec![Channel::Email],
        bitrix24_recipients: Vec::new(),
    }
}

/// Bytes that look like a PDF and contain every byte value, so any encoding slip shows.
fn pdf_bytes(len: usize) -> Vec<u8> {
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.extend((0..len.saturating_sub(pdf.len())).map(|i| (i * 7 % 256) as u8));
    pdf
}

fn file_name(data: &ReportData) -> String {
    let who = data.manager.as_ref().map(|m| m.name.as_str()).unwrap_or("department");
    format!("{} {who}.pdf", data.period.label)
}

fn compose_for(mail: &MailConfig, job: &JobConfig, data: &ReportData, pdf: &[u8], to: &[String]) -> Outgoing {
    let name = file_name(data);
    let key = data.manager.as_ref().map(|m| m.id.clone()).unwrap_or("department".into());
    compose(mail, &ReportMail { job, data, pdf, file_name: &name, to, recipient_key: &key, generation: 0 })
        .expect("compose")
}

fn outbox_config(dir: &std::path::Path) -> MailConfig {
    MailConfig {
        transport: MailTransportKind::Outbox { dir: dir.to_owned() },
        from: "Отчёты продаж <reports@example.ru>".to_owned(),
        reply_to: None,
        admin_to: vec!["it@example.ru".to_owned()],
        max_attachment_bytes: 10 * 1024 * 1024,
        timeout_secs: 10,
        ca_file: None,
    }
}

fn ivan() -> Vec<String> {
    vec!["Иван Петров <ivan@example.ru>".to_owned()]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_arrives_over_starttls_with_auth_and_reads_back_intact() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mail = smtp.mail_config();
    let data = manager_report();
    let manager = data.manager.clone().unwrap();
    let pdf = pdf_bytes(40_000);
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &data, &pdf, &ivan());
    assert!(!out.attachment_omitted);

    smtp.mailer().send(&out).await.expect("the server accepts the report");

    let received = smtp.received();
    assert_eq!(received.len(), 1);
    let got = &received[0];
    assert_eq!(got.from, smtp.username);
    assert_eq!(got.to, vec!["ivan@example.ru".to_owned()]);
    assert_eq!(got.user.as_deref(), Some(smtp.username.as_str()), "the message was sent after AUTH");
    // lettre ends DATA with CRLF "." CRLF after the message's own final CRLF: one blank
    // line more in the epilogue, nothing else.
    let body = got.data.strip_suffix(b"\r\n").unwrap_or(&got.data);
    assert!(body == out.bytes.as_slice(), "the server got other bytes than composed");
    let msg = MessageParser::default().parse(&got.data).expect("a parseable message");
    assert_eq!(
        msg.subject(),
        Some(format!("Эффективность менеджера: {}, {}", manager.name, data.period.title).as_str())
    );
    assert_eq!(msg.to().and_then(|a| a.first()).and_then(|a| a.name()), Some(manager.name.as_str()));
    assert_eq!(msg.message_id(), Some(out.message_id.as_str()));
    let date = msg.date().expect("a Date header").to_timestamp();
    assert_eq!(date, chrono::DateTime::parse_from_rfc3339(&data.generated_at).unwrap().timestamp());

    let text = msg.body_text(0).expect("a plain-text body");
    let html = msg.body_html(0).expect("an HTML body");
    for key in HEADLINE {
        let t = data.kpis.get(key).unwrap().text.clone().unwrap();
        for part in [&t.label, &t.value, &t.delta] {
            assert!(text.contains(part.as_str()), "plain text lacks {key} {part:?}:\n{text}");
            assert!(html.contains(part.as_str()), "HTML lacks {key} {part:?}");
        }
    }

    assert_eq!(msg.attachment_count(), 1);
    let attachment = msg.attachment(0).unwrap();
    assert_eq!(attachment.attachment_name(), Some(file_name(&data).as_str()));
    // Clients that ignore RFC 2231 (older Outlook) read the RFC 2047 `name` instead.
    let content_type = attachment.content_type().expect("a Content-Type");
    assert_eq!((content_type.ctype(), content_type.subtype()), ("application", Some("pdf")));
    assert_eq!(content_type.attribute("name"), Some(file_name(&data).as_str()));
    assert_eq!(attachment.contents(), pdf.as_slice(), "the PDF decodes byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_refused_and_never_printed() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let wrong = "wrong-Пароль-777";
    let mut mail = smtp.mail_config();
    if let MailTransportKind::Smtp { password, .. } = &mut mail.transport {
        *password = Some(Secret::new(wrong).into());
    }
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(100), &ivan());

    let err = smtp.mailer_for(&mail).send(&out).await.expect_err("a wrong password must fail");
    assert!(matches!(err, MailError::LoginRefused { .. }), "{err:?}");
    assert!(!err.is_transient(), "a refused login waits for the admin, it is not retried at once");
    for shown in [err.to_string(), format!("{err:?}")] {
        assert!(!shown.contains(wrong), "the password leaked: {shown}");
        assert!(!shown.contains(&smtp.password));
    }
    assert!(err.to_string().contains("535"), "the reply code tells the admin why: {err}");
    assert!(smtp.received().is_empty());

    // `check` finds the same without sending anything.
    let err = smtp.mailer_for(&mail).check().await.expect_err("check logs in");
    assert!(matches!(err, MailError::LoginRefused { .. }) && !err.to_string().contains(wrong), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_unknown_ca_is_refused_before_auth() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mut mail = smtp.mail_config();
    mail.ca_file = None;
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(100), &ivan());

    // The system roots do not include the test CA.
    let err = SmtpMailer::new(&mail).unwrap().send(&out).await.expect_err("an untrusted certificate");
    assert!(matches!(err, MailError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert!(smtp.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_ca_file_reaches_the_server() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let config = Config::parse(&format!("[crm]\nsource = \"demo\"\n{}", smtp.mail_toml()), "test.toml").unwrap();
    let mailer = mailer_from_config(&config.mail).unwrap();
    assert!(matches!(mailer, AnyMailer::Smtp(_)));
    check_connection(&mailer).await.expect("check connects, upgrades and logs in");

    let out = compose_for(&config.mail, &job(ReportKind::Manager, None), &manager_report(), b"%PDF-", &ivan());
    mailer.send(&out).await.unwrap();
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn implicit_tls_delivers_and_verifies_the_certificate() {
    let smtp = TestSmtp::start(SmtpOptions { implicit_tls: true, ..SmtpOptions::default() });
    let config = Config::parse(&format!("[crm]\nsource = \"demo\"\n{}", smtp.mail_toml()), "test.toml").unwrap();
    assert!(matches!(config.mail.transport, MailTransportKind::Smtp { tls: TlsMode::Tls, .. }));
    let out = compose_for(&config.mail, &job(ReportKind::Manager, None), &manager_report(), b"%PDF-", &ivan());
    mailer_from_config(&config.mail).unwrap().send(&out).await.expect("delivered over implicit TLS");
    assert_eq!(smtp.received().len(), 1);

    let mut untrusted = config.mail.clone();
    untrusted.ca_file = None;
    let err = SmtpMailer::new(&untrusted).unwrap().send(&out).await.expect_err("an unknown CA");
    assert!(matches!(err, MailError::Permanent { .. }), "{err:?}");
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_transient_and_the_retry_gets_through() {
    let smtp = TestSmtp::start(SmtpOptions { refuse_data: 1, ..SmtpOptions::default() });
    let mail = smtp.mail_config();
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(100), &ivan());
    let mailer = smtp.mailer();

    let err = mailer.send(&out).await.expect_err("the first attempt is refused");
    assert!(err.is_transient(), "{err:?}");
    assert!(smtp.received().is_empty());

    mailer.send(&out).await.expect("the retry is accepted");
    assert_eq!(smtp.data_attempts(), 2);
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_mailbox_is_permanent() {
    let smtp = TestSmtp::start(SmtpOptions {
        reject_recipients: vec!["nobody@example.ru".to_owned()],
        ..SmtpOptions::default()
    });
    let mail = smtp.mail_config();
    let to = vec!["ivan@example.ru".to_owned(), "nobody@example.ru".to_owned()];
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(100), &to);

    let err = smtp.mailer().send(&out).await.expect_err("a 550 recipient fails the message");
    assert!(matches!(err, MailError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("550"), "{err}");
    assert!(smtp.received().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_or_closing_server_is_transient() {
    // A port nobody listens on: connection refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mut mail = smtp.mail_config();
    if let MailTransportKind::Smtp { port: p, .. } = &mut mail.transport {
        *p = port;
    }
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(100), &ivan());
    let err = smtp.mailer_for(&mail).send(&out).await.expect_err("nobody listens");
    assert!(err.is_transient(), "{err:?}");

    // A server answering 421 (in maintenance).
    smtp.set_down(true);
    let err = smtp.mailer().send(&out).await.expect_err("the server is down");
    assert!(err.is_transient(), "{err:?}");
    smtp.set_down(false);
    smtp.mailer().send(&out).await.expect("back up");
    assert_eq!(smtp.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_confirmation_is_transient_though_the_message_arrived() {
    // The server keeps the message and hangs up with 421 instead of 250: the sender cannot
    // know, so it must retry (and the ledger must expect a duplicate).
    let smtp = TestSmtp::start(SmtpOptions { accept_then_hang_up: 1, ..SmtpOptions::default() });
    let mail = smtp.mail_config();
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), b"%PDF-", &ivan());
    let err = smtp.mailer().send(&out).await.expect_err("no 250");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(smtp.received().len(), 1);

    // A confirmation that comes later than the timeout: the same.
    let mut slow = mail.clone();
    slow.timeout_secs = 1;
    smtp.set_delay_after_data(Some(std::time::Duration::from_secs(3)));
    let err = smtp.mailer_for(&slow).send(&out).await.expect_err("250 too late");
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(smtp.received().len(), 2);
}

/// On tokio's paused clock: the mailer's deadline is a tokio timer, so the second it waits
/// passes as soon as nothing else can happen, and what is measured is that deadline, not
/// how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_times_out_as_transient() {
    // Accepts the connection and then says nothing, not even a greeting.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || silent.accept().map(|(conn, _)| conn));
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mut mail = smtp.mail_config();
    mail.timeout_secs = 1;
    if let MailTransportKind::Smtp { port: p, .. } = &mut mail.transport {
        *p = port;
    }
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(100), &ivan());

    let started = tokio::time::Instant::now();
    let err = smtp.mailer_for(&mail).send(&out).await.expect_err("no answer");
    assert!(err.is_transient(), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "took {:?}", started.elapsed());
    drop(holder);
}

#[tokio::test]
async fn the_outbox_writes_a_parseable_eml() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let mail = outbox_config(&outbox);
    let data = manager_report();
    let pdf = pdf_bytes(5_000);
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &data, &pdf, &ivan());

    let mailer = mailer_from_config(&mail).unwrap();
    assert!(matches!(mailer, AnyMailer::Outbox(_)));
    mailer.send(&out).await.unwrap();
    // A resend of the same row replaces the file rather than adding one.
    mailer.send(&out).await.unwrap();

    let files: Vec<_> = std::fs::read_dir(&outbox).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files, vec![OutboxMailer::new(&outbox).path_for(&out.message_id)], "one file, no temp files");
    let bytes = std::fs::read(&files[0]).unwrap();
    assert_eq!(bytes, out.bytes);
    let msg = MessageParser::default().parse(&bytes).unwrap();
    assert!(msg.subject().unwrap().contains(&data.manager.as_ref().unwrap().name));
    assert_eq!(msg.attachment(0).unwrap().contents(), pdf.as_slice());
}

#[test]
fn crm_strings_are_escaped_in_html_and_verbatim_in_text() {
    let mail = outbox_config(std::path::Path::new("outbox"));
    let mut data = manager_report();
    let script = "<script>alert(1)</script>";
    let typst = "#set page(width: 1cm)";
    data.manager.as_mut().unwrap().name = script.to_owned();
    data.hints[0].text = typst.to_owned();
    let out = compose_for(&mail, &job(ReportKind::Manager, None), &data, &pdf_bytes(100), &ivan());
    let msg = MessageParser::default().parse(&out.bytes).unwrap();

    let html = msg.body_html(0).unwrap();
    assert!(!html.contains(script), "raw markup reached the HTML");
    let unescaped = html
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#x2f;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&amp;", "&");
    assert!(unescaped.contains(script), "a browser shows the name as written:\n{html}");
    assert!(html.contains(typst));
    let text = msg.body_text(0).unwrap();
    assert!(text.contains(script) && text.contains(typst), "{text}");
    assert!(msg.subject().unwrap().contains(script), "the subject is plain text");
}

#[test]
fn a_name_with_line_breaks_cannot_add_headers() {
    let mail = outbox_config(std::path::Path::new("outbox"));
    let mut data = manager_report();
    data.manager.as_mut().unwrap().name = "Иван\r\nBcc: evil@example.com\r\nX-Injected: 1".to_owned();
    let name = "x\r\nBcc: evil@example.com.pdf";
    let job = job(ReportKind::Manager, None);
    let to = ivan();
    let out = compose(
        &mail,
        &ReportMail {
            job: &job,
            data: &data,
            pdf: &pdf_bytes(100),
            file_name: name,
            to: &to,
            recipient_key: "17",
            generation: 0,
        },
    )
    .unwrap();
    let msg = MessageParser::default().parse(&out.bytes).unwrap();
    assert!(msg.header_raw("Bcc").is_none() && msg.header_raw("X-Injected").is_none());
    assert!(msg.subject().unwrap().contains("Иван Bcc: evil@example.com X-Injected: 1"));
    assert_eq!(out.to, vec!["ivan@example.ru".to_owned()]);

    let sneaky = vec!["ivan@example.ru\r\nBcc: evil@example.com".to_owned()];
    let err = compose(
        &mail,
        &ReportMail {
            job: &job,
            data: &data,
            pdf: b"%PDF-",
            file_name: "a.pdf",
            to: &sneaky,
            recipient_key: "17",
            generation: 0,
        },
    )
    .expect_err("an address with a line break is no address");
    assert!(matches!(err, MailError::Compose { .. }));
}

#[test]
fn subjects_follow_the_job_template_or_the_language() {
    let mail = outbox_config(std::path::Path::new("outbox"));
    let subject = |job: &JobConfig, data: &ReportData| {
        let out = compose_for(&mail, job, data, b"%PDF-", &ivan());
        MessageParser::default().parse(&out.bytes).unwrap().subject().unwrap().to_owned()
    };
    let custom = job(ReportKind::Manager, Some("{{ period.label }} · {{ manager.name }}"));
    let data = manager_report();
    let name = &data.manager.as_ref().unwrap().name;
    assert_eq!(subject(&custom, &data), format!("{} · {name}", data.period.label));

    let en = manager_report_in("en");
    assert_eq!(subject(&job(ReportKind::Manager, None), &en), format!("Sales scorecard: {name}, {}", en.period.title));

    let dept = department_report();
    assert_eq!(
        subject(&job(ReportKind::Department, None), &dept),
        format!("Отчёт отдела продаж за {}", dept.period.title)
    );
}

#[test]
fn the_department_mail_lists_the_managers() {
    let mail = outbox_config(std::path::Path::new("outbox"));
    let data = department_report();
    let out = compose_for(&mail, &job(ReportKind::Department, None), &data, b"%PDF-", &ivan());
    let msg = MessageParser::default().parse(&out.bytes).unwrap();
    let (text, html) = (msg.body_text(0).unwrap(), msg.body_html(0).unwrap());
    for m in data.managers.as_ref().unwrap() {
        let revenue = &m.kpis.revenue.text.as_ref().unwrap().value;
        assert!(text.contains(&m.name) && text.contains(revenue.as_str()), "{} missing:\n{text}", m.name);
        assert!(html.contains(&m.name));
    }
    assert_eq!(msg.attachment(0).unwrap().attachment_name(), Some(file_name(&data).as_str()));
}

#[test]
fn an_oversized_pdf_is_left_out_and_flagged() {
    let mut mail = outbox_config(std::path::Path::new("outbox"));
    let job = job(ReportKind::Manager, None);
    let data = manager_report();
    let pdf = pdf_bytes(3_000);

    // The limit counts the attachment as sent: base64, 76 characters a line plus CRLF.
    let chars = pdf.len().div_ceil(3) * 4;
    let encoded = (chars + chars.div_ceil(76) * 2) as u64;
    mail.max_attachment_bytes = encoded;
    let fits = compose_for(&mail, &job, &data, &pdf, &ivan());
    assert!(!fits.attachment_omitted);
    assert_eq!(MessageParser::default().parse(&fits.bytes).unwrap().attachment_count(), 1);

    mail.max_attachment_bytes = encoded - 1;
    let big = compose_for(&mail, &job, &data, &pdf, &ivan());
    assert!(big.attachment_omitted, "the caller learns the PDF was left out");
    let msg = MessageParser::default().parse(&big.bytes).unwrap();
    assert_eq!(msg.attachment_count(), 0);
    let text = msg.body_text(0).unwrap();
    assert!(!text.contains(&file_name(&data)), "the body does not promise an attachment:\n{text}");
    assert!(text.contains("PDF"), "the body says the PDF is missing:\n{text}");
}

#[test]
fn the_same_row_composes_the_same_message() {
    let mail = outbox_config(std::path::Path::new("outbox"));
    let job = job(ReportKind::Manager, None);
    let data = manager_report();
    let a = compose_for(&mail, &job, &data, &pdf_bytes(1_000), &ivan());
    let b = compose_for(&mail, &job, &data, &pdf_bytes(1_000), &ivan());
    assert_eq!(a.message_id, b.message_id);
    assert_eq!(a.bytes, b.bytes, "a resend is byte for byte the same message");

    let mut other = data.clone();
    other.manager.as_mut().unwrap().id = "21".to_owned();
    let c = compose_for(&mail, &job, &other, &pdf_bytes(1_000), &ivan());
    assert_ne!(a.message_id, c.message_id, "another recipient, another message");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_digest_tells_the_admin_who_missed_what_and_how_to_resend() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mail = smtp.mail_config();
    let failures = vec![
        DigestLine {
            channel: "email".into(),
            recipient_key: "17".into(),
            recipient_name: "Иван Петров".into(),
            to: vec!["ivan@example.ru".into()],
            reason: "failed to send mail (smtp 127.0.0.1:25: permanent error (550): Mailbox unavailable)".into(),
        },
        DigestLine {
            channel: "email".into(),
            recipient_key: "21".into(),
            recipient_name: "Мария Соколова".into(),
            to: vec![],
            reason: "no e-mail address in Bitrix24".into(),
        },
    ];
    let out = compose_digest(&mail, "manager-weekly", "2026-W47", &failures).unwrap();
    smtp.mailer().send(&out).await.unwrap();

    let received = smtp.received();
    assert_eq!(received[0].to, mail.admin_to);
    let msg = MessageParser::default().parse(&received[0].data).unwrap();
    assert!(msg.subject().unwrap().contains("manager-weekly"));
    let text = msg.body_text(0).unwrap();
    for f in &failures {
        assert!(text.contains(&f.recipient_name) && text.contains(&f.reason), "{text}");
        let cmd = format!("salespulse send manager-weekly --period 2026-W47 --only {} --resend", f.recipient_key);
        assert!(text.contains(&cmd), "no resend command for {}:\n{text}", f.recipient_name);
    }
    assert!(text.contains("ivan@example.ru"));
}

/// Issue 14 point 7: every message salespulse sends, report or admin digest, is marked as
/// automated (RFC 3834 `Auto-Submitted: auto-generated`, so vacation responders stay
/// quiet) and carries the `Reply-To` of `[mail]` when one is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_and_digests_are_automated_mail_with_the_configured_reply_to() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let mut mail = smtp.mail_config();
    let failure = DigestLine {
        channel: "email".into(),
        recipient_key: "17".into(),
        recipient_name: "Иван Петров".into(),
        to: vec!["ivan@example.ru".into()],
        reason: "no e-mail address in Bitrix24".into(),
    };
    for reply_to in [None, Some("Отдел продаж <sales@example.ru>")] {
        mail.reply_to = reply_to.map(str::to_owned);
        let report = compose_for(&mail, &job(ReportKind::Manager, None), &manager_report(), &pdf_bytes(500), &ivan());
        let digest = compose_digest(&mail, "manager-weekly", "2026-W47", std::slice::from_ref(&failure)).unwrap();
        for out in [report, digest] {
            smtp.mailer().send(&out).await.unwrap();
            let received = smtp.received();
            let msg = MessageParser::default().parse(&received.last().unwrap().data).unwrap();
            let auto = msg.header("Auto-Submitted").and_then(|h| h.as_text()).map(str::trim);
            assert_eq!(auto, Some("auto-generated"), "{}", String::from_utf8_lossy(&out.bytes));
            let reply: Option<(Option<&str>, Option<&str>)> =
                msg.reply_to().and_then(|a| a.first()).map(|a| (a.name(), a.address()));
            match reply_to {
                None => assert_eq!(reply, None, "no Reply-To unless configured"),
                Some(_) => assert_eq!(reply, Some((Some("Отдел продаж"), Some("sales@example.ru")))),
            }
        }
    }
}
