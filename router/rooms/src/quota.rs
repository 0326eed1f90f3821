//! Hosted mode's quota policies, as pure functions: whether a process may admit one more of a
//! tenant's connections (an edge) or rooms (a router) now, and an edge's part of a tenant's message
//! rate. docs/quotas.md explains them, and why the overshoot they allow is bounded.
//!
//! In a cluster, a process knows its own count exactly and the others' as they last reported it
//! (every usage interval). Time is cut into *rounds*: a round ends when the process publishes its
//! report, which carries everything it admitted in the round. Within one round a process admits at
//! most `burst` of a tenant while other processes admit for it too, and fewer as the headroom it
//! sees shrinks (its `1 / processes` part of it), so the others' unseen admissions stay bounded.

/// What a process knows when it decides on one admission for one tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The tenant's limit; 0 means unlimited.
    pub limit: u64,
    /// What this process holds now, exactly (admissions in progress included).
    pub own: u64,
    /// What the other processes last reported, summed.
    pub others: u64,
    /// How many other processes admit for the tenant (edges, or routers) as far as this one knows.
    pub peers: u64,
    /// What this process admitted for the tenant in the current round.
    pub this_round: u64,
    /// Most admissions per round while peers exist (`--quota-admit-burst`).
    pub burst: u64,
}

/// The answer to an [`Admission`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Admit it now (and count it in this round).
    Admit,
    /// There is headroom, but this process has used its part of it for this round: ask again in
    /// the next round.
    Wait,
    /// The limit is reached, as far as this process can tell.
    Refuse,
}

/// Decides one admission: refused at the limit, admitted while the round's grant lasts, asked to
/// wait for the next round otherwise. A process alone (no peers) sees the exact count and admits up
/// to the limit at once.
pub fn decide(a: &Admission) -> Decision {
    if a.limit == 0 {
        return Decision::Admit;
    }
    let seen = a.own.saturating_add(a.others);
    if seen >= a.limit {
        return Decision::Refuse;
    }
    if a.peers == 0 {
        return Decision::Admit;
    }
    if a.this_round < round_grant(a.limit - seen, a.peers, a.burst) {
        Decision::Admit
    } else {
        Decision::Wait
    }
}

/// How many admissions the current round allows with `headroom` left (as this process sees it) and
/// `peers` other processes: this process's equal part of the headroom, rounded up, at most `burst`
/// and at least one. When every process sees the same headroom, equal parts pass the limit by at
/// most one per other process (the rounding); the cap bounds what stale views can add
/// (docs/quotas.md).
pub fn round_grant(headroom: u64, peers: u64, burst: u64) -> u64 {
    let processes = peers.saturating_add(1);
    headroom.div_ceil(processes).min(burst).max(1)
}

/// The most a tenant can exceed a limit by in a cluster of `processes` admitting processes, each
/// admitting at most `burst` per round, while every report reaches every process within one round:
/// `(processes - 1) × 2 × burst` (docs/quotas.md proves it).
pub fn overshoot_bound(processes: u64, burst: u64) -> u64 {
    processes
        .saturating_sub(1)
        .saturating_mul(2)
        .saturating_mul(burst)
}

/// An edge's token bucket for one tenant's messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateShare {
    /// Messages per second it refills.
    pub per_second: f64,
    /// Messages it holds at most.
    pub burst: f64,
}

/// An edge's part of a tenant's message rate (`messages_per_second`, bursts of `message_burst`, 0
/// for one second's worth): proportional to its part of the tenant's connections, `own` of
/// `total` (cluster-wide, as this edge sees it). The parts add up to the tenant's rate when the
/// counts are current. `None`: no limit. A part holds at least one message, so a connection is
/// never shut out entirely by rounding.
pub fn rate_share(
    messages_per_second: u32,
    message_burst: u32,
    own: u64,
    total: u64,
) -> Option<RateShare> {
    if messages_per_second == 0 {
        return None;
    }
    let burst = if message_burst == 0 {
        messages_per_second
    } else {
        message_burst
    };
    // An edge with no connection of the tenant yet prices the one it is about to have.
    let own = own.max(1);
    let share = own as f64 / total.max(own) as f64;
    Some(RateShare {
        per_second: f64::from(messages_per_second) * share,
        burst: (f64::from(burst) * share).max(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(limit: u64, own: u64, others: u64, peers: u64, this_round: u64) -> Admission {
        Admission {
            limit,
            own,
            others,
            peers,
            this_round,
            burst: 4,
        }
    }

    #[test]
    fn decisions() {
        use Decision::*;
        // (limit, own, others, peers, admitted this round) -> decision; burst 4.
        let table = [
            // Unlimited: always.
            ((0, 1000, 1000, 3, 1000), Admit),
            // Alone: exact, up to the limit, no rounds.
            ((10, 9, 0, 0, 9), Admit),
            ((10, 10, 0, 0, 0), Refuse),
            // At or over the limit as seen: refused, whoever holds them.
            ((10, 4, 6, 1, 0), Refuse),
            ((10, 0, 12, 1, 0), Refuse),
            // Headroom 10, two processes: five each per round, but at most the burst of 4.
            ((10, 0, 0, 1, 3), Admit),
            ((10, 0, 0, 1, 4), Wait),
            // Headroom 3 of 2 processes: 2 this round.
            ((10, 4, 3, 1, 1), Admit),
            ((10, 4, 3, 1, 2), Wait),
            // Headroom 1 among many: still one per round, never stuck.
            ((10, 0, 9, 5, 0), Admit),
            ((10, 0, 9, 5, 1), Wait),
        ];
        for ((limit, own, others, peers, this_round), want) in table {
            let a = admission(limit, own, others, peers, this_round);
            assert_eq!(decide(&a), want, "{a:?}");
        }
    }

    #[test]
    fn grants() {
        // (headroom, peers, burst) -> grant
        let table = [
            ((10, 0, 100), 10),
            ((10, 1, 100), 5),
            ((11, 1, 100), 6),
            ((10, 1, 3), 3),
            ((1, 9, 3), 1),
            ((0, 1, 3), 1),
            ((u64::MAX, u64::MAX, 7), 1),
        ];
        for ((headroom, peers, burst), want) in table {
            assert_eq!(
                round_grant(headroom, peers, burst),
                want,
                "{headroom} {peers} {burst}"
            );
        }
        assert_eq!(overshoot_bound(1, 32), 0);
        assert_eq!(overshoot_bound(2, 2), 4);
        assert_eq!(overshoot_bound(4, 32), 192);
    }

    /// Processes that all see the same headroom take equal parts of it: together they reach the
    /// limit and pass it by at most one per other process (the parts are rounded up, so that the
    /// last of the headroom is not left unused).
    #[test]
    fn equal_views_overshoot_at_most_one_per_other_process() {
        for (limit, processes, burst) in [(10, 2, 2), (10, 3, 100), (7, 4, 1), (100, 5, 8)] {
            let mut held = vec![0u64; processes];
            for _round in 0..200 {
                // Everyone starts the round with everyone's counts.
                let start = held.clone();
                let total: u64 = start.iter().sum();
                for (i, own) in held.iter_mut().enumerate() {
                    let mut this_round = 0;
                    // A burst of demand: admit until told to wait or refused.
                    loop {
                        let a = Admission {
                            limit,
                            own: *own,
                            others: total - start[i],
                            peers: processes as u64 - 1,
                            this_round,
                            burst,
                        };
                        if decide(&a) != Decision::Admit {
                            break;
                        }
                        *own += 1;
                        this_round += 1;
                    }
                }
            }
            let total: u64 = held.iter().sum();
            assert!(
                (limit..limit + processes as u64).contains(&total),
                "{limit} {processes} {burst}: {total}"
            );
        }
    }

    /// The worst case the bound covers: every process sees the others' counts as they were two
    /// rounds ago (a report still in flight and the round before), and all demand arrives at once.
    #[test]
    fn stale_views_overshoot_at_most_the_bound() {
        for (limit, processes, burst) in [(10, 2, 2), (10, 3, 4), (50, 4, 3), (5, 2, 8)] {
            let mut history: Vec<Vec<u64>> = vec![vec![0; processes]; 2];
            let mut held = vec![0u64; processes];
            let mut most = 0;
            for _round in 0..100 {
                let seen = history[history.len() - 2].clone();
                for (i, own) in held.iter_mut().enumerate() {
                    let others: u64 = seen.iter().sum::<u64>() - seen[i];
                    let mut this_round = 0;
                    while decide(&Admission {
                        limit,
                        own: *own,
                        others,
                        peers: processes as u64 - 1,
                        this_round,
                        burst,
                    }) == Decision::Admit
                    {
                        *own += 1;
                        this_round += 1;
                    }
                }
                most = most.max(held.iter().sum::<u64>());
                history.push(held.clone());
            }
            let bound = overshoot_bound(processes as u64, burst);
            assert!(most >= limit, "{limit} {processes} {burst}: {most}");
            assert!(
                most <= limit + bound,
                "{limit} {processes} {burst}: {most} > {limit} + {bound}"
            );
        }
    }

    #[test]
    fn rate_shares_follow_connections() {
        assert_eq!(rate_share(0, 10, 1, 1), None);
        let all = rate_share(10, 0, 3, 3).unwrap();
        assert_eq!((all.per_second, all.burst), (10.0, 10.0));
        let quarter = rate_share(20, 8, 1, 4).unwrap();
        assert_eq!((quarter.per_second, quarter.burst), (5.0, 2.0));
        // A stale total below the own count: the own count is the truth.
        let stale = rate_share(20, 8, 4, 2).unwrap();
        assert_eq!((stale.per_second, stale.burst), (20.0, 8.0));
        // A tiny part still holds one message.
        let tiny = rate_share(10, 10, 1, 100).unwrap();
        assert_eq!((tiny.per_second, tiny.burst), (0.1, 1.0));
        // Parts add up to the tenant's rate.
        let parts: f64 = [(1, 6), (2, 6), (3, 6)]
            .iter()
            .map(|&(own, total)| rate_share(12, 0, own, total).unwrap().per_second)
            .sum();
        assert!((parts - 12.0).abs() < 1e-9);
    }
}
