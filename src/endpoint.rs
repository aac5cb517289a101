//! Where salespulse may connect: the one check of the incoming webhook URL, used by the
//! config when it loads a webhook (inline, or read later from a file, the environment or a
//! systemd credential) and by the Bitrix24 client when it is built, and the loopback rule
//! both it and the SMTP settings (`tls = "none"`) follow; and how a failed HTTP send is
//! worded (`send_failure`), the same for every server salespulse talks to.
//!
//! A leaf module (it uses nothing of the crate) so that `config` can use it without
//! depending on `crm`, which depends on `config`.

use std::net::IpAddr;

use url::Url;

/// An incoming webhook URL taken apart. Its code is a secret: the caller wraps it at once.
pub struct WebhookUrl {
    /// The webhook base, always ending in `/`: methods are joined to it.
    pub base: Url,
    /// `https://portal/rest/1/***/`, for logs and errors.
    pub redacted: String,
    /// The webhook code alone.
    pub code: String,
}

/// Checks an incoming webhook URL, `https://portal/rest/<user>/<code>/` (the trailing slash
/// is optional), and takes it apart. Plain `http` is refused except on loopback (the
/// emulator, a local test portal). The error says what is wrong and never holds the code.
pub fn webhook_url(url: &str) -> Result<WebhookUrl, String> {
    let mut base = Url::parse(url.trim())
        .map_err(|e| format!("the webhook URL is not a URL: {e}; expected https://<portal>/rest/<user id>/<code>/"))?;
    let host = base.host_str().unwrap_or_default().to_owned();
    match base.scheme() {
        "https" => {}
        "http" if is_loopback_host(&host) => {}
        other => {
            return Err(format!(
                "the webhook URL uses {other}://; Bitrix24 requires https:// (plain http only on loopback)"
            ));
        }
    }
    if base.query().is_some() || base.fragment().is_some() {
        return Err(
            "the webhook URL has a query or fragment; expected https://<portal>/rest/<user id>/<code>/".to_owned()
        );
    }
    let segments: Vec<String> =
        base.path_segments().map(|s| s.filter(|p| !p.is_empty()).map(str::to_owned).collect()).unwrap_or_default();
    let Some(rest) = segments.iter().rposition(|s| s == "rest") else {
        return Err("the webhook URL has no /rest/<user id>/<code>/ path".to_owned());
    };
    if segments.len() != rest + 3 || segments[rest + 1].parse::<u64>().is_err() {
        return Err("the webhook URL does not end in /rest/<user id>/<code>/".to_owned());
    }
    base.set_path(&format!("{}/", segments.join("/")));
    let port = base.port().map(|p| format!(":{p}")).unwrap_or_default();
    let redacted = format!("{}://{host}{port}/{}/***/", base.scheme(), segments[..rest + 2].join("/"));
    let code = segments[rest + 2].clone();
    Ok(WebhookUrl { base, redacted, code })
}

/// `localhost`, `127.0.0.0/8` or `::1` (a host as a URL or the config spells it).
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// What went wrong on the way to a server, in the words every HTTP client of salespulse
/// uses (the Bitrix24 transport, the Telegram bot): `timed out`, `could not connect`,
/// `connection failed`. The error itself follows it in the message.
pub fn send_failure(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "connection failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_webhook_is_https_or_loopback_http_ending_in_rest_user_code() {
        let ok = webhook_url(" https://acme.bitrix24.ru/rest/1/s3cr3tcode\n").unwrap();
        assert_eq!(ok.base.as_str(), "https://acme.bitrix24.ru/rest/1/s3cr3tcode/");
        assert_eq!(ok.redacted, "https://acme.bitrix24.ru/rest/1/***/");
        assert_eq!(ok.code, "s3cr3tcode");
        let local = webhook_url("http://127.0.0.1:8080/rest/1/abc/").unwrap();
        assert_eq!(local.redacted, "http://127.0.0.1:8080/rest/1/***/");
        webhook_url("http://[::1]:8080/rest/1/abc/").unwrap();
        webhook_url("http://localhost/rest/1/abc/").unwrap();
        for bad in [
            "acme.bitrix24.ru/rest/1/s3cr3tcode/",
            "http://acme.bitrix24.ru/rest/1/s3cr3tcode/",
            "ftp://acme.bitrix24.ru/rest/1/s3cr3tcode/",
            "https://acme.bitrix24.ru/rest/1/s3cr3tcode/?x=1",
            "https://acme.bitrix24.ru/s3cr3tcode/",
            "https://acme.bitrix24.ru/rest/x/s3cr3tcode/",
            "https://acme.bitrix24.ru/rest/1/s3cr3tcode/more/",
        ] {
            let e = webhook_url(bad).err().unwrap_or_else(|| panic!("{bad} passed"));
            assert!(!e.contains("s3cr3tcode"), "{e}");
        }
    }
}
