//! One integration-test binary; each module is a layer of what CONTRIBUTING.md's
//! "Tests and benchmarks" lists.
//! Tests that need root or a tool print `SKIP: <reason>` when it is missing;
//! with `CI` set (to anything but `false` or `0`), or `TNE_REQUIRE_ALL=1`, a
//! skip is a failure.

mod accounting;
mod alloc;
mod browser;
mod cli;
mod container;
mod docker;
mod docs;
mod errors;
mod events;
mod fake_middleware;
mod fixture_host;
mod http;
mod hung;
mod influx;
mod kernel;
mod limits;
mod live;
mod monitoring;
mod names;
mod peer_map;
mod peers;
mod prometheus;
mod security;
mod support;
mod victoria;
mod workflow;
mod workloads;
