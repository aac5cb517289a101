use super::*;
use crate::domain::PeriodKind;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, "test.toml")
}

const MINIMAL: &str = r#"
[crm]
source = "demo"
[mail]
transport = "outbox"
from = "reports@example.ru"
"#;

#[test]
fn every_file_in_config_parses() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/config")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // Without any secret present: they are read when used.
            Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    let c = Config::embedded();
    assert_eq!(c.crm.source, CrmSourceKind::Demo);
    assert!(c.job("manager-weekly").is_some() && c.job("department-monthly").is_some());
}

#[test]
fn minimal_config_takes_defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.timezone, chrono_tz::Europe::Moscow);
    assert_eq!(c.language, Language::Ru);
    assert_eq!(c.crm.stuck_after_days, 14.0);
    assert_eq!(c.crm.satisfaction_scale, (1.0, 5.0));
}

fn invalid(text: &str) -> (usize, String, String) {
    match parse(text) {
        Err(ConfigError::Invalid { line, key, message, file, .. }) => {
            assert_eq!(file, "test.toml");
            (line, key, message)
        }
        other => panic!("expected an invalid config, got {other:?}"),
    }
}

#[test]
fn unknown_key_names_line_and_key() {
    let (line, key, _) = invalid(&format!("{MINIMAL}colour = \"red\"\n").replace("[mail]", "tipo = 1\n[mail]"));
    assert_eq!((line, key.as_str()), (4, "tipo"));
}

#[test]
fn wrong_type_names_line_and_key() {
    let (line, key, msg) =
        invalid(&MINIMAL.replace("source = \"demo\"", "source = \"demo\"\nstuck_after_days = \"two weeks\""));
    assert_eq!((line, key.as_str()), (4, "stuck_after_days"), "{msg}");
}

#[test]
fn bad_time_zone_and_cron() {
    let (line, key, _) = invalid(&format!("timezone = \"Europe/Atlantis\"\n{MINIMAL}"));
    assert_eq!((line, key.as_str()), (1, "timezone"));
    let job = "[[job]]\nname = \"w\"\nreport = \"manager\"\nschedule = \"0 8 * * MON *\"\nperiod = \"previous-week\"\n";
    let (line, key, msg) = invalid(&format!("{MINIMAL}{job}"));
    assert_eq!((line, key.as_str()), (10, "job.schedule"), "{msg}");
    let bad_hour = job.replace("0 8 * * MON *", "0 25 * * MON");
    let (_, key, _) = invalid(&format!("{MINIMAL}{bad_hour}"));
    assert_eq!(key, "job.schedule");
    let never = job.replace("0 8 * * MON *", "0 0 30 2 *");
    let (_, key, msg) = invalid(&format!("{MINIMAL}{never}"));
    assert_eq!(key, "job.schedule");
    assert!(msg.contains("never fires"), "{msg}");
    assert!(parse_cron("0 9 29 2 *").is_ok(), "29 February fires in leap years");
}

#[test]
fn missing_secret_is_named_and_not_printed() {
    let text = r#"
[crm]
source = "bitrix24"
webhook_url_env = "SALESPULSE_TEST_UNSET_VARIABLE"
departments = [3]
[mail]
transport = "outbox"
from = "reports@example.ru"
"#;
    // Reading the config reads no secret; the command that needs it does.
    let c = parse(text).unwrap();
    c.require_secrets(false, true).unwrap();
    match c.require_secrets(true, false) {
        Err(ConfigError::Invalid { file, line, key, message, .. }) => {
            assert_eq!((file.as_str(), line, key.as_str()), ("test.toml", 4, "crm.webhook_url_env"));
            assert!(message.contains("SALESPULSE_TEST_UNSET_VARIABLE"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }

    let inline = text.replace(
        "webhook_url_env = \"SALESPULSE_TEST_UNSET_VARIABLE\"",
        "webhook_url = \"https://x.bitrix24.ru/rest/1/topsecret/\"",
    );
    let c = parse(&inline).unwrap();
    assert!(!format!("{c:?}").contains("topsecret"));
}

#[test]
fn a_credential_is_read_from_the_credentials_directory_when_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("smtp_password"), "s3cret\n").unwrap();
    std::fs::write(dir.path().join("webhook"), "http://portal.example.ru/rest/1/x/\n").unwrap();
    let text = |url_key: &str| {
        format!(
            "[crm]\nsource = \"bitrix24\"\n{url_key}\ndepartments = [1]\n[mail]\ntransport = \"smtp\"\n\
             host = \"smtp.example.ru\"\nusername = \"r@example.ru\"\npassword_credential = \"smtp_password\"\n\
             from = \"a@b.ru\"\n"
        )
    };
    let c = parse(&text("webhook_url_credential = \"webhook\"")).unwrap();
    let MailTransportKind::Smtp { password: Some(password), .. } = &c.mail.transport else { panic!() };
    assert_eq!(password.describe(), "from systemd credential smtp_password");
    // Outside systemd (no $CREDENTIALS_DIRECTORY) the error says what to do.
    let no_dir = password.with_credentials_dir(None).unwrap_err().to_string();
    assert!(no_dir.contains("test.toml:9") && no_dir.contains("mail.password_credential"), "{no_dir}");
    assert!(no_dir.contains("CREDENTIALS_DIRECTORY"), "{no_dir}");
    let found = password.with_credentials_dir(Some(dir.path().as_os_str())).unwrap();
    assert_eq!(found.expose(), "s3cret");
    // A webhook read later is checked as an inline one is at load.
    let CrmSourceKind::Bitrix24 { webhook_url } = &c.crm.source else { panic!() };
    let url = webhook_url.with_credentials_dir(Some(dir.path().as_os_str())).unwrap();
    assert!(check_webhook_url(url.expose()).is_err());
    let (line, key, _) = invalid(&text("webhook_url_credential = \"../etc/passwd\""));
    assert_eq!((line, key.as_str()), (3, "crm.webhook_url_credential"));
    let (_, key, msg) = invalid(&text("webhook_url_credential = \"w\"\nwebhook_url_env = \"W\""));
    assert_eq!(key, "crm.webhook_url", "{msg}");
}

#[test]
fn plain_http_and_tls_none_only_to_loopback() {
    let text = |url: &str| {
        format!(
            "[crm]\nsource = \"bitrix24\"\nwebhook_url = \"{url}\"\ndepartments = [1]\n[mail]\ntransport = \"outbox\"\nfrom = \"a@b.ru\"\n"
        )
    };
    assert!(parse(&text("http://127.0.0.1:8080/rest/1/x/")).is_ok());
    let (_, key, _) = invalid(&text("http://portal.example.ru/rest/1/x/"));
    assert_eq!(key, "crm.webhook_url");
    let smtp = |host: &str| {
        format!(
            "[crm]\nsource = \"demo\"\n[mail]\ntransport = \"smtp\"\nhost = \"{host}\"\ntls = \"none\"\nfrom = \"a@b.ru\"\n"
        )
    };
    assert!(parse(&smtp("127.0.0.1")).is_ok());
    let (line, key, _) = invalid(&smtp("smtp.example.ru"));
    assert_eq!((line, key.as_str()), (5, "mail.host"));
}

#[test]
fn targets_name_known_kpis_and_manager_ids() {
    let t = format!("{MINIMAL}[targets.default.week]\ndeals_won = 3\n[targets.managers.\"17\".week]\ndeals_won = 5\n");
    let c = parse(&t).unwrap();
    assert_eq!(c.targets.manager(17, PeriodKind::Week, Kpi::DealsWon), Some(5.0));
    assert_eq!(c.targets.manager(18, PeriodKind::Week, Kpi::DealsWon), Some(3.0));
    assert_eq!(c.targets.manager(18, PeriodKind::Month, Kpi::DealsWon), None);
    assert_eq!(c.targets.manager(18, PeriodKind::Custom, Kpi::DealsWon), None);
    let (line, key, _) = invalid(&format!("{MINIMAL}[targets.default.week]\ndeals_wonn = 3\n"));
    assert_eq!((line, key.as_str()), (8, "targets.default.week.deals_wonn"));
}

#[test]
fn settings_come_from_the_config() {
    let config = Config::embedded();
    let cfg = config.kpi_settings();
    assert_eq!(cfg.trend_periods, config.report.trend_periods);
    assert_eq!(cfg.sort_managers_by, config.report.sort_managers_by);
    assert_eq!(cfg.scope, config.crm.scope());
}

#[test]
fn a_webhook_not_shaped_like_the_clients_is_refused_at_load_with_line_and_key() {
    // The client's own check (`endpoint::webhook_url`), at load: a wrong URL is a config
    // error naming the line and key, never a run that fails every fetch. No message holds
    // the code.
    let long = "c".repeat(4096);
    for bad in [
        String::new(),
        " ".to_owned(),
        "https://x.bitrix24.ru/rest/1/".to_owned(),
        "https://x.bitrix24.ru/rest/1/topsecret/more/".to_owned(),
        "https://x.bitrix24.ru/rest/one/topsecret/".to_owned(),
        "https://x.bitrix24.ru/rest/1/topsecret/?auth=1".to_owned(),
        "https://x.bitrix24.ru/rest/1/top\\u0001secret/extra".to_owned(),
        "http://x.bitrix24.ru/rest/1/topsecret/".to_owned(),
        format!("https://x.bitrix24.ru/rest/1/{long}/x/"),
    ] {
        let text = MINIMAL.replace("source = \"demo\"", &format!("source = \"bitrix24\"\nwebhook_url = \"{bad}\""));
        let (line, key, message) = invalid(&text);
        assert_eq!((line, key.as_str()), (4, "crm.webhook_url"), "{bad:?}: {message}");
        assert!(!message.contains("topsecret") && !message.contains(&long), "{bad:?}: {message}");
    }
    // The largest code, and the trailing slash left out, are fine.
    for good in [format!("https://x.bitrix24.ru/rest/1/{long}/"), "https://x.bitrix24.ru/rest/1/topsecret".to_owned()] {
        let text = MINIMAL
            .replace("source = \"demo\"", &format!("source = \"bitrix24\"\nwebhook_url = \"{good}\"\nmanagers = [17]"));
        parse(&text).unwrap_or_else(|e| panic!("{e}"));
    }
}

const WEEKLY: &str =
    "[[job]]\nname = \"w\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\nperiod = \"previous-week\"\n";

/// MINIMAL with a real portal's webhook, then `extra`.
fn portal(extra: &str) -> String {
    MINIMAL.replace(
        "source = \"demo\"",
        "source = \"bitrix24\"\nwebhook_url = \"https://acme.bitrix24.ru/rest/1/abc/\"\ndepartments = [3]",
    ) + extra
}

#[test]
fn channels_default_to_email_and_are_checked() {
    let c = parse(&format!("{MINIMAL}{WEEKLY}")).unwrap();
    assert_eq!(c.jobs[0].channels, [Channel::Email]);
    assert!(c.telegram.is_none());
    let c = parse(&portal(&format!(
        "{WEEKLY}channels = [\"bitrix24\", \"email\"]\nbitrix24_recipients = [\"1\", \"chat42\"]\n"
    )))
    .unwrap();
    assert_eq!(c.jobs[0].channels, [Channel::Bitrix24, Channel::Email]);
    assert_eq!(c.jobs[0].bitrix24_recipients, ["1", "chat42"]);
    assert!(c.uses_channel(Channel::Bitrix24) && !c.uses_channel(Channel::Telegram));

    let (line, key, msg) = invalid(&portal(&format!("{WEEKLY}channels = [\"email\", \"slack\"]\n")));
    assert_eq!((line, key.as_str()), (14, "job.channels"), "{msg}");
    assert!(msg.contains("unknown channel \"slack\""), "{msg}");
    let (_, key, msg) = invalid(&portal(&format!("{WEEKLY}channels = []\n")));
    assert_eq!(key, "job.channels");
    assert!(msg.contains("at least one"), "{msg}");
    let (_, key, msg) = invalid(&portal(&format!("{WEEKLY}channels = [\"email\", \"email\"]\n")));
    assert_eq!(key, "job.channels");
    assert!(msg.contains("named twice"), "{msg}");
    let (_, key, msg) = invalid(&format!("{MINIMAL}{WEEKLY}channels = [\"bitrix24\"]\n"));
    assert_eq!(key, "job.channels");
    assert!(msg.contains("crm.source = \"bitrix24\""), "{msg}");
    let (_, key, msg) = invalid(&format!("{MINIMAL}{WEEKLY}channels = [\"telegram\"]\n"));
    assert_eq!(key, "job.channels");
    assert!(msg.contains("[telegram]"), "{msg}");
    let (_, key, msg) =
        invalid(&portal(&format!("{WEEKLY}channels = [\"bitrix24\"]\nbitrix24_recipients = [\"head@example.ru\"]\n")));
    assert_eq!(key, "job.bitrix24_recipients");
    assert!(msg.contains("an e-mail address cannot be a chat recipient"), "{msg}");
    let (_, key, _) = invalid(&portal(&format!("{WEEKLY}bitrix24_recipients = [\"1\"]\n")));
    assert_eq!(key, "job.bitrix24_recipients", "recipients without the channel");
    let department = WEEKLY.replace("\"manager\"", "\"department\"") + "recipients = [\"ceo@example.ru\"]\n";
    let (_, key, msg) = invalid(&portal(&format!("{department}channels = [\"email\", \"bitrix24\"]\n")));
    assert_eq!(key, "job.bitrix24_recipients");
    assert!(msg.contains("department report"), "{msg}");
}

#[test]
fn telegram_takes_a_secret_token_an_api_url_and_chats() {
    let text = format!(
        "{MINIMAL}{WEEKLY}channels = [\"email\", \"telegram\"]\n[telegram]\nbot_token_env = \"TG_TOKEN\"\n\
         [telegram.chats]\n\"17\" = \"123456789\"\n\"CEO@Example.ru\" = \"-1001234567890\"\n"
    );
    let c = parse(&text).unwrap();
    let t = c.telegram.as_ref().unwrap();
    assert_eq!(t.api_url, TELEGRAM_API_URL);
    assert_eq!(t.timeout_secs, 60);
    assert_eq!(t.chat_for(["17"]), Some("123456789"));
    assert_eq!(t.chat_for(["21", "ceo@example.ru"]), Some("-1001234567890"));
    assert_eq!(t.chat_for(["21"]), None);
    assert_eq!(c.secrets().last().map(|(k, _)| *k), Some("telegram.bot_token"));
    assert!(!format!("{c:?}").contains("TG_TOKEN="));

    let (_, key, _) = invalid(&format!("{MINIMAL}[telegram]\napi_url = \"https://api.telegram.org\"\n"));
    assert_eq!(key, "telegram.bot_token");
    let (line, key, msg) =
        invalid(&format!("{MINIMAL}[telegram]\nbot_token = \"1:x\"\napi_url = \"http://api.telegram.org\"\n"));
    assert_eq!((line, key.as_str()), (9, "telegram.api_url"), "{msg}");
    let (_, key, msg) =
        invalid(&format!("{MINIMAL}[telegram]\nbot_token = \"1:x\"\n[telegram.chats]\n\"17\" = \"me\"\n"));
    assert_eq!(key, "telegram.chats.\"17\"");
    assert!(msg.contains("not a Telegram chat id"), "{msg}");
    let (_, key, _) =
        invalid(&format!("{MINIMAL}[telegram]\nbot_token = \"1:x\"\n[telegram.chats]\n\"Ivan\" = \"1\"\n"));
    assert_eq!(key, "telegram.chats.\"Ivan\"");
    let (_, key, _) = invalid(&format!("{MINIMAL}[telegram]\nbot_token = \"1:x\"\ntimeout_secs = 0\n"));
    assert_eq!(key, "telegram.timeout_secs");
}

const PACE: &str = r#"
[[alert]]
name = "pace"
schedule = "0 12 * * WED"
rule = "pace"
kpi = "revenue"
period = "week"
min_share = 0.6
recipients = ["Head <head@example.ru>", "HEAD@example.ru"]
"#;

const WEEK_REVENUE: &str = "\n[targets.default.week]\nrevenue = 400000\n";

#[test]
fn alerts_and_the_calendar_parse_with_their_defaults() {
    let text = format!(
        "{MINIMAL}{PACE}{WEEK_REVENUE}\n[calendar]\nholidays = [\"2026-11-04\", \"2026-11-04\", \"2026-12-31\"]\n\n\
         [[alert]]\nname = \"quiet\"\nschedule = \"0 10 * * MON-FRI\"\nrule = \"silence\"\nworking_days = 2\n\n\
         [[alert]]\nname = \"stuck\"\nschedule = \"0 9 * * *\"\nrule = \"newly-stuck\"\nto_manager = true\n"
    );
    let c = parse(&text).unwrap();
    let pace = c.alert("pace").unwrap();
    assert_eq!(pace.rule, AlertRule::Pace { kpi: Kpi::Revenue, period: PeriodKind::Week, min_share: 0.6 });
    assert!(pace.to_manager);
    // A bare address each, a second spelling of the same one dropped.
    assert_eq!(pace.recipients, ["head@example.ru"]);
    assert_eq!(c.alert("quiet").unwrap().rule, AlertRule::Silence { working_days: 2 });
    assert_eq!(c.alert("stuck").unwrap().rule, AlertRule::NewlyStuck);
    assert_eq!(c.calendar.holidays.len(), 2);
    assert_eq!(c.calendar.working_weekdays, [true, true, true, true, true, false, false]);
    let six = parse(&format!(
        "{MINIMAL}[calendar]\nworking_days = [\"Mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sat\"]\n"
    ))
    .unwrap();
    assert_eq!(six.calendar.working_weekdays, [true, true, true, true, true, true, false]);
    assert!(parse(MINIMAL).unwrap().alerts.is_empty());
}

#[test]
fn alert_mistakes_name_line_and_key() {
    let pace = format!("{MINIMAL}{PACE}{WEEK_REVENUE}");
    let cases: &[(String, &str, &str)] = &[
        (pace.replace("\"revenue\"", "\"win_rate\""), "alert.kpi", "cannot be pro-rated"),
        (pace.replace("\"revenue\"", "\"cycle_days_median\""), "alert.kpi", "cannot be pro-rated"),
        (pace.replace("\"revenue\"", "\"deals_lost\""), "alert.kpi", "cannot be pro-rated"),
        (pace.replace("\"revenue\"", "\"open_pipeline_value\""), "alert.kpi", "cannot be pro-rated"),
        (pace.replace("\"revenue\"", "\"turnover\""), "alert.kpi", "unknown KPI"),
        (pace.replace("\"revenue\"", "\"deals_won\""), "alert.kpi", "no weekly target for \"deals_won\""),
        (pace.replace("period = \"week\"", "period = \"month\""), "alert.kpi", "no monthly target"),
        (pace.replace("period = \"week\"", "period = \"quarter\""), "alert.period", "\"week\" or \"month\""),
        (pace.replace("min_share = 0.6", "min_share = 0"), "alert.min_share", "0.01 to 1"),
        (pace.replace("min_share = 0.6", "min_share = 1.5"), "alert.min_share", "0.01 to 1"),
        (pace.replace("min_share = 0.6", "min_share = nan"), "alert.min_share", "0.01 to 1"),
        (pace.replace("min_share = 0.6\n", ""), "alert.min_share", "needs min_share"),
        (pace.replace("min_share = 0.6", "working_days = 2"), "alert.working_days", "not a key of rule = \"pace\""),
        (pace.replace("\"0 12 * * WED\"", "\"0 12 * *\""), "alert.schedule", "5 crontab fields"),
        (pace.replace("rule = \"pace\"", "rule = \"panic\""), "alert.rule", "\"newly-stuck\""),
        (pace.replace("name = \"pace\"", "name = \"pace now\""), "alert.name", "letters, digits"),
        (pace.replace("\"HEAD@example.ru\"", "\"not an address\""), "alert.recipients", "not an e-mail address"),
        (format!("{pace}{PACE}"), "alert.name", "already the name"),
        (
            format!(
                "{pace}[[job]]\nname = \"pace\"\nreport = \"manager\"\nschedule = \"0 8 * * MON\"\nperiod = \"previous-week\"\n"
            ),
            "alert.name",
            "already the name",
        ),
        (
            format!("{MINIMAL}[[alert]]\nname = \"q\"\nschedule = \"0 9 * * *\"\nrule = \"silence\"\n"),
            "alert.working_days",
            "needs working_days",
        ),
        (
            format!(
                "{MINIMAL}[[alert]]\nname = \"q\"\nschedule = \"0 9 * * *\"\nrule = \"silence\"\nworking_days = 0\n"
            ),
            "alert.working_days",
            "1 to 250",
        ),
        (
            format!(
                "{MINIMAL}[[alert]]\nname = \"q\"\nschedule = \"0 9 * * *\"\nrule = \"silence\"\nworking_days = 100000\n"
            ),
            "alert.working_days",
            "1 to 250",
        ),
        (
            format!(
                "{MINIMAL}[[alert]]\nname = \"q\"\nschedule = \"0 9 * * *\"\nrule = \"newly-stuck\"\nkpi = \"revenue\"\n"
            ),
            "alert.kpi",
            "not a key of rule = \"newly-stuck\"",
        ),
        (
            format!(
                "{MINIMAL}[[alert]]\nname = \"q\"\nschedule = \"0 9 * * *\"\nrule = \"newly-stuck\"\nto_manager = false\n"
            ),
            "alert.recipients",
            "needs recipients",
        ),
        (format!("{MINIMAL}[calendar]\nholidays = [\"2026-02-30\"]\n"), "calendar.holidays", "expected a date"),
        (format!("{MINIMAL}[calendar]\nholidays = [\"04.11.2026\"]\n"), "calendar.holidays", "expected a date"),
        (format!("{MINIMAL}[calendar]\nholidays = [\"99999-01-01\"]\n"), "calendar.holidays", "expected a date"),
        (format!("{MINIMAL}[calendar]\nworking_days = []\n"), "calendar.working_days", "at least one"),
        (
            format!("{MINIMAL}[calendar]\nworking_days = [\"monday-ish\", \"xx\"]\n"),
            "calendar.working_days",
            "weekdays",
        ),
    ];
    for (text, want_key, want) in cases {
        let (line, key, message) = invalid(text);
        assert_eq!(key, *want_key, "{message}\n{text}");
        assert!(message.contains(want), "{key}: {message}");
        assert!(line > 1, "{key}: a line is named");
    }
}

#[test]
fn an_alert_names_its_channels_as_a_job_does() {
    let ok = parse(&format!("{MINIMAL}{PACE}{WEEK_REVENUE}")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ok.alerts[0].channels, [Channel::Email], "e-mail by default");
    let with = |channels: &str| format!("{MINIMAL}{PACE}channels = {channels}\n{WEEK_REVENUE}");
    for (channels, want) in [
        ("[]", "name at least one channel"),
        ("[\"sms\"]", "unknown channel"),
        ("[\"email\", \"email\"]", "named twice"),
        ("[\"bitrix24\"]", "crm.source = \"bitrix24\""),
        ("[\"telegram\"]", "[telegram]"),
    ] {
        let (_, key, message) = invalid(&with(channels));
        assert_eq!(key, "alert.channels", "{channels}: {message}");
        assert!(message.contains(want), "{channels}: {message}");
    }
}
