//! `NasTransport`: how the platform reaches a NAS. Direct NAS are plain sockets (here); the relay
//! implements the same trait through a tenant's WireGuard tunnel.

use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;

use crate::ids::TenantId;
use crate::model::Nas;

/// Failures reaching a NAS.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No answer in time.
    #[error("no answer from the NAS within {0:?}")]
    Timeout(Duration),
    /// This transport cannot reach that NAS (e.g. a tunnel NAS without the relay role here).
    #[error("{0}")]
    Unreachable(String),
    /// Socket error.
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
}

/// A byte stream to a NAS: a socket for a direct NAS, a connection through the peer's virtual
/// network for a tunnel NAS.
pub trait AsyncReadWrite: tokio::io::AsyncRead + tokio::io::AsyncWrite {}

impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + ?Sized> AsyncReadWrite for T {}

/// What [`NasTransport::tcp_connect`] returns.
pub type NasStream = Box<dyn AsyncReadWrite + Send + Unpin>;

/// Reaches a NAS for CoA/Disconnect (UDP) and the RouterOS API (TCP).
#[async_trait]
pub trait NasTransport: Send + Sync + std::fmt::Debug {
    /// Sends `request` to the NAS's UDP `port` and returns the first datagram `accept` takes
    /// (replies that do not match, e.g. stray or forged ones, are skipped), or times out.
    async fn udp_exchange(
        &self,
        tenant: TenantId,
        nas: &Nas,
        port: u16,
        request: &[u8],
        timeout: Duration,
        accept: &(dyn for<'b> Fn(&'b [u8]) -> bool + Send + Sync),
    ) -> Result<Vec<u8>, TransportError>;

    /// Opens a TCP stream to the NAS's `port` (the RouterOS API), or times out.
    ///
    /// The default answers [`TransportError::Unreachable`]: a transport without streams.
    async fn tcp_connect(
        &self,
        tenant: TenantId,
        nas: &Nas,
        port: u16,
        timeout: Duration,
    ) -> Result<NasStream, TransportError> {
        let _ = (tenant, port, timeout);
        Err(TransportError::Unreachable(format!(
            "this transport cannot open a TCP stream to NAS {}",
            nas.name
        )))
    }
}

/// Plain sockets to a direct NAS's source address.
#[derive(Debug, Default, Clone)]
pub struct DirectTransport;

#[async_trait]
impl NasTransport for DirectTransport {
    async fn udp_exchange(
        &self,
        _tenant: TenantId,
        nas: &Nas,
        port: u16,
        request: &[u8],
        timeout: Duration,
        accept: &(dyn for<'b> Fn(&'b [u8]) -> bool + Send + Sync),
    ) -> Result<Vec<u8>, TransportError> {
        let Some(ip) = nas.ip else {
            return Err(TransportError::Unreachable(format!(
                "NAS {} is reached through the WireGuard relay, which is not running in this process",
                nas.name
            )));
        };
        let target = SocketAddr::new(ip, port);
        let bind: SocketAddr = if ip.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }
            .parse()
            .map_err(|_| TransportError::Unreachable("bad bind address".into()))?;
        let sock = tokio::net::UdpSocket::bind(bind).await?;
        sock.send_to(request, target).await?;
        let mut buf = vec![0u8; 4096];
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let r = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
                .await
                .map_err(|_| TransportError::Timeout(timeout))?;
            let (n, from) = r?;
            // Only the NAS itself may answer, and only with something that matches the request.
            if from.ip() == ip && accept(&buf[..n]) {
                return Ok(buf[..n].to_vec());
            }
        }
    }

    async fn tcp_connect(
        &self,
        _tenant: TenantId,
        nas: &Nas,
        port: u16,
        timeout: Duration,
    ) -> Result<NasStream, TransportError> {
        let Some(ip) = nas.ip else {
            return Err(TransportError::Unreachable(format!(
                "NAS {} is reached through the WireGuard relay, which is not running in this process",
                nas.name
            )));
        };
        let stream = tokio::time::timeout(timeout, tokio::net::TcpStream::connect((ip, port)))
            .await
            .map_err(|_| TransportError::Timeout(timeout))??;
        // RouterOS API exchanges are small request/response sentences.
        stream.set_nodelay(true)?;
        Ok(Box::new(stream))
    }
}
