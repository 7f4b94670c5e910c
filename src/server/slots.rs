//! The cap on scrapes served at once (`--web.max-requests`), shared between
//! client addresses: an address may hold at most `max / (n + 2)` slots, `n`
//! being the number of other addresses that hold one (at least one slot
//! each). Alone, a client gets half the slots; a flood from one host then
//! leaves the other half to everyone else, and each newcomer shrinks the
//! share of those already in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

pub struct ScrapeSlots {
    max: usize,
    /// Slots held, by client address; addresses holding none are removed.
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One scrape's slot, given back when dropped.
pub struct Slot {
    slots: Arc<ScrapeSlots>,
    peer: IpAddr,
}

/// Why a slot was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Every slot is taken.
    Full,
    /// This address holds its share already.
    Share { held: usize, share: usize },
}

impl ScrapeSlots {
    pub fn new(max: usize) -> Arc<ScrapeSlots> {
        Arc::new(ScrapeSlots {
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

    /// A slot for a scrape from `peer`, if the cap and its share allow one.
    pub fn try_acquire(self: &Arc<Self>, peer: IpAddr) -> Result<Slot, Refused> {
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
        Ok(Slot {
            slots: Arc::clone(self),
            peer,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.lock();
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
    fn one_address_cannot_take_every_slot() {
        let slots = ScrapeSlots::new(40);
        let flood: Vec<Slot> = (0..100)
            .filter_map(|_| slots.try_acquire(ip(1)).ok())
            .collect();
        assert_eq!(flood.len(), 20, "alone, half the slots");
        assert_eq!(
            slots.try_acquire(ip(1)).err(),
            Some(Refused::Share {
                held: 20,
                share: 20
            })
        );
        // Another host's Prometheus still gets in, and so does a third host.
        let prometheus = slots.try_acquire(ip(2)).expect("a slot for another host");
        let third: Vec<Slot> = (0..100)
            .filter_map(|_| slots.try_acquire(ip(3)).ok())
            .collect();
        assert_eq!(third.len(), 10, "40 / (2 others + 2)");
        assert!(slots.try_acquire(ip(4)).is_ok(), "room is left");
        drop(prometheus);
        drop(flood);
        assert_eq!(slots.lock().get(&ip(1)), None, "given back");
        assert_eq!(
            slots.lock().values().sum::<usize>(),
            10,
            "the third's remain"
        );
    }

    #[test]
    fn the_cap_holds_and_mapped_addresses_are_one() {
        let slots = ScrapeSlots::new(1);
        let only = slots.try_acquire(ip(1)).unwrap();
        assert_eq!(slots.try_acquire(ip(2)).err(), Some(Refused::Full));
        drop(only);
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        let _a = slots.try_acquire(mapped).unwrap();
        assert_eq!(slots.lock().keys().next(), Some(&ip(1)));
    }
}
