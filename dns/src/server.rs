//! The listeners: UDP workers with the fast path in front of hickory's `Catalog`, a TCP listener
//! (queries, and zone transfers to the configured secondaries only), response-rate limiting,
//! metrics, and NOTIFY to the secondaries when the serial changes.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{Catalog, MessageResponse, MessageResponseBuilder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};

use crate::fast::{self, FastQuery};
use crate::handler::{LiveZone, ZoneCell};
use crate::metrics::{DnsMetrics, rcode_label};
use crate::rrl::{Rrl, Verdict};
use crate::udp_batch::{RecvBatch, SendBatch};
use crate::zone::Zone;

/// The UDP payload size we offer and answer within (the DNS flag day 2020 value: no
/// fragmentation).
pub const EDNS_PAYLOAD: u16 = 1232;
/// Idle time after which a TCP connection is closed.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Concurrent TCP connections.
pub const TCP_MAX_CONNECTIONS: usize = 512;
/// Records per message of a zone transfer.
const XFR_CHUNK: usize = 500;

/// Listener settings.
#[derive(Clone, Debug, Default)]
pub struct ServerSettings {
    /// Addresses allowed to transfer the zone (and sent NOTIFY).
    pub secondaries: Vec<IpAddr>,
    /// Response-rate limit per client network and second; `None` = off.
    pub rrl_per_second: Option<u32>,
    /// Port NOTIFY messages go to on the secondaries.
    pub notify_port: u16,
}

/// The authoritative server for one zone.
pub struct DnsServer {
    cell: Arc<ZoneCell>,
    catalog: Catalog,
    settings: ServerSettings,
    rrl: Option<Rrl>,
    metrics: DnsMetrics,
}

impl std::fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsServer")
            .field("origin", self.cell.origin())
            .field("serial", &self.cell.get().serial())
            .finish()
    }
}

static OUR_EDNS: LazyLock<Edns> = LazyLock::new(|| {
    let mut e = Edns::new();
    e.set_max_payload(EDNS_PAYLOAD);
    e
});

/// Tokio time for the catalog.
struct TokioTime;

#[async_trait::async_trait]
impl Time for TokioTime {
    async fn delay_for(duration: Duration) {
        tokio::time::sleep(duration).await
    }

    async fn timeout<F: 'static + Future + Send>(
        duration: Duration,
        future: F,
    ) -> Result<F::Output, std::io::Error> {
        tokio::time::timeout(duration, future)
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "timed out"))
    }
}

/// Keeps the encoded answer instead of sending it (the listeners send).
#[derive(Clone)]
struct Capture {
    out: Arc<Mutex<Option<Vec<u8>>>>,
    max: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        mut response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        // Our own OPT (fixed payload size), so an answer is the same whoever asked.
        if response.edns().is_some() && response.metadata().response_code.high() == 0 {
            response.set_edns(&OUR_EDNS);
        }
        let mut buf = Vec::with_capacity(512);
        let mut enc = BinEncoder::new(&mut buf);
        enc.set_max_size(self.max);
        let info = response.destructive_emit(&mut enc)?;
        *self.out.lock().unwrap_or_else(|p| p.into_inner()) = Some(buf);
        Ok(info)
    }
}

/// A header-only answer to a query we could not parse (FORMERR), or `None` for junk that is
/// itself a response (never answer those: reflection loops).
fn formerr(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return None;
    }
    let mut r = q[..12].to_vec();
    r[2] = 0x80 | (q[2] & 0x79);
    r[3] = 1;
    r[4..12].fill(0);
    Some(r)
}

/// An empty truncated answer (TC=1): the client retries over TCP.
fn truncated(q: &[u8], fq: &FastQuery) -> Vec<u8> {
    let mut r = q[..fq.question_end].to_vec();
    r[2] = 0x80 | 0x04 | 0x02 | (q[2] & 0x01);
    r[3] &= 0x10;
    r[6..12].fill(0);
    r
}

impl DnsServer {
    /// A server answering from `zone`.
    pub fn new(zone: Zone, settings: ServerSettings, metrics: DnsMetrics) -> Arc<Self> {
        let cell = Arc::new(ZoneCell::new(zone));
        let mut catalog = Catalog::new();
        catalog.upsert(
            cell.origin().clone(),
            vec![Arc::new(LiveZone(cell.clone()))],
        );
        metrics.serial.set(i64::from(cell.get().serial()));
        metrics.names.set(cell.get().names() as i64);
        Arc::new(Self {
            rrl: settings.rrl_per_second.map(Rrl::new),
            cell,
            catalog,
            settings,
            metrics,
        })
    }

    /// The zone currently served.
    pub fn zone(&self) -> Arc<Zone> {
        self.cell.get()
    }

    /// Serves `zone` from now on (its cache starts empty) and notifies the secondaries.
    pub fn replace(&self, zone: Zone) {
        let serial = zone.serial();
        self.metrics.serial.set(i64::from(serial));
        self.metrics.names.set(zone.names() as i64);
        self.cell.set(zone);
        self.notify_secondaries(serial);
    }

    /// Metrics handle.
    pub fn metrics(&self) -> &DnsMetrics {
        &self.metrics
    }

    /// The general path (hickory's catalog). Zone transfers are refused here; the TCP listener
    /// serves them to secondaries before calling this.
    pub async fn general(
        &self,
        q: Vec<u8>,
        src: SocketAddr,
        protocol: Protocol,
    ) -> Option<Vec<u8>> {
        let fallback = formerr(&q);
        let req = match Request::from_bytes(q, src, protocol) {
            Ok(r) => r,
            Err(_) => return fallback,
        };
        if req.metadata.message_type != MessageType::Query {
            return None;
        }
        let max = match protocol {
            Protocol::Udp => req
                .edns
                .as_ref()
                .map(|e| e.max_payload().clamp(512, EDNS_PAYLOAD))
                .unwrap_or(512),
            _ => u16::MAX,
        };
        let cap = Capture {
            out: Arc::new(Mutex::new(None)),
            max,
        };
        let xfr = req
            .queries
            .queries()
            .iter()
            .any(|q| matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR));
        if xfr {
            let edns = req.edns.is_some().then_some(&*OUR_EDNS);
            let resp = MessageResponseBuilder::new(&req.queries, edns)
                .error_msg(&req.metadata, ResponseCode::Refused);
            let mut c = cap.clone();
            c.send_response(resp).await.ok()?;
        } else {
            self.catalog
                .handle_request::<Capture, TokioTime>(&req, cap.clone())
                .await;
        }
        let out = cap.out.lock().unwrap_or_else(|p| p.into_inner()).take();
        out.or(fallback)
    }

    /// Answers one UDP datagram into `out`; false = send nothing.
    pub async fn answer_udp(
        &self,
        q: &[u8],
        src: SocketAddr,
        key: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> bool {
        let started = Instant::now();
        let fq = fast::parse(q);
        if let Some(rrl) = &self.rrl {
            match rrl.check(src.ip()) {
                Verdict::Send => {}
                Verdict::Slip => {
                    self.metrics.rate_limited.inc();
                    let Some(fq) = fq else { return false };
                    *out = truncated(q, &fq);
                    return true;
                }
                Verdict::Drop => {
                    self.metrics.rate_limited.inc();
                    return false;
                }
            }
        }
        let Some(fq) = fq else {
            return match self.general(q.to_vec(), src, Protocol::Udp).await {
                Some(r) => {
                    self.metrics.count(question_type(q), rcode_label(r[3]));
                    *out = r;
                    true
                }
                None => false,
            };
        };
        fast::key(q, &fq, key);
        let zone = self.cell.get();
        if zone.cache.answer(key, q, &fq, out) {
            self.metrics.cache_hits.inc();
        } else {
            match self.general(q.to_vec(), src, Protocol::Udp).await {
                Some(r) => {
                    if fast::cacheable(&r, &fq) {
                        zone.cache.insert(key, &r);
                    }
                    *out = r;
                }
                None => return false,
            }
        }
        self.metrics.count(fq.qtype, rcode_label(out[3]));
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        true
    }

    /// Serves UDP on `socket` with `workers` tasks until `stop`.
    pub async fn serve_udp(
        self: Arc<Self>,
        socket: UdpSocket,
        workers: usize,
        stop: watch::Receiver<bool>,
    ) {
        let socket = Arc::new(socket);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..workers.max(1) {
            let (me, socket, mut stop) = (self.clone(), socket.clone(), stop.clone());
            set.spawn(async move {
                let mut queries = RecvBatch::default();
                let mut answers = SendBatch::default();
                let mut key = Vec::with_capacity(300);
                loop {
                    let n = tokio::select! {
                        r = queries.recv(&socket) => match r {
                            Ok(n) => n,
                            Err(e) => {
                                tracing::debug!(error = %e, "dns: UDP receive failed");
                                continue;
                            }
                        },
                        _ = stopped(&mut stop) => return,
                    };
                    for i in 0..n {
                        let Some((q, Some(src))) = queries.get(i) else {
                            continue;
                        };
                        if me.answer_udp(q, src, &mut key, answers.slot()).await {
                            answers.commit(src);
                        }
                    }
                    let failed = answers.flush(&socket).await;
                    if failed > 0 {
                        tracing::debug!(failed, "dns: UDP answers not sent");
                    }
                }
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Serves TCP on `listener` until `stop`.
    pub async fn serve_tcp(
        self: Arc<Self>,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
    ) {
        let limit = Arc::new(Semaphore::new(TCP_MAX_CONNECTIONS));
        loop {
            let (stream, src) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        tracing::debug!(error = %e, "dns: TCP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = stopped(&mut stop) => return,
            };
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                continue; // too many connections: close this one
            };
            let (me, stop) = (self.clone(), stop.clone());
            tokio::spawn(async move {
                let _permit = permit;
                me.tcp_connection(stream, src, stop).await;
            });
        }
    }

    async fn tcp_connection(
        &self,
        mut stream: TcpStream,
        src: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let mut len = [0u8; 2];
            let read = tokio::select! {
                r = tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut len)) => r,
                _ = stopped(&mut stop) => return,
            };
            if !matches!(read, Ok(Ok(_))) {
                return;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if !matches!(
                tokio::time::timeout(TCP_IDLE, stream.read_exact(&mut q)).await,
                Ok(Ok(_))
            ) {
                return;
            }
            let started = Instant::now();
            let qtype = question_type(&q);
            let answers =
                if matches!(qtype, 251 | 252) && self.settings.secondaries.contains(&src.ip()) {
                    match Message::from_vec(&q) {
                        Ok(m) => self.transfer(&m),
                        Err(_) => formerr(&q).into_iter().collect(),
                    }
                } else {
                    self.general(q, src, Protocol::Tcp)
                        .await
                        .into_iter()
                        .collect()
                };
            if let Some(first) = answers.first() {
                self.metrics.count(qtype, rcode_label(first[3]));
                self.metrics
                    .latency
                    .observe(started.elapsed().as_secs_f64());
            }
            for a in answers {
                let Ok(n) = u16::try_from(a.len()) else {
                    return;
                };
                let mut framed = Vec::with_capacity(a.len() + 2);
                framed.extend_from_slice(&n.to_be_bytes());
                framed.extend_from_slice(&a);
                if stream.write_all(&framed).await.is_err() {
                    return;
                }
            }
        }
    }

    /// A zone transfer (AXFR; IXFR is answered with the whole zone, RFC 1995 §4): the SOA, every
    /// record, the SOA again, in as many messages as needed.
    pub fn transfer(&self, q: &Message) -> Vec<Vec<u8>> {
        let zone = self.cell.get();
        let mut records = zone.transfer_records();
        if let Some(soa) = zone.soa() {
            records.push(soa.clone());
        }
        let mut out = Vec::new();
        for chunk in records.chunks(XFR_CHUNK) {
            let mut m = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            m.metadata.authoritative = true;
            m.add_queries(q.queries.iter().cloned());
            m.add_answers(chunk.iter().cloned());
            match m.to_vec() {
                Ok(v) => out.push(v),
                Err(e) => {
                    tracing::warn!(error = %e, "dns: cannot encode a zone transfer message");
                    return Vec::new();
                }
            }
        }
        tracing::info!(
            serial = zone.serial(),
            records = records.len(),
            "dns: zone transferred"
        );
        out
    }

    /// Sends NOTIFY (RFC 1996) for `serial` to every secondary, without waiting for replies.
    pub fn notify_secondaries(&self, serial: u32) {
        if self.settings.secondaries.is_empty() {
            return;
        }
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Notify);
        m.metadata.authoritative = true;
        let origin = Name::from(self.cell.origin().clone());
        m.add_query(Query::query(origin, RecordType::SOA));
        let Ok(bytes) = m.to_vec() else { return };
        let targets: Vec<SocketAddr> = self
            .settings
            .secondaries
            .iter()
            .map(|ip| SocketAddr::new(*ip, self.settings.notify_port))
            .collect();
        tokio::spawn(async move {
            for t in targets {
                let bind: SocketAddr = if t.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                };
                match UdpSocket::bind(bind).await {
                    Ok(s) => {
                        if let Err(e) = s.send_to(&bytes, t).await {
                            tracing::warn!(error = %e, secondary = %t, "dns: NOTIFY failed");
                        } else {
                            tracing::debug!(secondary = %t, serial, "dns: NOTIFY sent");
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "dns: no socket for NOTIFY"),
                }
            }
        });
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u16
}

/// The query type of the first question, 0 when unreadable (for metrics and transfer checks).
pub fn question_type(q: &[u8]) -> u16 {
    let mut i = 12;
    while let Some(&len) = q.get(i) {
        if len == 0 {
            return match (q.get(i + 1), q.get(i + 2)) {
                (Some(a), Some(b)) => u16::from_be_bytes([*a, *b]),
                _ => 0,
            };
        }
        if len > 63 {
            return 0;
        }
        i += 1 + len as usize;
    }
    0
}

/// Resolves once `stop` is true (the watch guard is dropped inside, so callers stay `Send`).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
