//! Resolvers: each source of facts about interfaces lives in its own module and
//! produces an immutable snapshot that the composer joins. Docker, VM and LXC
//! sources publish [`Owners`](crate::compose::Owners); topology publishes kernel facts.

pub mod docker;
pub mod lxc;
pub mod procfs;
pub mod topology;
pub mod vm;
