//! Connection ids: random UUID v4 values, always written as lowercase hyphenated strings (palava clients
//! compare them as strings, so the form must never vary).
//!
//! The first 32 bits of a connection id are the [`EdgeId`] of the edge that holds it; the remaining 90
//! free bits are random. So any process can tell from an id alone where to send a message for that
//! connection (`sb.edge.<edge>.conn.<id>`, see [`crate::subject::conn`]), and an edge receives all of its connections' messages with one
//! wildcard subscription instead of one subscription per connection.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// The id of one client connection, unique across the cluster. Clients see it as `own_id`/`peer_id`/
/// `sender_id`; the bus uses it as the connection's subject.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(Uuid);

impl ConnId {
    /// Builds a v4 id from 16 random bytes. The caller supplies the randomness because this crate has
    /// no randomness source of its own (it must stay pure).
    pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
        ConnId(uuid::Builder::from_random_bytes(bytes).into_uuid())
    }

    /// Builds a v4 id for a connection held by `edge`, from 16 random bytes (of which the first four
    /// are replaced by the edge id).
    pub fn for_edge(edge: EdgeId, mut random: [u8; 16]) -> Self {
        random[..4].copy_from_slice(&edge.0.to_be_bytes());
        ConnId::from_random_bytes(random)
    }

    /// The edge holding this connection.
    pub fn edge(&self) -> EdgeId {
        let b = self.0.as_bytes();
        EdgeId(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Parsing accepts only the canonical lowercase hyphenated v4 form, the only one we ever hand out:
/// a peer id in any other spelling cannot name a connection, so it is simply not a peer.
impl FromStr for ConnId {
    type Err = InvalidConnId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 36 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvalidConnId);
        }
        let uuid = Uuid::try_parse(s).map_err(|_| InvalidConnId)?;
        if uuid.get_version_num() != 4 || uuid.get_variant() != uuid::Variant::RFC4122 {
            return Err(InvalidConnId);
        }
        Ok(ConnId(uuid))
    }
}

/// A string that is not a connection id we could have issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a connection id")]
pub struct InvalidConnId;

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({self})")
    }
}

/// The id of one edge process (random per start). A cluster uses it to know which edge holds which
/// connection, so that room events go to each edge once and a lost edge's members can be removed
/// together. It is also the first 32 bits of every connection id the edge hands out.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct EdgeId(pub u32);

impl fmt::Display for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl FromStr for EdgeId {
    type Err = InvalidConnId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 8 {
            return Err(InvalidConnId);
        }
        u32::from_str_radix(s, 16)
            .map(EdgeId)
            .map_err(|_| InvalidConnId)
    }
}

impl serde::Serialize for ConnId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for ConnId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for EdgeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EdgeId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_v4_and_round_trip() {
        let id = ConnId::from_random_bytes([0xAB; 16]);
        let text = id.to_string();
        assert_eq!(text.len(), 36);
        assert_eq!(text, text.to_lowercase());
        assert_eq!(&text[14..15], "4", "version nibble");
        assert_eq!(text.parse::<ConnId>(), Ok(id));
    }

    #[test]
    fn ids_carry_their_edge() {
        let edge = EdgeId(0xdead_beef);
        let id = ConnId::for_edge(edge, [0x5a; 16]);
        assert_eq!(id.edge(), edge);
        assert!(id.to_string().starts_with("deadbeef-"));
        assert_eq!(
            id.to_string().parse::<ConnId>(),
            Ok(id),
            "still a valid v4 id"
        );
        assert_eq!(edge.to_string().parse::<EdgeId>(), Ok(edge));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<ConnId>(&json).unwrap(), id);
    }

    #[test]
    fn other_spellings_are_not_ids() {
        let id = ConnId::from_random_bytes([0xAB; 16]).to_string();
        assert!(id.to_uppercase().parse::<ConnId>().is_err());
        assert!(id.replace('-', "").parse::<ConnId>().is_err());
        assert!(format!("{{{id}}}").parse::<ConnId>().is_err());
        assert!("".parse::<ConnId>().is_err());
        // A valid UUID of another version is not one of ours.
        assert!(
            "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
                .parse::<ConnId>()
                .is_err()
        );
    }
}
