//! The cap on scrapes served at once (`--web.max-requests`), shared between
//! client addresses: an address may hold at most `max / (n + 2)` permits, `n`
//! being the number of other addresses that hold one (at least one permit
//! each). Alone, a client gets half the permits; a flood from one host then
//! leaves the other half to everyone else, and each newcomer shrinks the
//! share of those already in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ScrapePermits {
    max: usize,
    /// Permits held, by client address; addresses holding none are removed.
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One scrape's permit, given back when dropped.
pub struct Permit {
    permits: Arc<ScrapePermits>,
    peer: IpAddr,
}

/// Why a permit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every permit is taken.
    Full,
    /// This address holds its share already.
    Share { held: usize, share: usize },
}

impl ScrapePermits {
    pub fn new(max: usize) -> Arc<ScrapePermits> {
        Arc::new(ScrapePermits {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, usize>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A permit for a scrape from `peer`, if the cap and its share allow one.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refused> {
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        let mut held = self.lock();
        if held.values().sum::<usize>() >= self.max {
            return Err(Refused::Full);
        }
        let mine = held.get(&peer).copied().unwrap_or(0);
        let others = held.len() - usize::from(mine > 0);
        let share = (self.max / (others + 2)).max(1);
        if mine >= share {
            return Err(Refused::Share { held: mine, share });
        }
        *held.entry(peer).or_insert(0) += 1;
        Ok(Permit {
            permits: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.permits.lock();
        if let Some(count) = held.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn one_address_cannot_take_every_permit() {
        let permits = ScrapePermits::new(40);
        let flood: Vec<Permit> = (0..100)
            .filter_map(|_| permits.try_acquire(ip(1)).ok())
            .collect();
        assert_eq!(flood.len(), 20, "alone, half the permits");
        assert_eq!(
            permits.try_acquire(ip(1)).err(),
            Some(Refused::Share {
                held: 20,
                share: 20
            })
        );
        // Another host's Prometheus still gets in, and so does a third host.
        let prometheus = permits
            .try_acquire(ip(2))
            .expect("a permit for another host");
        let third: Vec<Permit> = (0..100)
            .filter_map(|_| permits.try_acquire(ip(3)).ok())
            .collect();
        assert_eq!(third.len(), 10, "40 / (2 others + 2)");
        assert!(permits.try_acquire(ip(4)).is_ok(), "room is left");
        drop(prometheus);
        drop(flood);
        assert_eq!(permits.lock().get(&ip(1)), None, "given back");
        assert_eq!(
            permits.lock().values().sum::<usize>(),
            10,
            "the third's remain"
        );
    }

    #[test]
    fn the_cap_holds_and_mapped_addresses_are_one() {
        let permits = ScrapePermits::new(1);
        let only = permits.try_acquire(ip(1)).unwrap();
        assert_eq!(permits.try_acquire(ip(2)).err(), Some(Refused::Full));
        drop(only);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let _a = permits.try_acquire(mapped).unwrap();
        assert_eq!(permits.lock().keys().next(), Some(&ip(1)));
    }
}
