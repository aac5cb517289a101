//! Composing messages: a report's e-mail (subject, HTML and plain-text summary of the
//! headline KPIs, the PDF attached), the admin's failure digest, and the admin's message
//! that a job failed before it could send anything.
//!
//! Bodies come from the minijinja templates in `report-templates/mail/`, embedded at build
//! time. The HTML templates escape everything they print, so CRM strings (a manager called
//! `<script>…`) show up as text; header values are flattened to one line before lettre
//! encodes them, so no CRM string can add a header. Numbers are printed from the
//! pre-formatted `text` strings of the report data, so the e-mail and the PDF agree.
//!
//! The same report row always composes to the same bytes: `Message-ID` comes from (job,
//! period, recipient), `Date` from the slot the report belongs to, MIME boundaries from a
//! hash of the content. A resend is therefore recognisable as the same message.
//!
//! Left to others: who the recipients are, the file name of the PDF (the pipeline), and
//! telling the admin when [`Outgoing::attachment_omitted`] is set.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::SystemTime;

use lettre::message::header::{self, ContentDisposition, ContentType};
use lettre::message::{Body, Mailbox, Message, MultiPart, SinglePart};
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, context};
use serde::Serialize;

use super::{MailError, Outgoing, ReportMail};
use crate::config::{MailConfig, ReportKind};
use crate::fnv::Fnv1a;
use crate::kpi::{Kpi, ReportData};
use crate::locale::Language;
use crate::text::{base64, one_line};

/// The KPIs a report e-mail shows, in this order.
pub const HEADLINE_KPIS: [Kpi; 7] = [
    Kpi::DealsWon,
    Kpi::Revenue,
    Kpi::AvgDealValue,
    Kpi::LeadConversion,
    Kpi::CycleDaysMedian,
    Kpi::Csat,
    Kpi::EmailsSent,
];

const TEMPLATES: [(&str, &str); 14] = [
    ("subject.txt", include_str!("../../report-templates/mail/subject.txt.j2")),
    ("_headline.html", include_str!("../../report-templates/mail/_headline.html.j2")),
    ("_headline.txt", include_str!("../../report-templates/mail/_headline.txt.j2")),
    ("_stuck.html", include_str!("../../report-templates/mail/_stuck.html.j2")),
    ("_stuck.txt", include_str!("../../report-templates/mail/_stuck.txt.j2")),
    ("_footer.html", include_str!("../../report-templates/mail/_footer.html.j2")),
    ("_footer.txt", include_str!("../../report-templates/mail/_footer.txt.j2")),
    ("manager.html", include_str!("../../report-templates/mail/manager.html.j2")),
    ("manager.txt", include_str!("../../report-templates/mail/manager.txt.j2")),
    ("department.html", include_str!("../../report-templates/mail/department.html.j2")),
    ("department.txt", include_str!("../../report-templates/mail/department.txt.j2")),
    ("digest.txt", include_str!("../../report-templates/mail/digest.txt.j2")),
    ("job_failed.txt", include_str!("../../report-templates/mail/job_failed.txt.j2")),
    ("chat.txt", include_str!("../../report-templates/mail/chat.txt.j2")),
];

/// One recipient who did not get their report, for the admin's digest.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DigestLine {
    /// Manager id or `department`.
    pub recipient_key: String,
    /// The channel that failed: `email`, `bitrix24` or `telegram`; empty for a job that
    /// sends by e-mail alone (its resend command needs no `--channel`).
    pub channel: String,
    pub recipient_name: String,
    pub to: Vec<String>,
    /// Why, in words (the last error).
    pub reason: String,
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("the default delimiters are valid"),
        );
        // Only HTML is escaped; the subject and plain text show CRM strings verbatim.
        env.set_auto_escape_callback(|name| if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None });
        add_locale_filters(&mut env);
        for (name, source) in TEMPLATES {
            env.add_template(name, source).expect("the built-in mail templates are tested to parse");
        }
        env
    })
}

/// The report's language as templates see it (`language` of the report data), else Russian.
fn state_language(state: &minijinja::State<'_, '_>) -> Language {
    state.lookup("language").and_then(|v| v.as_str().and_then(Language::from_code)).unwrap_or(Language::Ru)
}

/// `{{ kpis.revenue.value | fmt_money }}` and friends: numbers printed by `crate::locale`, as
/// in the PDF, for subject templates and custom bodies. A null prints as `—`.
fn add_locale_filters(env: &mut Environment<'static>) {
    use crate::locale;
    use minijinja::State;
    fn or_dash(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
        v.map_or_else(|| locale::DASH.to_owned(), f)
    }
    env.add_filter("fmt_number", |state: &State, v: Option<f64>, decimals: Option<usize>| {
        or_dash(v, |v| locale::fmt_number(v, decimals.unwrap_or(0), state_language(state)))
    });
    env.add_filter("fmt_money", |state: &State, v: Option<f64>, currency: Option<String>| {
        let currency = currency
            .or_else(|| state.lookup("currency").and_then(|c| c.as_str().map(str::to_owned)))
            .unwrap_or_else(|| "RUB".to_owned());
        or_dash(v, |v| locale::fmt_money(v, &currency, state_language(state)))
    });
    env.add_filter("fmt_count", |state: &State, v: Option<f64>| {
        or_dash(v, |v| locale::fmt_count(v, state_language(state)))
    });
    env.add_filter("fmt_pct", |state: &State, v: Option<f64>| {
        or_dash(v, |v| locale::fmt_pct(v, state_language(state)))
    });
    env.add_filter("fmt_days", |state: &State, v: Option<f64>| {
        or_dash(v, |v| locale::fmt_days(v, state_language(state)))
    });
    env.add_filter("fmt_date", |state: &State, s: String| locale::fmt_date_str(&s, state_language(state)));
}

fn compose_err(what: &str, e: impl std::fmt::Display) -> MailError {
    MailError::Compose { detail: format!("{what}: {e}") }
}

fn render(name: &str, ctx: &Value) -> Result<String, MailError> {
    let t = env().get_template(name).map_err(|e| compose_err(&format!("template {name}"), e))?;
    t.render(ctx).map_err(|e| compose_err(&format!("cannot render template {name}"), e))
}

/// Words of the e-mails that are not in the report data.
fn phrases(lang: Language) -> BTreeMap<&'static str, &'static str> {
    let pairs: &[(&str, &str)] = match lang {
        Language::Ru => &[
            ("greeting", "Здравствуйте"),
            ("greeting_all", "Добрый день"),
            ("manager_intro", "Ваши показатели за"),
            ("department_intro", "Показатели отдела продаж за"),
            ("col_kpi", "Показатель"),
            ("col_change", "Изменение"),
            ("col_previous", "Было"),
            ("col_target", "План"),
            ("col_manager", "Менеджер"),
            ("managers_title", "Менеджеры"),
            ("stuck_deals", "Зависших сделок"),
            ("col_deal", "Сделка"),
            ("col_stage", "Стадия"),
            ("col_days_idle", "Дней без движения"),
            ("col_amount", "Сумма"),
            ("days_short", "дн."),
            ("hints_title", "Что стоит сделать"),
            ("pdf_attached", "Подробный отчёт с графиками — во вложении:"),
            (
                "pdf_omitted",
                "PDF-отчёт не приложен: он слишком велик для письма ({size}). Администратор получил уведомление.",
            ),
            ("footer", "Письмо отправлено автоматически сервисом salespulse; отвечать на него не нужно."),
            ("digest_intro", "Часть отчётов не доставлена."),
            ("digest_job", "Задание"),
            ("digest_period", "Период"),
            ("digest_count", "Не доставлено"),
            ("digest_reason", "Причина"),
            ("digest_resend", "Отправить повторно"),
            ("digest_resend_all", "Отправить повторно всем из списка"),
            ("failed_intro", "Задание не выполнено: отчёты за этот период не отправлены никому."),
            ("failed_reason", "Причина"),
            ("failed_attempts", "Попыток"),
            ("failed_retry", "salespulse повторяет задание каждые {every} мин., последний раз — до {until}."),
            ("failed_no_retry", "salespulse больше не будет повторять это задание сам."),
            ("failed_rerun", "Запустить заново (уже отправленное не уйдёт второй раз)"),
        ],
        Language::En => &[
            ("greeting", "Hello"),
            ("greeting_all", "Hello"),
            ("manager_intro", "Your results for"),
            ("department_intro", "The sales department's results for"),
            ("col_kpi", "KPI"),
            ("col_change", "Change"),
            ("col_previous", "Before"),
            ("col_target", "Target"),
            ("col_manager", "Manager"),
            ("managers_title", "Managers"),
            ("stuck_deals", "Stuck deals"),
            ("col_deal", "Deal"),
            ("col_stage", "Stage"),
            ("col_days_idle", "Days idle"),
            ("col_amount", "Amount"),
            ("days_short", "days"),
            ("hints_title", "What to do next"),
            ("pdf_attached", "The full report with charts is attached:"),
            (
                "pdf_omitted",
                "The PDF report is not attached: it is too large for e-mail ({size}). The administrator has been told.",
            ),
            ("footer", "Sent automatically by salespulse; no need to reply."),
            ("digest_intro", "Some reports were not delivered."),
            ("digest_job", "Job"),
            ("digest_period", "Period"),
            ("digest_count", "Not delivered"),
            ("digest_reason", "Reason"),
            ("digest_resend", "Resend"),
            ("digest_resend_all", "Resend to everyone listed"),
            ("failed_intro", "A job failed: nobody got this period's reports."),
            ("failed_reason", "Cause"),
            ("failed_attempts", "Attempts"),
            ("failed_retry", "salespulse tries the job again every {every} min, the last time before {until}."),
            ("failed_no_retry", "salespulse will not try this job again by itself."),
            ("failed_rerun", "Run it again (nothing already sent goes out twice)"),
        ],
    };
    let mut out: BTreeMap<&'static str, &'static str> = pairs.iter().copied().collect();
    // Column headers that are a KPI's name.
    out.insert("col_deals_won", Kpi::DealsWon.label(lang));
    out.insert("col_revenue", Kpi::Revenue.label(lang));
    out
}

/// One headline KPI as the templates print it.
#[derive(Serialize)]
struct HeadlineRow {
    key: &'static str,
    label: String,
    value: String,
    previous: String,
    delta: String,
    delta_pct: String,
    target: String,
    attainment: String,
    direction: String,
    tone: String,
}

fn headline(data: &ReportData) -> Vec<HeadlineRow> {
    HEADLINE_KPIS
        .iter()
        .filter_map(|&kpi| {
            let (key, k) = (kpi.key(), data.kpis.of(kpi));
            // A KPI the portal cannot measure (no satisfaction field) would only add a dash.
            if k.value.is_none() && k.previous.is_none() {
                return None;
            }
            let row = match &k.text {
                Some(t) => HeadlineRow {
                    key,
                    label: t.label.clone(),
                    value: t.value.clone(),
                    previous: t.previous.clone(),
                    delta: t.delta.clone(),
                    delta_pct: t.delta_pct.clone(),
                    target: t.target.clone(),
                    attainment: t.attainment.clone(),
                    direction: t.direction.clone(),
                    tone: t.tone.clone(),
                },
                // The raw KPI pass has no text; print plain numbers rather than nothing.
                None => {
                    let lang = language_of(data);
                    let num = |v: Option<f64>| {
                        v.map_or_else(|| crate::locale::DASH.to_owned(), |v| crate::locale::fmt_number(v, 1, lang))
                    };
                    HeadlineRow {
                        key,
                        label: data.labels.get(key).cloned().unwrap_or_else(|| key.to_owned()),
                        value: num(k.value),
                        previous: num(k.previous),
                        delta: num(k.delta),
                        delta_pct: num(k.delta_pct),
                        target: num(k.target),
                        attainment: num(k.attainment_pct),
                        direction: "none".into(),
                        tone: "neutral".into(),
                    }
                }
            };
            Some(row)
        })
        .collect()
}

#[derive(Serialize)]
struct TeamRow {
    name: String,
    deals_won: String,
    revenue: String,
}

fn team_rows(data: &ReportData) -> Vec<TeamRow> {
    let text = |k: &crate::kpi::KpiValue| {
        k.text.as_ref().map(|t| t.value.clone()).or_else(|| k.value.map(|v| v.to_string())).unwrap_or("—".into())
    };
    data.managers
        .iter()
        .flatten()
        .map(|m| TeamRow { name: m.name.clone(), deals_won: text(&m.kpis.deals_won), revenue: text(&m.kpis.revenue) })
        .collect()
}

/// The FNV-1a hash (stable across builds and platforms) of `parts`, each followed by the
/// byte 0xFF, which no UTF-8 text holds: `["ab", "c"]` and `["a", "bc"]` differ.
fn parts_hash(parts: &[&[u8]]) -> u64 {
    let mut h = Fnv1a::new();
    for part in parts {
        h.write(part);
        h.write(&[0xff]);
    }
    h.finish()
}

/// A piece of a `Message-ID` local part: letters, digits, `-` and `_` only.
fn id_atom(s: &str) -> String {
    let a: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if a.is_empty() { "_".to_owned() } else { a }
}

fn parse_mailbox(what: &str, s: &str) -> Result<Mailbox, MailError> {
    s.trim()
        .parse::<Mailbox>()
        .map_err(|_| MailError::Compose { detail: format!("{what} is not an e-mail address: {s:?}") })
}

fn parse_recipients(to: &[String]) -> Result<Vec<Mailbox>, MailError> {
    if to.is_empty() {
        return Err(MailError::Compose { detail: "no recipients".to_owned() });
    }
    to.iter().map(|t| parse_mailbox("a recipient", t)).collect()
}

/// Size of `n` bytes in base64 as lettre writes it: 76 characters a line plus CRLF.
fn base64_size(n: usize) -> u64 {
    let chars = n.div_ceil(3) as u64 * 4;
    chars + chars.div_ceil(76) * 2
}

fn human_size(bytes: usize, lang: Language) -> String {
    let mb = crate::locale::fmt_number(bytes as f64 / (1024.0 * 1024.0), 1, lang);
    match lang {
        Language::Ru => format!("{mb}\u{a0}МБ"),
        Language::En => format!("{mb} MB"),
    }
}

/// RFC 2047 encoded words for a `Content-Type` `name` parameter: what older clients
/// (Outlook among them) read when they ignore RFC 2231's `filename*`.
fn rfc2047_words(text: &str) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        // 45 bytes of UTF-8 make 60 base64 characters: each word stays within 75.
        if chunk.len() + c.len_utf8() > 45 {
            words.push(format!("=?utf-8?B?{}?=", base64(chunk.as_bytes())));
            chunk.clear();
        }
        chunk.push(c);
    }
    if !chunk.is_empty() {
        words.push(format!("=?utf-8?B?{}?=", base64(chunk.as_bytes())));
    }
    words.join(" ")
}

fn language_of(data: &ReportData) -> Language {
    Language::from_code(&data.language).unwrap_or(Language::Ru)
}

/// Builds the message for one report.
pub fn compose(mail: &MailConfig, report: &ReportMail<'_>) -> Result<Outgoing, MailError> {
    let data = report.data;
    let lang = language_of(data);
    let from = parse_mailbox("mail.from", &mail.from)?;
    let to = parse_recipients(report.to)?;
    let file_name = crate::text::file_name(report.file_name, "report.pdf");

    let attachment_omitted = base64_size(report.pdf.len()) > mail.max_attachment_bytes;
    let base = context! {
        t => phrases(lang),
        headline => Serde(headline(data)),
        team_rows => Serde(team_rows(data)),
        file_name => file_name.clone(),
        attachment_omitted => attachment_omitted,
        attachment_size => human_size(report.pdf.len(), lang),
        recipient_key => report.recipient_key,
        job => report.job.name.clone(),
        ..Value::from(Serde(data))
    };
    let subject = match &report.job.subject {
        Some(template) => {
            env().render_str(template, &base).map_err(|e| compose_err("cannot render the job's subject", e))?
        }
        None => render("subject.txt", &base)?,
    };
    let subject = one_line(&subject);
    let ctx = context! { subject => subject.clone(), ..base };
    let kind = if report.job.report == ReportKind::Department || data.report == "department" {
        "department"
    } else {
        "manager"
    };
    let html = render(&format!("{kind}.html"), &ctx)?;
    let text = render(&format!("{kind}.txt"), &ctx)?;

    let generation = report.generation.to_string();
    let id_hash = parts_hash(&[
        report.job.name.as_bytes(),
        data.period.label.as_bytes(),
        report.recipient_key.as_bytes(),
        generation.as_bytes(),
    ]);
    let resend = if report.generation > 0 { format!(".r{}", report.generation) } else { String::new() };
    let message_id = format!(
        "sp.{}.{}.{}{resend}.{id_hash:016x}@{}",
        id_atom(&report.job.name),
        id_atom(&data.period.label),
        id_atom(report.recipient_key),
        from.email.domain()
    );
    let date = chrono::DateTime::parse_from_rfc3339(&data.generated_at)
        .map_err(|e| compose_err(&format!("generated_at {:?} is not an RFC 3339 time", data.generated_at), e))?;
    let date = SystemTime::from(date);

    let content_hash = parts_hash(&[html.as_bytes(), text.as_bytes(), report.pdf, message_id.as_bytes()]);
    let alternative = MultiPart::alternative()
        .boundary(format!("sp-alt-{content_hash:016x}"))
        .singlepart(SinglePart::plain(text))
        .singlepart(SinglePart::html(html));
    let body = if attachment_omitted {
        alternative
    } else {
        let content_type = ContentType::parse(&format!("application/pdf; name=\"{}\"", rfc2047_words(&file_name)))
            .or_else(|_| ContentType::parse("application/pdf"))
            .map_err(|e| compose_err("content type", e))?;
        let pdf = SinglePart::builder()
            .header(content_type)
            .header(ContentDisposition::attachment(&file_name))
            .body(Body::new(report.pdf.to_vec()));
        MultiPart::mixed().boundary(format!("sp-mix-{content_hash:016x}")).multipart(alternative).singlepart(pdf)
    };

    let message = headers(mail, &from, &to, &subject, &message_id, date)?
        .multipart(body)
        .map_err(|e| compose_err("cannot build the message", e))?;
    Ok(outgoing(message_id, &from, &to, message.formatted(), attachment_omitted))
}

/// `Auto-Submitted: auto-generated` (RFC 3834 section 5): the message is a robot's, so
/// vacation responders and other auto-responders do not answer it.
#[derive(Clone, Copy, Debug)]
struct AutoSubmitted;

impl header::Header for AutoSubmitted {
    fn name() -> header::HeaderName {
        header::HeaderName::new_from_ascii_str("Auto-Submitted")
    }

    fn parse(_: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(AutoSubmitted)
    }

    fn display(&self) -> header::HeaderValue {
        header::HeaderValue::new(Self::name(), "auto-generated".to_owned())
    }
}

/// The headers every message carries: sender, recipients, `Reply-To` from `[mail]`, the
/// automated-mail marker.
fn headers(
    mail: &MailConfig,
    from: &Mailbox,
    to: &[Mailbox],
    subject: &str,
    message_id: &str,
    date: SystemTime,
) -> Result<lettre::message::MessageBuilder, MailError> {
    let mut b = Message::builder()
        .from(from.clone())
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .date(date)
        .header(AutoSubmitted)
        .header(header::UserAgent::from(format!("salespulse {}", env!("CARGO_PKG_VERSION"))));
    if let Some(r) = &mail.reply_to {
        b = b.reply_to(parse_mailbox("mail.reply_to", r)?);
    }
    for m in to {
        b = b.to(m.clone());
    }
    Ok(b)
}

fn outgoing(message_id: String, from: &Mailbox, to: &[Mailbox], bytes: Vec<u8>, attachment_omitted: bool) -> Outgoing {
    Outgoing {
        message_id,
        from: from.email.to_string(),
        to: to.iter().map(|m| m.email.to_string()).collect(),
        bytes,
        attachment_omitted,
    }
}

/// Quotes a word for a POSIX shell when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.,:/=@".contains(c)) {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// `salespulse --config FILE`: the start of a command for the admin, naming the config file
/// the daemon runs with (absolute), so that the command acts on the same state and portal.
/// The embedded config has no file.
pub fn salespulse_command(config_source: &str) -> String {
    if config_source == crate::config::EMBEDDED_NAME {
        return "salespulse".to_owned();
    }
    let path = std::path::absolute(config_source).unwrap_or_else(|_| config_source.into());
    format!("salespulse --config {}", shell_word(&path.to_string_lossy()))
}

/// The command that runs a job for a period again: what the ledger shows as sent is
/// skipped, the rest is sent.
pub fn rerun_command(config_source: &str, job: &str, period_label: &str) -> String {
    format!("{} send {} --period {}", salespulse_command(config_source), shell_word(job), shell_word(period_label))
}

/// The command that resends a job's period to some recipients (`--only` takes user ids;
/// a department report has none and is resent whole).
pub fn resend_command(config_source: &str, job: &str, period_label: &str, keys: &[&str]) -> String {
    let mut cmd = rerun_command(config_source, job, period_label);
    let ids: Vec<&str> =
        keys.iter().copied().filter(|k| !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())).collect();
    if !ids.is_empty() {
        cmd.push_str(" --only ");
        cmd.push_str(&ids.join(","));
    }
    cmd.push_str(" --resend");
    cmd
}

/// The admin's failure digest, in Russian (the product's default language); see
/// [`compose_digest_in`].
pub fn compose_digest(
    mail: &MailConfig,
    job: &str,
    period_label: &str,
    failures: &[DigestLine],
) -> Result<Outgoing, MailError> {
    compose_digest_in(mail, Language::Ru, crate::config::EMBEDDED_NAME, job, period_label, failures)
}

#[derive(Serialize)]
/// One line of the digest: every CRM string in it flattened to one line, so that nothing
/// in a name, an address or an error can add a line (a fake resend command, say).
struct DigestRow {
    recipient_key: String,
    /// Empty for e-mail (the digest's lines read as before channels), else the channel.
    channel: String,
    recipient_name: String,
    to: Vec<String>,
    reason: String,
    command: String,
}

/// One e-mail to `admin_to` listing who did not get what and why, with the command that
/// resends to each of them (`config_source`: the config file's name, see
/// [`salespulse_command`]).
pub fn compose_digest_in(
    mail: &MailConfig,
    lang: Language,
    config_source: &str,
    job: &str,
    period_label: &str,
    failures: &[DigestLine],
) -> Result<Outgoing, MailError> {
    let rows: Vec<DigestRow> = failures
        .iter()
        .map(|f| DigestRow {
            recipient_key: one_line(&f.recipient_key),
            channel: if f.channel == "email" || f.channel.is_empty() { String::new() } else { one_line(&f.channel) },
            recipient_name: one_line(&f.recipient_name),
            to: f.to.iter().map(|t| one_line(t)).collect(),
            reason: one_line(&f.reason),
            command: with_channel(resend_command(config_source, job, period_label, &[&f.recipient_key]), &f.channel),
        })
        .collect();
    let keys: Vec<&str> = failures.iter().map(|f| f.recipient_key.as_str()).collect();
    let numeric = keys.iter().filter(|k| k.bytes().all(|b| b.is_ascii_digit())).count();
    // One command for everyone only when they failed in one channel: a resend of the
    // others would send again what went.
    let one_channel = failures.iter().all(|f| f.channel == failures[0].channel);
    let all_command = (failures.len() > 1 && numeric > 1 && one_channel)
        .then(|| with_channel(resend_command(config_source, job, period_label, &keys), &failures[0].channel));
    let ctx = context! {
        t => phrases(lang),
        job => job,
        period_label => period_label,
        failures => Serde(rows),
        all_command => all_command,
    };
    let text = render("digest.txt", &ctx)?;
    let subject = match lang {
        Language::Ru => format!("salespulse: не доставлено {} (задание {job}, период {period_label})", failures.len()),
        Language::En => format!("salespulse: {} not delivered (job {job}, period {period_label})", failures.len()),
    };
    admin_message(mail, "digest", job, period_label, &subject, text)
}

/// What the admin reads when a job failed before it could send anything.
#[derive(Clone, Debug)]
pub struct JobFailure<'a> {
    /// The config file's name ([`salespulse_command`]).
    pub config_source: &'a str,
    pub job: &'a str,
    pub period_label: &'a str,
    /// The cause, as the error chain says it.
    pub reason: &'a str,
    /// Attempts made so far for this slot.
    pub attempts: u32,
    /// The daemon tries again every `retry_every_minutes` until this local time; `None`: it
    /// does not.
    pub retry_until: Option<String>,
    pub retry_every_minutes: u64,
}

/// One e-mail to `admin_to` saying that a job failed for a period (the CRM unreachable, a
/// broken template, a bug), why, and the command that runs it again.
pub fn compose_job_failure(mail: &MailConfig, lang: Language, failure: &JobFailure<'_>) -> Result<Outgoing, MailError> {
    let t = phrases(lang);
    let retry = match &failure.retry_until {
        Some(until) => {
            t["failed_retry"].replace("{every}", &failure.retry_every_minutes.to_string()).replace("{until}", until)
        }
        None => t["failed_no_retry"].to_owned(),
    };
    let ctx = context! {
        t => t,
        job => failure.job,
        period_label => failure.period_label,
        reason => failure.reason,
        attempts => failure.attempts,
        retry => retry,
        command => rerun_command(failure.config_source, failure.job, failure.period_label),
    };
    let text = render("job_failed.txt", &ctx)?;
    let (job, period) = (failure.job, failure.period_label);
    let subject = match lang {
        Language::Ru => format!("salespulse: задание {job} не выполнено (период {period})"),
        Language::En => format!("salespulse: job {job} failed (period {period})"),
    };
    admin_message(mail, "failed", job, period, &subject, text)
}

/// A plain-text message to `admin_to`; `kind` goes into its Message-ID.
fn admin_message(
    mail: &MailConfig,
    kind: &str,
    job: &str,
    period_label: &str,
    subject: &str,
    text: String,
) -> Result<Outgoing, MailError> {
    let from = parse_mailbox("mail.from", &mail.from)?;
    if mail.admin_to.is_empty() {
        return Err(MailError::Compose { detail: "no admin_to in [mail] to send the message to".to_owned() });
    }
    let to = parse_recipients(&mail.admin_to)?;
    // A message to the admin reports something now; it is not part of any report's data.
    #[allow(clippy::disallowed_methods)]
    let now = SystemTime::now();
    let stamp = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default().to_string();
    // Each digest is news: the time is part of its id, so no client folds two into one.
    let hash = parts_hash(&[job.as_bytes(), period_label.as_bytes(), text.as_bytes(), stamp.as_bytes()]);
    let message_id =
        format!("sp.{kind}.{}.{}.{hash:016x}@{}", id_atom(job), id_atom(period_label), from.email.domain());
    let message = headers(mail, &from, &to, &one_line(subject), &message_id, now)?
        .singlepart(SinglePart::plain(text))
        .map_err(|e| compose_err("cannot build the message", e))?;
    Ok(outgoing(message_id, &from, &to, message.formatted(), false))
}

mod chat;
pub use chat::compose_chat_text;
use chat::with_channel;
mod text;
pub use text::{alert_message_id, compose_text};

#[cfg(test)]
mod tests;
