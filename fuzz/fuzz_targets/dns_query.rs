//! Fuzz target for the DNS query path: the fast-path parser and answer cache, hickory's catalog
//! over our zone handler, over UDP and TCP. Seed corpus: `dns/tests/corpus/query`, e.g.
//! `cargo +nightly fuzz run dns_query dns/tests/corpus/query` from the workspace root.
//! The property is "no panic, and every answer parses and carries the query's id". The seeds
//! are also replayed as an ordinary test (`dns::fuzzing::tests::corpus_replay`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    dns::fuzzing::query(data);
});
