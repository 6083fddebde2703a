//! Fuzz target for the RADIUS pre-decoder and everything that parses attacker-controlled
//! bytes after it. Seed corpus: `saas-core/tests/corpus/radius`, e.g.
//! `cargo +nightly fuzz run radius_decode saas-core/tests/corpus/radius` from the workspace root.
//! The property is "no panic, no hang"; verdicts are not checked.

#![no_main]

use libfuzzer_sys::fuzz_target;
use saas_core::radius::{Code, PacketBuilder, RequestMeta, auth, chap, dict, wire};

const SECRET: &[u8] = b"testing123";

fuzz_target!(|data: &[u8]| {
    // Raw-slice parsers must cope with any input, not only validated attribute values.
    let _ = dict::parse_vsa(data);
    let _ = chap::parse_mschap2_response(data);
    let _ = chap::decrypt_mppe_key(data, SECRET, &[0; 16]);
    let _ = RequestMeta::of(data);

    let Ok(packet) = wire::validate(data) else {
        return;
    };
    let _ = auth::verify_request(&packet, SECRET);
    let meta = RequestMeta {
        code: Code::AccessRequest,
        identifier: packet.identifier(),
        authenticator: [0; 16],
    };
    let _ = auth::verify_response(&packet, &meta, SECRET);
    let _ = chap::chap_challenge(&packet);
    for (typ, value) in packet.attributes() {
        match typ {
            dict::USER_PASSWORD => {
                let _ = chap::decrypt_user_password(value, SECRET, &packet.authenticator());
            }
            dict::CHAP_PASSWORD => {
                let _ = chap::verify_chap(value, chap::chap_challenge(&packet), b"demo");
            }
            _ => {}
        }
    }
    for (_, _, value) in packet.vendor_attributes() {
        let _ = chap::parse_mschap2_response(value);
    }
    // Answering whatever validated must always produce a packet that validates again.
    for code in [
        Code::AccessAccept,
        Code::AccountingResponse,
        Code::CoANAK,
        Code::DisconnectACK,
    ] {
        if let Ok(reply) = PacketBuilder::reply(&packet, code) {
            let out = reply.finish(SECRET);
            assert!(wire::validate(&out).is_ok());
        }
    }
});
