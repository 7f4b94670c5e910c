//! Everything the exporter asks outside itself, bounded in time and bytes:
//! file reads and the worker threads that do them ([`bounded`]), the host's
//! tools ([`command`]), HTTP over a unix socket ([`unix_http`]) and TrueNAS's
//! [`middleware`].

pub mod bounded;
pub mod command;
pub mod middleware;
pub mod unix_http;
