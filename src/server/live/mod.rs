//! The live view: `/` lists every interface under its owner (an app, a
//! container, a VM, a system container, a Docker network, the host's NICs and
//! bridges), and, where the kernel counts per cgroup, every workload (a
//! service's, a host-network container's sockets) under its owner too,
//! rendered on the server ([`html`]) so it reads without
//! JavaScript; the embedded `live.js` then polls `/api/v1/interfaces`
//! ([`api`]) every 2 s and turns two reads into rates in the browser, and
//! keeps their last minutes there for its sparklines, so the exporter keeps
//! no state per client and does nothing while nobody looks.
//!
//! Both are built from one join of net/dev with the label table, as a scrape
//! is, and read the composed interfaces and owners as they are: the grouping
//! ([`group`]) decides nothing. The page's Content-Security-Policy allows no
//! inline script.

pub mod api;
pub mod group;
pub mod html;

pub use api::Document;

pub const SCRIPT: &str = include_str!("live.js");
pub const STYLE: &str = include_str!("live.css");

/// The page, its script and style may only load from this origin and never
/// run inline code: a name that slipped through as markup would still not run.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";
