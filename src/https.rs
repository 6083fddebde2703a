//! Built-in TLS termination: a TLS listener for axum (handshakes run off the accept loop, so a
//! slow client cannot stall others), the peer address for the API's client-IP logic, and the
//! plain-HTTP router that sends everything to HTTPS when both listeners run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::IncomingStream;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Handshakes in progress at once; beyond this, new connections are closed.
const MAX_HANDSHAKES: usize = 512;
/// A client gets this long to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepted, handshaken TLS connections.
pub struct TlsListener {
    rx: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `tcp` and runs TLS handshakes with `config` until `stop`.
    pub fn start(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        mut stop: watch::Receiver<bool>,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, rx) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    r = tcp.accept() => r,
                    _ = stop.wait_for(|s| *s) => return,
                };
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::debug!(error = %e, "HTTPS accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many TLS handshakes in progress; connection closed");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { rx, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop stopped: graceful shutdown ends the server.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// The client address of a TLS connection (axum's `ConnectInfo<SocketAddr>` exists only for
/// plain TCP; [`with_peer_addr`] copies it over for the API).
#[derive(Clone, Copy, Debug)]
pub struct TlsPeer(pub SocketAddr);

impl axum::extract::connect_info::Connected<IncomingStream<'_, TlsListener>> for TlsPeer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        TlsPeer(*stream.remote_addr())
    }
}

/// Makes the TLS peer address visible as `ConnectInfo<SocketAddr>`, as on the plain listener.
pub fn with_peer_addr(router: Router) -> Router {
    router.layer(tower::util::MapRequestLayer::new(|mut req: Request| {
        if let Some(ConnectInfo(TlsPeer(a))) =
            req.extensions().get::<ConnectInfo<TlsPeer>>().copied()
        {
            req.extensions_mut().insert(ConnectInfo(a));
        }
        req
    }))
}

/// The plain-HTTP router when HTTPS runs too: 308 to the same host and path on `https_port`.
pub fn redirect_router(https_port: u16) -> Router {
    Router::new().fallback(move |req: Request| async move { redirect(&req, https_port) })
}

fn redirect(req: &Request, https_port: u16) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    match redirect_target(host, path, https_port).and_then(|t| HeaderValue::from_str(&t).ok()) {
        Some(loc) => (StatusCode::PERMANENT_REDIRECT, [(header::LOCATION, loc)]).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            "this address serves HTTPS only; send a Host header (or use https://)\n",
        )
            .into_response(),
    }
}

/// `https://HOST[:PORT]/path?query` for a Host header value, or None when it is not a host.
pub fn redirect_target(
    host: Option<&str>,
    path_and_query: &str,
    https_port: u16,
) -> Option<String> {
    let authority: axum::http::uri::Authority = host?.trim().parse().ok()?;
    let h = authority.host();
    if h.is_empty() || authority.as_str().contains('@') {
        return None;
    }
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    Some(format!("https://{h}{port}{path}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    #[test]
    fn targets_keep_host_and_path() {
        assert_eq!(
            redirect_target(Some("acme.saas.test:8080"), "/api/v1/me?x=1", 8443).as_deref(),
            Some("https://acme.saas.test:8443/api/v1/me?x=1")
        );
        assert_eq!(
            redirect_target(Some("saas.test"), "/", 443).as_deref(),
            Some("https://saas.test/")
        );
        assert_eq!(
            redirect_target(Some("[::1]:80"), "/a", 443).as_deref(),
            Some("https://[::1]/a")
        );
        assert_eq!(redirect_target(None, "/", 443), None);
        assert_eq!(redirect_target(Some("evil.test/x"), "/", 443), None);
        assert_eq!(redirect_target(Some("user@evil.test"), "/", 443), None);
    }

    #[tokio::test]
    async fn http_redirects_to_https_with_308() {
        let app = redirect_router(8443);
        let req = Request::builder()
            .method("POST")
            .uri("/api/v1/auth/login?next=%2F")
            .header("host", "acme.saas.test:8080")
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://acme.saas.test:8443/api/v1/auth/login?next=%2F"
        );
        let req = Request::builder().uri("/").body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    }
}
