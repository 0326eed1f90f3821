//! Room ids and room keys.
//!
//! A [`RoomId`] is what the client typed; it is private (it may be a meeting name) and never leaves the
//! edge: not in logs at info level, not in metric labels, not in bus subjects. Everything past the edge
//! uses its [`RoomKey`], a keyed hash (HMAC-SHA-256, truncated to 128 bits), so that someone who can read
//! the bus or the logs cannot confirm a guessed room name without the key. palava hashed room ids with
//! SHA-512 for the same reason, but unkeyed.

use std::fmt;

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::ProtocolError;
use crate::limits::MAX_ROOM_ID_CHARS;

/// A validated room id: a non-empty string of at most [`MAX_ROOM_ID_CHARS`] Unicode scalar values.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoomId(String);

impl RoomId {
    /// Validates a `room_id` field as palava does: missing, non-string or empty is `no room id given`,
    /// too many characters is `room id too long`.
    pub fn parse(value: Option<&Value>) -> Result<RoomId, ProtocolError> {
        match value {
            Some(Value::String(s)) if !s.is_empty() => {
                if s.chars().count() > MAX_ROOM_ID_CHARS {
                    Err(ProtocolError::RoomIdTooLong)
                } else {
                    Ok(RoomId(s.clone()))
                }
            }
            _ => Err(ProtocolError::NoRoomId),
        }
    }

    /// The id as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Debug output hides the id, so that a stray `?room` in a log line cannot leak it.
impl fmt::Debug for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomId(<redacted>)")
    }
}

/// The identifier of a room everywhere past the edge: a keyed hash of the room id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomKey([u8; 16]);

impl RoomKey {
    /// The raw bytes, for compact encodings on the bus.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Rebuilds a key from its bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RoomKey(bytes)
    }

    /// The slot (of `slots`, which must be non-zero) that owns this room in a cluster. Stable across
    /// processes and versions: changing it would move every room at once.
    pub fn slot(&self, slots: u32) -> u32 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        (u64::from_be_bytes(first) % u64::from(slots.max(1))) as u32
    }
}

impl serde::Serialize for RoomKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RoomKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl std::str::FromStr for RoomKey {
    type Err = &'static str;

    /// Parses the 32 lowercase hex digits of [`RoomKey`]'s `Display`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // ASCII first: slicing by byte offsets below must not split a character.
        if s.len() != 32 || !s.is_ascii() {
            return Err("a room key is 32 hex digits");
        }
        let mut key = [0u8; 16];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| "a room key is 32 hex digits")?;
        }
        Ok(RoomKey(key))
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RoomKey({self})")
    }
}

/// Derives room keys with a secret. Every process of one cluster must use the same secret; a
/// standalone edge may use a random one.
#[derive(Clone)]
pub struct RoomKeyer {
    mac: Hmac<Sha256>,
}

impl RoomKeyer {
    /// A keyer for `secret` (any length; HMAC accepts every key size).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC is defined for keys of every length (long ones are hashed first), so the only error
        // `new_from_slice` can return, InvalidLength, cannot happen; the secret is operator config,
        // never client input.
        #[allow(clippy::expect_used)]
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        RoomKeyer { mac }
    }

    /// The key of `room`.
    pub fn key(&self, room: &RoomId) -> RoomKey {
        let mut mac = self.mac.clone();
        mac.update(room.0.as_bytes());
        truncate(mac)
    }

    /// The key of `room` of `tenant` (hosted mode). Two tenants' rooms of the same name get
    /// different keys, so they are different rooms everywhere past the edge. The tenant part starts
    /// with 0xFF, a byte no UTF-8 text contains, so no open-mode room id hashes to a tenant's key.
    pub fn key_in(&self, tenant: &crate::TenantId, room: &RoomId) -> RoomKey {
        let mut mac = self.mac.clone();
        mac.update(&[0xFF]);
        mac.update(tenant.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(room.0.as_bytes());
        truncate(mac)
    }
}

/// The first 128 bits of the MAC: plenty against collisions among rooms, and compact on the bus.
fn truncate(mac: Hmac<Sha256>) -> RoomKey {
    let digest = mac.finalize().into_bytes();
    let mut key = [0u8; 16];
    key.copy_from_slice(&digest[..16]);
    RoomKey(key)
}

impl fmt::Debug for RoomKeyer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RoomKeyer(<secret>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tenants_rooms_are_distinct() {
        let keyer = RoomKeyer::new(b"secret");
        let room = RoomId("lobby".into());
        let a = crate::TenantId::parse("a").unwrap();
        let b = crate::TenantId::parse("b").unwrap();
        assert_ne!(keyer.key_in(&a, &room), keyer.key_in(&b, &room));
        assert_ne!(keyer.key_in(&a, &room), keyer.key(&room));
        assert_eq!(keyer.key_in(&a, &room), keyer.key_in(&a, &room));
    }

    #[test]
    fn room_id_rules() {
        assert_eq!(RoomId::parse(None), Err(ProtocolError::NoRoomId));
        assert_eq!(
            RoomId::parse(Some(&json!(null))),
            Err(ProtocolError::NoRoomId)
        );
        assert_eq!(
            RoomId::parse(Some(&json!(""))),
            Err(ProtocolError::NoRoomId)
        );
        assert_eq!(
            RoomId::parse(Some(&json!(42))),
            Err(ProtocolError::NoRoomId)
        );
        assert_eq!(
            RoomId::parse(Some(&json!(["a"]))),
            Err(ProtocolError::NoRoomId)
        );
        let fifty = "x".repeat(50);
        assert_eq!(RoomId::parse(Some(&json!(fifty))).map(|r| r.0), Ok(fifty));
        assert_eq!(
            RoomId::parse(Some(&json!("x".repeat(51)))),
            Err(ProtocolError::RoomIdTooLong)
        );
        // Characters, not bytes: 50 four-byte emoji are fine.
        let emoji = "\u{1F600}".repeat(50);
        assert!(RoomId::parse(Some(&json!(emoji))).is_ok());
        assert_eq!(
            RoomId::parse(Some(&json!("\u{1F600}".repeat(51)))),
            Err(ProtocolError::RoomIdTooLong)
        );
    }

    #[test]
    fn keys_depend_on_secret_and_room_only() {
        let a = RoomKeyer::new(b"secret-a");
        let b = RoomKeyer::new(b"secret-b");
        let room = RoomId::parse(Some(&json!("standup"))).unwrap();
        let other = RoomId::parse(Some(&json!("standup2"))).unwrap();
        assert_eq!(a.key(&room), a.clone().key(&room));
        assert_ne!(a.key(&room), b.key(&room));
        assert_ne!(a.key(&room), a.key(&other));
        assert_eq!(a.key(&room).to_string().len(), 32);
        let key = a.key(&room);
        assert_eq!(key.to_string().parse::<RoomKey>(), Ok(key));
        assert!("zz".repeat(16).parse::<RoomKey>().is_err());
        assert!(!format!("{room:?}").contains("standup"));
    }

    #[test]
    fn slots_spread_and_stay_in_range() {
        let keyer = RoomKeyer::new(b"k");
        let mut counts = [0u32; 16];
        for i in 0..1600 {
            let room = RoomId::parse(Some(&json!(format!("room-{i}")))).unwrap();
            let slot = keyer.key(&room).slot(16);
            counts[slot as usize] += 1;
        }
        // Each of 16 slots expects 100 rooms; a keyed hash keeps all of them well away from empty.
        assert!(counts.iter().all(|&c| c > 50), "{counts:?}");
        assert_eq!(RoomKey::from_bytes([0; 16]).slot(0), 0);
    }
}
