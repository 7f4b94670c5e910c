//! The vocabulary every room shares: the label contract ([`labels`]: names,
//! kinds, the owner label, the interface filter), who owns what
//! ([`owner`]), and how a remote peer is labelled ([`peer`]).

pub mod labels;
pub(crate) mod owner;
pub mod peer;
