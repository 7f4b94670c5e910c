//! The vocabulary every room shares: the label contract ([`labels`]: names,
//! kinds, the owner label, the interface filter) and who owns what
//! ([`owner`]).

pub mod labels;
pub(crate) mod owner;
