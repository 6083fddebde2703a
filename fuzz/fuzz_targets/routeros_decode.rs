//! Fuzz target for the RouterOS API sentence decoder (what a router, or anything posing as one
//! inside a tunnel, sends us). Seed corpus: `saas-core/tests/corpus/routeros`, e.g.
//! `cargo +nightly fuzz run routeros_decode saas-core/tests/corpus/routeros` from the workspace
//! root. The property: no panic, no unbounded allocation, and whatever decodes re-encodes to the
//! same sentence (asserted inside `fuzz_decode`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = saas_core::routeros::fuzz_decode(data);
});
