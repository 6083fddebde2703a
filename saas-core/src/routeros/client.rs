//! Async RouterOS API client over any byte stream (a [`crate::transport::NasStream`], or TLS on
//! top of one): login in both styles, tagged commands that may run concurrently on one
//! connection, a timeout on every command, and the typed commands the platform uses.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use md5::{Digest, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::sync::mpsc;

use super::RosError;
use super::wire::{Command, Reply, ReplyKind, Sentence};

/// Rows of a print: attribute maps in the router's order.
pub type Row = HashMap<String, String>;

type Stream = Box<dyn crate::transport::AsyncReadWrite + Send + Unpin>;

/// Replies waiting for their command, by tag; the untagged login uses the empty tag.
#[derive(Default)]
struct Pending {
    by_tag: HashMap<String, mpsc::UnboundedSender<Reply>>,
    /// Why the connection ended, once it has.
    closed: Option<String>,
}

/// How long a `/cancel` may wait to be written after a command timed out.
const CANCEL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// A logged-in (or logging-in) API connection. Cheap to share behind an `Arc`; commands from
/// several tasks run concurrently, matched to their replies by `.tag`.
pub struct Client {
    writer: tokio::sync::Mutex<WriteHalf<Stream>>,
    pending: Arc<Mutex<Pending>>,
    next_tag: AtomicU64,
    timeout: Duration,
    reader: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Removes a command's reply channel however the command ends (done, timeout, cancelled).
struct PendingGuard<'a> {
    pending: &'a Mutex<Pending>,
    tag: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut p) = self.pending.lock() {
            p.by_tag.remove(&self.tag);
        }
    }
}

/// The MD5 response to a pre-6.43 login challenge: `00` + hex(MD5(0x00, password, challenge)).
pub fn challenge_response(password: &str, challenge_hex: &str) -> Option<String> {
    let challenge = hex::decode(challenge_hex).ok()?;
    let mut h = Md5::new();
    h.update([0u8]);
    h.update(password.as_bytes());
    h.update(&challenge);
    Some(format!("00{}", hex::encode(h.finalize())))
}

impl Client {
    /// Wraps a connected stream; `timeout` bounds every command (and the login).
    pub fn new<S>(stream: S, timeout: Duration) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let stream: Stream = Box::new(stream);
        let (read, write) = tokio::io::split(stream);
        let pending = Arc::new(Mutex::new(Pending::default()));
        let reader = tokio::spawn(read_loop(read, pending.clone()));
        Self {
            writer: tokio::sync::Mutex::new(write),
            pending,
            next_tag: AtomicU64::new(1),
            timeout,
            reader,
        }
    }

    /// Connects `stream` and logs in: the ≥ 6.43 style (name and password in `/login`), falling
    /// back to the MD5 challenge when the router answers with `=ret=` (older RouterOS).
    ///
    /// # Errors
    /// [`RosError::LoginFailed`] on bad credentials, else the command's errors.
    pub async fn login<S>(
        stream: S,
        user: &str,
        password: &str,
        timeout: Duration,
    ) -> Result<Self, RosError>
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let c = Self::new(stream, timeout);
        let first = c
            .exchange(
                Command::new("/login")
                    .attr("name", user)
                    .attr("password", password),
                false,
            )
            .await;
        let done = match first {
            Ok((_, done)) => done,
            Err(RosError::Trap { message, .. }) => return Err(RosError::LoginFailed(message)),
            Err(e) => return Err(e),
        };
        if let Some(challenge) = done.get("ret") {
            let response = challenge_response(password, challenge).ok_or_else(|| {
                RosError::Protocol(format!("login challenge {challenge:?} is not hex"))
            })?;
            match c
                .exchange(
                    Command::new("/login")
                        .attr("name", user)
                        .attr("response", response),
                    false,
                )
                .await
            {
                Ok(_) => {}
                Err(RosError::Trap { message, .. }) => {
                    return Err(RosError::LoginFailed(message));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    /// Runs a command; returns its `!re` rows. A `!trap` is an error.
    ///
    /// # Errors
    /// [`RosError::Trap`], [`RosError::Timeout`], [`RosError::Fatal`], [`RosError::Closed`].
    pub async fn run(&self, cmd: Command) -> Result<Vec<Row>, RosError> {
        self.exchange(cmd, true).await.map(|(rows, _)| rows)
    }

    /// Runs a command that answers `=ret=` in its `!done` (an `add`): returns that value.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn run_ret(&self, cmd: Command) -> Result<Option<String>, RosError> {
        let (_, done) = self.exchange(cmd, true).await?;
        Ok(done.get("ret").map(str::to_owned))
    }

    async fn exchange(
        &self,
        mut cmd: Command,
        tagged: bool,
    ) -> Result<(Vec<Row>, Reply), RosError> {
        let tag = if tagged {
            self.next_tag.fetch_add(1, Ordering::Relaxed).to_string()
        } else {
            String::new()
        };
        cmd.tag = tagged.then(|| tag.clone());
        let cancel_tag = tagged.then(|| tag.clone());
        let path = cmd.path.clone();
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut p = self
                .pending
                .lock()
                .map_err(|_| RosError::closed("poisoned"))?;
            if let Some(why) = &p.closed {
                return Err(RosError::Closed(why.clone()));
            }
            p.by_tag.insert(tag.clone(), tx);
        }
        let _guard = PendingGuard {
            pending: &self.pending,
            tag,
        };
        let bytes = cmd.sentence().encode()?;
        let work = async {
            {
                let mut w = self.writer.lock().await;
                w.write_all(&bytes).await?;
                w.flush().await?;
            }
            let mut rows = Vec::new();
            let mut trap: Option<Reply> = None;
            loop {
                let Some(r) = rx.recv().await else {
                    let why = self
                        .pending
                        .lock()
                        .ok()
                        .and_then(|p| p.closed.clone())
                        .unwrap_or_else(|| "connection closed".into());
                    return Err(RosError::Closed(why));
                };
                match r.kind {
                    ReplyKind::Re => rows.push(r.attrs.into_iter().collect()),
                    ReplyKind::Empty => {}
                    // The first trap is the reason; RouterOS follows it with `!done`.
                    ReplyKind::Trap => {
                        trap.get_or_insert(r);
                    }
                    ReplyKind::Fatal => return Err(RosError::Fatal(fatal_reason(&r))),
                    ReplyKind::Done => {
                        if let Some(t) = trap {
                            return Err(RosError::Trap {
                                category: t.get("category").and_then(|c| c.parse().ok()),
                                message: t.get("message").unwrap_or("(no message)").to_owned(),
                            });
                        }
                        return Ok((rows, r));
                    }
                }
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(r) => r,
            Err(_) => {
                if let Some(tag) = cancel_tag {
                    self.cancel(&tag).await;
                }
                Err(RosError::Timeout {
                    what: path,
                    after: self.timeout,
                })
            }
        }
    }

    /// Best effort `/cancel =tag=T` after a timeout, so a slow router stops working (and
    /// streaming replies) for a command nobody waits for any more. Its own answer is ignored.
    async fn cancel(&self, tag: &str) {
        let mut cmd = Command::new("/cancel").attr("tag", tag);
        cmd.tag = Some(self.next_tag.fetch_add(1, Ordering::Relaxed).to_string());
        let Ok(bytes) = cmd.sentence().encode() else {
            return;
        };
        let write = async {
            let mut w = self.writer.lock().await;
            w.write_all(&bytes).await?;
            w.flush().await
        };
        if let Err(e) = tokio::time::timeout(CANCEL_WRITE_TIMEOUT, write)
            .await
            .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
        {
            tracing::debug!(tag, error = %e, "could not send /cancel");
        }
    }

    /// `/system/identity/print`: the router's name.
    ///
    /// # Errors
    /// As [`Client::run`]; [`RosError::Protocol`] when the answer has no name.
    pub async fn identity(&self) -> Result<String, RosError> {
        let rows = self.run(Command::new("/system/identity/print")).await?;
        rows.into_iter()
            .find_map(|mut r| r.remove("name"))
            .ok_or_else(|| RosError::Protocol("identity without a name".into()))
    }

    /// `/system/resource/print`: version, uptime, CPU load, board.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn resource(&self) -> Result<Resource, RosError> {
        let rows = self.run(Command::new("/system/resource/print")).await?;
        let mut r = rows
            .into_iter()
            .next()
            .ok_or_else(|| RosError::Protocol("empty /system/resource".into()))?;
        Ok(Resource {
            version: r.remove("version").unwrap_or_default(),
            uptime: r.remove("uptime").unwrap_or_default(),
            cpu_load: r.get("cpu-load").and_then(|v| v.parse().ok()),
            board_name: r.remove("board-name").unwrap_or_default(),
        })
    }

    /// `/ppp/active/print`: live PPP sessions.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn ppp_active(&self) -> Result<Vec<PppActive>, RosError> {
        let rows = self.run(Command::new("/ppp/active/print")).await?;
        Ok(rows.into_iter().map(PppActive::from_row).collect())
    }

    /// `/ppp/active/remove`: kicks the session with RouterOS id `id` (e.g. `*8A`).
    ///
    /// # Errors
    /// As [`Client::run`] (a trap when the session is gone).
    pub async fn ppp_active_remove(&self, id: &str) -> Result<(), RosError> {
        self.run(Command::new("/ppp/active/remove").attr(".id", id))
            .await
            .map(|_| ())
    }

    /// `/queue/simple/print`: per-queue byte counters.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn simple_queues(&self) -> Result<Vec<SimpleQueue>, RosError> {
        let rows = self.run(Command::new("/queue/simple/print")).await?;
        Ok(rows.into_iter().map(SimpleQueue::from_row).collect())
    }

    /// `/interface/print` with stats: per-interface byte counters.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn interfaces(&self) -> Result<Vec<Interface>, RosError> {
        let rows = self
            .run(Command::new("/interface/print").attr("stats", ""))
            .await?;
        Ok(rows.into_iter().map(Interface::from_row).collect())
    }

    /// `/ip/firewall/address-list/add`: returns the new entry's id.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn address_list_add(
        &self,
        list: &str,
        address: &str,
        comment: &str,
    ) -> Result<String, RosError> {
        self.run_ret(
            Command::new("/ip/firewall/address-list/add")
                .attr("list", list)
                .attr("address", address)
                .attr("comment", comment),
        )
        .await
        .map(Option::unwrap_or_default)
    }

    /// Removes every entry of `list` for `address`; returns how many there were.
    ///
    /// # Errors
    /// As [`Client::run`].
    pub async fn address_list_remove(&self, list: &str, address: &str) -> Result<usize, RosError> {
        let rows = self
            .run(
                Command::new("/ip/firewall/address-list/print")
                    .proplist(&[".id"])
                    .query(format!("list={list}"))
                    .query(format!("address={address}")),
            )
            .await?;
        let ids: Vec<String> = rows
            .into_iter()
            .filter_map(|mut r| r.remove(".id"))
            .collect();
        if !ids.is_empty() {
            self.run(Command::new("/ip/firewall/address-list/remove").attr(".id", ids.join(",")))
                .await?;
        }
        Ok(ids.len())
    }
}

fn fatal_reason(r: &Reply) -> String {
    r.other
        .first()
        .cloned()
        .or_else(|| r.get("message").map(str::to_owned))
        .unwrap_or_else(|| "!fatal".into())
}

/// Reads sentences and hands each reply to its command; on EOF, an error or `!fatal`, fails
/// every waiting command with the reason.
async fn read_loop<R: AsyncRead + Unpin>(mut read: R, pending: Arc<Mutex<Pending>>) {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut chunk = vec![0u8; 16 * 1024];
    let why = 'conn: loop {
        loop {
            match Sentence::decode(&buf) {
                Ok(Some((s, used))) => {
                    buf.drain(..used);
                    let reply = match Reply::parse(s) {
                        Ok(r) => r,
                        Err(e) => break 'conn format!("protocol error: {e}"),
                    };
                    let fatal = (reply.kind == ReplyKind::Fatal).then(|| fatal_reason(&reply));
                    let Ok(mut p) = pending.lock() else {
                        break 'conn "poisoned".into();
                    };
                    if let Some(why) = fatal {
                        // `!fatal` carries no tag: every command on the connection sees it.
                        for tx in p.by_tag.values() {
                            let _ = tx.send(reply.clone());
                        }
                        p.closed = Some(format!("router closed the session: {why}"));
                        p.by_tag.clear();
                        return;
                    }
                    let tag = reply.tag.clone().unwrap_or_default();
                    if let Some(tx) = p.by_tag.get(&tag) {
                        let _ = tx.send(reply);
                    } else {
                        tracing::debug!(%tag, "RouterOS reply for no waiting command dropped");
                    }
                }
                Ok(None) => break,
                Err(e) => break 'conn format!("protocol error: {e}"),
            }
        }
        match read.read(&mut chunk).await {
            Ok(0) => break "connection closed by the router".into(),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => break format!("read failed: {e}"),
        }
    };
    if let Ok(mut p) = pending.lock() {
        p.closed = Some(why);
        // Dropping the senders wakes every waiting command.
        p.by_tag.clear();
    }
}

/// `/system/resource` fields we use.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Resource {
    /// RouterOS version, e.g. `7.16.2 (stable)`.
    pub version: String,
    /// Uptime as RouterOS prints it, e.g. `1w2d3h`.
    pub uptime: String,
    /// CPU load in percent.
    pub cpu_load: Option<u32>,
    /// Board name.
    pub board_name: String,
}

/// One row of `/ppp/active`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PppActive {
    /// RouterOS id (`*1F`), for remove.
    pub id: String,
    /// PPP user name.
    pub name: String,
    /// Service (pppoe, l2tp, ...).
    pub service: String,
    /// Calling station (MAC for PPPoE).
    pub caller_id: String,
    /// Assigned address.
    pub address: String,
    /// Uptime as RouterOS prints it.
    pub uptime: String,
    /// Acct-Session-Id RouterOS sends for this session (e.g. `0x81a00001`), when shown.
    pub session_id: Option<String>,
}

impl PppActive {
    fn from_row(mut r: Row) -> Self {
        let mut take = |k: &str| r.remove(k).unwrap_or_default();
        Self {
            id: take(".id"),
            name: take("name"),
            service: take("service"),
            caller_id: take("caller-id"),
            address: take("address"),
            uptime: take("uptime"),
            session_id: r.remove("session-id"),
        }
    }
}

/// One row of `/queue/simple` with its byte counters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimpleQueue {
    /// RouterOS id.
    pub id: String,
    /// Queue name (`<pppoe-USER>` for dynamic PPP queues).
    pub name: String,
    /// Target (address/32).
    pub target: String,
    /// Bytes uploaded by the target (RADIUS input octets).
    pub upload_bytes: u64,
    /// Bytes downloaded by the target (RADIUS output octets).
    pub download_bytes: u64,
}

impl SimpleQueue {
    fn from_row(mut r: Row) -> Self {
        // `bytes=UP/DOWN`.
        let (up, down) = r
            .get("bytes")
            .and_then(|b| b.split_once('/'))
            .map(|(u, d)| (u.parse().unwrap_or(0), d.parse().unwrap_or(0)))
            .unwrap_or((0, 0));
        Self {
            id: r.remove(".id").unwrap_or_default(),
            name: r.remove("name").unwrap_or_default(),
            target: r.remove("target").unwrap_or_default(),
            upload_bytes: up,
            download_bytes: down,
        }
    }

    /// The PPP user of a dynamic queue named `<pppoe-USER>`.
    pub fn ppp_user(&self) -> Option<&str> {
        self.name.strip_prefix("<pppoe-")?.strip_suffix('>')
    }
}

/// One row of `/interface print stats`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Interface {
    /// RouterOS id.
    pub id: String,
    /// Name (`<pppoe-USER>` for dynamic PPPoE server interfaces).
    pub name: String,
    /// Type, e.g. `pppoe-in`.
    pub kind: String,
    /// Bytes received from the far end (the subscriber's upload, RADIUS input octets).
    pub rx_bytes: u64,
    /// Bytes sent to the far end (RADIUS output octets).
    pub tx_bytes: u64,
    /// Running.
    pub running: bool,
}

impl Interface {
    fn from_row(mut r: Row) -> Self {
        let num = |r: &Row, k: &str| r.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Self {
            rx_bytes: num(&r, "rx-byte"),
            tx_bytes: num(&r, "tx-byte"),
            running: r.get("running").is_some_and(|v| v == "true"),
            id: r.remove(".id").unwrap_or_default(),
            name: r.remove("name").unwrap_or_default(),
            kind: r.remove("type").unwrap_or_default(),
        }
    }

    /// The PPP user of a dynamic interface named `<pppoe-USER>`.
    pub fn ppp_user(&self) -> Option<&str> {
        self.name.strip_prefix("<pppoe-")?.strip_suffix('>')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documented example: challenge `ebddd18303a54111e2dea05a92ab46b4`, password empty.
    #[test]
    fn challenge_response_matches_md5_of_zero_password_challenge() {
        let r = challenge_response("", "ebddd18303a54111e2dea05a92ab46b4").unwrap();
        let mut h = Md5::new();
        h.update([0u8]);
        h.update(hex::decode("ebddd18303a54111e2dea05a92ab46b4").unwrap());
        assert_eq!(r, format!("00{}", hex::encode(h.finalize())));
        assert_eq!(r.len(), 34);
        assert!(challenge_response("x", "not hex").is_none());
    }

    #[test]
    fn queue_and_interface_rows() {
        let q = SimpleQueue::from_row(Row::from([
            (".id".into(), "*1".into()),
            ("name".into(), "<pppoe-alice>".into()),
            ("bytes".into(), "10/20".into()),
        ]));
        assert_eq!((q.upload_bytes, q.download_bytes), (10, 20));
        assert_eq!(q.ppp_user(), Some("alice"));
        let i = Interface::from_row(Row::from([
            ("name".into(), "<pppoe-bob>".into()),
            ("rx-byte".into(), "5".into()),
            ("tx-byte".into(), "7".into()),
            ("running".into(), "true".into()),
        ]));
        assert_eq!((i.rx_bytes, i.tx_bytes, i.running), (5, 7, true));
        assert_eq!(i.ppp_user(), Some("bob"));
    }
}
