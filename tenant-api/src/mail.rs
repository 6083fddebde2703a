//! Outgoing mail: SMTP through lettre (rustls on ring) when `PROXPANEL_SMTP_URL` is set, else
//! `.eml` files in the data dir's `outbox/`. Messages carry links that act as credentials, so
//! neither their text nor their links are ever logged.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

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

/// Why a message could not be sent (never contains the message).
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The SMTP URL or an address is not usable.
    #[error("mail settings: {0}")]
    Config(String),
    /// Writing the outbox file failed.
    #[error("cannot write to the mail outbox: {0}")]
    Outbox(#[from] std::io::Error),
    /// The SMTP server refused or could not be reached.
    #[error("SMTP delivery failed: {0}")]
    Smtp(String),
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

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    /// Files in the outbox (no SMTP server configured).
    Outbox(Outbox),
    /// An SMTP server.
    Smtp {
        /// Pooled transport.
        transport: AsyncSmtpTransport<Tokio1Executor>,
        /// Sender.
        from: Mailbox,
    },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // The SMTP URL may hold a password: never printed.
            Mailer::Outbox(o) => f.debug_tuple("Outbox").field(&o.dir).finish(),
            Mailer::Smtp { from, .. } => f.debug_struct("Smtp").field("from", from).finish(),
        }
    }
}

impl Mailer {
    /// SMTP when `smtp_url` is given (`smtp://user:pass@host:587?tls=required`,
    /// `smtps://host:465`, `smtp://host:25` for a local relay), else the outbox of `data_dir`.
    pub fn new(
        smtp_url: Option<&str>,
        from: &str,
        data_dir: &std::path::Path,
    ) -> Result<Self, MailError> {
        let Some(url) = smtp_url else {
            return Ok(Mailer::Outbox(Outbox::in_data_dir(data_dir, from)));
        };
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| {
                MailError::Config(format!(
                    "PROXPANEL_SMTP_URL {} is not usable: {e}",
                    saas_core::store::redact_url(url)
                ))
            })?
            .timeout(Some(std::time::Duration::from_secs(10)))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| MailError::Config(format!("sender address {from:?}: {e}")))?;
        Ok(Mailer::Smtp { transport, from })
    }

    /// Sends one message.
    pub async fn send(&self, m: &Message) -> Result<(), MailError> {
        match self {
            Mailer::Outbox(o) => {
                o.send(m).await?;
                Ok(())
            }
            Mailer::Smtp { transport, from } => {
                let to: Mailbox =
                    m.to.parse()
                        .map_err(|e| MailError::Config(format!("recipient address: {e}")))?;
                let msg = lettre::Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(m.subject.clone())
                    .header(lettre::message::header::ContentType::TEXT_PLAIN)
                    .body(m.body.clone())
                    .map_err(|e| MailError::Config(e.to_string()))?;
                transport
                    .send(msg)
                    .await
                    .map(|_| ())
                    .map_err(|e| MailError::Smtp(e.to_string()))
            }
        }
    }
}
