//! Relay integration tests over real loopback UDP sockets, with synthetic WireGuard routers:
//! a boringtun `Tunn` as the client plus a small IP stack (smoltcp for TCP, hand-built UDP).

#![allow(clippy::unwrap_used)]

mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use prometheus_client::registry::Registry;
use relay::{RadiusSink, RelayConfig, RelayHandle};
use saas_core::ids::{NasId, PeerId, TenantId};
use saas_core::model::{
    ApiState, MessageAuthPolicy, Nas, NasReach, NasVendor, PeerIdentity, TenantStatus, TunnelState,
};
use saas_core::transport::NasTransport;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

use router::Router;

/// Answers every request with "<tenant>|<nas>|<request>".
struct TenantEcho;

#[async_trait]
impl RadiusSink for TenantEcho {
    async fn handle(
        &self,
        tenant: TenantId,
        nas: NasId,
        _source: SocketAddr,
        datagram: Vec<u8>,
    ) -> Option<Vec<u8>> {
        let mut reply = format!("{tenant}|{nas}|").into_bytes();
        reply.extend_from_slice(&datagram);
        Some(reply)
    }
}

async fn start_relay() -> RelayHandle {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let (secret, _) = relay::keys::generate();
    let mut registry = Registry::default();
    RelayHandle::start(
        RelayConfig::default(),
        secret,
        socket,
        Arc::new(TenantEcho),
        None,
        registry.sub_registry_with_prefix("relay"),
    )
}

fn identity(tenant: TenantId, nas: NasId, tunnel: &str) -> PeerIdentity {
    PeerIdentity {
        peer_id: PeerId::new(),
        tenant_id: tenant,
        tenant_status: TenantStatus::Active,
        suspended_at: None,
        nas_id: nas,
        tunnel_address: tunnel.into(),
    }
}

fn nas(id: NasId, tenant: TenantId) -> Nas {
    Nas {
        id,
        tenant_id: tenant,
        name: "bng1".into(),
        vendor: NasVendor::Mikrotik,
        reach: NasReach::Tunnel,
        ip: None,
        message_auth: MessageAuthPolicy::Auto,
        message_auth_seen: vec![],
        coa_port: 3799,
        api_port: 8728,
        api_ssl_port: 8729,
        use_ssl: false,
        api_user: None,
        tunnel_state: TunnelState::Up,
        last_handshake_at: None,
        radius_last_seen: None,
        api_state: ApiState::Unknown,
        api_last_error: None,
        created_at: Utc::now(),
    }
}

async fn connected_router(relay: &RelayHandle, tenant: TenantId, tunnel: &str) -> (Router, NasId) {
    let nas_id = NasId::new();
    let (secret, public) = relay::keys::generate();
    relay
        .upsert_peer(*public.as_bytes(), &identity(tenant, nas_id, tunnel), None)
        .unwrap();
    let router = Router::start(
        secret,
        relay.public_key(),
        relay.local_addr().unwrap(),
        tunnel,
    )
    .await;
    (router, nas_id)
}

#[tokio::test]
async fn overlapping_tenants_each_get_their_own_answer() {
    let relay = start_relay().await;
    let (t1, t2) = (TenantId::new(), TenantId::new());
    let (r1, n1) = connected_router(&relay, t1, "10.200.0.2/24").await;
    let (r2, n2) = connected_router(&relay, t2, "10.200.0.2/24").await;
    for _ in 0..3 {
        let a = r1.radius(1812, b"req-1").await;
        let b = r2.radius(1813, b"req-2").await;
        assert_eq!(a, format!("{t1}|{n1}|req-1").into_bytes());
        assert_eq!(b, format!("{t2}|{n2}|req-2").into_bytes());
    }
    let status = relay.status();
    assert_eq!(status.len(), 2);
    assert!(status.iter().all(|s| s.connected
        && s.endpoint.is_some()
        && s.last_handshake.is_some()
        && s.handshake_tai64.is_some()
        && s.rx_bytes > 0
        && s.tx_bytes > 0));
    relay.shutdown();
}

#[tokio::test]
async fn tcp_through_the_tunnel_to_the_router_api() {
    let relay = start_relay().await;
    let tenant = TenantId::new();
    let (router, nas_id) = connected_router(&relay, tenant, "10.200.0.2/24").await;
    // The router has handshaked (it sent a RADIUS request); the relay knows its endpoint.
    router.radius(1812, b"hello").await;
    let transport: &dyn NasTransport = &relay;
    let mut stream = transport
        .tcp_connect(tenant, &nas(nas_id, tenant), 8728, Duration::from_secs(5))
        .await
        .unwrap();
    let big: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
    for msg in [&b"/login"[..], &big[..]] {
        stream.write_all(msg).await.unwrap();
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(10), stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back, msg);
    }
    // Another tenant cannot reach this NAS.
    let other = TenantId::new();
    assert!(
        transport
            .tcp_connect(other, &nas(nas_id, other), 8728, Duration::from_secs(1))
            .await
            .is_err()
    );
    drop(stream);
    relay.shutdown();
}

#[tokio::test]
async fn udp_exchange_reaches_the_router() {
    let relay = start_relay().await;
    let tenant = TenantId::new();
    let (router, nas_id) = connected_router(&relay, tenant, "10.200.0.2/24").await;
    router.radius(1812, b"hello").await;
    let transport: &dyn NasTransport = &relay;
    let n = nas(nas_id, tenant);
    let reply = transport
        .udp_exchange(tenant, &n, 3799, b"coa", Duration::from_secs(5), &|_| true)
        .await
        .unwrap();
    assert_eq!(reply, b"ack:coa");
    // Replies the caller does not accept are skipped until the timeout.
    let err = transport
        .udp_exchange(
            tenant,
            &n,
            3799,
            b"coa",
            Duration::from_millis(300),
            &|_| false,
        )
        .await;
    assert!(err.is_err());
    // A NAS without a peer here.
    let lost = nas(NasId::new(), tenant);
    assert!(
        transport
            .udp_exchange(tenant, &lost, 3799, b"x", Duration::from_secs(1), &|_| true)
            .await
            .is_err()
    );
    relay.shutdown();
}
