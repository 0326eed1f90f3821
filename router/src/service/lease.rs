//! Slot leases in a JetStream key-value bucket, fenced by epochs.
//!
//! A lease is the key `slot.<n>` holding its owner (a router process). Its **epoch** is the revision
//! at which the owner wrote it: revisions only grow, so a later owner always has a higher epoch. The
//! owner never rewrites the key while it holds it, so holding a lease needs no JetStream write at all
//! and rides through a JetStream leader election (the bucket's stream has no leader for seconds).
//!
//! - **Acquire** a free slot: `create` (fails if anyone holds it).
//! - **Take over** from an owner that is gone (no presence on core NATS for the lease lifetime, see
//!   [`super::liveness`]): `update` at the owner's revision, so of several routers trying at once
//!   exactly one succeeds.
//! - **Release**: delete at our revision (only if still ours).
//!
//! Who may act for a slot is decided at the edges: every event and command reply carries the epoch,
//! and an edge drops what comes from an epoch older than the newest it has seen for the slot. A new
//! owner raises every edge's epoch in its resync before it serves, so a deposed owner that has not
//! noticed yet cannot change what any client sees (docs/architecture.md has the whole argument).

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use switchboard_proto::subject;

/// A held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The slot.
    pub slot: u32,
    /// The lease's epoch: the revision of our write.
    pub epoch: u64,
}

/// Who holds a slot, as the bucket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holder {
    /// Nobody (never taken, or released).
    Free,
    /// `owner` wrote it at `revision`.
    Held {
        /// The owning router process.
        owner: String,
        /// The revision of its write (its epoch).
        revision: u64,
    },
}

/// Lease operations for one router process.
#[derive(Clone)]
pub struct Leases {
    kv: kv::Store,
    js: jetstream::Context,
    owner: String,
}

/// Why a lease operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Someone else holds or took the lease.
    #[error("lease held by another router")]
    Taken,
    /// The lease store did not answer (JetStream unreachable, or electing a leader).
    #[error("lease store unreachable")]
    Store(#[source] async_nats::Error),
}

fn store(e: impl std::error::Error + Send + Sync + 'static) -> LeaseError {
    LeaseError::Store(Box::new(e))
}

impl Leases {
    /// Leases in `kv` (reached through `js`) on behalf of router process `owner`.
    pub fn new(kv: kv::Store, js: jetstream::Context, owner: &str) -> Self {
        Leases {
            kv,
            js,
            owner: owner.to_string(),
        }
    }

    /// This router process, as written in its leases.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Who holds `slot`.
    pub async fn holder(&self, slot: u32) -> Result<Holder, LeaseError> {
        let entry = self
            .kv
            .entry(subject::lease_key(slot))
            .await
            .map_err(store)?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => Holder::Held {
                owner: String::from_utf8_lossy(&entry.value).into_owned(),
                revision: entry.revision,
            },
            _ => Holder::Free,
        })
    }

    /// Takes `slot` from `holder` (as read with [`Self::holder`]): creates a free lease, or replaces
    /// a gone owner's at its revision. Fails with [`LeaseError::Taken`] if anyone wrote it since.
    pub async fn acquire(&self, slot: u32, holder: &Holder) -> Result<Lease, LeaseError> {
        let key = subject::lease_key(slot);
        let value = Bytes::from(self.owner.clone());
        let revision = match holder {
            Holder::Free => match self.kv.create(key, value).await {
                Ok(revision) => revision,
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                    return Err(LeaseError::Taken);
                }
                Err(e) => return Err(store(e)),
            },
            Holder::Held { revision, .. } => match self.kv.update(key, value, *revision).await {
                Ok(revision) => revision,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    return Err(LeaseError::Taken);
                }
                Err(e) => return Err(store(e)),
            },
        };
        Ok(Lease {
            slot,
            epoch: revision,
        })
    }

    /// Whether `lease` is still ours in the bucket.
    pub async fn still_ours(&self, lease: Lease) -> Result<bool, LeaseError> {
        Ok(match self.holder(lease.slot).await? {
            Holder::Held { owner, revision } => owner == self.owner && revision == lease.epoch,
            Holder::Free => false,
        })
    }

    /// Hands a lease back so another router can take the slot at once (only if still ours).
    pub async fn release(&self, lease: Lease) -> Result<(), LeaseError> {
        self.kv
            .delete_expect_revision(subject::lease_key(lease.slot), Some(lease.epoch))
            .await
            .map_err(store)
    }

    /// Whether the lease store can take writes now: its stream's leader answers. (A read would not
    /// tell: any replica answers reads, also while the stream elects a leader and takes no writes.)
    pub async fn probe(&self) -> Result<(), LeaseError> {
        let stream = format!("KV_{}", subject::LEASES_BUCKET);
        self.js.get_stream(stream).await.map(drop).map_err(store)
    }
}
