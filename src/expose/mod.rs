//! The text the exporter writes and what it says about itself: the text
//! format and its one escaping rule ([`encoder`]), the net/dev parser
//! ([`netdev`]), the `process_*` families ([`process`]) and the exporter's
//! own metrics ([`telemetry`]). The scrape that puts them together is
//! [`crate::scrape`].

pub mod encoder;
pub mod netdev;
pub(crate) mod process;
pub mod telemetry;
