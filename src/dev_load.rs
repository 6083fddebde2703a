//! `proxpanel dev radius-load`: a closed-loop RADIUS load generator for benchmarks
//! (`infra/bench/radius.sh`) and smoke tests against any RADIUS server (ours or FreeRADIUS).
//!
//! Every one of `--concurrency` tasks owns its own UDP socket (so identifiers of different
//! tasks never collide), sends one request, waits for its reply (at most 2 s, then counts a
//! timeout and moves on without retransmitting), checks the reply's code, identifier, Response
//! Authenticator and, when present, Message-Authenticator, records the round-trip latency and
//! sends the next request, until `--duration` seconds have passed. A request still in flight
//! at the deadline is abandoned and counted nowhere; requests/s is the number of replies
//! received before the deadline divided by the duration. With `--requests N` the run instead
//! stops once N requests have been sent in total (and answered or timed out; `--duration` is
//! then only an upper bound), and requests/s is over the time it took (`infra/bench/relay.sh`
//! compares the server's CPU time per fixed number of requests).
//!
//! Users are `{prefix}{n:05}` for n in 1..=users (`user00001` … `user10000` by default), all
//! with the same password (`--password`, default `password`). Task `t` walks the users
//! `t+1, t+1+C, t+1+2C, …` (C = concurrency, wrapping at `--users`), so tasks never ask for the
//! same user at the same time.
//!
//! Modes:
//! - `auth`: PAP Access-Request with Message-Authenticator (User-Name, User-Password,
//!   NAS-IP-Address, NAS-Port, NAS-Port-Type, Service-Type, Framed-Protocol, Calling-Station-Id);
//!   Access-Accept is counted as ok, Access-Reject (and Access-Challenge) as a reject.
//! - `acct`: Accounting-Request cycles Start → Interim-Update → Stop, one session per cycle,
//!   with an Acct-Session-Id unique per run, task and cycle; every Accounting-Response is ok.
//!   Like a MikroTik NAS it sends no Message-Authenticator on accounting.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use saas_core::radius::{self, Code, DropReason, PacketBuilder, RequestMeta, chap, dict};
use tokio::net::UdpSocket;

use crate::Fatal;

/// How long a request waits for its reply before it counts as a timeout.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// Most concurrent requests (each holds a socket, so a file descriptor).
const MAX_CONCURRENCY: u32 = 4096;

/// NAS-Port-Type Ethernet (RFC 2865 §5.41, value 15), as a PPPoE BNG sends.
const NAS_PORT_TYPE_ETHERNET: u32 = 15;

/// Acct-Authentic RADIUS (RFC 2866 §5.6).
const ACCT_AUTHENTIC_RADIUS: u32 = 1;

/// `dev radius-load` flags.
#[derive(Debug, clap::Args)]
pub struct LoadArgs {
    /// Target RADIUS server address, e.g. 127.0.0.1:1812 (auth) or 127.0.0.1:1813 (acct).
    #[arg(long)]
    pub target: SocketAddr,
    /// RADIUS shared secret the target has for this host.
    #[arg(long)]
    pub secret: String,
    /// Number of users: {prefix}00001 … {prefix}{users}, zero-padded to 5 digits.
    #[arg(long, default_value_t = 10000)]
    pub users: u32,
    /// Requests outstanding at any time (one task and one UDP socket each).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Stop after this many requests in total (all tasks together); 0 = run for --duration.
    /// --duration still caps the run.
    #[arg(long, default_value_t = 0)]
    pub requests: u64,
    /// auth (PAP Access-Request) or acct (Accounting Start/Interim-Update/Stop cycles).
    #[arg(long, default_value = "auth")]
    pub mode: String,
    /// User name prefix.
    #[arg(long, default_value = "user")]
    pub user_prefix: String,
    /// Password of every user.
    #[arg(long, default_value = "password")]
    pub password: String,
    /// Print the result as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// What is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Auth,
    Acct,
}

impl Mode {
    fn parse(s: &str) -> Result<Self, Fatal> {
        match s.to_ascii_lowercase().as_str() {
            "auth" => Ok(Mode::Auth),
            "acct" => Ok(Mode::Acct),
            other => Err(Fatal::usage(format!(
                "--mode: expected auth or acct, got {other:?}"
            ))),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Mode::Auth => "auth",
            Mode::Acct => "acct",
        }
    }
}

/// Runs the load described by `args` and prints requests/s, accepts (ok), rejects, timeouts
/// and p50/p99 latency, as text or (`--json`) one JSON object
/// `{"mode","rps","ok","rejects","timeouts","invalid","p50_ms","p99_ms","duration_s","concurrency"}`.
///
/// This is `proxpanel dev radius-load` (the clap subcommand in `src/cli.rs` calls it). It fails
/// when the flags are unusable, when the sockets cannot be opened, or when not a single valid
/// reply arrived (nothing listening, wrong secret, unknown NAS): the result is printed first.
pub async fn run(args: LoadArgs) -> Result<(), Fatal> {
    let mode = Mode::parse(&args.mode)?;
    if args.users == 0 {
        return Err(Fatal::usage("--users must be at least 1"));
    }
    if args.concurrency == 0 || args.concurrency > MAX_CONCURRENCY {
        return Err(Fatal::usage(format!(
            "--concurrency must be between 1 and {MAX_CONCURRENCY}"
        )));
    }
    if args.duration == 0 {
        return Err(Fatal::usage("--duration must be at least 1 second"));
    }
    if args.secret.is_empty() {
        return Err(Fatal::usage("--secret must not be empty"));
    }
    if args.password.len() > chap::MAX_PAP_PASSWORD_LEN {
        return Err(Fatal::usage(format!(
            "--password is longer than {} octets",
            chap::MAX_PAP_PASSWORD_LEN
        )));
    }
    let longest = user_name(&args.user_prefix, args.users);
    if longest.len() > 253 {
        return Err(Fatal::usage("--user-prefix is too long"));
    }

    let users: Arc<[String]> = (1..=args.users)
        .map(|n| user_name(&args.user_prefix, n))
        .collect();
    // Distinguishes this run's Acct-Session-Ids from earlier runs against the same store.
    let run_tag = (uuid::Uuid::new_v4().as_u128() & 0xffff_ffff) as u32;

    // All sockets first, so a failure surfaces before any load and the clock starts fair.
    let bind: SocketAddr = if args.target.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut sockets = Vec::with_capacity(args.concurrency as usize);
    for _ in 0..args.concurrency {
        let socket = UdpSocket::bind(bind)
            .await
            .map_err(|e| Fatal::failure(format!("cannot open a UDP socket: {e}")))?;
        socket
            .connect(args.target)
            .await
            .map_err(|e| Fatal::failure(format!("cannot address {}: {e}", args.target)))?;
        sockets.push(socket);
    }

    let duration = Duration::from_secs(args.duration);
    let start = Instant::now();
    let shared = Arc::new(Shared {
        mode,
        secret: args.secret.clone().into_bytes(),
        password: args.password.clone().into_bytes(),
        users,
        concurrency: args.concurrency,
        deadline: start + duration,
        run_tag,
        budget: (args.requests > 0).then(|| AtomicU64::new(args.requests)),
    });
    let mut tasks = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        let shared = shared.clone();
        tasks.push(tokio::spawn(async move {
            worker(index as u32, socket, &shared).await
        }));
    }
    let mut total = Tally::default();
    for t in tasks {
        let tally = t
            .await
            .map_err(|e| Fatal::failure(format!("a load task failed: {e}")))?;
        total.merge(tally);
    }
    let window = start.elapsed().min(duration);

    let report = Report::new(mode, &total, window, args.concurrency);
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text(args.target, args.users));
    }
    if total.ok + total.rejects == 0 {
        let mut msg = format!("no valid reply from {}", args.target);
        if total.invalid > 0 {
            msg.push_str(" (replies failed the authenticator check: wrong --secret?)");
        } else if let Some(e) = &total.last_error {
            let _ = write!(msg, " ({e})");
        } else {
            msg.push_str(" (is it running, and does it know this host as a client/NAS?)");
        }
        return Err(Fatal::failure(msg));
    }
    Ok(())
}

/// `{prefix}{n:05}`.
fn user_name(prefix: &str, n: u32) -> String {
    format!("{prefix}{n:05}")
}

/// Read-only state every task shares.
struct Shared {
    mode: Mode,
    secret: Vec<u8>,
    password: Vec<u8>,
    users: Arc<[String]>,
    concurrency: u32,
    deadline: Instant,
    run_tag: u32,
    /// Requests still to send (`--requests`); `None` = until the deadline.
    budget: Option<AtomicU64>,
}

impl Shared {
    /// Takes one request from the `--requests` budget; false once it is spent.
    fn take_request(&self) -> bool {
        self.budget.as_ref().is_none_or(|b| {
            b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }

    /// User (0-based index) of task `index` at its `round`-th user pick.
    fn user_index(&self, index: u32, round: u64) -> usize {
        let n = self.users.len() as u64;
        ((u64::from(index) + round * u64::from(self.concurrency)) % n) as usize
    }
}

/// Counts of one task (or, merged, of the run).
#[derive(Debug, Default)]
struct Tally {
    /// Access-Accept or Accounting-Response.
    ok: u64,
    /// Access-Reject or Access-Challenge.
    rejects: u64,
    /// No valid reply within 2 s.
    timeouts: u64,
    /// Datagrams that failed validation or the authenticator check.
    invalid: u64,
    /// Socket errors (e.g. ICMP port unreachable).
    errors: u64,
    last_error: Option<String>,
    latency: Histogram,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.rejects += other.rejects;
        self.timeouts += other.timeouts;
        self.invalid += other.invalid;
        self.errors += other.errors;
        if other.last_error.is_some() {
            self.last_error = other.last_error;
        }
        self.latency.merge(&other.latency);
    }
}

/// How one request ended.
enum Outcome {
    Reply(Code, Duration),
    Timeout,
    /// The run's deadline came first.
    Deadline,
    Error(std::io::Error),
}

/// One task: request, reply, repeat until the deadline.
async fn worker(index: u32, socket: UdpSocket, shared: &Shared) -> Tally {
    let mut tally = Tally::default();
    let nas_ip = match socket.local_addr().map(|a| a.ip()) {
        Ok(IpAddr::V4(ip)) if !ip.is_unspecified() => ip,
        _ => Ipv4Addr::LOCALHOST,
    };
    let mut rng = Rng::seeded();
    let mut identifier = rng.next() as u8;
    let mut buf = vec![0u8; 4096];
    let mut step: u64 = 0;
    while Instant::now() < shared.deadline && shared.take_request() {
        identifier = identifier.wrapping_add(1);
        let built = match shared.mode {
            Mode::Auth => {
                let user = shared.user_index(index, step);
                auth_request(shared, identifier, rng.authenticator(), user, index, nas_ip)
            }
            Mode::Acct => acct_request(shared, identifier, index, step, nas_ip),
        };
        let packet = match built {
            Ok(p) => p,
            Err(e) => {
                // Cannot happen with the validated flags; stop this task rather than spin.
                tally.errors += 1;
                tally.last_error = Some(format!("cannot encode a request: {e}"));
                break;
            }
        };
        step += 1;
        let Some(meta) = RequestMeta::of(&packet) else {
            break;
        };
        match exchange(&socket, &packet, &meta, shared, &mut buf, &mut tally).await {
            Outcome::Reply(code, latency) => {
                tally.latency.record(latency);
                match code {
                    Code::AccessAccept | Code::AccountingResponse => tally.ok += 1,
                    _ => tally.rejects += 1,
                }
            }
            Outcome::Timeout => tally.timeouts += 1,
            Outcome::Deadline => break,
            Outcome::Error(e) => {
                tally.errors += 1;
                tally.last_error = Some(e.to_string());
                // Typically "connection refused" (nothing listening): do not spin.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tally
}

/// Sends `packet` and waits for its reply; stray datagrams (late replies to timed-out requests,
/// forgeries) are skipped, invalid ones counted.
async fn exchange(
    socket: &UdpSocket,
    packet: &[u8],
    meta: &RequestMeta,
    shared: &Shared,
    buf: &mut [u8],
    tally: &mut Tally,
) -> Outcome {
    let sent = Instant::now();
    if let Err(e) = socket.send(packet).await {
        return Outcome::Error(e);
    }
    let timeout_at = sent + REPLY_TIMEOUT;
    let limit = timeout_at.min(shared.deadline);
    loop {
        let received = tokio::time::timeout_at(limit.into(), socket.recv(buf)).await;
        let n = match received {
            Err(_) if timeout_at <= shared.deadline => return Outcome::Timeout,
            Err(_) => return Outcome::Deadline,
            Ok(Err(e)) => return Outcome::Error(e),
            Ok(Ok(n)) => n,
        };
        let Some(datagram) = buf.get(..n) else {
            continue;
        };
        let Ok(reply) = radius::validate(datagram) else {
            tally.invalid += 1;
            continue;
        };
        match radius::verify_response(&reply, meta, &shared.secret) {
            Ok(_) => return Outcome::Reply(reply.code(), sent.elapsed()),
            // A late answer to an earlier request of this socket.
            Err(DropReason::IdentifierMismatch) => continue,
            Err(_) => {
                tally.invalid += 1;
                continue;
            }
        }
    }
}

/// A MAC address derived from the user, for Calling-Station-Id.
fn mac_of(user: usize) -> String {
    let b = (user as u32).to_be_bytes();
    format!("02:00:{:02X}:{:02X}:{:02X}:{:02X}", b[0], b[1], b[2], b[3])
}

/// A CGNAT address derived from the user, for Framed-IP-Address.
fn framed_ip_of(user: usize) -> Ipv4Addr {
    let u = user as u32;
    Ipv4Addr::new(100, 64 + ((u >> 16) & 0x3f) as u8, (u >> 8) as u8, u as u8)
}

fn auth_request(
    shared: &Shared,
    identifier: u8,
    authenticator: [u8; 16],
    user: usize,
    index: u32,
    nas_ip: Ipv4Addr,
) -> Result<Vec<u8>, String> {
    let name = shared.users.get(user).map(String::as_str).unwrap_or("");
    let hidden = chap::encrypt_user_password(&shared.password, &shared.secret, &authenticator)
        .map_err(|e| e.to_string())?;
    let mut b = PacketBuilder::request(Code::AccessRequest, identifier, authenticator)
        .map_err(|e| e.to_string())?;
    b.attr_str(dict::USER_NAME, name)
        .and_then(|b| b.attr(dict::USER_PASSWORD, &hidden))
        .and_then(|b| b.attr_ipv4(dict::NAS_IP_ADDRESS, nas_ip))
        .and_then(|b| b.attr_u32(dict::NAS_PORT, index))
        .and_then(|b| b.attr_u32(dict::NAS_PORT_TYPE, NAS_PORT_TYPE_ETHERNET))
        .and_then(|b| b.attr_u32(dict::SERVICE_TYPE, dict::SERVICE_TYPE_FRAMED))
        .and_then(|b| b.attr_u32(dict::FRAMED_PROTOCOL, dict::FRAMED_PROTOCOL_PPP))
        .and_then(|b| b.attr_str(dict::CALLING_STATION_ID, &mac_of(user)))
        .map_err(|e| e.to_string())?;
    Ok(b.finish(&shared.secret))
}

/// The `step`-th accounting packet of task `index`: session `step / 3`, phase `step % 3`
/// (Start, Interim-Update, Stop).
fn acct_request(
    shared: &Shared,
    identifier: u8,
    index: u32,
    step: u64,
    nas_ip: Ipv4Addr,
) -> Result<Vec<u8>, String> {
    let session = step / 3;
    let (status, seconds, octets) = match step % 3 {
        0 => (dict::ACCT_STATUS_START, 0u32, 0u64),
        1 => (dict::ACCT_STATUS_INTERIM_UPDATE, 60, 5_000_000),
        _ => (dict::ACCT_STATUS_STOP, 120, 12_000_000),
    };
    let user = shared.user_index(index, session);
    let name = shared.users.get(user).map(String::as_str).unwrap_or("");
    let session_id = acct_session_id(shared.run_tag, index, session);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    // Authenticator is computed by finish() for Accounting-Request.
    let mut b = PacketBuilder::request(Code::AccountingRequest, identifier, [0; 16])
        .map_err(|e| e.to_string())?
        .without_message_authenticator();
    b.attr_u32(dict::ACCT_STATUS_TYPE, status)
        .and_then(|b| b.attr_str(dict::USER_NAME, name))
        .and_then(|b| b.attr_str(dict::ACCT_SESSION_ID, &session_id))
        .and_then(|b| b.attr_ipv4(dict::NAS_IP_ADDRESS, nas_ip))
        .and_then(|b| b.attr_u32(dict::NAS_PORT, index))
        .and_then(|b| b.attr_u32(dict::NAS_PORT_TYPE, NAS_PORT_TYPE_ETHERNET))
        .and_then(|b| b.attr_u32(dict::SERVICE_TYPE, dict::SERVICE_TYPE_FRAMED))
        .and_then(|b| b.attr_u32(dict::FRAMED_PROTOCOL, dict::FRAMED_PROTOCOL_PPP))
        .and_then(|b| b.attr_str(dict::CALLING_STATION_ID, &mac_of(user)))
        .and_then(|b| b.attr_ipv4(dict::FRAMED_IP_ADDRESS, framed_ip_of(user)))
        .and_then(|b| b.attr_u32(dict::ACCT_AUTHENTIC, ACCT_AUTHENTIC_RADIUS))
        .and_then(|b| b.attr_u32(dict::ACCT_DELAY_TIME, 0))
        .and_then(|b| b.attr_u32(dict::EVENT_TIMESTAMP, now))
        .map_err(|e| e.to_string())?;
    if status != dict::ACCT_STATUS_START {
        // Download (output) twice the upload; Gigawords carry the high 32 bits.
        let input = octets;
        let output = octets * 2;
        b.attr_u32(dict::ACCT_SESSION_TIME, seconds)
            .and_then(|b| b.attr_u32(dict::ACCT_INPUT_OCTETS, input as u32))
            .and_then(|b| b.attr_u32(dict::ACCT_OUTPUT_OCTETS, output as u32))
            .and_then(|b| b.attr_u32(dict::ACCT_INPUT_GIGAWORDS, (input >> 32) as u32))
            .and_then(|b| b.attr_u32(dict::ACCT_OUTPUT_GIGAWORDS, (output >> 32) as u32))
            .and_then(|b| b.attr_u32(dict::ACCT_INPUT_PACKETS, (input / 1000) as u32))
            .and_then(|b| b.attr_u32(dict::ACCT_OUTPUT_PACKETS, (output / 1000) as u32))
            .map_err(|e| e.to_string())?;
    }
    if status == dict::ACCT_STATUS_STOP {
        b.attr_u32(dict::ACCT_TERMINATE_CAUSE, dict::TERMINATE_USER_REQUEST)
            .map_err(|e| e.to_string())?;
    }
    Ok(b.finish(&shared.secret))
}

/// Unique per run, task and session: `{run:08x}-{task:04x}-{session:08x}`.
fn acct_session_id(run_tag: u32, index: u32, session: u64) -> String {
    format!("{run_tag:08x}-{index:04x}-{session:08x}")
}

/// xorshift64* for Request Authenticators: unpredictable enough for a load generator, seeded
/// from the OS generator once per task, and free of per-request system calls.
struct Rng(u64);

impl Rng {
    fn seeded() -> Self {
        let seed = uuid::Uuid::new_v4().as_u128();
        Rng(((seed >> 64) as u64 ^ seed as u64) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn authenticator(&mut self) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[..8].copy_from_slice(&self.next().to_le_bytes());
        a[8..].copy_from_slice(&self.next().to_le_bytes());
        a
    }
}

/// Log-linear latency histogram in microseconds: exact below 128 µs, then 64 buckets per power
/// of two (under 1.6 % error), bounded memory however long the run.
#[derive(Debug, Clone)]
struct Histogram {
    counts: Vec<u64>,
    total: u64,
}

/// Values below this are their own bucket.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// Powers of two covered above [`LINEAR`] (2^7 µs … 2^40 µs, far beyond the 2 s timeout).
const OCTAVES: u64 = 34;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; (LINEAR + OCTAVES * SUB) as usize],
            total: 0,
        }
    }
}

impl Histogram {
    fn bucket(us: u64) -> usize {
        if us < LINEAR {
            return us as usize;
        }
        let exp = u64::from(63 - us.leading_zeros()); // >= 7
        let shift = exp - 6;
        let mantissa = us >> shift; // 64..=127
        let octave = (exp - 7).min(OCTAVES - 1);
        let mantissa = if exp - 7 > octave { 127 } else { mantissa };
        (LINEAR + octave * SUB + (mantissa - SUB)) as usize
    }

    /// Middle of a bucket's range, in microseconds.
    fn value(bucket: usize) -> f64 {
        let b = bucket as u64;
        if b < LINEAR {
            return b as f64;
        }
        let octave = (b - LINEAR) / SUB;
        let mantissa = (b - LINEAR) % SUB + SUB;
        let shift = octave + 1; // exp - 6 with exp = octave + 7
        let low = mantissa << shift;
        low as f64 + ((1u64 << shift) as f64 - 1.0) / 2.0
    }

    fn record(&mut self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(c) = self.counts.get_mut(Self::bucket(us)) {
            *c += 1;
            self.total += 1;
        }
    }

    fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
    }

    /// Nearest-rank percentile `p` (0 < p <= 100) in microseconds; `None` when empty.
    fn percentile(&self, p: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(Self::value(i));
            }
        }
        None
    }
}

/// The result of a run.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    mode: Mode,
    rps: f64,
    ok: u64,
    rejects: u64,
    timeouts: u64,
    invalid: u64,
    errors: u64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    duration_s: f64,
    concurrency: u32,
}

impl Report {
    fn new(mode: Mode, t: &Tally, window: Duration, concurrency: u32) -> Self {
        let secs = window.as_secs_f64();
        let answered = t.ok + t.rejects;
        Report {
            mode,
            rps: if secs > 0.0 {
                answered as f64 / secs
            } else {
                0.0
            },
            ok: t.ok,
            rejects: t.rejects,
            timeouts: t.timeouts,
            invalid: t.invalid,
            errors: t.errors,
            p50_ms: t.latency.percentile(50.0).map(|us| us / 1000.0),
            p99_ms: t.latency.percentile(99.0).map(|us| us / 1000.0),
            duration_s: secs,
            concurrency,
        }
    }

    fn json(&self) -> serde_json::Value {
        let round = |v: f64, places: i32| {
            let f = 10f64.powi(places);
            (v * f).round() / f
        };
        serde_json::json!({
            "mode": self.mode.as_str(),
            "rps": round(self.rps, 1),
            "ok": self.ok,
            "rejects": self.rejects,
            "timeouts": self.timeouts,
            "invalid": self.invalid,
            "errors": self.errors,
            "p50_ms": self.p50_ms.map(|v| round(v, 3)),
            "p99_ms": self.p99_ms.map(|v| round(v, 3)),
            "duration_s": round(self.duration_s, 3),
            "concurrency": self.concurrency,
        })
    }

    fn text(&self, target: SocketAddr, users: u32) -> String {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"));
        let ok_label = match self.mode {
            Mode::Auth => "accepts",
            Mode::Acct => "responses",
        };
        let mut s = String::new();
        let _ = writeln!(
            s,
            "mode {} target {target} users {users} concurrency {} duration {:.1} s",
            self.mode.as_str(),
            self.concurrency,
            self.duration_s
        );
        let _ = writeln!(s, "requests/s   {:.1}", self.rps);
        let _ = writeln!(s, "{ok_label:<12} {}", self.ok);
        let _ = writeln!(s, "rejects      {}", self.rejects);
        let _ = writeln!(s, "timeouts     {}", self.timeouts);
        if self.invalid > 0 || self.errors > 0 {
            let _ = writeln!(s, "invalid      {}", self.invalid);
            let _ = writeln!(s, "errors       {}", self.errors);
        }
        let _ = writeln!(s, "p50 ms       {}", ms(self.p50_ms));
        let _ = writeln!(s, "p99 ms       {}", ms(self.p99_ms));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(mode: Mode, users: u32, concurrency: u32) -> Shared {
        Shared {
            mode,
            secret: b"testing123".to_vec(),
            password: b"password".to_vec(),
            users: (1..=users).map(|n| user_name("user", n)).collect(),
            concurrency,
            deadline: Instant::now(),
            run_tag: 0xdead_beef,
            budget: None,
        }
    }

    #[test]
    fn request_budget_is_shared_and_spent_exactly() {
        let mut s = shared(Mode::Auth, 10, 4);
        assert!((0..1000).all(|_| s.take_request()), "no budget: unlimited");
        s.budget = Some(AtomicU64::new(3));
        let taken = (0..10).filter(|_| s.take_request()).count();
        assert_eq!(taken, 3);
    }

    #[test]
    fn user_names_are_zero_padded() {
        assert_eq!(user_name("user", 1), "user00001");
        assert_eq!(user_name("user", 10000), "user10000");
        assert_eq!(user_name("u", 123456), "u123456");
    }

    #[test]
    fn tasks_walk_disjoint_users() {
        let s = shared(Mode::Auth, 10, 3);
        let t0: Vec<usize> = (0..4).map(|r| s.user_index(0, r)).collect();
        let t1: Vec<usize> = (0..4).map(|r| s.user_index(1, r)).collect();
        assert_eq!(t0, vec![0, 3, 6, 9]);
        assert_eq!(t1, vec![1, 4, 7, 0]);
        // Each round, the tasks ask for different users.
        for r in 0..100 {
            let a: Vec<usize> = (0..3).map(|t| s.user_index(t, r)).collect();
            assert!(a[0] != a[1] && a[1] != a[2] && a[0] != a[2]);
        }
    }

    #[test]
    fn histogram_buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for us in 0..5_000_000u64 {
            let b = Histogram::bucket(us);
            assert!(b >= last, "bucket of {us} went backwards");
            last = b;
            let v = Histogram::value(b);
            let err = (v - us as f64).abs() / (us.max(1) as f64);
            assert!(us < LINEAR && v == us as f64 || err < 0.016, "{us} -> {v}");
        }
        // Huge values land in the last bucket instead of out of range.
        assert_eq!(
            Histogram::bucket(u64::MAX),
            (LINEAR + OCTAVES * SUB - 1) as usize
        );
    }

    #[test]
    fn percentiles_nearest_rank() {
        let mut h = Histogram::default();
        assert_eq!(h.percentile(50.0), None);
        for us in 1..=100u64 {
            h.record(Duration::from_micros(us));
        }
        assert_eq!(h.percentile(50.0), Some(50.0));
        assert_eq!(h.percentile(99.0), Some(99.0));
        assert_eq!(h.percentile(100.0), Some(100.0));
        assert_eq!(h.percentile(0.1), Some(1.0));

        // 990 fast replies and 10 slow ones: p99 is still fast, p99.9 is slow.
        let mut h = Histogram::default();
        for _ in 0..990 {
            h.record(Duration::from_micros(500));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(40));
        }
        let p50 = h.percentile(50.0).unwrap();
        let p99 = h.percentile(99.0).unwrap();
        let p999 = h.percentile(99.9).unwrap();
        assert!((p50 - 500.0).abs() / 500.0 < 0.016, "{p50}");
        assert!((p99 - 500.0).abs() / 500.0 < 0.016, "{p99}");
        assert!((p999 - 40_000.0).abs() / 40_000.0 < 0.016, "{p999}");
    }

    #[test]
    fn merged_histograms_add_up() {
        let mut a = Histogram::default();
        let mut b = Histogram::default();
        a.record(Duration::from_micros(10));
        b.record(Duration::from_micros(20));
        b.record(Duration::from_micros(30));
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.percentile(50.0), Some(20.0));
    }

    #[test]
    fn auth_request_is_valid_pap_with_message_authenticator() {
        let s = shared(Mode::Auth, 100, 4);
        let ra = [7u8; 16];
        let p = auth_request(&s, 9, ra, 41, 2, Ipv4Addr::LOCALHOST).unwrap();
        let v = radius::validate(&p).unwrap();
        assert_eq!(v.code(), Code::AccessRequest);
        assert_eq!(v.identifier(), 9);
        assert_eq!(
            radius::verify_request(&v, b"testing123"),
            Ok(radius::MaStatus::Valid)
        );
        assert_eq!(v.attr(dict::USER_NAME), Some(&b"user00042"[..]));
        let hidden = v.attr(dict::USER_PASSWORD).unwrap();
        assert!(chap::verify_pap(hidden, b"testing123", &ra, b"password"));
        assert_eq!(
            v.attr(dict::CALLING_STATION_ID),
            Some(&b"02:00:00:00:00:29"[..])
        );
    }

    #[test]
    fn acct_cycle_is_start_interim_stop_with_unique_ids() {
        let s = shared(Mode::Acct, 100, 4);
        let mut ids = std::collections::HashSet::new();
        let mut statuses = Vec::new();
        for step in 0..6 {
            let p = acct_request(&s, step as u8, 1, step, Ipv4Addr::LOCALHOST).unwrap();
            let v = radius::validate(&p).unwrap();
            assert_eq!(v.code(), Code::AccountingRequest);
            // Request Authenticator checks out, no Message-Authenticator.
            assert_eq!(
                radius::verify_request(&v, b"testing123"),
                Ok(radius::MaStatus::Absent)
            );
            let status = v.attr(dict::ACCT_STATUS_TYPE).unwrap();
            statuses.push(u32::from_be_bytes(status.try_into().unwrap()));
            ids.insert(v.attr(dict::ACCT_SESSION_ID).unwrap().to_vec());
            // The same user for the whole session.
            let user = if step < 3 { "user00002" } else { "user00006" };
            assert_eq!(v.attr(dict::USER_NAME), Some(user.as_bytes()));
        }
        assert_eq!(statuses, vec![1, 3, 2, 1, 3, 2]);
        assert_eq!(ids.len(), 2, "one id per session");
        assert_ne!(
            acct_session_id(1, 0, 0),
            acct_session_id(1, 1, 0),
            "tasks do not share ids"
        );
        assert_ne!(acct_session_id(1, 0, 0), acct_session_id(2, 0, 0));
    }

    #[test]
    fn replies_are_checked() {
        let s = shared(Mode::Auth, 1, 1);
        let ra = [3u8; 16];
        let req = auth_request(&s, 5, ra, 0, 0, Ipv4Addr::LOCALHOST).unwrap();
        let meta = RequestMeta::of(&req).unwrap();
        let v = radius::validate(&req).unwrap();
        let good = PacketBuilder::reply(&v, Code::AccessAccept)
            .unwrap()
            .finish(b"testing123");
        let rv = radius::validate(&good).unwrap();
        assert!(radius::verify_response(&rv, &meta, b"testing123").is_ok());
        let forged = PacketBuilder::reply(&v, Code::AccessAccept)
            .unwrap()
            .finish(b"wrong");
        let fv = radius::validate(&forged).unwrap();
        assert!(radius::verify_response(&fv, &meta, b"testing123").is_err());
    }

    #[test]
    fn report_json_has_the_documented_keys() {
        let mut t = Tally {
            ok: 90,
            rejects: 10,
            timeouts: 1,
            ..Tally::default()
        };
        for _ in 0..100 {
            t.latency.record(Duration::from_micros(250));
        }
        let r = Report::new(Mode::Auth, &t, Duration::from_secs(10), 64);
        assert_eq!(r.rps, 10.0);
        let j = r.json();
        for k in [
            "mode",
            "rps",
            "ok",
            "rejects",
            "timeouts",
            "p50_ms",
            "p99_ms",
            "duration_s",
            "concurrency",
        ] {
            assert!(j.get(k).is_some(), "missing {k}");
        }
        assert_eq!(j["mode"], "auth");
        assert_eq!(j["ok"], 90);
        assert_eq!(j["concurrency"], 64);
        assert!(
            r.text("127.0.0.1:1812".parse().unwrap(), 10)
                .contains("requests/s   10.0")
        );
    }

    #[test]
    fn mode_parsing() {
        assert_eq!(Mode::parse("auth").unwrap(), Mode::Auth);
        assert_eq!(Mode::parse("ACCT").unwrap(), Mode::Acct);
        assert!(Mode::parse("coa").unwrap_err().user_error);
    }
}
