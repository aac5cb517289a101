//! The outbox: each message written as `<dir>/<message_id>.eml`, for the demo, previews and
//! sites that hand mail to another system by folder.
//!
//! A file appears whole or not at all (written beside, then renamed), so a reader polling
//! the folder never sees half a message. A resend of the same row replaces the file.

use std::path::{Path, PathBuf};

use super::{MailError, Mailer, Outgoing};

/// Writes messages into a folder instead of sending them.
#[derive(Clone, Debug)]
pub struct OutboxMailer {
    dir: PathBuf,
}

impl OutboxMailer {
    /// The folder is created on the first message.
    pub fn new(dir: impl Into<PathBuf>) -> OutboxMailer {
        OutboxMailer { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder if needed and proves a file can be written there.
    pub async fn check(&self) -> Result<(), MailError> {
        let failed = |what: &str, p: &Path, e: std::io::Error| MailError::Permanent {
            detail: format!("outbox: cannot {what} {} ({e})", p.display()),
        };
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| failed("create folder", &self.dir, e))?;
        let probe = self.dir.join(format!(".check.{}.tmp", std::process::id()));
        tokio::fs::write(&probe, b"").await.map_err(|e| failed("write", &probe, e))?;
        let _ = tokio::fs::remove_file(&probe).await;
        Ok(())
    }

    /// Where a message with this id is written.
    pub fn path_for(&self, message_id: &str) -> PathBuf {
        self.dir.join(format!("{}.eml", file_stem(message_id)))
    }
}

/// A message id as a file name: ours are already safe, but an id is data and must never
/// climb out of the folder.
fn file_stem(message_id: &str) -> String {
    let stem: String = message_id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+' | '=') { c } else { '_' })
        .collect();
    let stem = stem.trim_start_matches('.');
    if stem.is_empty() { "message".to_owned() } else { stem.to_owned() }
}

impl Mailer for OutboxMailer {
    async fn send(&self, message: &Outgoing) -> Result<(), MailError> {
        let path = self.path_for(&message.message_id);
        let tmp = self.dir.join(format!(".{}.{}.tmp", file_stem(&message.message_id), std::process::id()));
        let failed = |what: &str, p: &Path, e: std::io::Error| MailError::Transient {
            detail: format!("outbox: cannot {what} {} ({e})", p.display()),
        };
        tokio::fs::create_dir_all(&self.dir).await.map_err(|e| failed("create folder", &self.dir, e))?;
        tokio::fs::write(&tmp, &message.bytes).await.map_err(|e| failed("write", &tmp, e))?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(failed("rename into", &path, e));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_cannot_leave_the_folder() {
        let m = OutboxMailer::new("/x/outbox");
        assert_eq!(m.path_for("../../etc/passwd"), PathBuf::from("/x/outbox/_.._etc_passwd.eml"));
        assert_eq!(m.path_for("sp.a.b@example.ru"), PathBuf::from("/x/outbox/sp.a.b@example.ru.eml"));
    }
}
