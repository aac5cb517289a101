//! The `[crm]` and `[mail]` sections checked: the CRM source and its webhook, the mail
//! transport, its TLS and addresses, and the numbers' bounds.

use std::path::{Path, PathBuf};

use toml::Spanned;

use super::parse::{Ctx, RawCrm, RawMail};
use super::secrets::{SecretForms, SecretSource};
use super::{ConfigError, CrmConfig, CrmSourceKind, MailConfig, MailTransportKind, TlsMode};
use crate::endpoint;

impl Ctx<'_> {
    pub(super) fn crm(&self, raw: Spanned<RawCrm>) -> Result<CrmConfig, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let source = match raw.source.get_ref().as_str() {
            "demo" => CrmSourceKind::Demo,
            "bitrix24" => {
                // An inline webhook's error points at its own line.
                let url_span = raw.webhook_url.as_ref().map_or(span.clone(), Spanned::span);
                let given = SecretForms {
                    inline: raw.webhook_url.map(Spanned::into_inner),
                    env: raw.webhook_url_env,
                    file: raw.webhook_url_file,
                    credential: raw.webhook_url_credential,
                };
                let url = self.secret(given, "crm.webhook_url", span.clone())?.ok_or_else(|| {
                    self.err(
                        span.clone(),
                        "crm.webhook_url",
                        "crm.source = \"bitrix24\" needs webhook_url, webhook_url_env, webhook_url_file or \
                         webhook_url_credential",
                    )
                })?;
                if let SecretSource::Inline(inline) = &url.source {
                    check_webhook_url(inline.expose()).map_err(|m| self.err(url_span, "crm.webhook_url", m))?;
                }
                CrmSourceKind::Bitrix24 { webhook_url: url }
            }
            other => {
                return Err(self.err(
                    raw.source.span(),
                    "crm.source",
                    format!("expected \"bitrix24\" or \"demo\", got {other:?}"),
                ));
            }
        };
        if matches!(source, CrmSourceKind::Bitrix24 { .. }) && raw.departments.is_empty() && raw.managers.is_empty() {
            return Err(self.err(
                span,
                "crm.departments",
                "name the sales departments (departments = [3]) or the managers (managers = [17, 21])",
            ));
        }
        let satisfaction_scale = match raw.satisfaction_scale {
            None => (1.0, 5.0),
            Some(s) => {
                let [lo, hi] = *s.get_ref();
                if !lo.is_finite() || !hi.is_finite() || lo.partial_cmp(&hi) != Some(std::cmp::Ordering::Less) {
                    return Err(self.err(s.span(), "crm.satisfaction_scale", "expected [min, max] with min < max"));
                }
                (lo, hi)
            }
        };
        if let Some(f) = &raw.satisfaction_field
            && !f.starts_with("UF_CRM_")
        {
            return Err(self.err(
                span,
                "crm.satisfaction_field",
                format!("expected a deal user field code such as UF_CRM_CSAT, got {f:?}"),
            ));
        }
        Ok(CrmConfig {
            source,
            departments: raw.departments,
            managers: raw.managers,
            include_subdepartments: raw.include_subdepartments.unwrap_or(true),
            satisfaction_field: raw.satisfaction_field,
            satisfaction_scale,
            base_currency: raw.base_currency,
            stuck_after_days: self.bounded(raw.stuck_after_days, "crm.stuck_after_days", 14.0, 0.0..=3650.0, "days")?,
            rate_limit_per_sec: self.bounded(
                raw.rate_limit_per_sec,
                "crm.rate_limit_per_sec",
                2.0,
                0.01..=1_000_000.0,
                "requests per second",
            )?,
            rate_limit_burst: self.bounded(
                raw.rate_limit_burst,
                "crm.rate_limit_burst",
                50,
                1..=1_000_000,
                "requests",
            )?,
            timeout_secs: self.bounded(raw.timeout_secs, "crm.timeout_secs", 60, 1..=3600, "seconds")?,
            max_retries: self.bounded(raw.max_retries, "crm.max_retries", 8, 0..=100, "retries")?,
            // The portal counts operating time per method within ten minutes.
            operating_limit_secs: self.bounded(
                raw.operating_limit_secs,
                "crm.operating_limit_secs",
                480,
                1..=600,
                "seconds",
            )?,
            cache: raw.cache.unwrap_or(true),
            reconcile_days: self.bounded(raw.reconcile_days, "crm.reconcile_days", 28, 1..=3650, "days")?,
        })
    }

    pub(super) fn mail(&self, raw: Spanned<RawMail>) -> Result<MailConfig, ConfigError> {
        let span = raw.span();
        let raw = raw.into_inner();
        let transport = match raw.transport.get_ref().as_str() {
            "outbox" => {
                MailTransportKind::Outbox { dir: PathBuf::from(raw.outbox_dir.unwrap_or_else(|| "outbox".to_owned())) }
            }
            "smtp" => {
                let host =
                    raw.host.ok_or_else(|| self.err(span.clone(), "mail.host", "transport = \"smtp\" needs host"))?;
                let tls = match raw.tls.as_ref().map(|t| t.get_ref().as_str()) {
                    None | Some("starttls") => TlsMode::Starttls,
                    Some("tls") => TlsMode::Tls,
                    Some("none") => TlsMode::None,
                    Some(other) => {
                        let t = raw.tls.as_ref().expect("matched Some");
                        return Err(self.err(
                            t.span(),
                            "mail.tls",
                            format!("expected \"starttls\", \"tls\" or \"none\", got {other:?}"),
                        ));
                    }
                };
                if tls == TlsMode::None && !endpoint::is_loopback_host(host.get_ref()) {
                    return Err(self.err(
                        host.span(),
                        "mail.host",
                        "tls = \"none\" is allowed only to a loopback address (a local relay)",
                    ));
                }
                let default_port = match tls {
                    TlsMode::Starttls => 587,
                    TlsMode::Tls => 465,
                    TlsMode::None => 25,
                };
                let port = self.bounded(raw.port, "mail.port", default_port, 1..=u16::MAX, "a TCP port")?;
                let given = SecretForms {
                    inline: raw.password,
                    env: raw.password_env,
                    file: raw.password_file,
                    credential: raw.password_credential,
                };
                let password = self.secret(given, "mail.password", span.clone())?;
                MailTransportKind::Smtp { host: host.into_inner(), port, tls, username: raw.username, password }
            }
            other => {
                return Err(self.err(
                    raw.transport.span(),
                    "mail.transport",
                    format!("expected \"smtp\" or \"outbox\", got {other:?}"),
                ));
            }
        };
        if raw.from.get_ref().parse::<lettre::message::Mailbox>().is_err() {
            return Err(self.err(
                raw.from.span(),
                "mail.from",
                format!("not an e-mail address: {:?}", raw.from.get_ref()),
            ));
        }
        if let Some(r) = &raw.reply_to
            && r.get_ref().parse::<lettre::message::Mailbox>().is_err()
        {
            return Err(self.err(r.span(), "mail.reply_to", format!("not an e-mail address: {:?}", r.get_ref())));
        }
        for a in &raw.admin_to {
            if a.parse::<lettre::message::Mailbox>().is_err() {
                return Err(self.err(span.clone(), "mail.admin_to", format!("not an e-mail address: {a:?}")));
            }
        }
        Ok(MailConfig {
            transport,
            from: raw.from.into_inner(),
            reply_to: raw.reply_to.map(Spanned::into_inner),
            admin_to: raw.admin_to,
            max_attachment_bytes: raw.max_attachment_bytes.unwrap_or(10 * 1024 * 1024),
            timeout_secs: self.bounded(raw.timeout_secs, "mail.timeout_secs", 60, 1..=3600, "seconds")?,
            ca_file: match raw.ca_file {
                None => None,
                Some(f) if Path::new(f.get_ref()).is_file() => Some(PathBuf::from(f.into_inner())),
                Some(f) => return Err(self.err(f.span(), "mail.ca_file", format!("cannot read {}", f.get_ref()))),
            },
        })
    }
}

/// The webhook check the Bitrix24 client makes ([`endpoint::webhook_url`]): https (plain
/// http only to a loopback host, a local test portal), ending in `/rest/<user id>/<code>/`.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    endpoint::webhook_url(url).map(|_| ())
}
