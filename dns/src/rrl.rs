//! Response-rate limiting per client network (/24 for IPv4, /56 for IPv6), as NSD and BIND do:
//! past the limit in one second, answers are dropped, except every `SLIP`-th which goes out
//! truncated so a real client retries over TCP (which is not limited).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Every n-th limited answer is sent truncated instead of dropped.
pub const SLIP: u32 = 2;

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send it.
    Send,
    /// Send an empty truncated answer (TC=1).
    Slip,
    /// Drop it.
    Drop,
}

/// The limiter; `None` limit = off.
#[derive(Debug)]
pub struct Rrl {
    per_second: u32,
    start: Instant,
    table: Mutex<HashMap<[u8; 8], (u64, u32)>>,
}

fn network(ip: IpAddr) -> [u8; 8] {
    let mut k = [0u8; 8];
    match ip {
        IpAddr::V4(v4) => {
            k[0] = 4;
            k[1..4].copy_from_slice(&v4.octets()[..3]);
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return network(IpAddr::V4(v4));
            }
            k[0] = 6;
            k[1..8].copy_from_slice(&v6.octets()[..7]);
        }
    }
    k
}

impl Rrl {
    /// A limiter allowing `per_second` answers per client network and second.
    pub fn new(per_second: u32) -> Self {
        Self {
            per_second,
            start: Instant::now(),
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one answer to `ip`.
    pub fn check(&self, ip: IpAddr) -> Verdict {
        let now = self.start.elapsed().as_secs();
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.len() > 100_000 {
            t.retain(|_, (sec, _)| *sec == now);
        }
        let e = t.entry(network(ip)).or_insert((now, 0));
        if e.0 != now {
            *e = (now, 0);
        }
        e.1 = e.1.saturating_add(1);
        if e.1 <= self.per_second {
            Verdict::Send
        } else if (e.1 - self.per_second).is_multiple_of(SLIP) {
            Verdict::Slip
        } else {
            Verdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_network_and_slips() {
        let r = Rrl::new(3);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap(); // same /24
        let c: IpAddr = "198.51.100.1".parse().unwrap();
        let v: Vec<_> = [a, b, a, b, a, b].iter().map(|ip| r.check(*ip)).collect();
        assert_eq!(&v[..3], &[Verdict::Send; 3]);
        assert!(v[3..].contains(&Verdict::Drop) && v[3..].contains(&Verdict::Slip));
        assert_eq!(r.check(c), Verdict::Send);
    }
}
