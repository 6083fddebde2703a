//! Asks our own DNS server(s) for the `_acme-challenge` TXT values before the ACME server is told
//! to look: validation fails for good if it looks too early.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// The TXT values `server` answers for `name` (empty for NXDOMAIN/NODATA).
pub async fn txt_values(server: SocketAddr, name: &str) -> Result<Vec<String>, String> {
    let qname = Name::from_str(&format!("{}.", name.trim_end_matches('.')))
        .map_err(|e| format!("{name:?} is not a DNS name: {e}"))?;
    let id: u16 = rand::random();
    let mut m = Message::new(id, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(qname, RecordType::TXT));
    let q = m.to_vec().map_err(|e| e.to_string())?;
    let mut answer = tokio::time::timeout(QUERY_TIMEOUT, udp(server, &q, id))
        .await
        .map_err(|_| format!("no answer from {server} within {QUERY_TIMEOUT:?}"))??;
    if answer.metadata.truncation {
        answer = tokio::time::timeout(QUERY_TIMEOUT, tcp(server, &q))
            .await
            .map_err(|_| format!("no TCP answer from {server} within {QUERY_TIMEOUT:?}"))??;
    }
    let mut out = Vec::new();
    for r in &answer.answers {
        if let RData::TXT(txt) = &r.data {
            let mut v = Vec::new();
            for part in txt.txt_data.iter() {
                v.extend_from_slice(part);
            }
            out.push(String::from_utf8_lossy(&v).into_owned());
        }
    }
    Ok(out)
}

async fn udp(server: SocketAddr, q: &[u8], id: u16) -> Result<Message, String> {
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    s.connect(server).await.map_err(|e| e.to_string())?;
    s.send(q).await.map_err(|e| format!("{server}: {e}"))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s
            .recv(&mut buf)
            .await
            .map_err(|e| format!("{server}: {e}"))?;
        match Message::from_vec(&buf[..n]) {
            Ok(m) if m.metadata.id == id => return Ok(m),
            // A stray or late datagram: keep waiting for ours.
            _ => continue,
        }
    }
}

async fn tcp(server: SocketAddr, q: &[u8]) -> Result<Message, String> {
    let mut s = TcpStream::connect(server)
        .await
        .map_err(|e| format!("{server}: {e}"))?;
    let len = u16::try_from(q.len()).map_err(|_| "query too large".to_owned())?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(q);
    s.write_all(&framed).await.map_err(|e| e.to_string())?;
    let n = s.read_u16().await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
    Message::from_vec(&buf).map_err(|e| e.to_string())
}

/// Waits until every server answers every value in `want` for `name`; Err names what was still
/// missing when `timeout` ran out.
pub async fn wait_for_txt(
    servers: &[SocketAddr],
    name: &str,
    want: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let mut missing = None;
        for s in servers {
            match txt_values(*s, name).await {
                Ok(have) if want.iter().all(|w| have.contains(w)) => {}
                Ok(have) => {
                    missing = Some(format!(
                        "{s} answers {} of the {} values",
                        want.iter().filter(|w| have.contains(w)).count(),
                        want.len()
                    ))
                }
                Err(e) => missing = Some(e),
            }
            if missing.is_some() {
                break;
            }
        }
        let Some(why) = missing else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            return Err(why);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
