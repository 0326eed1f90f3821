//! Free loopback ports for one coturn: a listening port free for UDP and TCP, and a small range for
//! its relays, none of them handed to another coturn of this process while it runs.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::ops::RangeInclusive;
use std::sync::{Mutex, PoisonError};

use anyhow::{Result, bail};

/// Relay ports per server: each allocation takes one (two with RTCP), and a test makes a few.
const RELAY_PORTS: u16 = 16;

/// Attempts at finding free ports before giving up.
const ATTEMPTS: usize = 100;

/// Ports given to running coturns of this process.
static TAKEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Ports held for one coturn, given back on drop.
#[derive(Debug)]
pub(super) struct Reserved {
    /// The STUN/TURN port, UDP and TCP.
    pub(super) listen: u16,
    /// The relay ports (UDP).
    pub(super) relay: RangeInclusive<u16>,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
        taken.remove(&self.listen);
        for port in self.relay.clone() {
            taken.remove(&port);
        }
    }
}

/// Finds and reserves the ports of one coturn.
pub(super) fn reserve() -> Result<Reserved> {
    let mut taken = TAKEN.lock().unwrap_or_else(PoisonError::into_inner);
    let listen = (0..ATTEMPTS)
        .find_map(|_| free_port(&taken, 1))
        .ok_or_else(|| anyhow::anyhow!("no free loopback port for turnserver"))?;
    taken.insert(listen);
    let Some(first) = (0..ATTEMPTS).find_map(|_| free_port(&taken, RELAY_PORTS)) else {
        taken.remove(&listen);
        bail!("no {RELAY_PORTS} free loopback ports in a row for turnserver's relays");
    };
    let relay = first..=first + (RELAY_PORTS - 1);
    taken.extend(relay.clone());
    Ok(Reserved { listen, relay })
}

/// The first of `count` consecutive ports that are free now (the first for TCP and UDP, the others
/// for UDP) and not taken, starting at a port the kernel picked; `None` to try again.
fn free_port(taken: &BTreeSet<u16>, count: u16) -> Option<u16> {
    let tcp = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
    let first = tcp.local_addr().ok()?.port();
    let last = first.checked_add(count - 1)?;
    // Held until all are checked, so that the same port is not checked twice.
    let mut held = Vec::new();
    for port in first..=last {
        if taken.contains(&port) {
            return None;
        }
        held.push(UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).ok()?);
    }
    Some(first)
}
