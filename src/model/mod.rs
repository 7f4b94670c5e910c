//! The label model: the label contract ([`labels`]), who owns what
//! ([`owner`]), the [`composer`] that joins the resolvers' snapshots into one
//! label table, and the [`hub`] that holds the latest of each and wakes the
//! resolvers.

pub mod composer;
pub mod hub;
pub mod labels;
pub(crate) mod owner;
