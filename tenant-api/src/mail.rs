//! Outgoing mail. Without an SMTP server configured, messages are written as `.eml` files to
//! the data dir's `outbox/` (never to the log: they carry links that act as credentials).

use std::path::PathBuf;

/// A message to send.
#[derive(Clone, Debug)]
pub struct Message {
    /// Recipient.
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

/// Writes messages into the outbox directory.
#[derive(Clone, Debug)]
pub struct Outbox {
    dir: PathBuf,
    from: String,
}

impl Outbox {
    /// The outbox under a data dir.
    pub fn in_data_dir(data_dir: &std::path::Path, from: impl Into<String>) -> Self {
        Self {
            dir: data_dir.join("outbox"),
            from: from.into(),
        }
    }

    /// Writes one message; returns its file.
    pub async fn send(&self, m: &Message) -> std::io::Result<PathBuf> {
        tokio::fs::create_dir_all(&self.dir).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let path = self.dir.join(format!(
            "{}-{id}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        let text = format!(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{id}@proxpanel>\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
            self.from,
            m.to,
            m.subject,
            chrono::Utc::now().to_rfc2822(),
            m.body.replace('\n', "\r\n")
        );
        let tmp = path.with_extension("tmp");
        tokio::fs::write(&tmp, text).await?;
        tokio::fs::rename(&tmp, &path).await?;
        Ok(path)
    }
}
