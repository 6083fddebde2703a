//! Fuzz target for the whole AAA engine entry point: one tenant, one NAS (secret `testing123`),
//! one subscriber, on an embedded SQLite store; every input goes through `Engine::handle`.
//! Seed corpus: `saas-core/tests/corpus/radius`. The same property (no panic; replies validate)
//! runs as an ordinary test: `saas-core/tests/it/aaa.rs::engine_never_panics_on_hostile_input`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use saas_core::aaa::writer::AcctWriter;
use saas_core::aaa::{AaaMetrics, Engine, EngineConfig, Request};
use saas_core::model::*;
use saas_core::{NasId, Slug, TenantId};

struct World {
    rt: tokio::runtime::Runtime,
    engine: Engine,
    tenant: TenantId,
    nas: NasId,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static W: OnceLock<World> = OnceLock::new();
    W.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let (engine, tenant, nas, dir) = rt.block_on(async {
            let ts = saas_core::testing::sqlite().await;
            let t = TenantId::new();
            let scope = ts.store.tenant(t);
            scope.insert_tenant(&Slug::parse("fuzz").expect("slug"), "f", "UTC", TenantLimits::default(), "10.200.0.0/24").await.expect("tenant");
            scope.set_status(TenantStatus::Active).await.expect("active");
            scope
                .create_subscriber(&NewSubscriber { username: "demo".into(), password: "demo".into(), plan_id: None, expires_at: None, static_ip: None, framed_ipv6_prefix: None, delegated_ipv6_prefix: None, mac_lock: None, sim_use: None })
                .await
                .expect("subscriber");
            let nas = scope
                .create_nas(&NewNas { name: "n".into(), vendor: NasVendor::Mikrotik, ip: None, secret: "testing123".into(), message_auth: MessageAuthPolicy::Off, coa_port: 3799, api_user: None, api_password: None, use_ssl: false })
                .await
                .expect("nas");
            let writer = AcctWriter::start(ts.store.clone(), ts.dir.path().join("spool.jsonl"));
            let engine = Engine::new(ts.store.clone(), writer, EngineConfig { tenant_rps: 0, ..Default::default() }, AaaMetrics::default());
            (engine, t, nas.id, ts.dir)
        });
        World { rt, engine, tenant, nas, _dir: dir }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let out = w.rt.block_on(w.engine.handle(Request { tenant: w.tenant, nas: w.nas, source: "127.0.0.1:5000".parse().expect("addr"), datagram: data, now: saas_core::store::now() }));
    if let Some(reply) = out.reply {
        assert!(saas_core::radius::validate(&reply).is_ok());
    }
});
