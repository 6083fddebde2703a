//! Who may do what, in one place. Every endpoint names the permission it needs through the
//! [`crate::auth::Auth`] extractor's type parameter; this table decides.

use serde::{Deserialize, Serialize};

/// The role a request acts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiRole {
    /// Platform operator (on the operator host, or acting as a tenant).
    Operator,
    /// Owner of a tenant.
    Owner,
    /// Full control of a tenant.
    Admin,
    /// Subscribers and sessions; no settings or users.
    Staff,
    /// Read-only.
    Viewer,
}

impl ApiRole {
    /// Every role, for tests and documentation.
    pub const ALL: [ApiRole; 5] = [
        ApiRole::Operator,
        ApiRole::Owner,
        ApiRole::Admin,
        ApiRole::Staff,
        ApiRole::Viewer,
    ];

    /// The role of a tenant user.
    pub fn from_user(r: saas_core::model::Role) -> Self {
        use saas_core::model::Role;
        match r {
            Role::Owner => ApiRole::Owner,
            Role::Admin => ApiRole::Admin,
            Role::Staff => ApiRole::Staff,
            Role::Viewer => ApiRole::Viewer,
        }
    }

    /// Text form.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiRole::Operator => "operator",
            ApiRole::Owner => "owner",
            ApiRole::Admin => "admin",
            ApiRole::Staff => "staff",
            ApiRole::Viewer => "viewer",
        }
    }
}

/// What an endpoint needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Perm {
    /// Read anything of the tenant (no secrets).
    Read,
    /// Change subscribers, disconnect sessions.
    Subscribers,
    /// Change plans, NAS, peers, tenant settings.
    Settings,
    /// Manage panel users and API tokens.
    Users,
    /// Platform administration (operator host only).
    Platform,
}

/// The permission table.
pub fn allows(role: ApiRole, perm: Perm) -> bool {
    use ApiRole::*;
    use Perm::*;
    match perm {
        Platform => role == Operator,
        Read => true,
        Subscribers => matches!(role, Operator | Owner | Admin | Staff),
        Settings | Users => matches!(role, Operator | Owner | Admin),
    }
}

/// Type-level permission for the `Auth<P>` extractor.
pub trait Permission: Send + Sync + 'static {
    /// The permission.
    const PERM: Perm;
}

macro_rules! perm_marker {
    ($name:ident, $perm:ident, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Copy)]
        pub struct $name;
        impl Permission for $name {
            const PERM: Perm = Perm::$perm;
        }
    };
}

perm_marker!(CanRead, Read, "Any signed-in role of the tenant.");
perm_marker!(
    CanSubscribers,
    Subscribers,
    "Owner, admin, staff, operator."
);
perm_marker!(CanSettings, Settings, "Owner, admin, operator.");
perm_marker!(CanUsers, Users, "Owner, admin, operator.");
perm_marker!(CanPlatform, Platform, "Operators on the operator host.");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staff_cannot_touch_settings_and_viewer_only_reads() {
        assert!(allows(ApiRole::Staff, Perm::Subscribers));
        assert!(!allows(ApiRole::Staff, Perm::Settings));
        assert!(!allows(ApiRole::Staff, Perm::Users));
        assert!(allows(ApiRole::Viewer, Perm::Read));
        assert!(!allows(ApiRole::Viewer, Perm::Subscribers));
        assert!(!allows(ApiRole::Owner, Perm::Platform));
        assert!(allows(ApiRole::Operator, Perm::Platform));
    }
}
