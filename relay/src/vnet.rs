//! Per-peer virtual network: what a decrypted inner packet is for, and the IPv4/UDP/ICMP
//! packets the relay sends back. Built and parsed with `smoltcp::wire` (correct checksums).
//!
//! Each peer is its own network: the peer's tunnel address and the relay's `.1` in the peer's
//! subnet. Tenants may overlap addresses; the peer, never the address, names the tenant.

use std::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    Icmpv4Packet, Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr,
};

/// Why a packet was dropped (the `reason` label of `relay_packets_dropped_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Not a WireGuard message, or bad mac1.
    Invalid,
    /// Transport data or response for an index no live peer holds.
    UnknownIndex,
    /// boringtun refused it (bad tag, replayed counter, no session…).
    Decrypt,
    /// Inner source is not the peer's tunnel address (anti-spoofing).
    Spoofed,
    /// Inner packet is not well-formed IPv4 (or is IPv6).
    Malformed,
    /// Inner destination is not the relay's tunnel address.
    NotForRelay,
    /// UDP to a port nothing listens on.
    PortClosed,
    /// TCP that no platform-opened connection expects.
    TcpUnsolicited,
    /// ICMP other than echo request.
    Icmp,
    /// Other IP protocol.
    Protocol,
    /// Global budget of queued packets (peers without a session) is spent.
    QueueFull,
    /// Packet for a peer with no endpoint (it never connected).
    NoEndpoint,
    /// The peer's tenant is past its drain window.
    TenantDrained,
    /// Too many RADIUS requests in flight.
    Busy,
}

impl DropReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Invalid => "invalid",
            DropReason::UnknownIndex => "unknown_index",
            DropReason::Decrypt => "decrypt",
            DropReason::Spoofed => "spoofed",
            DropReason::Malformed => "malformed",
            DropReason::NotForRelay => "not_for_relay",
            DropReason::PortClosed => "port_closed",
            DropReason::TcpUnsolicited => "tcp_unsolicited",
            DropReason::Icmp => "icmp",
            DropReason::Protocol => "protocol",
            DropReason::QueueFull => "queue_full",
            DropReason::NoEndpoint => "no_endpoint",
            DropReason::TenantDrained => "tenant_drained",
            DropReason::Busy => "busy",
        }
    }
}

/// A peer's addresses inside its tunnel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelNet {
    /// The peer's tunnel address.
    pub peer: Ipv4Addr,
    /// The relay's address in the same subnet (`.1`).
    pub relay: Ipv4Addr,
    /// Prefix length.
    pub prefix: u8,
}

impl TunnelNet {
    /// From a CIDR like `10.200.0.2/24`: the relay is the first host of the subnet. `None` for
    /// anything else (IPv6, no room for two hosts, the peer being the relay's address).
    pub fn parse(cidr: &str) -> Option<Self> {
        let (ip, prefix) = cidr.trim().split_once('/')?;
        let peer: Ipv4Addr = ip.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        if prefix > 30 {
            return None;
        }
        let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
        let relay = Ipv4Addr::from((u32::from(peer) & mask) | 1);
        if relay == peer || u32::from(peer) & !mask == !mask {
            return None;
        }
        Some(Self {
            peer,
            relay,
            prefix,
        })
    }
}

/// What an inner packet from a peer is.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound<'a> {
    /// UDP to the relay address.
    Udp {
        /// Source port (on the peer).
        src_port: u16,
        /// Destination port (on the relay).
        dst_port: u16,
        /// Payload.
        payload: &'a [u8],
    },
    /// An ICMP echo reply to send back.
    EchoReply(Vec<u8>),
    /// TCP to the relay address, for smoltcp (the whole IP packet).
    Tcp {
        /// Destination (relay-side) port.
        dst_port: u16,
    },
    /// Dropped.
    Drop(DropReason),
}

/// Classifies a decrypted packet from the peer owning `net`.
pub fn classify<'a>(packet: &'a [u8], net: &TunnelNet) -> Inbound<'a> {
    let caps = ChecksumCapabilities::default();
    let Ok(ip) = Ipv4Packet::new_checked(packet) else {
        return Inbound::Drop(DropReason::Malformed);
    };
    let Ok(repr) = Ipv4Repr::parse(&ip, &caps) else {
        return Inbound::Drop(DropReason::Malformed);
    };
    if repr.src_addr != net.peer {
        return Inbound::Drop(DropReason::Spoofed);
    }
    if repr.dst_addr != net.relay {
        return Inbound::Drop(DropReason::NotForRelay);
    }
    let payload = ip.payload();
    let (src, dst) = (
        IpAddress::Ipv4(repr.src_addr),
        IpAddress::Ipv4(repr.dst_addr),
    );
    match repr.next_header {
        IpProtocol::Udp => {
            let Ok(udp) = UdpPacket::new_checked(payload) else {
                return Inbound::Drop(DropReason::Malformed);
            };
            let Ok(u) = UdpRepr::parse(&udp, &src, &dst, &caps) else {
                return Inbound::Drop(DropReason::Malformed);
            };
            Inbound::Udp {
                src_port: u.src_port,
                dst_port: u.dst_port,
                payload: udp.payload(),
            }
        }
        IpProtocol::Icmp => {
            let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
                return Inbound::Drop(DropReason::Malformed);
            };
            match Icmpv4Repr::parse(&icmp, &caps) {
                Ok(Icmpv4Repr::EchoRequest {
                    ident,
                    seq_no,
                    data,
                }) => {
                    let reply = Icmpv4Repr::EchoReply {
                        ident,
                        seq_no,
                        data,
                    };
                    let ip = Ipv4Repr {
                        src_addr: net.relay,
                        dst_addr: net.peer,
                        next_header: IpProtocol::Icmp,
                        payload_len: reply.buffer_len(),
                        hop_limit: 64,
                    };
                    let mut out = vec![0u8; ip.buffer_len() + reply.buffer_len()];
                    let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
                    ip.emit(&mut p, &caps);
                    reply.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
                    Inbound::EchoReply(out)
                }
                Ok(_) => Inbound::Drop(DropReason::Icmp),
                Err(_) => Inbound::Drop(DropReason::Malformed),
            }
        }
        IpProtocol::Tcp => {
            if payload.len() < 20 {
                return Inbound::Drop(DropReason::Malformed);
            }
            Inbound::Tcp {
                dst_port: u16::from_be_bytes([payload[2], payload[3]]),
            }
        }
        _ => Inbound::Drop(DropReason::Protocol),
    }
}

/// An IPv4+UDP packet with correct checksums.
pub fn udp_packet(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    let caps = ChecksumCapabilities::default();
    let udp = UdpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Udp,
        payload_len: udp.header_len() + payload.len(),
        hop_limit: 64,
    };
    let mut out = vec![0u8; ip.buffer_len() + ip.payload_len];
    let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
    ip.emit(&mut p, &caps);
    udp.emit(
        &mut UdpPacket::new_unchecked(p.payload_mut()),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        payload.len(),
        |b| b.copy_from_slice(payload),
        &caps,
    );
    out
}

/// Parses an IPv4+UDP packet (checksums verified): (source, destination, payload).
pub fn parse_udp(packet: &[u8]) -> Option<(SocketAddrV4, SocketAddrV4, &[u8])> {
    let caps = ChecksumCapabilities::default();
    let ip = Ipv4Packet::new_checked(packet).ok()?;
    let repr = Ipv4Repr::parse(&ip, &caps).ok()?;
    if repr.next_header != IpProtocol::Udp {
        return None;
    }
    let payload = ip.payload();
    let udp = UdpPacket::new_checked(payload).ok()?;
    let (src, dst) = (
        IpAddress::Ipv4(repr.src_addr),
        IpAddress::Ipv4(repr.dst_addr),
    );
    let u = UdpRepr::parse(&udp, &src, &dst, &caps).ok()?;
    Some((
        SocketAddrV4::new(repr.src_addr, u.src_port),
        SocketAddrV4::new(repr.dst_addr, u.dst_port),
        udp.payload(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net() -> TunnelNet {
        TunnelNet::parse("10.200.0.2/24").unwrap()
    }

    #[test]
    fn relay_address_is_first_host() {
        let n = net();
        assert_eq!(n.relay, Ipv4Addr::new(10, 200, 0, 1));
        assert_eq!(n.peer, Ipv4Addr::new(10, 200, 0, 2));
        assert_eq!(
            TunnelNet::parse("172.16.5.9/16").unwrap().relay,
            Ipv4Addr::new(172, 16, 0, 1)
        );
        assert!(TunnelNet::parse("10.200.0.1/24").is_none());
        assert!(TunnelNet::parse("10.200.0.255/24").is_none());
        assert!(TunnelNet::parse("10.200.0.2/31").is_none());
        assert!(TunnelNet::parse("fd00::2/64").is_none());
        assert!(TunnelNet::parse("garbage").is_none());
    }

    #[test]
    fn udp_round_trip_and_spoofing() {
        let n = net();
        let pkt = udp_packet(
            SocketAddrV4::new(n.peer, 40000),
            SocketAddrV4::new(n.relay, 1812),
            b"hello",
        );
        assert_eq!(
            classify(&pkt, &n),
            Inbound::Udp {
                src_port: 40000,
                dst_port: 1812,
                payload: b"hello"
            }
        );
        let (s, d, p) = parse_udp(&pkt).unwrap();
        assert_eq!((s.port(), d.port(), p), (40000, 1812, &b"hello"[..]));
        // Another address of the same subnet: spoofed.
        let spoofed = udp_packet(
            SocketAddrV4::new(Ipv4Addr::new(10, 200, 0, 3), 40000),
            SocketAddrV4::new(n.relay, 1812),
            b"x",
        );
        assert_eq!(classify(&spoofed, &n), Inbound::Drop(DropReason::Spoofed));
        let elsewhere = udp_packet(
            SocketAddrV4::new(n.peer, 40000),
            SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 53),
            b"x",
        );
        assert_eq!(
            classify(&elsewhere, &n),
            Inbound::Drop(DropReason::NotForRelay)
        );
        // Corrupted checksum.
        let mut bad = pkt.clone();
        bad[pkt.len() - 1] ^= 0xff;
        assert_eq!(classify(&bad, &n), Inbound::Drop(DropReason::Malformed));
        for len in 0..pkt.len() {
            let _ = classify(&pkt[..len], &n);
        }
    }

    #[test]
    fn echo_request_is_answered() {
        let n = net();
        let caps = ChecksumCapabilities::default();
        let req = Icmpv4Repr::EchoRequest {
            ident: 7,
            seq_no: 3,
            data: b"ping",
        };
        let ip = Ipv4Repr {
            src_addr: n.peer,
            dst_addr: n.relay,
            next_header: IpProtocol::Icmp,
            payload_len: req.buffer_len(),
            hop_limit: 64,
        };
        let mut buf = vec![0u8; 20 + req.buffer_len()];
        let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
        ip.emit(&mut p, &caps);
        req.emit(&mut Icmpv4Packet::new_unchecked(p.payload_mut()), &caps);
        let Inbound::EchoReply(reply) = classify(&buf, &n) else {
            panic!()
        };
        let rp = Ipv4Packet::new_checked(&reply[..]).unwrap();
        let rr = Ipv4Repr::parse(&rp, &caps).unwrap();
        assert_eq!((rr.src_addr, rr.dst_addr), (n.relay, n.peer));
        let icmp = Icmpv4Packet::new_checked(rp.payload()).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&icmp, &caps).unwrap(),
            Icmpv4Repr::EchoReply {
                ident: 7,
                seq_no: 3,
                data: b"ping"
            }
        );
    }
}
