//! The exporter's own metrics, kept in a process-local `metrics-exporter-prometheus`
//! recorder (not the global one, so tests can run many exporters in one process)
//! and appended to every scrape.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
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
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    cache: ArcSwapOption<CachedRender>,
    /// Set when a value changed that the next scrape must show.
    stale: Arc<AtomicBool>,
    pub scrape_duration: Histogram,
    pub malformed_lines: Counter,
    pub read_errors: Counter,
    /// Tasks alive in the HTTP runtime: the server and one per open connection.
    pub tasks: Gauge,
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
            .build_recorder();
        let handle = recorder.handle();
        let describe = |name: &'static str, help: &'static str| {
            recorder.describe_gauge(
                KeyName::from_const_str(name),
                None,
                SharedString::const_str(help),
            );
        };
        describe(
            SCRAPE_DURATION,
            "Time to read net/dev, join labels and write the response.",
        );
        describe(
            MALFORMED,
            "net/dev lines that could not be parsed and were skipped.",
        );
        describe(READ_ERRORS, "Scrapes in which net/dev could not be read.");
        describe(BUILD_INFO, "Exporter version; always 1.");
        describe(
            TASKS,
            "Tasks alive in the HTTP runtime (the server and one per open connection), as of the last scrape.",
        );
        describe(UP, "1 if the resolver's last refresh succeeded.");
        describe(
            LAST_SUCCESS,
            "Unix time of the resolver's last successful refresh.",
        );
        describe(REFRESH_DURATION, "Duration of the resolver's last refresh.");
        describe(ERRORS, "Failed resolver refreshes (errors and timeouts).");

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
            recorder,
            handle,
            cache: ArcSwapOption::empty(),
            stale: Arc::new(AtomicBool::new(false)),
        };
        // Present from the first scrape, so absence never has to mean zero.
        t.malformed_lines.increment(0);
        t.read_errors.increment(0);
        t
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
        if !self.stale.load(Ordering::Relaxed)
            && let Some(cached) = &*self.cache.load()
            && cached.at.elapsed() < RENDER_TTL
        {
            out.extend_from_slice(&cached.text);
            return;
        }
        self.stale.store(false, Ordering::Relaxed);
        let start = out.len();
        // Writing into a Vec cannot fail.
        let _ = self.handle.render_to_write(out);
        self.cache.store(Some(Arc::new(CachedRender {
            at: Instant::now(),
            text: out[start..].to_vec(),
        })));
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
