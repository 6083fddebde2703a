//! hickory-server's general path: a `ZoneHandler` over the current zone snapshot, in a `Catalog`
//! (which sets AA, adds the SOA to NXDOMAIN/NODATA answers, handles EDNS and refuses names of
//! other zones).

use std::sync::{Arc, RwLock};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{LowerName, RecordType};
use hickory_server::server::{Request, RequestInfo};
use hickory_server::zone_handler::{
    AuthLookup, AxfrPolicy, LookupControlFlow, LookupError, LookupOptions, LookupRecords,
    ZoneHandler, ZoneType,
};

use crate::zone::{Answer, Zone};

/// The current zone; swapped whole on every change.
#[derive(Debug)]
pub struct ZoneCell {
    origin: LowerName,
    current: RwLock<Arc<Zone>>,
}

impl ZoneCell {
    /// A cell holding `zone`.
    pub fn new(zone: Zone) -> Self {
        Self {
            origin: zone.origin().clone(),
            current: RwLock::new(Arc::new(zone)),
        }
    }

    /// The current snapshot.
    pub fn get(&self) -> Arc<Zone> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the snapshot (same origin).
    pub fn set(&self, zone: Zone) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(zone);
    }

    /// The zone's origin.
    pub fn origin(&self) -> &LowerName {
        &self.origin
    }
}

/// `ZoneHandler` over a [`ZoneCell`].
#[derive(Debug, Clone)]
pub struct LiveZone(pub Arc<ZoneCell>);

#[async_trait::async_trait]
impl ZoneHandler for LiveZone {
    fn zone_type(&self) -> ZoneType {
        ZoneType::Primary
    }

    fn axfr_policy(&self) -> AxfrPolicy {
        // Transfers are served by the TCP listener itself (to the configured secondaries only).
        AxfrPolicy::Deny
    }

    fn origin(&self) -> &LowerName {
        self.0.origin()
    }

    async fn lookup(
        &self,
        name: &LowerName,
        rtype: RecordType,
        _request_info: Option<&RequestInfo<'_>>,
        opts: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        let zone = self.0.get();
        match zone.lookup(name, rtype) {
            Answer::Records(sets, extra) => {
                let additionals = if extra.is_empty() {
                    None
                } else {
                    Some(LookupRecords::many(opts, extra))
                };
                LookupControlFlow::Continue(Ok(AuthLookup::answers(
                    LookupRecords::many(opts, sets),
                    additionals,
                )))
            }
            Answer::NoData => LookupControlFlow::Continue(Err(LookupError::NameExists)),
            Answer::NxDomain => {
                LookupControlFlow::Continue(Err(LookupError::from(ResponseCode::NXDomain)))
            }
            Answer::OutOfZone => {
                LookupControlFlow::Continue(Err(LookupError::from(ResponseCode::Refused)))
            }
        }
    }

    async fn search(
        &self,
        request: &Request,
        opts: LookupOptions,
    ) -> (
        LookupControlFlow<AuthLookup>,
        Option<hickory_proto::rr::TSigResponseContext>,
    ) {
        let info = match request.request_info() {
            Ok(i) => i,
            Err(e) => return (LookupControlFlow::Continue(Err(e)), None),
        };
        let r = self
            .lookup(
                info.query.name(),
                info.query.query_type(),
                Some(&info),
                opts,
            )
            .await;
        (r, None)
    }

    async fn nsec_records(
        &self,
        _name: &LowerName,
        _opts: LookupOptions,
    ) -> LookupControlFlow<AuthLookup> {
        LookupControlFlow::Continue(Ok(AuthLookup::default()))
    }
}
