//! The Bitrix24 messenger, through the CRM's incoming webhook and its client (the same
//! bucket, retries, error classification and secret scrubbing as the CRM reads).
//!
//! A text alone is one call, `im.message.add` (DIALOG_ID, MESSAGE, URL_PREVIEW = N). A text
//! with a file is four, as Bitrix24's REST documentation describes a file sent to a chat:
//!
//! 1. `im.dialog.get` (DIALOG_ID: a user id for the private dialog, or `chatN`) → the chat's
//!    `id` (api-reference/chats/im-dialog-get.md);
//! 2. `im.disk.folder.get` (CHAT_ID) → the chat's folder `ID`
//!    (api-reference/chats/files/im-disk-folder-get.md);
//! 3. `disk.folder.uploadfile` (id, data.NAME, fileContent = [name, base64],
//!    generateUniqueName) → the file's `ID` (api-reference/disk/folder/disk-folder-upload-file.md);
//! 4. `im.disk.file.commit` (CHAT_ID, FILE_ID = [id], MESSAGE) → the message with the file
//!    (api-reference/chats/files/im-disk-file-commit.md).
//!
//! Scopes: `im` for 1, 2, 4 and `im.message.add`; `disk` for 3. Only the last call shows
//! anything to the recipient: a crash or a failure before it leaves at most a file in the
//! chat's folder, and the row is sent again whole.

use serde_json::{Value, json};

use super::{ChatError, ChatMessage, cut_chars, escape_bbcode};
use crate::config::Channel;
use crate::crm::CrmError;
use crate::crm::bitrix24::Bitrix24Client;

/// The longest text sent, in characters. Bitrix24 documents no limit for MESSAGE; a
/// report's message is a few hundred characters, and a longer one is cut, not refused.
pub const MAX_TEXT_CHARS: usize = 4000;

/// Sends `message` to `dialog` (a user id or `chatN`).
pub async fn send(client: &Bitrix24Client, dialog: &str, message: &ChatMessage) -> Result<(), ChatError> {
    let text = cut_chars(&escape_bbcode(&message.text), MAX_TEXT_CHARS);
    let failed = |step: &str, e: CrmError| {
        let detail = format!("dialog {dialog}, {step}: {e}");
        if e.is_transient() {
            ChatError::Transient { channel: Channel::Bitrix24, detail }
        } else {
            ChatError::Permanent { channel: Channel::Bitrix24, detail }
        }
    };
    let Some(file) = &message.attachment else {
        let params = json!({"DIALOG_ID": dialog, "MESSAGE": text, "URL_PREVIEW": "N"});
        client.call("im.message.add", &params).await.map_err(|e| failed("im.message.add", e))?;
        return Ok(());
    };
    let dialog_info =
        client.call("im.dialog.get", &json!({"DIALOG_ID": dialog})).await.map_err(|e| failed("im.dialog.get", e))?;
    let chat_id = id_field(&dialog_info, "id").ok_or_else(|| unexpected(dialog, "im.dialog.get", &dialog_info))?;
    let folder = client
        .call("im.disk.folder.get", &json!({"CHAT_ID": chat_id}))
        .await
        .map_err(|e| failed("im.disk.folder.get", e))?;
    let folder_id = id_field(&folder, "ID").ok_or_else(|| unexpected(dialog, "im.disk.folder.get", &folder))?;
    let upload = json!({
        "id": folder_id,
        "data": {"NAME": file.file_name},
        "fileContent": [file.file_name, crate::text::base64(&file.bytes)],
        "generateUniqueName": true,
    });
    let uploaded =
        client.call("disk.folder.uploadfile", &upload).await.map_err(|e| failed("disk.folder.uploadfile", e))?;
    let file_id = id_field(&uploaded, "ID").ok_or_else(|| unexpected(dialog, "disk.folder.uploadfile", &uploaded))?;
    let commit = json!({"CHAT_ID": chat_id, "FILE_ID": [file_id], "MESSAGE": text});
    client.call("im.disk.file.commit", &commit).await.map_err(|e| failed("im.disk.file.commit", e))?;
    Ok(())
}

/// A numeric id field, as a number or a numeric string (Bitrix24 serves both).
fn id_field(v: &Value, key: &str) -> Option<u64> {
    match v.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

fn unexpected(dialog: &str, method: &str, answer: &Value) -> ChatError {
    let answer = answer.to_string();
    let shown = crate::text::cut_bytes(&answer, 200);
    ChatError::Permanent {
        channel: Channel::Bitrix24,
        detail: format!("dialog {dialog}, {method}: unexpected answer without an id: {shown}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_as_numbers_or_strings() {
        assert_eq!(id_field(&json!({"id": 1439}), "id"), Some(1439));
        assert_eq!(id_field(&json!({"ID": "127"}), "ID"), Some(127));
        assert_eq!(id_field(&json!({"ID": 0}), "ID"), None);
        assert_eq!(id_field(&json!({"ID": null}), "ID"), None);
    }
}
