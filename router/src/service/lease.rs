//! Slot leases in a JetStream key-value bucket.
//!
//! A lease is the key `slot.<n>` holding the owner's id. It is taken with `create` (fails if the key
//! exists), renewed with `update` at the revision we wrote last (fails if anyone else wrote since), and
//! handed over with a delete at that revision. The bucket's max age is the lease lifetime: a key that is
//! not renewed disappears, and then anyone can `create` it.
//!
//! Fencing: a router serves a slot only until `valid_until`, which is the moment it *sent* its last
//! successful renewal plus three quarters of the lifetime. The server stamps the write later than that
//! send, and expires it a full lifetime after the stamp, so the lease runs out at the server strictly
//! after the holder has stopped serving: two routers never serve a slot at once.

use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use switchboard_proto::subject;
use tokio::time::Instant;

/// A held lease.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The slot.
    pub slot: u32,
    revision: u64,
    /// Serving must stop at this instant unless the lease is renewed first.
    pub valid_until: Instant,
}

/// Lease operations for one router.
#[derive(Clone)]
pub struct Leases {
    kv: kv::Store,
    owner: Bytes,
    ttl: Duration,
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds or took the lease.
    #[error("lease held by another router")]
    Taken,
    /// The bus did not answer.
    #[error("lease store: {0}")]
    Store(String),
}

impl Leases {
    /// Leases in `kv` (whose max age is `ttl`) on behalf of `owner`.
    pub fn new(kv: kv::Store, owner: &str, ttl: Duration) -> Self {
        Leases {
            kv,
            owner: Bytes::copy_from_slice(owner.as_bytes()),
            ttl,
        }
    }

    /// The lease lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How often to renew: often enough that two renewals can fail before the lease is fenced.
    pub fn renew_interval(&self) -> Duration {
        self.ttl / 4
    }

    fn valid_until(&self, sent: Instant) -> Instant {
        sent + self.ttl * 3 / 4
    }

    /// Takes the lease of `slot` if nobody holds it.
    pub async fn acquire(&self, slot: u32) -> Result<Lease, LeaseError> {
        let sent = Instant::now();
        match self
            .kv
            .create(subject::lease_key(slot), self.owner.clone())
            .await
        {
            Ok(revision) => Ok(Lease {
                slot,
                revision,
                valid_until: self.valid_until(sent),
            }),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Err(LeaseError::Taken),
            Err(e) => Err(LeaseError::Store(e.to_string())),
        }
    }

    /// Renews a held lease; on success it is valid for another three quarters of the lifetime.
    pub async fn renew(&self, lease: &mut Lease) -> Result<(), LeaseError> {
        let sent = Instant::now();
        match self
            .kv
            .update(
                subject::lease_key(lease.slot),
                self.owner.clone(),
                lease.revision,
            )
            .await
        {
            Ok(revision) => {
                lease.revision = revision;
                lease.valid_until = self.valid_until(sent);
                Ok(())
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(LeaseError::Taken),
            Err(e) => Err(LeaseError::Store(e.to_string())),
        }
    }

    /// Hands a lease back so another router can take the slot at once (only if still ours).
    pub async fn release(&self, lease: Lease) -> Result<(), LeaseError> {
        self.kv
            .delete_expect_revision(subject::lease_key(lease.slot), Some(lease.revision))
            .await
            .map_err(|e| LeaseError::Store(e.to_string()))
    }

    /// Slots whose lease is currently held by anyone.
    pub async fn held(&self) -> Result<Vec<u32>, LeaseError> {
        use futures_util::TryStreamExt;
        let keys = self
            .kv
            .keys()
            .await
            .map_err(|e| LeaseError::Store(e.to_string()))?;
        let keys: Vec<String> = keys
            .try_collect()
            .await
            .map_err(|e| LeaseError::Store(e.to_string()))?;
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix("slot.")?.parse().ok())
            .collect())
    }
}
