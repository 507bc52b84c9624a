//! Identifiers that cross crates, validated once at the edge.
//!
//! Every id that reaches Redis ends up inside a key such as
//! `callcenter:user:{tenant}:<user_id>`. The tenant sits in a Redis Cluster
//! hash tag, so a tenant id containing `{`, `}` or `:` could move a key into
//! another tenant's slot or forge another tenant's key. These types make such
//! values unrepresentable: once you hold a `TenantId`, it is safe to format
//! into a key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::channel::Grants;

/// Why an identifier was refused. The message names the kind of id, the
/// rule it broke, and (for short values) the value itself.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {reason}")]
pub struct InvalidId {
    /// `tenant id`, `user id`, `connection id` or `webhook id`.
    pub kind: &'static str,
    /// What was wrong, in words a client can act on.
    pub reason: String,
}

/// Shared validation: non-empty, at most `max_len` bytes, every byte in
/// `allowed`.
fn validate(
    kind: &'static str,
    value: &str,
    max_len: usize,
    allowed: fn(u8) -> bool,
    rule: &str,
) -> Result<(), InvalidId> {
    if value.is_empty() {
        return Err(InvalidId { kind, reason: "must not be empty".into() });
    }
    if value.len() > max_len {
        return Err(InvalidId { kind, reason: format!("is {} bytes long, at most {max_len} allowed", value.len()) });
    }
    if let Some(bad) = value.bytes().find(|b| !allowed(*b)) {
        let shown = if bad.is_ascii_graphic() { format!("'{}'", bad as char) } else { format!("byte 0x{bad:02x}") };
        return Err(InvalidId { kind, reason: format!("contains {shown}; only {rule} are allowed") });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:expr, $rule:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `value`.
            pub fn parse(value: impl Into<String>) -> Result<Self, InvalidId> {
                let value = value.into();
                validate($kind, &value, Self::MAX_LEN, $allowed, $rule)?;
                Ok(Self(value))
            }

            /// The id as it appears on the wire and in Redis keys.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        /// Read-only: an id reads as the `str` it was validated as.
        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<$name> for String {
            fn eq(&self, other: &$name) -> bool {
                *self == other.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

fn tenant_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

fn user_byte(b: u8) -> bool {
    // E-mail addresses and UUIDs are common user ids; `:`, `{`, `}`,
    // whitespace and `*` never are and would confuse keys and patterns.
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+')
}

fn webhook_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')
}

fn connection_byte(b: u8) -> bool {
    // API Gateway connection ids are base64 (`TWegAcC4EowCHnA=`); the
    // emulator's are URL-safe base64.
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'=' | b'+' | b'/')
}

id_type!(
    /// A tenant (one call-center customer). Never contains `{`, `}` or `:`,
    /// so it can sit in a Redis Cluster hash tag.
    TenantId, "tenant id", 64, tenant_byte, "letters, digits, '-', '_' and '.'"
);
id_type!(
    /// A user (agent, supervisor, service account) inside a tenant: the JWT `sub`.
    UserId, "user id", 128, user_byte, "letters, digits, '-', '_', '.', '@' and '+'"
);
id_type!(
    /// A tenant's webhook: `wh_` and 32 hex digits when made here (the API
    /// accepts no other shape in its paths); any id of letters, digits, `-`
    /// and `_` reads back, so the legacy hub's UUIDs keep working.
    WebhookId, "webhook id", 64, webhook_byte, "letters, digits, '-' and '_'"
);
id_type!(
    /// An API Gateway WebSocket connection id.
    ConnectionId, "connection id", 128, connection_byte, "letters, digits, '-', '_', '=', '+' and '/'"
);

/// What a caller may do inside its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything in its tenant, webhooks included.
    Admin,
    /// Back-end services: publish any event.
    Service,
    /// Clients: subscribe, publish chat and typing events.
    Supervisor,
    /// Clients: subscribe, publish chat and typing events.
    Agent,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Service => "service",
            Role::Supervisor => "supervisor",
            Role::Agent => "agent",
        }
    }
}

/// A verified caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The tenant every action of this caller is confined to.
    pub tenant_id: TenantId,
    /// The JWT `sub`.
    pub user_id: UserId,
    /// What the caller may do.
    pub role: Role,
    /// The channels its token grants (the `channels` claim), for the
    /// namespaces whose rules say `granted`.
    #[serde(default, skip_serializing_if = "Grants::is_empty")]
    pub channels: Grants,
}

impl Identity {
    /// A caller with no channel grant.
    pub fn new(tenant_id: TenantId, user_id: UserId, role: Role) -> Self {
        Identity { tenant_id, user_id, role, channels: Grants::default() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_refuses_hash_tag_and_separator_characters() {
        for bad in ["a{b", "a}b", "a:b", "", "with space", "t*"] {
            let err = TenantId::parse(bad).unwrap_err();
            assert_eq!(err.kind, "tenant id", "{bad}");
        }
        assert!(TenantId::parse("acme-01.eu_west").is_ok());
        let err = TenantId::parse("a{b").unwrap_err();
        assert!(err.to_string().contains("'{'"), "{err}");
    }

    #[test]
    fn lengths_are_bounded() {
        assert!(TenantId::parse("a".repeat(64)).is_ok());
        let err = TenantId::parse("a".repeat(65)).unwrap_err();
        assert!(err.to_string().contains("at most 64"), "{err}");
        assert!(UserId::parse("u".repeat(129)).is_err());
    }

    #[test]
    fn api_gateway_connection_ids_are_accepted() {
        for ok in ["TWegAcC4EowCHnA=", "L0SM9cOFvHcCIhw=", "abc_-DEF"] {
            assert!(ConnectionId::parse(ok).is_ok(), "{ok}");
        }
        assert!(ConnectionId::parse("a b").is_err());
        assert!(ConnectionId::parse("a\u{0}").unwrap_err().to_string().contains("0x00"));
    }

    #[test]
    fn deserialising_validates() {
        let ok: UserId = serde_json::from_str("\"jane@example.com\"").unwrap();
        assert_eq!(ok.as_str(), "jane@example.com");
        let err = serde_json::from_str::<TenantId>("\"a:b\"").unwrap_err();
        assert!(err.to_string().contains("invalid tenant id"), "{err}");
    }
}
