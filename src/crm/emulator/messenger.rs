//! The emulated portal's messenger and Disk: the methods a report sent into a chat uses,
//! with the errors and limits Bitrix24's REST documentation gives them, and a record of
//! what was delivered for tests to read ([`Emulator::messages`]).
//!
//! - `im.dialog.get` (api-reference/chats/im-dialog-get.md): DIALOG_ID a user id (the
//!   private dialog with the webhook's user, made on first use) or `chatN` (a group chat of
//!   [`EmulatorOptions::group_chats`]); 400 DIALOG_ID_EMPTY, 403 ACCESS_ERROR for anyone
//!   else (an unknown or inactive user, a chat the webhook's user is not in).
//! - `im.disk.folder.get` (chats/files/im-disk-folder-get.md): CHAT_ID → `{"ID": folder}`;
//!   400 CHAT_ID_EMPTY, 403 ACCESS_ERROR.
//! - `disk.folder.uploadfile` (disk/folder/disk-folder-upload-file.md): `id`, `data.NAME`,
//!   `fileContent` = [name, base64], `generateUniqueName`; 400 ERROR_ARGUMENT (no id),
//!   ERROR_NOT_FOUND (no such folder), DISK_BASE_SERVICE_22001 (no NAME),
//!   ERROR_COULD_NOT_SAVE_FILE (bad base64, or larger than
//!   [`EmulatorOptions::max_upload_bytes`]: the documented "check free space" refusal).
//! - `im.disk.file.commit` (chats/files/im-disk-file-commit.md): CHAT_ID or DIALOG_ID,
//!   FILE_ID (one or a list), MESSAGE → `{"MESSAGE_ID": …}`; 400 CHAT_ID_EMPTY, FILES_ERROR,
//!   SAVE_ERROR (no such file), 403 ACCESS_ERROR.
//! - `im.message.add` (chats/messages/im-message-add.md): DIALOG_ID, MESSAGE → the message
//!   id; 400 USER_ID_EMPTY, USER_NOT_FOUND, CHAT_ID (no such chat), MESSAGE_EMPTY.
//!
//! A MESSAGE longer than [`EmulatorOptions::max_message_chars`] is refused 400 PARAMS_ERROR:
//! Bitrix24 documents no length limit, so the limit and the answer are this emulator's
//! assumption (the client keeps its texts far shorter). Scopes: `im.*` needs `im`, `disk.*`
//! `disk` (403 insufficient_scope, in `methods`).

use std::collections::BTreeMap;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::lists::{param, text};
use super::{Done, Fail, Portal, Record, record_id};

/// One message the messenger took: where, its text, and the files it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatDelivery {
    /// The DIALOG_ID it was addressed by (`"17"`, `"chat42"`).
    pub dialog: String,
    pub chat_id: u64,
    pub text: String,
    /// (file name, bytes) of each file committed with it.
    pub files: Vec<(String, Vec<u8>)>,
}

/// What the messenger and Disk hold.
#[derive(Debug, Default)]
pub(super) struct Messenger {
    /// Chat id by DIALOG_ID, for the dialogs used so far.
    chats: BTreeMap<String, u64>,
    /// Uploaded files by id: (folder id, name, bytes).
    files: BTreeMap<u64, (u64, String, Vec<u8>)>,
    next_id: u64,
    pub(super) delivered: Vec<ChatDelivery>,
}

/// The folder of a chat on Disk.
fn folder_of(chat_id: u64) -> u64 {
    chat_id + 500_000
}

fn fail(status: StatusCode, code: &'static str, description: &str) -> Fail {
    (status, code, description.to_owned())
}

fn access_error() -> Fail {
    fail(StatusCode::FORBIDDEN, "ACCESS_ERROR", "You do not have access to the specified dialog")
}

/// A positive id given as a number or a numeric string.
fn id(v: Option<&Value>) -> Option<u64> {
    v.map(text).and_then(|s| s.trim().parse().ok()).filter(|n| *n > 0)
}

impl Portal {
    /// Runs one `im.*` or `disk.*` method.
    pub(super) fn messenger(&self, method: &str, params: &Value, users: &[Record]) -> Result<Done, Fail> {
        let mut m = self.messenger.lock().expect("no panics while holding the messenger");
        let done = |result: Value| Ok(Done { result, total: None, next: None });
        match method {
            "im.dialog.get" => {
                let dialog = param(params, "DIALOG_ID").map(text).unwrap_or_default();
                if dialog.trim().is_empty() {
                    return Err(fail(StatusCode::BAD_REQUEST, "DIALOG_ID_EMPTY", "Dialog ID can't be empty"));
                }
                let chat_id = self.open_dialog(&mut m, dialog.trim(), users).ok_or_else(access_error)?;
                let private = !dialog.starts_with("chat");
                done(json!({
                    "id": chat_id, "dialog_id": dialog, "type": if private { "private" } else { "chat" },
                    "name": format!("dialog {dialog}"), "disk_folder_id": 0, "message_type": if private { "P" } else { "C" },
                }))
            }
            "im.disk.folder.get" => {
                let chat_id = id(param(params, "CHAT_ID"))
                    .ok_or_else(|| fail(StatusCode::BAD_REQUEST, "CHAT_ID_EMPTY", "Chat ID can't be empty"))?;
                if !m.chats.values().any(|c| *c == chat_id) {
                    return Err(access_error());
                }
                done(json!({"ID": folder_of(chat_id)}))
            }
            "disk.folder.uploadfile" => {
                let folder = id(param(params, "id")).ok_or_else(|| {
                    fail(StatusCode::BAD_REQUEST, "ERROR_ARGUMENT", "Invalid value of parameter {Parameter #0}")
                })?;
                if !m.chats.values().any(|c| folder_of(*c) == folder) {
                    return Err(fail(
                        StatusCode::BAD_REQUEST,
                        "ERROR_NOT_FOUND",
                        &format!("Could not find entity with id `{folder}`"),
                    ));
                }
                let Some(content) = param(params, "fileContent") else {
                    return done(json!({"field": "file", "uploadUrl": format!("http://127.0.0.1/upload/{folder}")}));
                };
                let name = param(params, "data").and_then(|d| param(d, "NAME")).map(text).unwrap_or_default();
                if name.trim().is_empty() {
                    return Err(fail(
                        StatusCode::BAD_REQUEST,
                        "DISK_BASE_SERVICE_22001",
                        "Error: required parameter NAME (DISK_BASE_SERVICE_22001)",
                    ));
                }
                let encoded = match content {
                    Value::Array(a) => a.get(1).map(text),
                    Value::Object(o) => o.get("1").map(text),
                    _ => None,
                };
                let bytes = encoded.as_deref().and_then(decode_base64).filter(|b| !b.is_empty());
                let Some(bytes) = bytes.filter(|b| b.len() as u64 <= self.options.max_upload_bytes) else {
                    return Err(fail(StatusCode::BAD_REQUEST, "ERROR_COULD_NOT_SAVE_FILE", "Could not save file"));
                };
                let unique =
                    param(params, "generateUniqueName").is_some_and(|v| matches!(text(v).as_str(), "true" | "1" | "Y"));
                let mut stored = name.clone();
                let taken =
                    |m: &Messenger, n: &str| m.files.values().any(|(f, existing, _)| *f == folder && existing == n);
                if taken(&m, &stored) {
                    if !unique {
                        return Err(fail(StatusCode::BAD_REQUEST, "ERROR_COULD_NOT_SAVE_FILE", "Could not save file"));
                    }
                    let (stem, ext) =
                        name.rsplit_once('.').map_or((name.as_str(), String::new()), |(s, e)| (s, format!(".{e}")));
                    let mut n = 1;
                    while taken(&m, &format!("{stem} ({n}){ext}")) {
                        n += 1;
                    }
                    stored = format!("{stem} ({n}){ext}");
                }
                m.next_id += 1;
                let file_id = 9000 + m.next_id;
                let size = bytes.len();
                m.files.insert(file_id, (folder, stored.clone(), bytes));
                done(json!({
                    "ID": file_id, "NAME": stored, "CODE": null, "STORAGE_ID": "1", "TYPE": "file",
                    "PARENT_ID": folder.to_string(), "DELETED_TYPE": 0, "GLOBAL_CONTENT_VERSION": 1,
                    "FILE_ID": file_id + 20000, "SIZE": size.to_string(),
                }))
            }
            "im.disk.file.commit" => {
                let chat_id = match (id(param(params, "CHAT_ID")), param(params, "DIALOG_ID").map(text)) {
                    (Some(c), _) => c,
                    (None, Some(d)) if !d.trim().is_empty() => {
                        m.chats.get(d.trim()).copied().ok_or_else(access_error)?
                    }
                    (None, Some(_)) => {
                        return Err(fail(StatusCode::BAD_REQUEST, "DIALOG_ID_EMPTY", "Dialog ID can't be empty"));
                    }
                    (None, None) => {
                        return Err(fail(StatusCode::BAD_REQUEST, "CHAT_ID_EMPTY", "Chat ID can't be empty"));
                    }
                };
                let Some(dialog) = m.chats.iter().find(|(_, c)| **c == chat_id).map(|(d, _)| d.clone()) else {
                    return Err(access_error());
                };
                let ids: Vec<Option<u64>> = match param(params, "FILE_ID").or_else(|| param(params, "UPLOAD_ID")) {
                    None => return Err(fail(StatusCode::BAD_REQUEST, "FILES_ERROR", "List of files in not specified")),
                    Some(Value::Array(a)) => a.iter().map(|v| id(Some(v))).collect(),
                    Some(Value::Object(o)) => o.values().map(|v| id(Some(v))).collect(),
                    Some(v) => vec![id(Some(v))],
                };
                let mut files = Vec::new();
                for file in &ids {
                    match file.and_then(|f| m.files.get(&f)) {
                        Some((folder, name, bytes)) if *folder == folder_of(chat_id) => {
                            files.push((name.clone(), bytes.clone()))
                        }
                        _ => {
                            return Err(fail(
                                StatusCode::BAD_REQUEST,
                                "SAVE_ERROR",
                                "Error during saving file to chat",
                            ));
                        }
                    }
                }
                if files.is_empty() {
                    return Err(fail(StatusCode::BAD_REQUEST, "SAVE_ERROR", "Error during saving file to chat"));
                }
                let message = param(params, "MESSAGE").map(text).unwrap_or_default();
                self.check_length(&message)?;
                m.next_id += 1;
                let message_id = 80000 + m.next_id;
                m.delivered.push(ChatDelivery { dialog, chat_id, text: message, files });
                done(
                    json!({"MESSAGE_ID": message_id, "DISK_ID": ids.iter().flatten().map(|i| i.to_string()).collect::<Vec<_>>()}),
                )
            }
            "im.message.add" => {
                let dialog = param(params, "DIALOG_ID").map(text).unwrap_or_default();
                let dialog = dialog.trim();
                if dialog.is_empty() {
                    return Err(fail(StatusCode::BAD_REQUEST, "USER_ID_EMPTY", "User ID can't be empty"));
                }
                let message = param(params, "MESSAGE").map(text).unwrap_or_default();
                if message.trim().is_empty() && param(params, "ATTACH").is_none() {
                    return Err(fail(StatusCode::BAD_REQUEST, "MESSAGE_EMPTY", "Message can't be empty"));
                }
                self.check_length(&message)?;
                let Some(chat_id) = self.open_dialog(&mut m, dialog, users) else {
                    return Err(if dialog.starts_with("chat") {
                        fail(StatusCode::BAD_REQUEST, "CHAT_ID", "Error creating message")
                    } else {
                        fail(StatusCode::BAD_REQUEST, "USER_NOT_FOUND", "User not found")
                    });
                };
                m.next_id += 1;
                let message_id = 80000 + m.next_id;
                m.delivered.push(ChatDelivery { dialog: dialog.to_owned(), chat_id, text: message, files: Vec::new() });
                done(json!(message_id))
            }
            _ => Err(fail(StatusCode::NOT_FOUND, "ERROR_METHOD_NOT_FOUND", "Method not found!")),
        }
    }

    fn check_length(&self, message: &str) -> Result<(), Fail> {
        if message.chars().count() > self.options.max_message_chars {
            return Err(fail(StatusCode::BAD_REQUEST, "PARAMS_ERROR", "Incorrect params"));
        }
        Ok(())
    }

    /// The chat id of `dialog`: an active user's private dialog (made now if new), or a
    /// group chat the options name; `None` for anything else.
    fn open_dialog(&self, m: &mut Messenger, dialog: &str, users: &[Record]) -> Option<u64> {
        if let Some(chat) = m.chats.get(dialog) {
            return Some(*chat);
        }
        let chat_id = if let Some(n) = dialog.strip_prefix("chat") {
            let n: u64 = n.parse().ok()?;
            self.options.group_chats.contains(&n).then_some(n)?
        } else {
            let user: u64 = dialog.parse().ok()?;
            let active = users.iter().any(|u| {
                record_id(u) == user && u.get("ACTIVE").is_none_or(|a| matches!(a, Value::Bool(true)) || text(a) == "Y")
            });
            if !active {
                return None;
            }
            // Private chats get ids of their own, above any group chat's.
            1_000_000 + user
        };
        m.chats.insert(dialog.to_owned(), chat_id);
        Some(chat_id)
    }
}

/// Standard base64 (padding optional, whitespace ignored); `None` if it is not.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8).collect();
            assert_eq!(decode_base64(&crate::text::base64(&bytes)).unwrap(), bytes);
        }
        assert!(decode_base64("ab!c").is_none());
    }
}
