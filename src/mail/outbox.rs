//! The outbox: each message written as `<dir>/<message_id>.eml`, for the demo, previews and
//! sites that hand mail to another system by folder.
//!
//! A file appears whole or not at all (written beside, then renamed), so a reader polling
//! the folder never sees half a message. A resend of the same row replaces the file.

use std::path::{Path, PathBuf};

use super::{MailError, Mailer, Outgoing};
use crate::private_fs;
use crate::text::file_name;

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
        let dir = self.dir.clone();
        blocking(move || private_fs::create_dir_all(&dir)).await.map_err(|e| failed("create folder", &self.dir, e))?;
        let probe = self.dir.join(format!(".check.{}.tmp", std::process::id()));
        let p = probe.clone();
        blocking(move || private_fs::write_file(&p, b"")).await.map_err(|e| failed("write", &probe, e))?;
        let _ = tokio::fs::remove_file(&probe).await;
        Ok(())
    }

    /// Where a message with this id is written.
    pub fn path_for(&self, message_id: &str) -> PathBuf {
        self.dir.join(format!("{}.eml", file_name(message_id, "message")))
    }
}

impl Mailer for OutboxMailer {
    async fn send(&self, message: &Outgoing) -> Result<(), MailError> {
        let path = self.path_for(&message.message_id);
        let (p, bytes) = (path.clone(), message.bytes.clone());
        blocking(move || private_fs::write_file_atomically(&p, &bytes, false))
            .await
            .map_err(|e| MailError::Transient { detail: format!("outbox: cannot write {} ({e})", path.display()) })
    }
}

/// Runs file system work off the async threads, as `tokio::fs` does.
async fn blocking(f: impl FnOnce() -> std::io::Result<()> + Send + 'static) -> std::io::Result<()> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) => Err(std::io::Error::other(e)),
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
