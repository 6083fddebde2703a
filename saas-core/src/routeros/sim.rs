//! A RouterOS API simulator: the wire protocol, both login styles, optional API-SSL with a
//! self-signed certificate, an in-memory `/ppp/active` table whose queue and interface counters
//! grow, address lists, and injected faults. Used by tests in-process and by
//! `proxpanel dev routeros-sim`. Checked against an independent client (librouteros).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use super::client::challenge_response;
use super::wire::{Command, Reply, ReplyKind, Sentence};

/// What the simulator pretends to be.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// API user.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Serve API-SSL (self-signed certificate) instead of the plain API.
    pub tls: bool,
    /// Speak only the pre-6.43 challenge-response login.
    pub legacy_login: bool,
    /// `/system/identity` name.
    pub identity: String,
    /// `/system/resource` version.
    pub version: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            user: "admin".into(),
            password: String::new(),
            tls: false,
            legacy_login: false,
            identity: "sim-router".into(),
            version: "7.16.2 (stable)".into(),
        }
    }
}

/// A fault applied to every command after login until cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection instead of answering.
    Drop,
    /// Never answer.
    Stall,
    /// Answer `!trap` with this message.
    Trap(String),
}

/// A simulated PPP session.
#[derive(Debug, Clone)]
struct Session {
    id: u32,
    name: String,
    address: String,
    caller_id: String,
    session_id: String,
    started: Instant,
    base_in: u64,
    base_out: u64,
    rate_in: u64,
    rate_out: u64,
}

impl Session {
    /// Counters now: bytes from the subscriber (in) and to it (out).
    fn bytes(&self) -> (u64, u64) {
        let s = self.started.elapsed().as_secs_f64();
        (
            self.base_in + (self.rate_in as f64 * s) as u64,
            self.base_out + (self.rate_out as f64 * s) as u64,
        )
    }
}

#[derive(Debug, Default)]
struct State {
    sessions: Vec<Session>,
    address_list: Vec<(u32, String, String, String)>,
    next_id: u32,
    fault: Option<Fault>,
    logins: u64,
    commands: Vec<String>,
}

/// A running simulator; stops when dropped.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    fingerprint: Option<String>,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Simulator start-up failures.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Binding the listener.
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    /// Making the certificate.
    #[error("cannot make the API-SSL certificate: {0}")]
    Tls(String),
}

impl Simulator {
    /// Listens on `listen` (port 0 for any) and serves until dropped.
    ///
    /// # Errors
    /// [`SimError`] when the port cannot be bound or the certificate cannot be made.
    pub async fn start(listen: SocketAddr, config: SimConfig) -> Result<Self, SimError> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (acceptor, fingerprint) = if config.tls {
            let (a, fp) = tls_acceptor(&config.identity)?;
            (Some(a), Some(fp))
        } else {
            (None, None)
        };
        let state = Arc::new(Mutex::new(State {
            next_id: 1,
            ..State::default()
        }));
        let config = Arc::new(config);
        let st = state.clone();
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((sock, _)) = accepted else { continue };
                        let _ = sock.set_nodelay(true);
                        let (config, st, acceptor) = (config.clone(), st.clone(), acceptor.clone());
                        conns.spawn(async move {
                            match acceptor {
                                Some(a) => match a.accept(sock).await {
                                    Ok(tls) => serve(tls, &config, &st).await,
                                    Err(e) => tracing::debug!(error = %e, "simulator TLS handshake failed"),
                                },
                                None => serve(sock, &config, &st).await,
                            }
                        });
                    }
                    Some(_) = conns.join_next() => {}
                }
            }
        });
        Ok(Self {
            addr,
            fingerprint,
            state,
            task,
        })
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// SHA-256 fingerprint of the API-SSL certificate.
    pub fn fingerprint(&self) -> Option<&str> {
        self.fingerprint.as_deref()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut s)
    }

    /// Sets (or clears) the fault applied to commands after login.
    pub fn set_fault(&self, fault: Option<Fault>) {
        self.with(|s| s.fault = fault);
    }

    /// Adds a PPP session with counters starting at `bytes_in`/`bytes_out` and growing by
    /// `rate_in`/`rate_out` bytes per second; returns its RouterOS id (`*N`).
    pub fn add_session(
        &self,
        name: &str,
        address: &str,
        bytes: (u64, u64),
        rate: (u64, u64),
    ) -> String {
        self.with(|s| {
            let id = s.next_id;
            s.next_id += 1;
            s.sessions.push(Session {
                id,
                name: name.to_owned(),
                address: address.to_owned(),
                caller_id: format!("02:00:00:00:{:02X}:{:02X}", (id >> 8) & 0xff, id & 0xff),
                session_id: format!("0x8{id:07x}"),
                started: Instant::now(),
                base_in: bytes.0,
                base_out: bytes.1,
                rate_in: rate.0,
                rate_out: rate.1,
            });
            format!("*{id:X}")
        })
    }

    /// Sets a session's counters (rates stop), e.g. to model a router's reading exactly.
    pub fn set_bytes(&self, name: &str, bytes_in: u64, bytes_out: u64) {
        self.with(|s| {
            for x in s.sessions.iter_mut().filter(|x| x.name == name) {
                (x.base_in, x.base_out, x.rate_in, x.rate_out) = (bytes_in, bytes_out, 0, 0);
                x.started = Instant::now();
            }
        });
    }

    /// Names of the live sessions.
    pub fn session_names(&self) -> Vec<String> {
        self.with(|s| s.sessions.iter().map(|x| x.name.clone()).collect())
    }

    /// `(list, address)` of every address-list entry.
    pub fn address_list(&self) -> Vec<(String, String)> {
        self.with(|s| {
            s.address_list
                .iter()
                .map(|(_, l, a, _)| (l.clone(), a.clone()))
                .collect()
        })
    }

    /// Successful logins so far.
    pub fn logins(&self) -> u64 {
        self.with(|s| s.logins)
    }

    /// Paths of the commands answered so far (after login).
    pub fn commands(&self) -> Vec<String> {
        self.with(|s| s.commands.clone())
    }
}

fn tls_acceptor(name: &str) -> Result<(tokio_rustls::TlsAcceptor, String), SimError> {
    let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()])
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let der = cert.cert.der().clone();
    let fp = super::tls::fingerprint(&der);
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.key_pair.serialize_der())
        .map_err(|e| SimError::Tls(e.to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SimError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(vec![der], key)
    .map_err(|e| SimError::Tls(e.to_string()))?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), fp))
}

enum Step {
    Answer(Vec<Reply>),
    Close(Vec<Reply>),
    Silent,
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut sock: S,
    config: &SimConfig,
    state: &Mutex<State>,
) {
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let mut logged_in = false;
    let mut challenge: Option<String> = None;
    loop {
        let sentence = loop {
            match Sentence::decode(&buf) {
                Ok(Some((s, used))) => {
                    buf.drain(..used);
                    break s;
                }
                Ok(None) => {}
                Err(_) => return,
            }
            match sock.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        if sentence.0.is_empty() {
            continue;
        }
        let Some(cmd) = Command::parse(&sentence) else {
            continue;
        };
        let step = if cmd.path == "/login" {
            let (step, ok) = login(&cmd, config, &mut challenge);
            if ok {
                logged_in = true;
                if let Ok(mut s) = state.lock() {
                    s.logins += 1;
                }
            }
            step
        } else if !logged_in {
            Step::Answer(vec![
                Reply::new(ReplyKind::Trap).attr("message", "not logged in"),
                Reply::new(ReplyKind::Done),
            ])
        } else {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.commands.push(cmd.path.clone());
            match s.fault.clone() {
                Some(Fault::Drop) => return,
                Some(Fault::Stall) => Step::Silent,
                Some(Fault::Trap(m)) => Step::Answer(vec![
                    Reply::new(ReplyKind::Trap).attr("message", m),
                    Reply::new(ReplyKind::Done),
                ]),
                None => command(&cmd, config, &mut s),
            }
        };
        let (replies, close) = match step {
            Step::Answer(r) => (r, false),
            Step::Close(r) => (r, true),
            Step::Silent => continue,
        };
        let mut out = Vec::new();
        for r in replies {
            let r = if r.kind == ReplyKind::Fatal {
                r
            } else {
                r.tagged(cmd.tag.clone())
            };
            match r.sentence().encode() {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return,
            }
        }
        if sock.write_all(&out).await.is_err() || sock.flush().await.is_err() {
            return;
        }
        if close {
            let _ = sock.shutdown().await;
            return;
        }
    }
}

/// Returns the answer and whether the login succeeded.
fn login(cmd: &Command, config: &SimConfig, challenge: &mut Option<String>) -> (Step, bool) {
    let refused = || {
        (
            Step::Answer(vec![
                Reply::new(ReplyKind::Trap).attr("message", "invalid user name or password (6)"),
                Reply::new(ReplyKind::Done),
            ]),
            false,
        )
    };
    let done = || (Step::Answer(vec![Reply::new(ReplyKind::Done)]), true);
    if let Some(resp) = cmd.get("response") {
        let Some(ch) = challenge.take() else {
            return refused();
        };
        let ok = cmd.get("name") == Some(config.user.as_str())
            && challenge_response(&config.password, &ch).as_deref() == Some(resp);
        return if ok { done() } else { refused() };
    }
    if config.legacy_login {
        // Pre-6.43 routers ignore a password here and always answer with a challenge.
        let ch = hex::encode(rand::random::<[u8; 16]>());
        *challenge = Some(ch.clone());
        return (
            Step::Answer(vec![Reply::new(ReplyKind::Done).attr("ret", ch)]),
            false,
        );
    }
    if cmd.get("name") == Some(config.user.as_str())
        && cmd.get("password") == Some(config.password.as_str())
    {
        done()
    } else {
        refused()
    }
}

fn matches(row: &[(String, String)], queries: &[String]) -> bool {
    // Simple `?name=value` equality queries, all of which must hold (RouterOS's default AND).
    // `?=name=value` is the same query as `?name=value` (librouteros sends the former).
    queries
        .iter()
        .all(|q| match q.strip_prefix('=').unwrap_or(q).split_once('=') {
            Some((k, v)) => row.iter().any(|(rk, rv)| rk == k && rv == v),
            None => true,
        })
}

fn print(rows: Vec<Vec<(String, String)>>, cmd: &Command) -> Step {
    let props: Option<Vec<&str>> = cmd.get(".proplist").map(|p| p.split(',').collect());
    let mut out: Vec<Reply> = rows
        .into_iter()
        .filter(|r| matches(r, &cmd.queries))
        .map(|r| {
            let mut reply = Reply::new(ReplyKind::Re);
            reply.attrs = r
                .into_iter()
                .filter(|(k, _)| props.as_ref().is_none_or(|p| p.contains(&k.as_str())))
                .collect();
            reply
        })
        .collect();
    if out.is_empty() {
        // RouterOS 7.18 and later say so explicitly.
        out.push(Reply::new(ReplyKind::Empty));
    }
    out.push(Reply::new(ReplyKind::Done));
    Step::Answer(out)
}

fn kv(pairs: &[(&str, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

fn trap(message: &str) -> Step {
    Step::Answer(vec![
        Reply::new(ReplyKind::Trap).attr("message", message),
        Reply::new(ReplyKind::Done),
    ])
}

fn command(cmd: &Command, config: &SimConfig, s: &mut State) -> Step {
    match cmd.path.as_str() {
        "/system/identity/print" => print(vec![kv(&[("name", config.identity.clone())])], cmd),
        "/system/resource/print" => print(
            vec![kv(&[
                ("uptime", "1d2h3m4s".into()),
                ("version", config.version.clone()),
                ("cpu-load", "3".into()),
                ("board-name", "CHR".into()),
                ("architecture-name", "x86_64".into()),
                ("free-memory", "123456789".into()),
            ])],
            cmd,
        ),
        "/ppp/active/print" => {
            let rows = s
                .sessions
                .iter()
                .map(|x| {
                    kv(&[
                        (".id", format!("*{:X}", x.id)),
                        ("name", x.name.clone()),
                        ("service", "pppoe".into()),
                        ("caller-id", x.caller_id.clone()),
                        ("address", x.address.clone()),
                        ("uptime", format!("{}s", x.started.elapsed().as_secs())),
                        ("encoding", String::new()),
                        ("session-id", x.session_id.clone()),
                        ("radius", "true".into()),
                    ])
                })
                .collect();
            print(rows, cmd)
        }
        "/queue/simple/print" => {
            let rows = s
                .sessions
                .iter()
                .map(|x| {
                    let (i, o) = x.bytes();
                    kv(&[
                        (".id", format!("*{:X}", 0x1000 + x.id)),
                        ("name", format!("<pppoe-{}>", x.name)),
                        ("target", format!("{}/32", x.address)),
                        ("max-limit", "10000000/20000000".into()),
                        ("bytes", format!("{i}/{o}")),
                        ("dynamic", "true".into()),
                    ])
                })
                .collect();
            print(rows, cmd)
        }
        "/interface/print" => {
            let mut rows = vec![kv(&[
                (".id", "*1".into()),
                ("name", "ether1".into()),
                ("type", "ether".into()),
                ("rx-byte", "1000".into()),
                ("tx-byte", "2000".into()),
                ("running", "true".into()),
            ])];
            rows.extend(s.sessions.iter().map(|x| {
                let (i, o) = x.bytes();
                kv(&[
                    (".id", format!("*{:X}", 0x2000 + x.id)),
                    ("name", format!("<pppoe-{}>", x.name)),
                    ("type", "pppoe-in".into()),
                    ("rx-byte", i.to_string()),
                    ("tx-byte", o.to_string()),
                    ("running", "true".into()),
                ])
            }));
            print(rows, cmd)
        }
        "/ppp/active/remove" => {
            let ids: Vec<&str> = cmd.get(".id").unwrap_or_default().split(',').collect();
            let before = s.sessions.len();
            s.sessions
                .retain(|x| !ids.contains(&format!("*{:X}", x.id).as_str()));
            if s.sessions.len() == before {
                trap("no such item")
            } else {
                Step::Answer(vec![Reply::new(ReplyKind::Done)])
            }
        }
        "/ip/firewall/address-list/add" => {
            let (Some(list), Some(address)) = (cmd.get("list"), cmd.get("address")) else {
                return trap("missing list or address");
            };
            if s.address_list
                .iter()
                .any(|(_, l, a, _)| l == list && a == address)
            {
                return trap("failure: already have such entry");
            }
            let id = s.next_id;
            s.next_id += 1;
            s.address_list.push((
                id,
                list.to_owned(),
                address.to_owned(),
                cmd.get("comment").unwrap_or_default().to_owned(),
            ));
            Step::Answer(vec![
                Reply::new(ReplyKind::Done).attr("ret", format!("*{id:X}")),
            ])
        }
        "/ip/firewall/address-list/print" => {
            let rows = s
                .address_list
                .iter()
                .map(|(id, l, a, c)| {
                    kv(&[
                        (".id", format!("*{id:X}")),
                        ("list", l.clone()),
                        ("address", a.clone()),
                        ("comment", c.clone()),
                    ])
                })
                .collect();
            print(rows, cmd)
        }
        "/ip/firewall/address-list/remove" => {
            let ids: Vec<&str> = cmd.get(".id").unwrap_or_default().split(',').collect();
            let before = s.address_list.len();
            s.address_list
                .retain(|(id, ..)| !ids.contains(&format!("*{id:X}").as_str()));
            if s.address_list.len() == before {
                trap("no such item")
            } else {
                Step::Answer(vec![Reply::new(ReplyKind::Done)])
            }
        }
        "/cancel" => Step::Answer(vec![Reply::new(ReplyKind::Done)]),
        "/quit" => {
            let mut r = Reply::new(ReplyKind::Fatal);
            r.other.push("session terminated on request".into());
            Step::Close(vec![r])
        }
        _ => trap("no such command prefix"),
    }
}
