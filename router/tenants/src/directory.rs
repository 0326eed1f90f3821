//! [`Directory`]: the tenants in force, merged from their sources.
//!
//! A source is anything that knows tenants: the tenants file today ([`crate::watch`]); the control
//! API's replicated store later. Each source replaces its whole set at once
//! ([`Directory::replace`]); the directory checks the merge (a tenant id or a key id claimed by two
//! sources is refused, and the previous set stays) and publishes a new [`Snapshot`]. Readers take
//! the current snapshot, an `Arc`, without waiting for writers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use switchboard_proto::TenantId;
use tokio::sync::watch;

use crate::tenant::{Key, Tenant};

/// The tenants in force at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    tenants: HashMap<TenantId, Arc<Tenant>>,
    /// Key id to (tenant, index of the key in `tenant.keys`).
    keys: HashMap<String, (Arc<Tenant>, usize)>,
}

impl Snapshot {
    /// The tenant `id`.
    pub fn tenant(&self, id: &TenantId) -> Option<&Arc<Tenant>> {
        self.tenants.get(id)
    }

    /// The key `kid` and its tenant.
    pub fn key(&self, kid: &str) -> Option<(&Arc<Tenant>, &Key)> {
        let (tenant, index) = self.keys.get(kid)?;
        Some((tenant, tenant.keys.get(*index)?))
    }

    /// Every tenant, in no particular order.
    pub fn tenants(&self) -> impl Iterator<Item = &Arc<Tenant>> {
        self.tenants.values()
    }

    /// How many tenants there are.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }
}

/// Why a source's tenants were not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConflictError {
    /// Two sources define the same tenant.
    #[error("tenant {tenant:?} is defined by both {first} and {second}")]
    Tenant {
        /// The tenant.
        tenant: String,
        /// One source.
        first: &'static str,
        /// The other.
        second: &'static str,
    },
    /// Two tenants (of different sources) have a key of the same id.
    #[error("key id {key:?} is used by tenants {first:?} and {second:?}")]
    Key {
        /// The key id.
        key: String,
        /// One tenant.
        first: String,
        /// The other.
        second: String,
    },
}

/// The tenants in force; cheap to clone.
#[derive(Debug, Clone)]
pub struct Directory {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    sources: Mutex<BTreeMap<&'static str, Vec<Arc<Tenant>>>>,
    current: watch::Sender<Arc<Snapshot>>,
}

impl Default for Directory {
    fn default() -> Self {
        Directory::new()
    }
}

impl Directory {
    /// No tenants.
    pub fn new() -> Self {
        Directory {
            shared: Arc::new(Shared {
                sources: Mutex::new(BTreeMap::new()),
                current: watch::Sender::new(Arc::new(Snapshot::default())),
            }),
        }
    }

    /// The tenants in force now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.current.borrow().clone()
    }

    /// Follows the changes (for metrics and quota bookkeeping that list tenants).
    pub fn subscribe(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.shared.current.subscribe()
    }

    /// Replaces everything `source` defines with `tenants`. On a conflict with another source
    /// nothing changes.
    pub fn replace(&self, source: &'static str, tenants: Vec<Tenant>) -> Result<(), ConflictError> {
        let mut sources = self
            .shared
            .sources
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut candidate = sources.clone();
        candidate.insert(source, tenants.into_iter().map(Arc::new).collect());
        let snapshot = merge(&candidate)?;
        *sources = candidate;
        self.shared.current.send_replace(Arc::new(snapshot));
        Ok(())
    }
}

fn merge(sources: &BTreeMap<&'static str, Vec<Arc<Tenant>>>) -> Result<Snapshot, ConflictError> {
    let mut snapshot = Snapshot::default();
    let mut origin: HashMap<TenantId, &'static str> = HashMap::new();
    for (source, tenants) in sources {
        for tenant in tenants {
            if let Some(first) = origin.insert(tenant.id.clone(), source) {
                return Err(ConflictError::Tenant {
                    tenant: tenant.id.to_string(),
                    first,
                    second: source,
                });
            }
            for (index, key) in tenant.keys.iter().enumerate() {
                if let Some((other, _)) = snapshot
                    .keys
                    .insert(key.id.clone(), (tenant.clone(), index))
                {
                    return Err(ConflictError::Key {
                        key: key.id.clone(),
                        first: other.id.to_string(),
                        second: tenant.id.to_string(),
                    });
                }
            }
            snapshot.tenants.insert(tenant.id.clone(), tenant.clone());
        }
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Secret;
    use crate::tenant::{Limits, Origins};

    fn tenant(id: &str, keys: &[&str]) -> Tenant {
        Tenant {
            id: TenantId::parse(id).unwrap(),
            keys: keys
                .iter()
                .map(|k| Key::hs256(*k, Secret::new("0123456789abcdef0123456789abcdef")))
                .collect(),
            limits: Limits::default(),
            origins: Origins::default(),
            turn: None,
            webhook: None,
        }
    }

    #[test]
    fn sources_merge_and_conflicts_keep_the_previous_set() {
        let directory = Directory::new();
        let mut changes = directory.subscribe();
        directory
            .replace(
                "file",
                vec![tenant("a", &["a1", "a2"]), tenant("b", &["b1"])],
            )
            .unwrap();
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let snapshot = directory.snapshot();
        assert_eq!(snapshot.len(), 2);
        let (owner, key) = snapshot.key("a2").unwrap();
        assert_eq!((owner.id.as_str(), key.id.as_str()), ("a", "a2"));

        directory
            .replace("api", vec![tenant("c", &["c1"])])
            .unwrap();
        assert_eq!(directory.snapshot().len(), 3);

        let clash = directory.replace("api", vec![tenant("a", &["x"])]);
        assert!(
            matches!(clash, Err(ConflictError::Tenant { .. })),
            "{clash:?}"
        );
        let clash = directory.replace("api", vec![tenant("d", &["b1"])]);
        assert!(matches!(clash, Err(ConflictError::Key { .. })), "{clash:?}");
        assert!(
            directory
                .snapshot()
                .tenant(&TenantId::parse("c").unwrap())
                .is_some()
        );

        // A source that drops a tenant drops its keys: a revoked or removed key verifies nothing.
        directory
            .replace("file", vec![tenant("a", &["a1"])])
            .unwrap();
        let snapshot = directory.snapshot();
        assert!(snapshot.key("a2").is_none());
        assert!(snapshot.tenant(&TenantId::parse("b").unwrap()).is_none());
    }
}
