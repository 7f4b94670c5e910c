//! The exporter's own metrics, kept in a process-local `metrics-exporter-prometheus`
//! recorder (not the global one, so tests can run many exporters in one process)
//! and appended to every scrape, with the standard `process_*` ones.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Label, Metadata, Recorder, SharedString};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

const SCRAPE_DURATION: &str = "truenas_net_exporter_scrape_duration_seconds";
const MALFORMED: &str = "truenas_net_exporter_netdev_malformed_lines_total";
const READ_ERRORS: &str = "truenas_net_exporter_netdev_read_errors_total";
const BUILD_INFO: &str = "truenas_net_exporter_build_info";
const TASKS: &str = "truenas_net_exporter_runtime_tasks";
const UP: &str = "truenas_net_exporter_resolver_up";
const LAST_SUCCESS: &str = "truenas_net_exporter_resolver_last_success_timestamp_seconds";
const REFRESH_DURATION: &str = "truenas_net_exporter_resolver_refresh_duration_seconds";
const ERRORS: &str = "truenas_net_exporter_resolver_errors_total";
const LIMIT_HITS: &str = "truenas_net_exporter_limit_hits_total";
const TLS_HANDSHAKE_ERRORS: &str = "truenas_net_exporter_tls_handshake_errors_total";
const SOURCE_UP: &str = "truenas_net_exporter_source_up";
const SOURCE_ERRORS: &str = "truenas_net_exporter_source_errors_total";
const CONNECTIONS: &str = "truenas_net_exporter_http_connections";
const LABEL_COLLISIONS: &str = "truenas_net_exporter_label_collisions";
const NEW_INTERFACE_WAIT: &str = "truenas_net_exporter_new_interface_wait_seconds";
const PEERS_LOST_PACKETS: &str = "truenas_net_exporter_peers_lost_packets_total";
const PEERS_LOST_BYTES: &str = "truenas_net_exporter_peers_lost_bytes_total";

static METADATA: Metadata<'static> = Metadata::new(module_path!(), metrics::Level::INFO, None);

/// How long a render of the own metrics is reused. metrics-exporter-prometheus
/// takes ~8 µs to render them, as long as the whole join at 50 interfaces
/// (criterion, `benches/scrape.rs`); reusing a render keeps the scrape within
/// 1.3x of reading net/dev. State changes that matter invalidate it at once.
const RENDER_TTL: Duration = Duration::from_secs(1);

struct CachedRender {
    at: Instant,
    text: Vec<u8>,
}

/// Handles to the exporter's own metrics.
pub struct Telemetry {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    cache: ArcSwapOption<CachedRender>,
    /// Held while rendering: renders happen one after another, and each
    /// replaces the cache, so the cache only moves forward and no scrape
    /// sees a counter lower than one an earlier scrape saw.
    rendering: Mutex<()>,
    /// Set when a value changed that the next scrape must show.
    stale: Arc<AtomicBool>,
    pub scrape_duration: Histogram,
    pub malformed_lines: Counter,
    pub read_errors: Counter,
    /// Tasks alive in the HTTP runtime: the server and one per open connection.
    pub tasks: Gauge,
    pub connections: Gauge,
    pub tls_handshake_errors: Counter,
    pub label_collisions: Gauge,
    /// What scrapes that met new interfaces waited for the resolvers.
    pub unknown_wait: Histogram,
    /// What the per-peer map had no room for (the kernel's totals).
    pub peers_lost_packets: Counter,
    pub peers_lost_bytes: Counter,
    limits: Vec<Arc<LimitMetric>>,
}

/// One resolver's health metrics, labelled `resolver="<name>"`.
#[derive(Clone)]
pub struct ResolverMetrics {
    pub up: Gauge,
    pub last_success: Gauge,
    pub refresh_duration: Gauge,
    pub errors: Counter,
    stale: Arc<AtomicBool>,
}

/// `source_up` and `source_errors_total` of one source, registered at the
/// source's first outcome on this host (see [`Telemetry::source_health`]).
pub struct SourceHealth {
    recorder: Arc<PrometheusRecorder>,
    resolver: &'static str,
    source: &'static str,
    metrics: std::sync::OnceLock<(Gauge, Counter)>,
    stale: Arc<AtomicBool>,
}

impl SourceHealth {
    fn metrics(&self) -> &(Gauge, Counter) {
        self.metrics.get_or_init(|| {
            let key = |metric: &'static str| {
                Key::from_parts(
                    metric,
                    vec![
                        Label::new("resolver", self.resolver),
                        Label::new("source", self.source),
                    ],
                )
            };
            let up = self.recorder.register_gauge(&key(SOURCE_UP), &METADATA);
            let errors = self
                .recorder
                .register_counter(&key(SOURCE_ERRORS), &METADATA);
            errors.increment(0);
            // A new series: the next scrape shows it.
            self.stale.store(true, Ordering::Relaxed);
            (up, errors)
        })
    }

    /// Whether the source has been found on this host (its series exist).
    pub fn present(&self) -> bool {
        self.metrics.get().is_some()
    }

    /// One outcome of the source on this host: `up` 1 if it worked, else 0
    /// and one error counted. The first makes the series.
    pub fn record(&self, worked: bool) {
        let (up, errors) = self.metrics();
        if worked {
            up.set(1.0);
        } else {
            up.set(0.0);
            errors.increment(1);
        }
    }

    /// The source is not in use now (another took its place, or it is
    /// unreachable for a moment): `up` 0 if it has series, none made if not.
    pub fn idle(&self) {
        if let Some((up, _)) = self.metrics.get() {
            up.set(0.0);
        }
    }
}

impl ResolverMetrics {
    /// The resolver went up or down: the next scrape renders afresh.
    pub fn state_changed(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }
}

impl Telemetry {
    pub fn new() -> Telemetry {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(SCRAPE_DURATION.into()),
                &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25],
            )
            .expect("static, non-empty bucket list")
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(NEW_INTERFACE_WAIT.into()),
                &[0.01, 0.05, 0.1, 0.25, 0.5],
            )
            .expect("static, non-empty bucket list")
            .build_recorder();
        let handle = recorder.handle();
        // The text format's `# TYPE` comes from how a metric is registered;
        // each is described as the kind it is registered as.
        let help = |name: &'static str, help: &'static str| {
            (KeyName::from_const_str(name), SharedString::const_str(help))
        };
        for (name, text) in [
            (
                SCRAPE_DURATION,
                "Time to read net/dev, join labels and write the response.",
            ),
            (
                NEW_INTERFACE_WAIT,
                "Time a scrape that met interfaces the labels did not know yet waited for the resolvers it woke.",
            ),
        ] {
            let (name, text) = help(name, text);
            recorder.describe_histogram(name, None, text);
        }
        for (name, text) in [
            (
                MALFORMED,
                "net/dev lines that could not be parsed and were skipped.",
            ),
            (READ_ERRORS, "Scrapes in which net/dev could not be read."),
            (ERRORS, "Failed resolver refreshes (errors and timeouts)."),
            (
                LIMIT_HITS,
                "Times a limit on something outside the exporter tripped (docs/configuration.md: Limits).",
            ),
            (
                TLS_HANDSHAKE_ERRORS,
                "TLS handshakes that failed (no or a bad client certificate, a client that does not speak TLS).",
            ),
            (SOURCE_ERRORS, "Failed lookups of a source of a resolver."),
            (
                PEERS_LOST_PACKETS,
                "Packets the kernel's per-peer map had no room for ([peers] max_peers); still counted per workload, under peer=\"other\".",
            ),
            (
                PEERS_LOST_BYTES,
                "Bytes of the packets the kernel's per-peer map had no room for.",
            ),
        ] {
            let (name, text) = help(name, text);
            recorder.describe_counter(name, None, text);
        }
        for (name, text) in [
            (BUILD_INFO, "Exporter version; always 1."),
            (
                TASKS,
                "Tasks alive in the HTTP runtime (the server and one per open connection), as of the last scrape.",
            ),
            (UP, "1 if the resolver's last refresh succeeded."),
            (
                LAST_SUCCESS,
                "Unix time of the resolver's last successful refresh.",
            ),
            (REFRESH_DURATION, "Duration of the resolver's last refresh."),
            (CONNECTIONS, "Open HTTP connections."),
            (
                SOURCE_UP,
                "1 if the source (one lookup of a resolver) answered in its last refresh, 0 if it failed; no series while this host has no such source.",
            ),
            (
                LABEL_COLLISIONS,
                "Interfaces left out of the last label table because their labels would repeat another's.",
            ),
        ] {
            let (name, text) = help(name, text);
            recorder.describe_gauge(name, None, text);
        }

        let key = |name: &'static str| Key::from_static_name(name);
        let build_info = recorder.register_gauge(
            &Key::from_parts(
                BUILD_INFO,
                vec![Label::new("version", env!("CARGO_PKG_VERSION"))],
            ),
            &METADATA,
        );
        build_info.set(1.0);
        let t = Telemetry {
            scrape_duration: recorder.register_histogram(&key(SCRAPE_DURATION), &METADATA),
            malformed_lines: recorder.register_counter(&key(MALFORMED), &METADATA),
            read_errors: recorder.register_counter(&key(READ_ERRORS), &METADATA),
            tasks: recorder.register_gauge(&key(TASKS), &METADATA),
            connections: recorder.register_gauge(&key(CONNECTIONS), &METADATA),
            tls_handshake_errors: recorder.register_counter(&key(TLS_HANDSHAKE_ERRORS), &METADATA),
            label_collisions: recorder.register_gauge(&key(LABEL_COLLISIONS), &METADATA),
            unknown_wait: recorder.register_histogram(&key(NEW_INTERFACE_WAIT), &METADATA),
            peers_lost_packets: recorder.register_counter(&key(PEERS_LOST_PACKETS), &METADATA),
            peers_lost_bytes: recorder.register_counter(&key(PEERS_LOST_BYTES), &METADATA),
            limits: Limit::ALL
                .iter()
                .map(|&limit| {
                    let key = Key::from_parts(LIMIT_HITS, vec![Label::new("limit", limit.name())]);
                    let hits = recorder.register_counter(&key, &METADATA);
                    hits.increment(0);
                    Arc::new(LimitMetric {
                        limit,
                        hits,
                        burst: Mutex::new(None),
                    })
                })
                .collect(),
            recorder: Arc::new(recorder),
            handle,
            cache: ArcSwapOption::empty(),
            rendering: Mutex::new(()),
            stale: Arc::new(AtomicBool::new(false)),
        };
        // Present from the first scrape, so absence never has to mean zero.
        t.malformed_lines.increment(0);
        t.read_errors.increment(0);
        t.tls_handshake_errors.increment(0);
        t
    }

    /// The health metrics of one source of a resolver that has several.
    pub fn source(&self, resolver: &'static str, source: &'static str) -> (Gauge, Counter) {
        let key = |metric: &'static str| {
            Key::from_parts(
                metric,
                vec![
                    Label::new("resolver", resolver),
                    Label::new("source", source),
                ],
            )
        };
        let up = self.recorder.register_gauge(&key(SOURCE_UP), &METADATA);
        let errors = self
            .recorder
            .register_counter(&key(SOURCE_ERRORS), &METADATA);
        errors.increment(0);
        (up, errors)
    }

    /// The health of one source of a resolver, as a source this host may
    /// lack: its `source_up` and `source_errors_total` appear at its first
    /// outcome on a host that has it ([`SourceHealth::record`]), so a source
    /// the host lacks has no series at all.
    pub fn source_health(&self, resolver: &'static str, source: &'static str) -> SourceHealth {
        SourceHealth {
            recorder: Arc::clone(&self.recorder),
            resolver,
            source,
            metrics: std::sync::OnceLock::new(),
            stale: Arc::clone(&self.stale),
        }
    }

    /// The counter and log of one limit.
    pub fn limit(&self, limit: Limit) -> Arc<LimitMetric> {
        Arc::clone(&self.limits[limit as usize])
    }

    pub fn resolver(&self, name: &'static str) -> ResolverMetrics {
        let key =
            |metric: &'static str| Key::from_parts(metric, vec![Label::new("resolver", name)]);
        let m = ResolverMetrics {
            up: self.recorder.register_gauge(&key(UP), &METADATA),
            last_success: self.recorder.register_gauge(&key(LAST_SUCCESS), &METADATA),
            refresh_duration: self
                .recorder
                .register_gauge(&key(REFRESH_DURATION), &METADATA),
            errors: self.recorder.register_counter(&key(ERRORS), &METADATA),
            stale: Arc::clone(&self.stale),
        };
        m.up.set(0.0);
        m.last_success.set(0.0);
        m.refresh_duration.set(0.0);
        m.errors.increment(0);
        m
    }

    /// Something the next scrape must show changed (e.g. net/dev became unreadable).
    pub fn state_changed(&self) {
        self.stale.store(true, Ordering::Relaxed);
    }

    /// Appends the text exposition of the exporter's own metrics, reusing a
    /// render younger than [`RENDER_TTL`] unless a state change invalidated it.
    pub fn render_to(&self, out: &mut Vec<u8>) {
        if let Some(cached) = self.fresh_cache() {
            out.extend_from_slice(&cached.text);
            return;
        }
        // A render takes ~8 µs; scrapes that want one at the same moment wait
        // for it in turn, and most then find the one just made.
        let _turn = self.rendering.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cached) = self.fresh_cache() {
            out.extend_from_slice(&cached.text);
            return;
        }
        self.stale.store(false, Ordering::Relaxed);
        let start = out.len();
        // Writing into a Vec cannot fail.
        let _ = self.handle.render_to_write(out);
        crate::expose::process::write(&crate::expose::process::read(), out);
        self.cache.store(Some(Arc::new(CachedRender {
            at: Instant::now(),
            text: out[start..].to_vec(),
        })));
    }

    fn fresh_cache(&self) -> Option<Arc<CachedRender>> {
        if self.stale.load(Ordering::Relaxed) {
            return None;
        }
        self.cache
            .load_full()
            .filter(|cached| cached.at.elapsed() < RENDER_TTL)
    }
}

impl Telemetry {
    /// A fresh render, bypassing the cache (tests, diagnostics).
    pub fn render_fresh(&self) -> String {
        self.handle.render()
    }
}

impl Default for Telemetry {
    fn default() -> Self {
        Telemetry::new()
    }
}

/// A limit on something outside the exporter: a client, a file, a command, a
/// socket. The names are the `limit` label of `..._limit_hits_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A client did not send its request headers in time.
    HttpHeaderTimeout,
    /// A client did not take the response (no write progress) in time.
    HttpWriteTimeout,
    /// The connection cap: an idle connection was closed for a new one, or a
    /// new one refused because every connection was busy.
    HttpConnections,
    /// `--web.max-requests`: a scrape refused with 503.
    HttpRequests,
    /// net/dev larger than its limit.
    NetdevSize,
    /// A read of net/dev (off procfs) that did not finish in time.
    NetdevTimeout,
    /// A command's output larger than its limit.
    CommandOutput,
    /// A command that did not finish in time.
    CommandTimeout,
    /// A Docker API response larger than its limit.
    DockerResponse,
    /// An Incus API response larger than its limit.
    IncusResponse,
    /// The kernel's per-cgroup map is full: new cgroups go uncounted.
    AccountingCgroups,
}

impl Limit {
    pub const ALL: [Limit; 11] = [
        Limit::HttpHeaderTimeout,
        Limit::HttpWriteTimeout,
        Limit::HttpConnections,
        Limit::HttpRequests,
        Limit::NetdevSize,
        Limit::NetdevTimeout,
        Limit::CommandOutput,
        Limit::CommandTimeout,
        Limit::DockerResponse,
        Limit::IncusResponse,
        Limit::AccountingCgroups,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::HttpHeaderTimeout => "http_header_timeout",
            Limit::HttpWriteTimeout => "http_write_timeout",
            Limit::HttpConnections => "http_connections",
            Limit::HttpRequests => "http_requests",
            Limit::AccountingCgroups => "accounting_cgroups",
            Limit::NetdevSize => "netdev_size",
            Limit::NetdevTimeout => "netdev_timeout",
            Limit::CommandOutput => "command_output",
            Limit::CommandTimeout => "command_timeout",
            Limit::DockerResponse => "docker_response",
            Limit::IncusResponse => "incus_response",
        }
    }
}

/// Whether something is failing, remembered so that the log and the
/// render cache hear of changes only, not of every outcome: what the
/// resolvers, each lookup of theirs and the net/dev read share.
#[derive(Debug, Default)]
pub struct Failing(std::sync::atomic::AtomicU8);

/// What an outcome recorded in a [`Failing`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// The same as the last outcome.
    Unchanged,
    /// The first outcome, a success.
    FirstSuccess,
    /// A failure after a success, or the first outcome.
    Failed,
    /// A success after failures.
    Recovered,
}

impl Failing {
    const UNKNOWN: u8 = 0;
    const OK: u8 = 1;
    const FAILING: u8 = 2;

    /// Records one outcome and says what it changed.
    pub fn record(&self, failed: bool) -> Turn {
        let now = if failed { Self::FAILING } else { Self::OK };
        match (self.0.swap(now, Ordering::Relaxed), failed) {
            (before, _) if before == now => Turn::Unchanged,
            (_, true) => Turn::Failed,
            (Self::UNKNOWN, false) => Turn::FirstSuccess,
            (_, false) => Turn::Recovered,
        }
    }
}

/// Hits of one limit come in bursts (a client flood, a stuck mount): the first
/// hit of a burst is logged, with what tripped it; the rest are counted, and
/// the next burst's first log line says how many there were.
pub struct LimitMetric {
    limit: Limit,
    hits: Counter,
    /// When the current burst's last hit was, and how many hits it had.
    burst: Mutex<Option<(Instant, u64)>>,
}

/// A burst ends after this long without a hit.
const BURST_QUIET: Duration = Duration::from_secs(60);

impl LimitMetric {
    /// Counts a hit; logs it if it starts a burst. `what` names the client,
    /// file or command.
    pub fn hit(&self, what: &dyn std::fmt::Display) {
        self.hits.increment(1);
        let mut burst = self.burst.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match &mut *burst {
            Some((last, count)) if now.duration_since(*last) < BURST_QUIET => {
                *last = now;
                *count += 1;
                tracing::debug!(limit = self.limit.name(), %what, "limit reached again");
            }
            previous => {
                let before = previous.map_or(0, |(_, count)| count);
                tracing::warn!(limit = self.limit.name(), %what, previous_burst = before, "limit reached; further hits this minute are only counted");
                *previous = Some((now, 1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each metric's `# TYPE` is the kind it is registered as, and each has
    /// its help.
    #[test]
    fn types_and_help_match_the_metrics() {
        let telemetry = Telemetry::new();
        let _resolver = telemetry.resolver("docker");
        let _source = telemetry.source("cgroups", "bpf");
        telemetry.scrape_duration.record(0.001);
        telemetry.unknown_wait.record(0.01);
        let text = telemetry.render_fresh();
        let kinds = [
            (SCRAPE_DURATION, "histogram"),
            (NEW_INTERFACE_WAIT, "histogram"),
            (MALFORMED, "counter"),
            (READ_ERRORS, "counter"),
            (ERRORS, "counter"),
            (LIMIT_HITS, "counter"),
            (TLS_HANDSHAKE_ERRORS, "counter"),
            (SOURCE_ERRORS, "counter"),
            (BUILD_INFO, "gauge"),
            (TASKS, "gauge"),
            (UP, "gauge"),
            (LAST_SUCCESS, "gauge"),
            (REFRESH_DURATION, "gauge"),
            (CONNECTIONS, "gauge"),
            (SOURCE_UP, "gauge"),
            (LABEL_COLLISIONS, "gauge"),
        ];
        for (name, kind) in kinds {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} is a {kind}:\n{text}"
            );
            assert!(text.contains(&format!("# HELP {name} ")), "{name} has help");
        }
    }

    /// Scrapes from several threads while resolvers change state (each
    /// change asks for a fresh render): no thread ever reads a counter lower
    /// than it read before.
    #[test]
    fn counters_never_go_back_across_concurrent_scrapes() {
        let telemetry = Arc::new(Telemetry::new());
        let stop = Arc::new(AtomicBool::new(false));
        let changer = {
            let (telemetry, stop) = (Arc::clone(&telemetry), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    telemetry.state_changed();
                    std::thread::sleep(Duration::from_micros(200));
                }
            })
        };
        let scrapers: Vec<_> = (0..4)
            .map(|_| {
                let telemetry = Arc::clone(&telemetry);
                std::thread::spawn(move || {
                    let mut last = 0.0;
                    let mut backwards = 0;
                    for _ in 0..20_000 {
                        telemetry.malformed_lines.increment(1);
                        let mut out = Vec::new();
                        telemetry.render_to(&mut out);
                        let text = String::from_utf8(out).unwrap();
                        let value: f64 = text
                            .lines()
                            .find_map(|l| l.strip_prefix(&format!("{MALFORMED} ")))
                            .and_then(|v| v.parse().ok())
                            .expect("the counter is rendered");
                        if value < last {
                            backwards += 1;
                        }
                        last = value;
                    }
                    backwards
                })
            })
            .collect();
        let backwards: usize = scrapers.into_iter().map(|t| t.join().unwrap()).sum();
        stop.store(true, Ordering::Relaxed);
        changer.join().unwrap();
        assert_eq!(backwards, 0, "renders that went back");
        telemetry.state_changed();
        let mut out = Vec::new();
        telemetry.render_to(&mut out);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .contains(&format!("{MALFORMED} 80000"))
        );
    }

    #[test]
    fn a_failing_state_says_what_changed() {
        let state = Failing::default();
        assert_eq!(state.record(false), Turn::FirstSuccess);
        assert_eq!(state.record(false), Turn::Unchanged);
        assert_eq!(state.record(true), Turn::Failed);
        assert_eq!(state.record(true), Turn::Unchanged);
        assert_eq!(state.record(false), Turn::Recovered);
        let fails_first = Failing::default();
        assert_eq!(fails_first.record(true), Turn::Failed);
    }
}
