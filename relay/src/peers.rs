//! The peer table: every configured peer as a compact entry (no `Tunn`), found by public key;
//! peers with a live tunnel also by their 24-bit index (`receiver_idx >> 8`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use boringtun::noise::Tunn;
use chrono::{DateTime, Utc};
use saas_core::ids::{NasId, PeerId, TenantId};
use saas_core::model::TenantStatus;
use tokio::sync::mpsc;

use crate::handshake::Tai64N;
use crate::tcp::TcpStack;
use crate::vnet::TunnelNet;

/// Peer indices are 24 bits: boringtun keeps `index << 8` and counts sessions in the low byte.
pub const INDEX_MASK: u32 = 0x00FF_FFFF;

/// One configured peer. Lock order: a peer's lock may be held while taking the table lock,
/// never the other way round.
pub struct Peer {
    /// Public key.
    pub key: [u8; 32],
    state: Mutex<PeerState>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("key", &crate::keys::encode(&self.key))
            .finish()
    }
}

impl Peer {
    pub(crate) fn new(key: [u8; 32], state: PeerState) -> Self {
        Self {
            key,
            state: Mutex::new(state),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, PeerState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The compact part of a peer (always present).
pub(crate) struct PeerState {
    pub id: PeerId,
    pub tenant: TenantId,
    pub nas: NasId,
    pub net: TunnelNet,
    /// Newest accepted initiation timestamp (replay protection without a `Tunn`).
    pub last_tai64: Option<Tai64N>,
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    /// Bytes of tunnels already dropped.
    pub rx: u64,
    pub tx: u64,
    pub removed: bool,
    pub live: Option<Box<Live>>,
    /// `udp_exchange` waiters by local (relay-side) port.
    pub udp_waiters: HashMap<u16, mpsc::Sender<Vec<u8>>>,
}

/// The part of a peer that exists while it has a tunnel.
pub(crate) struct Live {
    pub tunn: Tunn,
    pub index: u32,
    /// Packets waiting for a session (charged to the global queue budget).
    pub queue: VecDeque<Vec<u8>>,
    pub queued_bytes: usize,
    pub tcp: Option<Box<TcpStack>>,
    /// TCP ports whose stream is gone (reaped once closed).
    pub orphaned: HashSet<u16>,
}

/// A tenant as the relay needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TenantState {
    /// Status.
    pub status: TenantStatus,
    /// When it was suspended.
    pub suspended_at: Option<DateTime<Utc>>,
}

impl TenantState {
    /// Whether its peers are refused at `now`: deleted, provisioning, or suspended for longer
    /// than `drain` (a suspension without a time counts as drained).
    pub fn drained(&self, now: DateTime<Utc>, drain: std::time::Duration) -> bool {
        match self.status {
            TenantStatus::Active => false,
            TenantStatus::Deleted | TenantStatus::Provisioning => true,
            TenantStatus::Suspended => match self.suspended_at {
                None => true,
                Some(at) => chrono::Duration::from_std(drain)
                    .ok()
                    .and_then(|d| at.checked_add_signed(d))
                    .is_none_or(|end| now >= end),
            },
        }
    }
}

/// Maps of the table.
#[derive(Default)]
pub(crate) struct Table {
    pub by_key: HashMap<[u8; 32], Arc<Peer>>,
    pub by_index: HashMap<u32, Arc<Peer>>,
    pub by_nas: HashMap<NasId, [u8; 32]>,
    pub tenants: HashMap<TenantId, TenantState>,
    /// Unknown keys recently looked up (no directory query until the entry is old).
    pub negative: HashMap<[u8; 32], Instant>,
    /// Keys whose lookup is running.
    pub pending: HashSet<[u8; 32]>,
    pub next_index: u32,
}

impl Table {
    /// A free 24-bit index (never 0), registered for `peer`.
    pub fn allocate_index(&mut self, peer: &Arc<Peer>) -> Option<u32> {
        for _ in 0..=INDEX_MASK {
            let idx = self.next_index & INDEX_MASK;
            self.next_index = self.next_index.wrapping_add(1);
            if idx != 0 && !self.by_index.contains_key(&idx) {
                self.by_index.insert(idx, peer.clone());
                return Some(idx);
            }
        }
        None
    }

    /// Frees `idx` if `peer` holds it.
    pub fn free_index(&mut self, idx: u32, peer: &Peer) {
        if self
            .by_index
            .get(&idx)
            .is_some_and(|p| std::ptr::eq(Arc::as_ptr(p), peer))
        {
            self.by_index.remove(&idx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(k: u8) -> Arc<Peer> {
        Arc::new(Peer::new(
            [k; 32],
            PeerState {
                id: PeerId::new(),
                tenant: TenantId::new(),
                nas: NasId::new(),
                net: TunnelNet::parse("10.0.0.2/24").unwrap(),
                last_tai64: None,
                endpoint: None,
                last_handshake: None,
                rx: 0,
                tx: 0,
                removed: false,
                live: None,
                udp_waiters: HashMap::new(),
            },
        ))
    }

    #[test]
    fn indices_are_unique_24_bit_and_skip_zero() {
        let mut t = Table {
            next_index: INDEX_MASK - 2,
            ..Default::default()
        };
        let a = peer(1);
        let b = peer(2);
        let mut seen = HashSet::new();
        for i in 0..10 {
            let p = if i % 2 == 0 { &a } else { &b };
            let idx = t.allocate_index(p).unwrap();
            assert!(idx != 0 && idx <= INDEX_MASK);
            assert!(seen.insert(idx), "{idx} twice");
        }
        // Freed indices are reused only once free, and only the holder frees.
        let idx = *seen.iter().next().unwrap();
        let holder = t.by_index[&idx].clone();
        let other = if Arc::ptr_eq(&holder, &a) { &b } else { &a };
        t.free_index(idx, other);
        assert!(t.by_index.contains_key(&idx));
        t.free_index(idx, &holder);
        assert!(!t.by_index.contains_key(&idx));
    }

    #[test]
    fn compact_entry_is_small() {
        // A never-connected peer: the Arc'd entry plus its map slots, far below the 2 KiB target.
        let entry = std::mem::size_of::<Peer>();
        assert!(entry < 512, "{entry} bytes");
    }

    #[test]
    fn drain_rules() {
        let now = Utc::now();
        let w = std::time::Duration::from_secs(600);
        let t = |status, at| TenantState {
            status,
            suspended_at: at,
        };
        assert!(!t(TenantStatus::Active, None).drained(now, w));
        assert!(t(TenantStatus::Deleted, None).drained(now, w));
        assert!(t(TenantStatus::Suspended, None).drained(now, w));
        let recent = now - chrono::Duration::seconds(60);
        let old = now - chrono::Duration::seconds(601);
        assert!(!t(TenantStatus::Suspended, Some(recent)).drained(now, w));
        assert!(t(TenantStatus::Suspended, Some(old)).drained(now, w));
    }
}
