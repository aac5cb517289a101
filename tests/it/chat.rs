//! Delivery into chats: a report's rows per channel through the ledger, into the Bitrix24
//! messenger of the emulated portal (`im.dialog.get`, `im.disk.folder.get`,
//! `disk.folder.uploadfile`, `im.disk.file.commit`) and to a Telegram Bot API on loopback.
//! Each recipient gets each report once per channel; a failed channel fails only its rows,
//! and the digest, `send` and `status` name the channel; CRM strings stay text; the bot
//! token never shows; a chat row a crash left is sent again once; and the real binary does
//! it all against the emulated portal, `check` naming the scopes to add.

use std::path::Path;

use salespulse::config::{Channel, Config, CrmSourceKind, Secret, SecretRef, TelegramConfig};
use salespulse::crm::emulator::{Emulator, EmulatorOptions, PortalData};
use salespulse::pipeline::deliver;
use salespulse::store::{DeliveryKey, DeliveryState, NewDelivery, Store};
use serde_json::json;

use crate::support::bin::{Portal, config_with, ok, run};
use crate::support::delivery::{
    ADMIN, MANAGERS, config, deliver_week47, key, pdf_for, report_for, reports, to, week47, weekly,
};
use crate::support::reference::moscow;
use crate::support::smtp::{SmtpOptions, TestSmtp};
use crate::support::telegram::BotApi;

const TOKEN: &str = "123456:SECRET-bot-token-abc";

/// The three managers as active users, and a fourth who left.
fn users() -> PortalData {
    let mut data = PortalData::default();
    for (id, name, email) in MANAGERS.iter().map(|(i, n, e)| (*i, *n, *e)).chain([("99", "Ушёл", "gone@example.ru")])
    {
        let user = json!({"ID": id, "NAME": name, "LAST_NAME": "", "EMAIL": email, "ACTIVE": id != "99", "UF_DEPARTMENT": [3]});
        data.users.push(user.as_object().unwrap().clone());
    }
    data
}

/// A portal with a messenger: the webhook has `scopes`, the chat `chat42` exists.
async fn portal(scopes: &[&str], max_upload_bytes: u64) -> Emulator {
    let options = EmulatorOptions {
        rate_per_sec: 10_000.0,
        burst: 10_000,
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        group_chats: vec![42],
        max_upload_bytes,
        ..EmulatorOptions::default()
    };
    Emulator::start(users(), options).await.unwrap()
}

const ALL_SCOPES: [&str; 5] = ["crm", "user", "department", "im", "disk"];

/// The delivery config of `support::delivery` with the CRM at `emulator` and the weekly job
/// sending through `channels`, its scorecards copied to `chat42` in the messenger.
fn chat_config(smtp: &TestSmtp, state: &Path, emulator: &Emulator, channels: &[Channel]) -> Config {
    let mut c = config(smtp, state, 3);
    repoint(&mut c, emulator);
    let job = c.jobs.iter_mut().find(|j| j.name == "manager-weekly").unwrap();
    job.channels = channels.to_vec();
    job.bitrix24_recipients = if channels.contains(&Channel::Bitrix24) { vec!["chat42".into()] } else { Vec::new() };
    c
}

fn repoint(c: &mut Config, emulator: &Emulator) {
    c.crm.source = CrmSourceKind::Bitrix24 { webhook_url: SecretRef::from(Secret::new(emulator.webhook_url())) };
    c.crm.rate_limit_per_sec = 10_000.0;
    c.crm.rate_limit_burst = 10_000;
    c.crm.max_retries = 1;
}

fn chat_key(id: &str, channel: &str, destination: &str) -> DeliveryKey {
    DeliveryKey { channel: channel.into(), destination: destination.into(), ..key(id) }
}

/// The plain-text body of a message.
fn body(raw: &[u8]) -> String {
    let parsed = mail_parser::MessageParser::default().parse(raw).expect("a parseable message");
    parsed.body_text(0).expect("a text body").into_owned()
}

#[tokio::test]
async fn each_manager_gets_one_email_and_one_chat_message_with_the_pdf_and_a_second_run_sends_nothing() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let emulator = portal(&ALL_SCOPES, 100 << 20).await;
    let state = tempfile::tempdir().unwrap();
    let config = chat_config(&smtp, state.path(), &emulator, &[Channel::Email, Channel::Bitrix24]);
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!((summary.sent, summary.failed.len()), (3 + 3 * 2, 0), "{summary:?}");
    let received = smtp.received();
    let messages = emulator.messages();
    assert_eq!(messages.len(), 6, "each manager's dialog and chat42, three scorecards each: {messages:?}");
    for (id, name, email) in MANAGERS {
        let mail = to(&received, email);
        assert_eq!(mail.len(), 1, "{email}");
        let file = format!("2026-W47 {name} ({id}).pdf");
        let own: Vec<_> = messages.iter().filter(|m| m.dialog == id).collect();
        assert_eq!(own.len(), 1, "one message in {name}'s own dialog");
        assert_eq!(own[0].files, [(file.clone(), pdf_for(id, 1))], "the stored PDF, byte for byte");
        let copy: Vec<_> = messages.iter().filter(|m| m.dialog == "chat42" && m.files[0].0 == file).collect();
        assert_eq!(copy.len(), 1, "one copy in chat42");
        // The headline numbers are the e-mail's, in the configured language.
        let text = &own[0].text;
        assert!(text.contains(&format!("Здравствуйте, {name}!")), "{text}");
        let mail_text = body(&mail[0].data);
        let headline: Vec<&str> = mail_text.lines().filter(|l| l.starts_with("- ")).take(3).collect();
        assert!(!headline.is_empty(), "{mail_text}");
        for line in headline {
            assert!(text.contains(line), "the chat says what the e-mail says: {line:?}\n{text}");
        }
        for (channel, dest) in [("email", ""), ("bitrix24", id), ("bitrix24", "chat42")] {
            let row = store.delivery(&chat_key(id, channel, dest)).unwrap().unwrap();
            assert_eq!(row.state, DeliveryState::Sent, "{channel} {dest}");
        }
    }

    let again = deliver_week47(&store, &smtp, &config, &reports(2)).await;
    assert_eq!((again.sent, again.skipped), (0, 9), "{again:?}");
    assert_eq!(emulator.messages().len(), 6, "nothing is sent twice");
    assert_eq!(smtp.received().len(), 3);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_refused_upload_or_a_missing_scope_fails_only_the_chat_rows_and_the_digest_names_the_channel() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    // A Disk that stores nothing larger than 10 bytes: every upload is refused.
    let full = portal(&ALL_SCOPES, 10).await;
    let state = tempfile::tempdir().unwrap();
    let config = chat_config(&smtp, state.path(), &full, &[Channel::Email, Channel::Bitrix24]);
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!(summary.sent, 3, "the e-mails go: {summary:?}");
    assert_eq!(summary.failed.len(), 6, "{summary:?}");
    for f in &summary.failed {
        assert_eq!(f.channel, "bitrix24");
        assert!(f.permanent && f.reason.contains("ERROR_COULD_NOT_SAVE_FILE"), "{f:?}");
    }
    assert!(full.messages().is_empty());
    for (id, _, email) in MANAGERS {
        assert_eq!(to(&smtp.received(), email).len(), 1);
        assert_eq!(store.delivery(&chat_key(id, "bitrix24", id)).unwrap().unwrap().state, DeliveryState::Failed);
    }
    let digest = to(&smtp.received(), ADMIN);
    assert_eq!(digest.len(), 1);
    let text = body(&digest[0].data);
    assert!(text.contains("Иван Петров (17), bitrix24: 17"), "the digest names the channel:\n{text}");
    assert!(text.contains("--only 17 --resend --channel bitrix24"), "the command resends that channel only:\n{text}");
    full.shutdown().await;

    // A webhook without the im and disk scopes: the same, with what to tick.
    let state2 = tempfile::tempdir().unwrap();
    let no_scope = portal(&["crm", "user", "department"], 100 << 20).await;
    let config2 = chat_config(&smtp, state2.path(), &no_scope, &[Channel::Email, Channel::Bitrix24]);
    let store2 = Store::open(state2.path()).unwrap();
    let summary = deliver_week47(&store2, &smtp, &config2, &reports(1)).await;
    assert_eq!((summary.sent, summary.failed.len()), (3, 6), "{summary:?}");
    assert!(summary.failed[0].reason.contains("im and disk scopes"), "{:?}", summary.failed[0]);
    no_scope.shutdown().await;

    // Fixed in the portal: the next run sends the chat rows, and no e-mail again.
    let fixed = portal(&ALL_SCOPES, 100 << 20).await;
    let mut config = config;
    repoint(&mut config, &fixed);
    let mails = smtp.received().len();
    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!((summary.sent, summary.skipped, summary.failed.len()), (6, 3, 0), "{summary:?}");
    assert_eq!(fixed.messages().len(), 6);
    assert_eq!(smtp.received().len(), mails, "no e-mail twice, no digest");
    fixed.shutdown().await;
}

#[tokio::test]
async fn bb_code_in_crm_strings_stays_text_in_the_messenger() {
    const NAME: &str = "[b]Иван[/b] [url=https://evil.example]жми[/url] [user=all]все[/user]";
    let smtp = TestSmtp::start(SmtpOptions::default());
    let emulator = portal(&ALL_SCOPES, 100 << 20).await;
    let state = tempfile::tempdir().unwrap();
    let config = chat_config(&smtp, state.path(), &emulator, &[Channel::Bitrix24]);
    let store = Store::open(state.path()).unwrap();
    let summary = deliver_week47(&store, &smtp, &config, &[report_for("17", NAME, "ivan@example.ru", 1)]).await;
    assert_eq!(summary.sent, 2, "{summary:?}");
    assert!(smtp.received().is_empty(), "no e-mail channel");
    for m in emulator.messages() {
        assert!(!m.text.contains('[') && !m.text.contains(']'), "no BB-code tag can open: {}", m.text);
        assert!(
            m.text.contains("［b］Иван［/b］ ［url=https://evil.example］жми［/url］"),
            "the name as typed: {}",
            m.text
        );
    }
    emulator.shutdown().await;
}

fn telegram(url: &str, token: &str, chats: &[(&str, &str)]) -> TelegramConfig {
    TelegramConfig {
        bot_token: SecretRef::from(Secret::new(token)),
        api_url: url.to_owned(),
        timeout_secs: 10,
        chats: chats.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

#[tokio::test]
async fn telegram_gets_the_pdf_after_a_flood_wait_and_only_those_with_a_chat() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    // The first call is answered 429 retry_after 1.
    let bot = BotApi::start_with(TOKEN, &["1001", "1002"], 50 << 20, 1, 1);
    let state = tempfile::tempdir().unwrap();
    let mut config = config(&smtp, state.path(), 3);
    // Ivan by his user id, Maria by her e-mail; Oleg has none.
    config.telegram = Some(telegram(&bot.url, TOKEN, &[("17", "1001"), ("maria@example.ru", "1002")]));
    config.jobs.iter_mut().find(|j| j.name == "manager-weekly").unwrap().channels =
        vec![Channel::Email, Channel::Telegram];
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!((summary.sent, summary.failed.len()), (3 + 2, 0), "{summary:?}");
    let sent = bot.sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    for (chat, id, name) in [("1001", "17", "Иван Петров"), ("1002", "21", "Мария Соколова")] {
        let m = sent.iter().find(|m| m.chat_id == chat).unwrap();
        assert_eq!(m.document, Some((format!("2026-W47 {name} ({id}).pdf"), pdf_for(id, 1))));
        assert!(m.text.contains(&format!("Здравствуйте, {name}!")), "{}", m.text);
    }
    let rows = store.deliveries("manager-weekly", "2026-W47").unwrap();
    assert!(
        !rows.iter().any(|r| r.key.recipient_key == "33" && r.key.channel == "telegram"),
        "Oleg gets no Telegram row"
    );
    assert_eq!(rows.len(), 5);

    let again = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!((again.sent, again.skipped), (0, 5), "{again:?}");
    assert_eq!(bot.sent().len(), 2);
}

#[tokio::test]
async fn a_refused_token_an_unknown_chat_and_a_large_file_fail_their_rows_without_showing_the_token() {
    const WRONG: &str = "654321:WRONG-secret-token-xyz";
    let smtp = TestSmtp::start(SmtpOptions::default());
    let bot = BotApi::start_with(TOKEN, &["1001", "1002"], 40, 0, 1);
    let state = tempfile::tempdir().unwrap();
    let mut config = config(&smtp, state.path(), 3);
    config.telegram = Some(telegram(&bot.url, WRONG, &[("17", "1001")]));
    config.jobs.iter_mut().find(|j| j.name == "manager-weekly").unwrap().channels =
        vec![Channel::Email, Channel::Telegram];
    let store = Store::open(state.path()).unwrap();

    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!((summary.sent, summary.failed.len()), (3, 1), "{summary:?}");
    let failed = &summary.failed[0];
    assert!(failed.permanent && failed.reason.contains("bot token") && failed.reason.contains("401"), "{failed:?}");
    let digest = body(&to(&smtp.received(), ADMIN)[0].data);
    let row = store.delivery(&chat_key("17", "telegram", "1001")).unwrap().unwrap();
    for shown in [format!("{summary:?}"), digest.clone(), format!("{row:?}")] {
        assert!(!shown.contains("WRONG-secret") && !shown.contains(WRONG), "the token never shows: {shown}");
    }
    assert!(digest.contains("telegram: 1001"), "{digest}");

    // The right token: Oleg's chat is unknown to Telegram, Ivan's PDF (over 40 bytes) is too large.
    let state = tempfile::tempdir().unwrap();
    let mut config = config_for_chats(&smtp, state.path(), &bot, &[("17", "1001"), ("33", "1003")]);
    config.daemon.max_attempts = 3;
    let store = Store::open(state.path()).unwrap();
    let summary = deliver_week47(&store, &smtp, &config, &reports(1)).await;
    assert_eq!(summary.failed.len(), 2, "{summary:?}");
    let reason = |id: &str| summary.failed.iter().find(|f| f.recipient_key == id).unwrap().reason.clone();
    assert!(reason("33").contains("chat not found"), "{}", reason("33"));
    assert!(reason("17").contains("413") && reason("17").contains("too large"), "{}", reason("17"));
    assert!(bot.sent().is_empty());
}

fn config_for_chats(smtp: &TestSmtp, state: &Path, bot: &BotApi, chats: &[(&str, &str)]) -> Config {
    let mut c = config(smtp, state, 3);
    c.telegram = Some(telegram(&bot.url, TOKEN, chats));
    c.jobs.iter_mut().find(|j| j.name == "manager-weekly").unwrap().channels = vec![Channel::Telegram];
    c
}

/// A process killed while sending Maria's chat message leaves her row `sending`: the next
/// run sends it again once, and the admin hears that a duplicate is possible.
#[tokio::test]
async fn a_chat_row_a_crash_left_is_sent_again_once_and_the_admin_told() {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let emulator = portal(&ALL_SCOPES, 100 << 20).await;
    let state = tempfile::tempdir().unwrap();
    let mut config = chat_config(&smtp, state.path(), &emulator, &[Channel::Bitrix24]);
    config.jobs.iter_mut().for_each(|j| j.bitrix24_recipients.clear());
    {
        let crashed = Store::open(state.path()).unwrap();
        let r = report_for("21", "Мария Соколова", "maria@example.ru", 1);
        let k = chat_key("21", "bitrix24", "21");
        let to = vec!["21".to_owned()];
        let new = NewDelivery {
            key: k.clone(),
            recipient_name: &r.recipient_name,
            to: &to,
            file_name: &r.file_name,
            pdf: &r.pdf,
            json: &r.json,
        };
        crashed.record(&new, false).unwrap();
        crashed.claim(&k, &[DeliveryState::Rendered]).unwrap().unwrap();
        crashed.start_attempt(&k, "bitrix24:21").unwrap();
        // Dropped: its owner lock goes, as a killed process's does.
    }
    let store = Store::open(state.path()).unwrap();
    assert_eq!(deliver::unsent_periods(&store).unwrap(), [("manager-weekly".to_owned(), "2026-W47".to_owned())]);
    let summary = deliver::resume(&store, &smtp.mailer(), &config, &weekly(&config), &week47()).await.unwrap();
    assert_eq!((summary.sent, summary.unknown.len()), (1, 1), "{summary:?}");
    let messages = emulator.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].dialog, "21");
    assert_eq!(messages[0].files[0].1, pdf_for("21", 1), "the bytes stored before the crash");
    let digest = body(&to(&smtp.received(), ADMIN)[0].data);
    assert!(digest.contains("bitrix24: sent again after an interrupted attempt"), "{digest}");

    let again = deliver::resume(&store, &smtp.mailer(), &config, &weekly(&config), &week47()).await.unwrap();
    assert_eq!(again.sent, 0);
    assert_eq!(emulator.messages().len(), 1, "once");
    emulator.shutdown().await;
}

/// The real binary against the emulated demo portal: `check` names the scopes to add,
/// `send` mails and fails the chat rows (naming the channel) until they are added, then
/// sends each chat message once; `status` names the channel of what is pending.
#[test]
fn the_binary_sends_scorecards_into_the_messenger_and_check_names_the_missing_scopes() {
    let slot = moscow(2026, 11, 23, 8);
    let dir = tempfile::tempdir().unwrap();
    let with_channels = |config: &Path| {
        let text = std::fs::read_to_string(config).unwrap().replacen(
            "period = \"previous-week\"\n",
            "period = \"previous-week\"\nchannels = [\"email\", \"bitrix24\"]\n",
            1,
        );
        std::fs::write(config, text).unwrap();
    };
    let lacking = Portal::start(salespulse::crm::demo::portal(slot), EmulatorOptions::default());
    let config = lacking.config(dir.path(), None);
    with_channels(&config);

    let check = run(dir.path(), &config, &["check"]);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{out}");
    assert!(
        out.contains("FAIL  crm: the webhook lacks the scope im (") && out.contains("disk (for the report's PDF"),
        "{out}"
    );

    let send =
        run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17", "--out", "out"]);
    let out = String::from_utf8_lossy(&send.stdout);
    assert_eq!(send.status.code(), Some(1), "{out}");
    assert!(out.contains("1 sent") && out.contains("1 failed"), "{out}");
    assert!(out.contains("failed: Иван Петров (bitrix24: 17): failed to send the bitrix24 message"), "{out}");
    let status = ok(&run(dir.path(), &config, &["status"]));
    assert!(status.contains("Иван Петров (bitrix24: 17): failed"), "{status}");
    lacking.stop();

    let portal = Portal::start(
        salespulse::crm::demo::portal(slot),
        EmulatorOptions { scopes: ALL_SCOPES.map(str::to_owned).to_vec(), ..EmulatorOptions::default() },
    );
    let config = portal.config(dir.path(), None);
    with_channels(&config);
    let out = ok(&run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17"]));
    assert!(out.contains("1 sent, 1 skipped"), "the e-mail went before: {out}");
    let messages = portal.emulator.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    let pdf = std::fs::read(dir.path().join("out/manager-weekly/2026-W47/2026-W47 Иван Петров (17).pdf")).unwrap();
    assert_eq!(messages[0].dialog, "17");
    assert_eq!(messages[0].files, [("2026-W47 Иван Петров (17).pdf".to_owned(), pdf)]);
    let out = ok(&run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17"]));
    assert!(out.contains("0 sent, 2 skipped"), "{out}");
    assert_eq!(portal.emulator.messages().len(), 1, "nothing twice");
    let emls = std::fs::read_dir(dir.path().join("outbox"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "eml"));
    // Ivan's scorecard, and the digest of the first run's chat failure.
    assert_eq!(emls.count(), 2);
    portal.stop();
}

/// A bot token refused by the Bot API shows nowhere in what the binary prints.
#[test]
fn the_binary_never_prints_the_bot_token() {
    const WRONG: &str = "777777:never-print-this-token";
    let bot = BotApi::start(TOKEN, &["1001"]);
    let dir = tempfile::tempdir().unwrap();
    let config = config_with(dir.path(), None, None);
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "period = \"previous-week\"\n",
        "period = \"previous-week\"\nchannels = [\"telegram\"]\n",
        1,
    ) + &format!(
        "\n[telegram]\nbot_token = \"{WRONG}\"\napi_url = \"{}\"\n[telegram.chats]\n\"17\" = \"1001\"\n",
        bot.url
    );
    std::fs::write(&config, text).unwrap();
    let send = run(dir.path(), &config, &["send", "manager-weekly", "--period", "2026-W47", "--only", "17"]);
    let status = run(dir.path(), &config, &["status"]);
    let check = run(dir.path(), &config, &["check"]);
    for out in [&send, &status, &check] {
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!all.contains("never-print-this"), "{all}");
    }
    let send_out = String::from_utf8_lossy(&send.stdout);
    assert!(send_out.contains("(telegram: 1001)") && send_out.contains("bot token"), "{send_out}");
    assert!(String::from_utf8_lossy(&check.stdout).contains("FAIL  telegram:"));
    assert!(bot.requests() >= 2);
}

/// The channel layer alone, as a pace alert will use it: a text without a file goes to a
/// dialog in one `im.message.add`, or as a Telegram `sendMessage`; an unknown or departed
/// user, an unknown chat and a text over the portal's limit are permanent failures.
#[tokio::test]
async fn a_text_alone_goes_to_one_recipient_over_one_channel() {
    use salespulse::chat::{ChatMessage, Chats};
    let emulator = portal(&ALL_SCOPES, 100 << 20).await;
    let bot = BotApi::start(TOKEN, &["1001"]);
    let smtp = TestSmtp::start(SmtpOptions::default());
    let state = tempfile::tempdir().unwrap();
    let mut config = chat_config(&smtp, state.path(), &emulator, &[Channel::Bitrix24]);
    config.telegram = Some(telegram(&bot.url, TOKEN, &[]));
    let chats = Chats::from_config(&config);
    let text = ChatMessage { text: "Выручка ниже плана: [b]42 %[/b]".into(), attachment: None };

    chats.send(Channel::Bitrix24, "17", &text).await.unwrap();
    chats.send(Channel::Bitrix24, "chat42", &text).await.unwrap();
    chats.send(Channel::Telegram, "1001", &text).await.unwrap();
    let messages = emulator.messages();
    assert_eq!(messages.iter().map(|m| m.dialog.as_str()).collect::<Vec<_>>(), ["17", "chat42"]);
    assert!(messages.iter().all(|m| m.files.is_empty() && m.text == "Выручка ниже плана: ［b］42 %［/b］"));
    assert_eq!(bot.sent()[0].text, "Выручка ниже плана: [b]42 %[/b]", "Telegram gets plain text as it is");
    assert!(bot.sent()[0].document.is_none());

    for (dialog, code) in [("99", "USER_NOT_FOUND"), ("555", "USER_NOT_FOUND"), ("chat7", "CHAT_ID")] {
        let e = chats.send(Channel::Bitrix24, dialog, &text).await.unwrap_err();
        assert!(!e.is_transient() && e.to_string().contains(code), "{dialog}: {e}");
    }
    let e = chats.send(Channel::Telegram, "1002", &text).await.unwrap_err();
    assert!(!e.is_transient() && e.to_string().contains("chat not found"), "{e}");
    emulator.shutdown().await;

    // A portal taking at most 20 characters refuses the text whole.
    let strict = Emulator::start(
        users(),
        EmulatorOptions {
            rate_per_sec: 10_000.0,
            burst: 10_000,
            scopes: ALL_SCOPES.map(str::to_owned).to_vec(),
            max_message_chars: 20,
            ..EmulatorOptions::default()
        },
    )
    .await
    .unwrap();
    repoint(&mut config, &strict);
    let e = Chats::from_config(&config).send(Channel::Bitrix24, "17", &text).await.unwrap_err();
    assert!(!e.is_transient() && e.to_string().contains("PARAMS_ERROR"), "{e}");
    assert!(strict.messages().is_empty());
    strict.shutdown().await;
}

/// An alert's messages, one per manager and a summary for the head of sales.
fn alert_messages() -> Vec<salespulse::alert::AlertMessage> {
    let mut messages: Vec<salespulse::alert::AlertMessage> = MANAGERS
        .iter()
        .map(|(id, name, email)| salespulse::alert::AlertMessage {
            recipient_key: (*id).to_owned(),
            recipient_name: (*name).to_owned(),
            to: vec![(*email).to_owned()],
            subject: format!("Отставание: {name}"),
            body: "Сделка [url=https://evil.example]жми[/url]\n".into(),
        })
        .collect();
    messages.push(salespulse::alert::AlertMessage {
        recipient_key: "head@example.ru".into(),
        recipient_name: "head@example.ru".into(),
        to: vec!["head@example.ru".into()],
        subject: "Отстают: 3".into(),
        body: "Сводка\n".into(),
    });
    messages
}

/// `config` with an alert sending through `channels`.
fn with_alert(mut config: Config, channels: &[Channel]) -> Config {
    config.alerts.push(salespulse::config::AlertConfig {
        name: "quiet".into(),
        schedule: "0 12 * * WED".into(),
        cron: salespulse::config::parse_cron("0 12 * * WED").unwrap(),
        rule: salespulse::config::AlertRule::Silence { working_days: 2 },
        to_manager: true,
        recipients: vec!["head@example.ru".into()],
        channels: channels.to_vec(),
    });
    config
}

/// A portal with `scopes`, the SMTP test server, and an alert to send by e-mail and into the
/// Bitrix24 messenger, with its ledger.
struct AlertSetup {
    smtp: TestSmtp,
    emulator: Emulator,
    state: tempfile::TempDir,
    config: Config,
    store: Store,
    mailer: salespulse::mail::SmtpMailer,
}

async fn alert_setup(scopes: &[&str]) -> AlertSetup {
    let smtp = TestSmtp::start(SmtpOptions::default());
    let emulator = portal(scopes, 100 << 20).await;
    let state = tempfile::tempdir().unwrap();
    let config = with_alert(
        chat_config(&smtp, state.path(), &emulator, &[Channel::Email]),
        &[Channel::Email, Channel::Bitrix24],
    );
    let store = Store::open(state.path()).unwrap();
    let mailer = smtp.mailer_for(&config.mail);
    AlertSetup { smtp, emulator, state, config, store, mailer }
}

#[tokio::test]
async fn an_alert_goes_by_email_and_into_each_managers_own_dialog_once_and_a_missing_scope_fails_only_the_chat() {
    use salespulse::alert::deliver as alerts;
    let slot = moscow(2026, 11, 25, 12);
    let period = "2026-11-25T12:00+03:00";
    let AlertSetup { smtp, emulator, state: _state, config, store, mailer } = alert_setup(&ALL_SCOPES).await;

    let done = alerts::deliver(&store, &mailer, &config, "quiet", period, slot, &alert_messages()).await.unwrap();
    assert_eq!((done.sent, done.failed.len()), (4 + 3, 0), "{done:?}");
    assert_eq!(smtp.received().len(), 4, "three managers and the head of sales by e-mail");
    let messages = emulator.messages();
    assert_eq!(messages.len(), 3, "each manager in their own dialog; the head of sales by e-mail only: {messages:?}");
    for (id, name, _) in MANAGERS {
        let own: Vec<_> = messages.iter().filter(|m| m.dialog == id).collect();
        assert_eq!(own.len(), 1, "{name}");
        assert!(own[0].files.is_empty(), "an alert is a message, not a file");
        assert!(own[0].text.starts_with(&format!("Отставание: {name}\n\n")), "{}", own[0].text);
        assert!(!own[0].text.contains('[') && own[0].text.contains("［url=https://evil.example］"), "{}", own[0].text);
    }
    let again = alerts::deliver(&store, &mailer, &config, "quiet", period, slot, &alert_messages()).await.unwrap();
    assert_eq!((again.sent, again.skipped), (0, 7), "{again:?}");
    assert_eq!(emulator.messages().len(), 3, "nothing twice");
    assert_eq!(smtp.received().len(), 4);
    emulator.shutdown().await;

    // Without the scope `im`: the chat rows fail, the e-mails go.
    let AlertSetup { smtp, emulator, state: _state, config, store, mailer } =
        alert_setup(&["crm", "user", "department"]).await;
    let done = alerts::deliver(&store, &mailer, &config, "quiet", period, slot, &alert_messages()).await.unwrap();
    assert_eq!((done.sent, done.failed.len()), (4, 3), "{done:?}");
    assert!(done.failed.iter().all(|(_, reason)| reason.contains("bitrix24")), "{:?}", done.failed);
    assert_eq!(smtp.received().len(), 4);
    assert!(emulator.messages().is_empty());
    let rows = store.alert_sends("quiet", period).unwrap();
    assert_eq!(rows.iter().filter(|r| r.key.channel == "bitrix24" && r.state == DeliveryState::Failed).count(), 3);
    emulator.shutdown().await;
}
