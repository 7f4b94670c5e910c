//! What a scrape writes: the text encoder the exporter's own families share
//! ([`encoder`]), the net/dev parser ([`netdev`]), the `net_interface_*`
//! families ([`scrape`]), the `process_*` ones ([`process`]) and the
//! exporter's own metrics ([`telemetry`]).

pub mod encoder;
pub mod netdev;
pub(crate) mod process;
pub mod scrape;
pub mod telemetry;
