//! `salespulse check`: proves a set-up works before its first scheduled run, and says what
//! to change where it does not.
//!
//! Offline it validates the config (already done by loading it), compiles every job's
//! Typst template against an empty period and against the demo portal's data, composes
//! the job's e-mail from that data (the subject template included), and prints each job's
//! next three slots in the configured time zone. Online it also asks the portal for the
//! webhook's scopes (the `scope` method) and names any that are missing, reads a slice of
//! CRM records, and logs in to the SMTP server without sending anything.
//!
//! Every problem is reported, not only the first; the caller exits 1 when there was one.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::config::Channel;
use crate::config::{Config, JobConfig, MailTransportKind};
use crate::crm::bitrix24::{CHAT_SCOPES, missing_of, missing_scopes};
use crate::mail::{MailError, ReportMail};
use crate::pipeline::ReportBuilder;
use crate::progress::Progress;
use crate::schedule;

/// What `check` found, line by line.
#[derive(Default)]
struct Report {
    problems: usize,
}

impl Report {
    fn ok(&mut self, what: &str) {
        println!("ok    {what}");
    }

    /// A problem: what is wrong, and what to change.
    fn fail(&mut self, what: &str, problem: &str, fix: &str) {
        self.problems += 1;
        println!("FAIL  {what}: {problem}\n      what to change: {fix}");
    }
}

/// Runs every check at `now` (the slots and periods are taken from it); `true` when
/// nothing is wrong.
pub async fn check(config: &Config, offline: bool, now: DateTime<Utc>, progress: &Progress) -> bool {
    let mut r = Report::default();
    r.ok(&format!("config {} ({} jobs, {} alerts)", config.source_name, config.jobs.len(), config.alerts.len()));
    if config.jobs.is_empty() {
        r.fail("jobs", "the config has no [[job]]", "add a [[job]] section (config/example.toml has two)");
    }
    for job in &config.jobs {
        schedule_of(&mut r, config, job, now);
        templates_of(&mut r, config, job, now, progress).await;
    }
    for alert in &config.alerts {
        let mut after = now;
        let mut slots = Vec::new();
        for _ in 0..3 {
            let Some(slot) = schedule::next_slot(&alert.cron, config.timezone, after) else { break };
            slots.push(slot.format("%a %Y-%m-%d %H:%M %Z").to_string());
            after = slot.with_timezone(&Utc);
        }
        // The config refuses a crontab line that never fires.
        r.ok(&format!(
            "schedule of alert {} ({}, {:?}, {}): next {}",
            alert.name,
            alert.rule.as_str(),
            alert.schedule,
            config.timezone.name(),
            slots.join(", ")
        ));
    }
    if !offline {
        crm(&mut r, config, now, progress).await;
        mail(&mut r, config).await;
        telegram(&mut r, config).await;
    }
    if r.problems == 0 {
        println!("check: everything works");
    } else {
        println!("check: {} problem(s) found", r.problems);
    }
    r.problems == 0
}

/// The job's next three slots in the configured zone, with the period each reports on.
fn schedule_of(r: &mut Report, config: &Config, job: &JobConfig, now: DateTime<Utc>) {
    let mut after = now;
    let mut slots = Vec::new();
    for _ in 0..3 {
        let Some(slot) = schedule::next_slot(&job.cron, config.timezone, after) else { break };
        let period = schedule::period_for_slot(job.period, slot);
        slots.push(format!("{} ({})", slot.format("%a %Y-%m-%d %H:%M %Z"), period.label()));
        after = slot.with_timezone(&Utc);
    }
    if slots.is_empty() {
        r.fail(
            &format!("schedule of job {}", job.name),
            &format!("{:?} has no next slot", job.schedule),
            "give the job a crontab line that fires, e.g. schedule = \"0 8 * * MON\"",
        );
    } else {
        r.ok(&format!(
            "schedule of job {} ({:?}, {}): next {}",
            job.name,
            job.schedule,
            config.timezone.name(),
            slots.join(", ")
        ));
    }
}

/// The job's Typst template against an empty period (every "no data" branch) and against
/// the demo portal's data (every other branch), and its e-mail composed from the latter.
async fn templates_of(r: &mut Report, config: &Config, job: &JobConfig, now: DateTime<Utc>, progress: &Progress) {
    let what = format!("templates of job {}", job.name);
    let fix_template = match &job.template {
        Some(path) => format!(
            "fix {} (preview it with `salespulse report {} --template {}`), or remove `template` from the job to use the built-in one",
            path.display(),
            job.name,
            path.display()
        ),
        None => "this is the built-in template: please report it".to_owned(),
    };
    let slot = latest_slot(config, job, now);
    let period = schedule::period_for_slot(job.period, slot);
    let pipeline = ReportBuilder::new(Arc::new(demo_config(config))).with_progress(progress.clone());
    if let Err(e) = pipeline.check_empty(job, &period, slot) {
        r.fail(&what, &format!("{:#} (on an empty period)", anyhow::Error::from(e)), &fix_template);
        return;
    }
    let rendered = match pipeline.render_sample(job, &period, slot).await {
        Ok(Some(rendered)) => rendered,
        Ok(None) => {
            r.ok(&format!("{what}: the demo portal has no report for {}", period.label()));
            return;
        }
        Err(e) => {
            r.fail(
                &what,
                &format!("{:#} (on the demo portal's data for {})", anyhow::Error::from(e), period.label()),
                &fix_template,
            );
            return;
        }
    };
    let placeholder = ["check@example.invalid".to_owned()];
    let to = if rendered.to.is_empty() { &placeholder[..] } else { &rendered.to[..] };
    let mail = ReportMail {
        job,
        data: &rendered.data,
        pdf: &rendered.pdf,
        file_name: &rendered.file_name,
        to,
        recipient_key: &rendered.recipient_key,
        generation: 0,
    };
    match crate::mail::compose(&config.mail, &mail) {
        Ok(_) => {
            r.ok(&format!("{what}: the PDF and the e-mail render from the demo portal's data ({})", period.label()))
        }
        Err(e) => r.fail(
            &what,
            &format!("the e-mail: {e}"),
            "fix the job's `subject` template (minijinja: {{ period.title }}, {{ manager.name }}) or [mail] from",
        ),
    }
}

/// The job's latest slot at `now`, else `now` itself (a job whose line has not fired yet).
fn latest_slot(config: &Config, job: &JobConfig, now: DateTime<Utc>) -> DateTime<chrono_tz::Tz> {
    schedule::latest_slot(&job.cron, config.timezone, now).unwrap_or_else(|| now.with_timezone(&config.timezone))
}

/// The config with the demo portal as its CRM (the embedded config's scope, no cache), for
/// rendering the templates on data that fills every section.
fn demo_config(config: &Config) -> Config {
    let mut demo = config.clone();
    demo.crm = Config::embedded().crm;
    demo.crm.cache = false;
    demo
}

/// The webhook's scopes, then a small read of CRM records.
async fn crm(r: &mut Report, config: &Config, now: DateTime<Utc>, progress: &Progress) {
    let pipeline = ReportBuilder::new(Arc::new(config.clone())).with_progress(progress.clone());
    let fix_webhook = "in Bitrix24 open Developer resources > Other > Incoming webhook, edit salespulse's webhook \
                       and tick the missing scope, then save (the URL stays the same); see docs/operations.md";
    match pipeline.webhook_scopes().await {
        Ok(None) => r.ok("crm: the built-in demo portal"),
        Ok(Some(granted)) => {
            let mut missing = missing_scopes(&granted);
            let chat = config.uses_channel(Channel::Bitrix24);
            if chat {
                missing.extend(missing_of(&CHAT_SCOPES, &granted));
            }
            if missing.is_empty() {
                let what = if chat { "reads and sends into the messenger" } else { "reads" };
                r.ok(&format!("crm: the webhook's scopes ({}) cover what salespulse {what}", granted.join(", ")));
            } else {
                let list: Vec<String> = missing.iter().map(|(name, why)| format!("{name} (for {why})")).collect();
                r.fail(
                    "crm",
                    &format!(
                        "the webhook lacks the scope {}; it has: {}",
                        list.join(", "),
                        if granted.is_empty() { "none".to_owned() } else { granted.join(", ") }
                    ),
                    fix_webhook,
                );
                return;
            }
        }
        Err(e) => {
            r.fail("crm", &format!("{:#}", anyhow::Error::from(e)), "check crm.webhook_url (docs/operations.md)");
            return;
        }
    }
    let Some(job) = config.jobs.first() else { return };
    match pipeline.check_crm(latest_slot(config, job, now)).await {
        Ok(()) => r.ok("crm: records read"),
        Err(e) => {
            r.fail("crm", &format!("{:#}", anyhow::Error::from(e)), "see the message; docs/operations.md explains each")
        }
    }
}

/// A login to the SMTP server (nothing is sent), or a write to the outbox folder.
async fn mail(r: &mut Report, config: &Config) {
    let what = match &config.mail.transport {
        MailTransportKind::Smtp { host, port, username, .. } => match username {
            Some(u) => format!("mail: {host}:{port}, login as {u}"),
            None => format!("mail: {host}:{port}"),
        },
        MailTransportKind::Outbox { dir } => format!("mail: outbox {}", dir.display()),
    };
    let result = match crate::mail::mailer_from_config(&config.mail) {
        Ok(mailer) => crate::mail::check_connection(&mailer).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => r.ok(&what),
        Err(e) => {
            let fix = mail_fix(&e, config);
            r.fail(&what, &e.to_string(), fix);
        }
    }
}

/// The bot token, asked of the Bot API (`getMe`: nothing is sent), when a job sends
/// through Telegram.
async fn telegram(r: &mut Report, config: &Config) {
    let Some(telegram) = config.telegram.as_ref().filter(|_| config.uses_channel(Channel::Telegram)) else { return };
    let what = format!("telegram: {}", telegram.api_url);
    let result = match crate::chat::TelegramBot::from_config(telegram) {
        Ok(bot) => bot.check().await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match result {
        Ok(name) => r.ok(&format!("{what}: the bot @{name} answers ({} chat(s) in [telegram.chats])", telegram.chats.len())),
        Err(e) => r.fail(
            &what,
            &e,
            "check telegram.bot_token (the token @BotFather gave) and telegram.api_url, and that this machine may reach it",
        ),
    }
}

/// What to change for a failed SMTP check, by what the server or the connection said.
fn mail_fix(e: &MailError, config: &Config) -> &'static str {
    let text = e.to_string().to_ascii_lowercase();
    if matches!(config.mail.transport, MailTransportKind::Outbox { .. }) {
        "make mail.outbox_dir a folder salespulse may create and write"
    } else if text.contains("535") || text.contains("authentication") || text.contains("credentials") {
        "check [mail] username and the password (password_env / password_file): the server refused the login"
    } else if text.contains("certificate") {
        "check that mail.host is the name on the server's certificate, or give the CA that signed it as mail.ca_file"
    } else if text.contains("ca_file") {
        "make mail.ca_file a readable PEM file"
    } else {
        "check mail.host, mail.port and mail.tls (587 starttls, 465 tls), and that this machine may reach the server"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CrmSourceKind;

    #[test]
    fn mail_failures_say_what_to_change() {
        let config = Config::parse(
            "[crm]\nsource = \"demo\"\n[mail]\ntransport = \"smtp\"\nhost = \"smtp.example.ru\"\nfrom = \"a@b.ru\"\n",
            "t.toml",
        )
        .unwrap();
        let e = |d: &str| MailError::Permanent { detail: d.to_owned() };
        assert!(mail_fix(&e("smtp x: permanent error (535): 5.7.8 bad credentials"), &config).contains("password"));
        assert!(mail_fix(&e("smtp x: invalid peer certificate: UnknownIssuer"), &config).contains("ca_file"));
        assert!(mail_fix(&e("smtp x: connection refused"), &config).contains("mail.port"));
    }

    #[test]
    fn the_demo_config_keeps_the_jobs_and_the_mail() {
        let mut config = Config::embedded();
        config.crm.cache = true;
        let demo = demo_config(&config);
        assert_eq!(demo.crm.source, CrmSourceKind::Demo);
        assert!(!demo.crm.cache);
        assert_eq!(demo.jobs.len(), config.jobs.len());
    }
}
