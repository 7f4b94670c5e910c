//! The page's grouping: the interfaces of one read under their owners, in
//! the page's order (by owner kind, then name; the script re-sorts by
//! traffic). Owners come composed; nothing here decides one.

use std::sync::Arc;

use super::api::Entry;
use crate::owner::{Owner, OwnerKind};

/// One owner and its interfaces, by interface name.
pub struct Group<'d, 'a> {
    pub owner: &'a Arc<Owner>,
    pub interfaces: Vec<&'d Entry<'a>>,
}

/// The interfaces under their owners: by owner kind, then name (bytes).
pub fn by_owner<'d, 'a>(entries: &'d [Entry<'a>]) -> Vec<Group<'d, 'a>> {
    let mut groups: Vec<Group<'d, 'a>> = Vec::new();
    let mut sorted: Vec<&Entry<'a>> = entries.iter().collect();
    // Stable: within an owner, interfaces stay by name.
    sorted.sort_by(|a, b| key(&a.source.owner).cmp(&key(&b.source.owner)));
    for entry in sorted {
        let owner = &entry.source.owner;
        match groups.last_mut() {
            Some(g) if **g.owner == **owner => g.interfaces.push(entry),
            _ => groups.push(Group {
                owner,
                interfaces: vec![entry],
            }),
        }
    }
    groups
}

fn key(owner: &Owner) -> (OwnerKind, &[u8]) {
    (owner.kind, owner.name.as_bytes())
}
