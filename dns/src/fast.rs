//! The fast answer path: a strict parser for the common query shape (one question, class IN,
//! optional EDNS(0) OPT) and a cache of pre-encoded answers keyed by the lower-cased question
//! and whether the query had EDNS. A hit costs a hash look-up and a copy; everything else goes
//! through hickory's general path, whose answers fill the cache.

use std::collections::HashMap;
use std::sync::RwLock;

/// Largest answer kept (fits any client's buffer, so it never depends on the advertised size).
pub const MAX_CACHED: usize = 512;
/// Entries kept per zone snapshot before the cache starts over (bounds memory under floods of
/// random names).
pub const MAX_ENTRIES: usize = 200_000;

/// A query the fast path understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FastQuery {
    /// End of the question section (12 + name + 4).
    pub question_end: usize,
    /// The query type.
    pub qtype: u16,
    /// Whether an EDNS(0) OPT record came along.
    pub edns: bool,
    /// The requester's UDP payload size (512 without EDNS).
    pub payload: u16,
}

/// Parses the common query shape; `None` sends the packet to the general path (which answers
/// FORMERR, NOTIMP and the rest properly).
pub fn parse(q: &[u8]) -> Option<FastQuery> {
    if q.len() < 17 {
        return None;
    }
    // QR=0, OPCODE=QUERY, TC=0; RD may be anything. RCODE 0 and Z ignored.
    if q[2] & 0xFA != 0 {
        return None;
    }
    let count = |i: usize| u16::from_be_bytes([q[i], q[i + 1]]);
    if count(4) != 1 || count(6) != 0 || count(8) != 0 || count(10) > 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = *q.get(i)? as usize;
        if len == 0 {
            i += 1;
            break;
        }
        if len > 63 {
            return None; // compression pointers or extended labels: general path
        }
        i += 1 + len;
        if i - 12 > 255 {
            return None;
        }
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let qclass = u16::from_be_bytes([*q.get(i + 2)?, *q.get(i + 3)?]);
    // IN only; AXFR/IXFR/meta types other than ANY go the long way.
    if qclass != 1 || matches!(qtype, 0 | 251 | 252 | 253 | 254) {
        return None;
    }
    let question_end = i + 4;
    if count(10) == 0 {
        return (question_end == q.len()).then_some(FastQuery {
            question_end,
            qtype,
            edns: false,
            payload: 512,
        });
    }
    // OPT: root owner, type 41, class = payload, ttl = ext-rcode, version, flags; rdlen.
    let o = question_end;
    if q.len() < o + 11 || q[o] != 0 || u16::from_be_bytes([q[o + 1], q[o + 2]]) != 41 {
        return None;
    }
    let payload = u16::from_be_bytes([q[o + 3], q[o + 4]]).max(512);
    if q[o + 6] != 0 {
        return None; // EDNS version other than 0: BADVERS from the general path
    }
    let rdlen = u16::from_be_bytes([q[o + 9], q[o + 10]]) as usize;
    (o + 11 + rdlen == q.len()).then_some(FastQuery {
        question_end,
        qtype,
        edns: true,
        payload,
    })
}

/// Cache key of a parsed query: the lower-cased question plus the EDNS flag.
pub fn key(q: &[u8], fq: &FastQuery, out: &mut Vec<u8>) {
    out.clear();
    out.extend(q[12..fq.question_end].iter().map(u8::to_ascii_lowercase));
    out.push(u8::from(fq.edns));
}

/// Writes a cached answer for query `q` into `out`: the query's id, RD and CD bits, and its
/// question (original letter case, which 0x20-randomising resolvers check).
pub fn patch(cached: &[u8], q: &[u8], fq: &FastQuery, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(cached);
    out[0] = q[0];
    out[1] = q[1];
    out[2] = (out[2] & !0x01) | (q[2] & 0x01);
    out[3] = (out[3] & !0x10) | (q[3] & 0x10);
    out[12..fq.question_end].copy_from_slice(&q[12..fq.question_end]);
}

/// Whether an encoded answer may be cached: complete (no TC), small, and of a stable rcode.
pub fn cacheable(resp: &[u8], fq: &FastQuery) -> bool {
    resp.len() >= fq.question_end
        && resp.len() <= MAX_CACHED
        && resp[2] & 0x02 == 0
        && matches!(resp[3] & 0x0F, 0 | 3 | 5)
}

/// Cache key (lower-cased question + EDNS flag) → encoded answer.
type Answers = HashMap<Box<[u8]>, Box<[u8]>>;

/// Pre-encoded answers of one zone snapshot.
#[derive(Debug, Default)]
pub struct AnswerCache {
    map: RwLock<Answers>,
}

impl AnswerCache {
    /// Copies the answer for `key` into a patched reply, if cached.
    pub fn answer(&self, key: &[u8], q: &[u8], fq: &FastQuery, out: &mut Vec<u8>) -> bool {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some(c) => {
                patch(c, q, fq, out);
                true
            }
            None => false,
        }
    }

    /// Keeps an answer.
    pub fn insert(&self, key: &[u8], resp: &[u8]) {
        let mut map = self.map.write().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES {
            map.clear();
        }
        map.insert(key.into(), resp.into());
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: bool) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            q.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0]);
        }
        q
    }

    #[test]
    fn parses_plain_and_edns_queries() {
        let q = query("Acme.saas.test", 1, false);
        let fq = parse(&q).unwrap();
        assert_eq!((fq.qtype, fq.edns, fq.payload), (1, false, 512));
        let q = query("acme.saas.test", 16, true);
        let fq = parse(&q).unwrap();
        assert_eq!((fq.qtype, fq.edns, fq.payload), (16, true, 1232));
    }

    #[test]
    fn leaves_odd_shapes_to_the_general_path() {
        let mut q = query("a.test", 1, false);
        q[2] |= 0x80; // a response
        assert!(parse(&q).is_none());
        assert!(parse(&query("a.test", 252, false)).is_none()); // AXFR
        let mut q = query("a.test", 1, false);
        q.push(0); // trailing garbage
        assert!(parse(&q).is_none());
        let mut q = query("a.test", 1, true);
        let v = q.len() - 5;
        q[v] = 1; // EDNS version 1
        assert!(parse(&q).is_none());
        assert!(parse(&[0u8; 5]).is_none());
    }

    #[test]
    fn keys_ignore_case_and_patch_restores_it() {
        let (a, b) = (
            query("ACME.saas.test", 1, false),
            query("acme.SAAS.test", 1, false),
        );
        let (fa, fb) = (parse(&a).unwrap(), parse(&b).unwrap());
        let (mut ka, mut kb) = (Vec::new(), Vec::new());
        key(&a, &fa, &mut ka);
        key(&b, &fb, &mut kb);
        assert_eq!(ka, kb);
        let mut resp = b.clone();
        resp[2] = 0x84; // QR AA, RD clear
        let mut out = Vec::new();
        patch(&resp, &a, &fa, &mut out);
        assert_eq!(&out[12..fa.question_end], &a[12..fa.question_end]);
        assert_eq!(out[2], 0x85);
    }
}
