//! What the exporter asks of other programs, bounded in time and bytes: the
//! host's tools ([`command`]), HTTP over a unix socket ([`unix_http`]: the
//! Docker engine and Incus) and TrueNAS's [`middleware`]. Files are read
//! through [`crate::bounded`].

pub mod command;
pub mod middleware;
pub mod unix_http;
