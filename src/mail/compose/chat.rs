//! A report as a chat message: the e-mail's greeting and headline in the configured
//! language, from the same template parts, so the chat and the e-mail say the same.

use minijinja::context;
use minijinja::value::{Serde, Value};

use super::{headline, language_of, phrases, render, shell_word};
use crate::kpi::ReportData;
use crate::mail::MailError;

/// A report as a short chat message (the Bitrix24 messenger, Telegram): the greeting, the
/// headline KPIs with the same numbers and words as the e-mail body, and the name of the
/// attached PDF when there is one. Plain text, no markup: the channel keeps CRM strings
/// (a manager called `[b]x[/b]`) from becoming markup (`chat`).
pub fn compose_chat_text(data: &ReportData, file_name: Option<&str>) -> Result<String, MailError> {
    let lang = language_of(data);
    let ctx = context! {
        t => phrases(lang),
        headline => Serde(headline(data)),
        file_name => file_name.map(|f| crate::text::file_name(f, "report.pdf")),
        ..Value::from(Serde(data))
    };
    let text = render("chat.txt", &ctx)?;
    // CRM strings are one line each already (`wire`); blank runs left by the template go.
    let mut out = String::new();
    for line in text.trim().lines() {
        if line.trim().is_empty() && out.ends_with("\n\n") {
            continue;
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    Ok(out.trim_end().to_owned())
}

/// `command` limited to one channel (`send … --channel bitrix24`); none when `channel` is
/// empty (a job that sends by e-mail alone: its commands read as they did before channels).
pub(super) fn with_channel(mut command: String, channel: &str) -> String {
    if !channel.is_empty() {
        command.push_str(" --channel ");
        command.push_str(&shell_word(channel));
    }
    command
}
