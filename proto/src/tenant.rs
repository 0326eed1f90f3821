//! Tenant ids: which customer of a hosted endpoint a connection, a room or a statistic belongs to.

use std::fmt;
use std::sync::Arc;

/// Most characters of a tenant id.
pub const MAX_TENANT_ID_CHARS: usize = 64;

/// A tenant's id: 1 to [`MAX_TENANT_ID_CHARS`] ASCII letters, digits, `-` and `_`. The id appears in
/// metric labels, logs and the bus (it is the operator's name for a customer, not a secret), so it is
/// restricted to characters that are safe in all of them.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

/// Why a text is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant id {0:?} is not 1 to 64 ASCII letters, digits, '-' or '_'")]
pub struct InvalidTenantId(pub String);

impl TenantId {
    /// Checks `text`.
    pub fn parse(text: &str) -> Result<TenantId, InvalidTenantId> {
        let valid = !text.is_empty()
            && text.len() <= MAX_TENANT_ID_CHARS
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if valid {
            Ok(TenantId(Arc::from(text)))
        } else {
            Err(InvalidTenantId(text.chars().take(80).collect()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", self.0)
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        TenantId::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert_eq!(
            TenantId::parse("acme_2-x").map(|t| t.to_string()),
            Ok("acme_2-x".into())
        );
        for bad in ["", "a b", "a.b", "ä", &"x".repeat(65), "a\"b"] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<TenantId>("\"no spaces\"").is_err());
    }
}
