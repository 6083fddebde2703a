//! Fuzz target for the WireGuard relay's datagram path: the outer datagram (cookie limiter,
//! handshake opening, index demux, boringtun) and the inner packet parsers of the per-peer
//! virtual network. Seed corpus: `relay/tests/corpus/datagram`, e.g.
//! `cargo +nightly fuzz run relay_datagram relay/tests/corpus/datagram` from the workspace root.
//! The property is "no panic, no hang". The seeds are also replayed as an ordinary test
//! (`relay::fuzzing::tests::corpus_replay`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    relay::fuzzing::datagram(data);
});
