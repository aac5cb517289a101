//! Short plain-text messages to one recipient (alerts).

use std::time::SystemTime;

use lettre::message::SinglePart;

use super::{compose_err, headers, id_atom, outgoing, parse_mailbox, parse_recipients, parts_hash};
use crate::config::MailConfig;
use crate::mail::{MailError, Outgoing};
use crate::text::one_line;

/// A short plain-text message to one recipient: an alert. `id` (the alert, its period and
/// the recipient's key) makes the Message-ID, the same on every attempt, so a send again
/// after an interruption carries the same one; `date` is the alert's slot. The subject is
/// flattened to one line; the body is sent as given (its CRM strings flattened by its
/// author).
pub fn compose_text(
    mail: &MailConfig,
    id: [&str; 3],
    to: &[String],
    subject: &str,
    body: &str,
    date: SystemTime,
) -> Result<Outgoing, MailError> {
    let from = parse_mailbox("mail.from", &mail.from)?;
    let to = parse_recipients(to)?;
    let message_id = text_message_id(&from, id);
    let message = headers(mail, &from, &to, &one_line(subject), &message_id, date)?
        .singlepart(SinglePart::plain(body.to_owned()))
        .map_err(|e| compose_err("cannot build the message", e))?;
    Ok(outgoing(message_id, &from, &to, message.formatted(), false))
}

/// The Message-ID [`compose_text`] gives the message `id`: also the ledger's id of the same
/// alert sent into a chat, which has no e-mail to compose.
pub fn alert_message_id(mail: &MailConfig, id: [&str; 3]) -> Result<String, MailError> {
    Ok(text_message_id(&parse_mailbox("mail.from", &mail.from)?, id))
}

fn text_message_id(from: &lettre::message::Mailbox, id: [&str; 3]) -> String {
    let hash = parts_hash(&[id[0].as_bytes(), id[1].as_bytes(), id[2].as_bytes()]);
    format!("sp.alert.{}.{}.{}.{hash:016x}@{}", id_atom(id[0]), id_atom(id[1]), id_atom(id[2]), from.email.domain())
}
