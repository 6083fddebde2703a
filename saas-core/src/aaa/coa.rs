//! CoA / Disconnect client (RFC 5176): asks a NAS to end a session or change its rate limit.
//! Bounded retries with the same identifier and authenticator; the answer's Response
//! Authenticator and any Message-Authenticator are verified; NAK carries its Error-Cause back.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::fill_random;
use crate::ids::TenantId;
use crate::model::{MessageAuthPolicy, Nas, Session};
use crate::radius::{Code, MaStatus, PacketBuilder, RequestMeta, dict, validate, verify_response};
use crate::transport::{NasTransport, TransportError};

/// What the NAS answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CoaResult {
    /// ack, nak, or timeout/error.
    pub outcome: String,
    /// Error-Cause of a NAK (RFC 5176 §3.5), if any.
    pub error_cause: Option<u32>,
    /// Human-readable detail.
    pub detail: String,
}

impl CoaResult {
    /// Whether the NAS acknowledged.
    pub fn acked(&self) -> bool {
        self.outcome == "ack"
    }
}

/// The CoA client.
#[derive(Clone, Debug)]
pub struct CoaClient {
    transport: Arc<dyn NasTransport>,
    /// Tries per request.
    pub tries: u32,
    /// Wait per try.
    pub timeout: Duration,
}

impl CoaClient {
    /// A client over a transport (3 tries of 2 s).
    pub fn new(transport: Arc<dyn NasTransport>) -> Self {
        Self {
            transport,
            tries: 3,
            timeout: Duration::from_secs(2),
        }
    }

    /// Sends Disconnect-Request for `session`.
    pub async fn disconnect(
        &self,
        tenant: TenantId,
        nas: &Nas,
        secret: &str,
        session: &Session,
    ) -> CoaResult {
        self.send(tenant, nas, secret, session, Code::DisconnectRequest, None)
            .await
    }

    /// Sends CoA-Request with a new Mikrotik-Rate-Limit.
    pub async fn change_rate(
        &self,
        tenant: TenantId,
        nas: &Nas,
        secret: &str,
        session: &Session,
        rate_limit: &str,
    ) -> CoaResult {
        self.send(
            tenant,
            nas,
            secret,
            session,
            Code::CoARequest,
            Some(rate_limit),
        )
        .await
    }

    async fn send(
        &self,
        tenant: TenantId,
        nas: &Nas,
        secret: &str,
        session: &Session,
        code: Code,
        rate: Option<&str>,
    ) -> CoaResult {
        let mut id = [0u8; 1];
        fill_random(&mut id);
        let built = (|| {
            let mut b = PacketBuilder::request(code, id[0], [0; 16])?;
            // What MikroTik needs to find the session.
            b.attr_str(dict::USER_NAME, &session.username)?;
            b.attr_str(dict::ACCT_SESSION_ID, &session.acct_session_id)?;
            if let Some(ip) = session
                .framed_ip
                .as_deref()
                .and_then(|s| s.parse::<std::net::Ipv4Addr>().ok())
            {
                b.attr_ipv4(dict::FRAMED_IP_ADDRESS, ip)?;
            }
            if let Some(r) = rate {
                b.vsa_str(dict::VENDOR_MIKROTIK, dict::mikrotik::RATE_LIMIT, r)?;
            }
            Ok::<_, crate::radius::EncodeError>(b.finish(secret.as_bytes()))
        })();
        let packet = match built {
            Ok(p) => p,
            Err(e) => {
                return CoaResult {
                    outcome: "error".into(),
                    error_cause: None,
                    detail: e.to_string(),
                };
            }
        };
        let Some(meta) = RequestMeta::of(&packet) else {
            return CoaResult {
                outcome: "error".into(),
                error_cause: None,
                detail: "could not encode the request".into(),
            };
        };
        let require_ma = nas.message_auth == MessageAuthPolicy::Require;
        let secret_b = secret.as_bytes().to_vec();
        let accept = move |d: &[u8]| match validate(d) {
            Ok(v) => match verify_response(&v, &meta, &secret_b) {
                Ok(MaStatus::Valid) => true,
                Ok(MaStatus::Absent) => !require_ma,
                Err(_) => false,
            },
            Err(_) => false,
        };
        let mut last = String::new();
        for _ in 0..self.tries.max(1) {
            // Retries resend the very same packet (same identifier and authenticator).
            match self
                .transport
                .udp_exchange(tenant, nas, nas.coa_port, &packet, self.timeout, &accept)
                .await
            {
                Ok(reply) => {
                    let Ok(v) = validate(&reply) else { continue };
                    let cause = v
                        .attr(dict::ERROR_CAUSE)
                        .and_then(|b| <[u8; 4]>::try_from(b).ok())
                        .map(u32::from_be_bytes);
                    let acked = matches!(v.code(), Code::DisconnectACK | Code::CoAACK);
                    return CoaResult {
                        outcome: if acked { "ack" } else { "nak" }.into(),
                        error_cause: cause,
                        detail: match (acked, cause) {
                            (true, _) => "the NAS acknowledged".into(),
                            (false, Some(c)) => format!("the NAS refused (Error-Cause {c})"),
                            (false, None) => "the NAS refused".into(),
                        },
                    };
                }
                Err(TransportError::Timeout(_)) => {
                    last = format!("no answer from {} on port {}", nas.name, nas.coa_port)
                }
                Err(e) => {
                    return CoaResult {
                        outcome: "error".into(),
                        error_cause: None,
                        detail: e.to_string(),
                    };
                }
            }
        }
        CoaResult {
            outcome: "timeout".into(),
            error_cause: None,
            detail: format!("{last} after {} tries", self.tries.max(1)),
        }
    }
}
