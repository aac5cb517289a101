//! The three managers of the delivery, crash and daemon tests (`delivery.rs`,
//! `daemon_crash.rs`, `daemon.rs`): their rendered scorecards for 2026-W47 with a distinct
//! PDF each, a config that mails them to the test SMTP server (in-process, or as a file for
//! the binary), and reading back what each address received.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use chrono_tz::Tz;
use salespulse::config::{Config, DaemonConfig, JobConfig};
use salespulse::domain::Period;
use salespulse::kpi::ReportData;
use salespulse::pipeline::RenderedReport;
use salespulse::pipeline::deliver::{self, DeliverySummary};
use salespulse::store::{DeliveryKey, Store};

use crate::support::fixtures::manager_report;
use crate::support::smtp::{Received, TestSmtp};

pub const MSK: Tz = chrono_tz::Europe::Moscow;
/// The admin's address in [`TestSmtp::mail_config`] and [`binary_config`]: digests go there.
pub const ADMIN: &str = "it@example.ru";

/// Ivan, Maria and Oleg, by Bitrix24 id.
pub const MANAGERS: [(&str, &str, &str); 3] = [
    ("17", "Иван Петров", "ivan@example.ru"),
    ("21", "Мария Соколова", "maria@example.ru"),
    ("33", "Олег Смирнов", "oleg@example.ru"),
];

/// The embedded config mailing through `smtp`, its ledger in `state`, retrying a message up to
/// `max_attempts` times without waiting.
pub fn config(smtp: &TestSmtp, state: &Path, max_attempts: u32) -> Config {
    let mut c = Config::embedded();
    c.mail = smtp.mail_config();
    c.state_dir = state.to_owned();
    // No waiting between attempts: the tests count attempts, not seconds.
    c.daemon = DaemonConfig { catch_up_hours: 72, max_attempts, retry_initial_secs: 0, retry_max_secs: 0 };
    c
}

/// The `manager-weekly` job of [`config`].
pub fn weekly(config: &Config) -> JobConfig {
    config.job("manager-weekly").expect("the embedded config has manager-weekly").clone()
}

/// The period every test here delivers.
pub fn week47() -> Period {
    Period::parse("2026-W47", MSK).unwrap()
}

/// A distinct PDF per manager, so a test can tell whose bytes went where.
pub fn pdf_for(id: &str, version: u8) -> Vec<u8> {
    format!("%PDF-1.7\n% scorecard of {id}, version {version}\n%%EOF\n").into_bytes()
}

/// Manager `id`'s rendered scorecard (PDF [`pdf_for`]`(id, version)`) addressed to `to` (none
/// when empty).
pub fn report_for(id: &str, name: &str, to: &str, version: u8) -> RenderedReport {
    let mut data: ReportData = manager_report();
    if let Some(m) = data.manager.as_mut() {
        m.id = id.to_owned();
        m.name = name.to_owned();
    }
    RenderedReport {
        recipient_key: id.to_owned(),
        recipient_name: name.to_owned(),
        to: if to.is_empty() { Vec::new() } else { vec![to.to_owned()] },
        file_name: format!("2026-W47 {name} ({id}).pdf"),
        pdf: pdf_for(id, version),
        json: serde_json::to_string(&data).unwrap(),
        data,
    }
}

/// The three [`MANAGERS`]' scorecards, rendering `version`.
pub fn reports(version: u8) -> Vec<RenderedReport> {
    MANAGERS.iter().map(|(id, name, to)| report_for(id, name, to, version)).collect()
}

/// Messages to `address`, in order.
pub fn to(received: &[Received], address: &str) -> Vec<Received> {
    received.iter().filter(|r| r.to.iter().any(|t| t == address)).cloned().collect()
}

/// The ledger row of manager `id`'s weekly scorecard for 2026-W47.
pub fn key(id: &str) -> DeliveryKey {
    DeliveryKey::email("manager-weekly", "2026-W47", id)
}

/// The Message-ID header a message was sent with.
pub fn message_id(r: &Received) -> String {
    r.text()
        .lines()
        .find_map(|l| l.strip_prefix("Message-ID:").or_else(|| l.strip_prefix("Message-Id:")))
        .map(|v| v.trim().to_owned())
        .unwrap_or_default()
}

/// A config file for the binary: the demo portal, mail to the test server (trusting its
/// CA), no waiting between attempts, the weekly job only; the state in `dir/state`.
pub fn binary_config(smtp: &TestSmtp, dir: &Path) -> PathBuf {
    let ca = dir.join("test-ca.pem");
    std::fs::write(&ca, &smtp.ca_pem).unwrap();
    let text = format!(
        r#"
timezone = "Europe/Moscow"
state_dir = "{state}"

[crm]
source = "demo"
departments = [3]

[mail]
transport = "smtp"
host = "127.0.0.1"
port = {port}
tls = "starttls"
username = "{user}"
password = "{password}"
from = "Отчёты продаж <{user}>"
admin_to = ["{ADMIN}"]
ca_file = "{ca}"

[daemon]
max_attempts = 3
retry_initial_secs = 0
retry_max_secs = 0

[[job]]
name = "manager-weekly"
report = "manager"
schedule = "0 8 * * MON"
period = "previous-week"
"#,
        state = dir.join("state").display(),
        port = smtp.port,
        user = smtp.username,
        password = smtp.password,
        ca = ca.display(),
    );
    let path = dir.join("salespulse.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `send`'s delivery of `reports` for the weekly job and week 47 through `smtp`.
pub async fn deliver_week47(
    store: &Store,
    smtp: &TestSmtp,
    config: &Config,
    reports: &[RenderedReport],
) -> DeliverySummary {
    deliver::deliver(store, &smtp.mailer(), config, &weekly(config), &week47(), reports, &Default::default())
        .await
        .expect("the delivery runs")
}
