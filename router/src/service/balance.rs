//! Slot balancing as a pure policy: from what a router knows at one moment to what it should do.
//! The manager loop (`super::manage`) gathers the facts, asks [`Balancer::plan`], and does the I/O
//! (lease writes, slot tasks), so the rules are tested here with tables and no NATS.
//!
//! The rules: every router aims at `ceil(slots / routers present)`. A slot is free when this router
//! does not hold it and no other present router claims it. Below target a router takes free slots
//! at once; at or above it, only slots that have been free for a lease lifetime (a router below
//! target had first pick; a crashed router's slots are covered either way). Above target it hands
//! one slot over per round, so the others take them up gradually. A router that cannot hear itself
//! decides nothing: what it sees of the others says nothing then.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::Duration;

use tokio::time::Instant;

/// What the manager knows at one moment.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    /// Number of slots.
    pub slots: u32,
    /// Routers present, this one included.
    pub routers: usize,
    /// Slots this router holds.
    pub held: &'a BTreeSet<u32>,
    /// Slots other present routers claim.
    pub claimed: &'a HashSet<u32>,
    /// Whether this router hears its own presence.
    pub hears_itself: bool,
}

/// What the manager should do this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Try to take up to `wanted` of `candidates` (sorted; the manager tries them in random order,
    /// so routers starting together do not all race for the same slots).
    Take {
        /// Free slots that may be taken now.
        candidates: Vec<u32>,
        /// How many to take.
        wanted: usize,
    },
    /// Hand this slot over (release its lease) so an emptier router takes it.
    HandOver(u32),
    /// Nothing to do.
    Wait,
}

/// The balancing policy's memory: since when each free slot has been free.
#[derive(Debug)]
pub struct Balancer {
    ttl: Duration,
    free_since: HashMap<u32, Instant>,
}

impl Balancer {
    /// A policy for routers whose lease lifetime is `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Balancer {
            ttl,
            free_since: HashMap::new(),
        }
    }

    /// The slots' fair share with `routers` present.
    pub fn target(slots: u32, routers: usize) -> usize {
        (slots as usize).div_ceil(routers.max(1))
    }

    /// What to do now.
    pub fn plan(&mut self, facts: &Facts<'_>, now: Instant) -> Action {
        if !facts.hears_itself {
            return Action::Wait;
        }
        let free = |slot: &u32| !facts.claimed.contains(slot) && !facts.held.contains(slot);
        self.free_since.retain(|slot, _| free(slot));
        for slot in (0..facts.slots).filter(free) {
            self.free_since.entry(slot).or_insert(now);
        }

        let target = Self::target(facts.slots, facts.routers);
        let held = facts.held.len();
        if held > target {
            return facts
                .held
                .last()
                .map_or(Action::Wait, |slot| Action::HandOver(*slot));
        }
        let below = held < target;
        let mut candidates: Vec<u32> = self
            .free_since
            .iter()
            .filter(|(_, since)| below || now.duration_since(**since) >= self.ttl)
            .map(|(slot, _)| *slot)
            .collect();
        if candidates.is_empty() {
            return Action::Wait;
        }
        candidates.sort_unstable();
        let wanted = if below {
            target - held
        } else {
            candidates.len()
        };
        Action::Take { candidates, wanted }
    }

    /// `slot` was found held by a present router, or was just taken: it is not free.
    pub fn not_free(&mut self, slot: u32) {
        self.free_since.remove(&slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(2);

    fn set<T: Ord + std::hash::Hash + Copy, C: FromIterator<T>>(
        items: impl IntoIterator<Item = T>,
    ) -> C {
        items.into_iter().collect()
    }

    struct Case {
        name: &'static str,
        routers: usize,
        held: Vec<u32>,
        claimed: Vec<u32>,
        hears_itself: bool,
        /// Seconds the free slots have been free (the first plan call sees them at 0).
        free_for: u64,
        want: Action,
    }

    #[test]
    fn the_balancing_rules() {
        let cases = [
            Case {
                name: "a router alone takes every slot at once",
                routers: 1,
                held: vec![],
                claimed: vec![],
                hears_itself: true,
                free_for: 0,
                want: Action::Take {
                    candidates: (0..8).collect(),
                    wanted: 8,
                },
            },
            Case {
                name: "a router joining takes its share of the free slots at once",
                routers: 2,
                held: vec![],
                claimed: vec![0, 1, 2, 3],
                hears_itself: true,
                free_for: 0,
                want: Action::Take {
                    candidates: vec![4, 5, 6, 7],
                    wanted: 4,
                },
            },
            Case {
                name: "a router joining a full cluster waits for the others to hand over",
                routers: 2,
                held: vec![],
                claimed: (0..8).collect(),
                hears_itself: true,
                free_for: 10,
                want: Action::Wait,
            },
            Case {
                name: "above target, one slot is handed over per round",
                routers: 2,
                held: (0..8).collect(),
                claimed: vec![],
                hears_itself: true,
                free_for: 0,
                want: Action::HandOver(7),
            },
            Case {
                name: "at target, a freshly free slot is left to routers below target",
                routers: 2,
                held: vec![0, 1, 2, 3],
                claimed: vec![4, 5, 6],
                hears_itself: true,
                free_for: 0,
                want: Action::Wait,
            },
            Case {
                name: "at target, a slot free for a lease lifetime is taken (nobody else did)",
                routers: 2,
                held: vec![0, 1, 2, 3],
                claimed: vec![4, 5, 6],
                hears_itself: true,
                free_for: 2,
                want: Action::Take {
                    candidates: vec![7],
                    wanted: 1,
                },
            },
            Case {
                name: "losing a router raises the target: its slots are taken at once",
                routers: 1,
                held: vec![0, 1, 2, 3],
                claimed: vec![],
                hears_itself: true,
                free_for: 0,
                want: Action::Take {
                    candidates: vec![4, 5, 6, 7],
                    wanted: 4,
                },
            },
            Case {
                name: "a router that cannot hear itself decides nothing",
                routers: 1,
                held: vec![0],
                claimed: vec![],
                hears_itself: false,
                free_for: 10,
                want: Action::Wait,
            },
        ];
        for case in cases {
            let held: BTreeSet<u32> = set(case.held.iter().copied());
            let claimed: HashSet<u32> = set(case.claimed.iter().copied());
            let facts = Facts {
                slots: 8,
                routers: case.routers,
                held: &held,
                claimed: &claimed,
                hears_itself: case.hears_itself,
            };
            let mut balancer = Balancer::new(TTL);
            let start = Instant::now();
            let mut got = balancer.plan(&facts, start);
            if case.free_for > 0 {
                got = balancer.plan(&facts, start + Duration::from_secs(case.free_for));
            }
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn a_slot_found_held_waits_until_it_is_free_again_for_a_lifetime() {
        let (held, claimed) = (set([0, 1, 2, 3]), set([4, 5, 6]));
        let facts = Facts {
            slots: 8,
            routers: 2,
            held: &held,
            claimed: &claimed,
            hears_itself: true,
        };
        let mut balancer = Balancer::new(TTL);
        let start = Instant::now();
        balancer.plan(&facts, start);
        // Slot 7's lease turned out to be held by a present router not claiming it yet.
        balancer.not_free(7);
        assert_eq!(balancer.plan(&facts, start + TTL), Action::Wait);
        assert_eq!(
            balancer.plan(&facts, start + TTL * 2),
            Action::Take {
                candidates: vec![7],
                wanted: 1
            }
        );
    }
}
