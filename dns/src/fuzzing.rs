//! What the cargo-fuzz target `dns_query` (in `fuzz/`) runs, shared with the seed-corpus replay
//! test: one datagram through the whole UDP answer path (fast-path parser, cache, hickory's
//! catalog) and the same bytes through the TCP path. Properties: no panic, and every answer is a
//! well-formed DNS message carrying the query's id.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use crate::metrics::DnsMetrics;
use crate::server::{DnsServer, ServerSettings};
use crate::zone::{Zone, ZoneData, ZoneSettings};

/// The fixed zone the fuzzer queries (`saas.test` with tenants `acme` and `beta`).
pub fn test_zone() -> Zone {
    let settings = ZoneSettings {
        base: "saas.test".into(),
        nameservers: vec![("ns1.saas.test".into(), [192, 0, 2, 53].into())],
        ingress: vec![[192, 0, 2, 10].into()],
        default_relay: Some([198, 51, 100, 7].into()),
        ttl: 300,
    };
    let data = ZoneData {
        tenants: vec![("acme".into(), None), ("beta".into(), None)],
        records: vec![(
            "_acme-challenge.saas.test".into(),
            "TXT".into(),
            "token".into(),
            60,
        )],
        ..Default::default()
    };
    match Zone::build(&settings, &data, 1) {
        Ok(z) => z,
        Err(e) => panic!("fixed test zone: {e}"),
    }
}

fn fixture() -> &'static (tokio::runtime::Runtime, Arc<DnsServer>) {
    static F: OnceLock<(tokio::runtime::Runtime, Arc<DnsServer>)> = OnceLock::new();
    F.get_or_init(|| {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        };
        let server = DnsServer::new(
            test_zone(),
            ServerSettings {
                secondaries: vec![[127, 0, 0, 2].into()],
                rrl_per_second: None,
                notify_port: 53,
            },
            DnsMetrics::default(),
        );
        (rt, server)
    })
}

fn check(q: &[u8], answer: &[u8]) {
    assert!(answer.len() >= 12, "short answer");
    assert_eq!(&answer[..2], &q[..2], "answer id differs from the query's");
    assert!(answer[2] & 0x80 != 0, "answer without QR");
    if let Err(e) = hickory_proto::op::Message::from_vec(answer) {
        panic!("answer does not parse: {e}");
    }
}

/// Runs one input through the UDP and TCP answer paths.
pub fn query(data: &[u8]) {
    let (rt, server) = fixture();
    let src: SocketAddr = ([192, 0, 2, 99], 5353).into();
    rt.block_on(async {
        let (mut key, mut out) = (Vec::new(), Vec::new());
        // Twice: the second run may come from the cache.
        for _ in 0..2 {
            if server.answer_udp(data, src, &mut key, &mut out).await {
                check(data, &out);
                assert!(out.len() <= 1232, "UDP answer larger than our EDNS size");
            }
        }
        let tcp = server
            .general(data.to_vec(), src, hickory_server::net::xfer::Protocol::Tcp)
            .await;
        if let Some(a) = tcp {
            check(data, &a);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus_dir() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/query")
    }

    /// Replays the seed corpus shared with the cargo-fuzz target (`fuzz/`): nothing may panic.
    #[test]
    fn corpus_replay() {
        let mut seen = 0;
        for entry in std::fs::read_dir(corpus_dir()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            query(&bytes);
            for len in [
                0,
                1,
                2,
                11,
                12,
                13,
                17,
                bytes.len() / 2,
                bytes.len().saturating_sub(1),
            ] {
                query(&bytes[..len.min(bytes.len())]);
            }
            // Flipped bits in the header and the question.
            for i in 0..bytes.len().min(40) {
                let mut b = bytes.clone();
                b[i] ^= 0xA5;
                query(&b);
            }
            seen += 1;
        }
        assert!(seen >= 5, "only {seen} seeds");
    }

    fn q(name: &str, qtype: u16, edns: bool, flags: u8) -> Vec<u8> {
        let mut v = vec![0xbe, 0xef, flags, 0x00, 0, 1, 0, 0, 0, 0, 0, u8::from(edns)];
        for l in name.split('.').filter(|l| !l.is_empty()) {
            v.push(l.len() as u8);
            v.extend_from_slice(l.as_bytes());
        }
        v.push(0);
        v.extend_from_slice(&qtype.to_be_bytes());
        v.extend_from_slice(&1u16.to_be_bytes());
        if edns {
            // OPT with a COOKIE option, as dig sends.
            v.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 12, 0, 10, 0, 8]);
            v.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        }
        v
    }

    /// Writes the seed corpus (run by hand: `cargo test -p dns write_seed_corpus -- --ignored`).
    #[test]
    #[ignore]
    fn write_seed_corpus() {
        let dir = corpus_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let seeds: Vec<(&str, Vec<u8>)> = vec![
            ("tenant-a.bin", q("acme.saas.test", 1, false, 1)),
            ("tenant-a-edns.bin", q("ACME.saas.test", 1, true, 1)),
            ("unknown-aaaa.bin", q("nope.saas.test", 28, true, 0)),
            ("txt.bin", q("_acme-challenge.saas.test", 16, false, 0)),
            ("any.bin", q("saas.test", 255, true, 0)),
            ("axfr.bin", q("saas.test", 252, false, 0)),
            ("other-zone.bin", q("example.org", 1, false, 1)),
            ("notify.bin", {
                let mut v = q("saas.test", 6, false, 0);
                v[2] = 0x20;
                v
            }),
            ("compressed.bin", {
                let mut v = q("acme.saas.test", 1, false, 0);
                v.truncate(12);
                v.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
                v
            }),
            ("garbage.bin", b"\xff\x00garbage".to_vec()),
        ];
        for (name, bytes) in seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}
