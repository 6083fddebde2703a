//! Typed identifiers and validated newtypes shared by every crate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new random (time-ordered) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    )*};
}

uuid_id!(
    /// Identifies a tenant (one ISP).
    TenantId,
    /// Identifies a SaaS operator.
    OperatorId,
    /// Identifies a user of one tenant's panel.
    UserId,
    /// Identifies a service plan.
    PlanId,
    /// Identifies a subscriber.
    SubscriberId,
    /// Identifies a NAS (BNG router).
    NasId,
    /// Identifies a WireGuard peer.
    PeerId,
    /// Identifies a RADIUS accounting session row.
    SessionId,
    /// Identifies a refresh-token family.
    FamilyId,
    /// Identifies a DNS record managed in the store.
    DnsRecordId,
);

/// Words that can never be a tenant slug: they name platform hosts.
pub const RESERVED_SLUGS: &[&str] = &[
    "admin", "api", "www", "mail", "signup", "billing", "operator", "relay", "ns1", "ns2", "static",
];

/// Why a string is not a valid slug.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    /// Shorter than 3 characters.
    #[error("slug must be at least 3 characters long")]
    TooShort,
    /// Longer than 32 characters.
    #[error("slug must be at most 32 characters long")]
    TooLong,
    /// A character outside a-z, 0-9 and '-'.
    #[error("slug may contain only lowercase letters a-z, digits and '-' (found {0:?})")]
    BadChar(char),
    /// Starts or ends with '-'.
    #[error("slug must start and end with a letter or digit")]
    EdgeHyphen,
    /// One of the reserved platform names.
    #[error("slug {0:?} is reserved for the platform")]
    Reserved(String),
}

/// A tenant's subdomain label: `^[a-z0-9][a-z0-9-]{1,30}[a-z0-9]$`, not reserved.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    /// Validates `s` as a slug; the error says which rule it broke.
    pub fn parse(s: &str) -> Result<Self, SlugError> {
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(SlugError::BadChar(c));
        }
        if s.len() < 3 {
            return Err(SlugError::TooShort);
        }
        if s.len() > 32 {
            return Err(SlugError::TooLong);
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(SlugError::EdgeHyphen);
        }
        if RESERVED_SLUGS.contains(&s) {
            return Err(SlugError::Reserved(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    /// The slug text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Slug {
    type Error = SlugError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Slug::parse(&s)
    }
}

impl From<Slug> for String {
    fn from(s: Slug) -> String {
        s.0
    }
}

impl FromStr for Slug {
    type Err = SlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Slug::parse(s)
    }
}

/// A lower-cased e-mail address with a minimal shape check.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

/// Why a string is not an acceptable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an e-mail address (expected name@domain)")]
pub struct EmailError(pub String);

impl Email {
    /// Validates and lower-cases an address.
    pub fn parse(s: &str) -> Result<Self, EmailError> {
        let s = s.trim();
        let ok = match s.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !s.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !domain.contains('@')
                    && s.len() <= 254
            }
            None => false,
        };
        if ok {
            Ok(Self(s.to_lowercase()))
        } else {
            Err(EmailError(s.to_owned()))
        }
    }

    /// The address text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Email {
    type Error = EmailError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_valid() {
        for s in ["acme", "isp-1", "a1b", "0ab", &"a".repeat(32)] {
            assert!(Slug::parse(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn slug_rejections_say_why() {
        assert_eq!(Slug::parse("ab"), Err(SlugError::TooShort));
        assert_eq!(Slug::parse(&"a".repeat(33)), Err(SlugError::TooLong));
        assert_eq!(Slug::parse("Acme"), Err(SlugError::BadChar('A')));
        assert_eq!(Slug::parse("ac_me"), Err(SlugError::BadChar('_')));
        assert_eq!(Slug::parse("acme.x"), Err(SlugError::BadChar('.')));
        assert_eq!(Slug::parse("-acme"), Err(SlugError::EdgeHyphen));
        assert_eq!(Slug::parse("acme-"), Err(SlugError::EdgeHyphen));
        assert_eq!(Slug::parse(""), Err(SlugError::TooShort));
        for r in RESERVED_SLUGS {
            assert_eq!(Slug::parse(r), Err(SlugError::Reserved(r.to_string())));
        }
        assert!(
            Slug::parse("operator")
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
    }

    #[test]
    fn slug_serde_validates() {
        assert!(serde_json::from_str::<Slug>("\"acme\"").is_ok());
        assert!(serde_json::from_str::<Slug>("\"www\"").is_err());
    }

    #[test]
    fn email_shape() {
        assert_eq!(
            Email::parse("Owner@Demo.Example").unwrap().as_str(),
            "owner@demo.example"
        );
        for bad in ["", "a", "a@b", "@b.c", "a b@c.d", "a@.c", "a@c."] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
