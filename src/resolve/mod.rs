//! Runs a [`Source`]: a [`Resolver`] refreshes it on its interval or when
//! woken, bounds every refresh by a timeout, records health metrics, logs once
//! per state change, and hands each good snapshot to its publisher. A failed
//! refresh publishes nothing, so the last good snapshot (and its labels) stays.

pub mod sources;
pub mod wakes;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::Schedule;
use crate::expose::telemetry::{Failing, ResolverMetrics, Turn};
use crate::resolve::sources::{ResolverId, Source};

/// Wake-triggered refreshes are spaced at least this far apart, so that a burst
/// of engine events (a `docker run` sends a connect, then a start) costs one
/// refresh, or two if events arrive while the first runs, not one per event.
/// Short, because it delays a new container's labels: with 1 s they took
/// ~700 ms to appear, with 250 ms 60-240 ms.
pub const MIN_WAKE_GAP: Duration = Duration::from_millis(250);

/// After a refresh that panicked, the next waits this long, doubling up to
/// the interval: a source that panics on every refresh must not spin.
pub const PANIC_BACKOFF: Duration = Duration::from_secs(1);

/// Tracks health across refreshes so logs fire on changes, not every interval.
pub struct Health {
    metrics: ResolverMetrics,
    failing: Failing,
}

impl Health {
    pub fn new(metrics: ResolverMetrics) -> Health {
        Health {
            metrics,
            failing: Failing::default(),
        }
    }

    fn succeeded(&mut self, id: ResolverId) {
        self.metrics.up.set(1.0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        self.metrics.last_success.set(now.as_secs_f64());
        match self.failing.record(false) {
            Turn::Unchanged => {}
            Turn::Recovered => {
                self.metrics.state_changed();
                tracing::info!(resolver = id.name(), "resolver recovered");
            }
            Turn::FirstSuccess | Turn::Failed => self.metrics.state_changed(),
        }
    }

    fn failed(&mut self, id: ResolverId, error: &str) {
        self.metrics.up.set(0.0);
        self.metrics.errors.increment(1);
        if self.failing.record(true) == Turn::Unchanged {
            tracing::debug!(resolver = id.name(), %error, "resolver still failing");
        } else {
            self.metrics.state_changed();
            tracing::warn!(resolver = id.name(), %error, "resolver failing; keeping last good labels");
        }
    }
}

/// Receives each good snapshot (the hub, in the exporter).
pub type Publish<T> = Box<dyn Fn(T) + Send + Sync>;

/// A source with its schedule, wake-up, health and publisher.
pub struct Resolver<S: Source> {
    source: S,
    schedule: Schedule,
    wake: Arc<Notify>,
    health: Health,
    publish: Publish<S::Snapshot>,
}

impl<S: Source> Resolver<S> {
    pub fn new(
        source: S,
        schedule: Schedule,
        wake: Arc<Notify>,
        metrics: ResolverMetrics,
        publish: Publish<S::Snapshot>,
    ) -> Resolver<S> {
        Resolver {
            source,
            schedule,
            wake,
            health: Health::new(metrics),
            publish,
        }
    }

    /// One bounded refresh; a good snapshot is published. Returns whether it worked.
    pub async fn refresh(&mut self) -> bool {
        refresh(
            &self.source,
            self.schedule.timeout,
            &mut self.health,
            &self.publish,
        )
        .await
    }

    /// Refreshes at once, then on every interval tick or wake, until `shutdown`
    /// is cancelled; the source's own [`Source::watch`] runs alongside.
    pub async fn run(self, shutdown: CancellationToken) {
        let Resolver {
            source,
            schedule,
            wake,
            mut health,
            publish,
        } = self;
        let watcher = watch_until_shutdown(&source, shutdown.clone());
        let refresher = async {
            let mut backoff = PANIC_BACKOFF;
            let mut ticker = tokio::time::interval(schedule.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last = None::<tokio::time::Instant>;
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = ticker.tick() => {}
                    _ = wake.notified() => {
                        if let Some(last) = last {
                            tokio::select! {
                                _ = shutdown.cancelled() => return,
                                _ = tokio::time::sleep_until(last + MIN_WAKE_GAP) => {}
                            }
                        }
                    }
                }
                last = Some(tokio::time::Instant::now());
                // This refresh answers every wake so far; only a wake that
                // arrives while it runs asks for another.
                let _ = wake.notified().now_or_never();
                let outcome = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    outcome = refresh_once(&source, schedule.timeout, &mut health, &publish) => outcome,
                };
                if outcome == Outcome::Panicked {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(schedule.interval.max(PANIC_BACKOFF));
                } else {
                    backoff = PANIC_BACKOFF;
                }
            }
        };
        futures_util::future::join(refresher, watcher).await;
    }
}

/// The source's [`Source::watch`] until shutdown, started again (after a
/// backoff) if it panics or ends early.
async fn watch_until_shutdown<S: Source>(source: &S, shutdown: CancellationToken) {
    let mut backoff = PANIC_BACKOFF;
    loop {
        let watched = AssertUnwindSafe(source.watch(shutdown.clone()))
            .catch_unwind()
            .await;
        if shutdown.is_cancelled() {
            return;
        }
        match watched {
            Ok(()) => return,
            Err(panic) => tracing::error!(
                resolver = S::ID.name(),
                panic = %panic_message(&*panic),
                "the resolver's watch panicked; starting it again"
            ),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Published,
    Failed,
    Panicked,
}

async fn refresh<S: Source>(
    source: &S,
    timeout: Duration,
    health: &mut Health,
    publish: &Publish<S::Snapshot>,
) -> bool {
    refresh_once(source, timeout, health, publish).await == Outcome::Published
}

/// One bounded refresh. A panic in the source is caught here: the resolver
/// counts it as a failure (`resolver_up` 0), logs its message and goes on.
async fn refresh_once<S: Source>(
    source: &S,
    timeout: Duration,
    health: &mut Health,
    publish: &Publish<S::Snapshot>,
) -> Outcome {
    let started = tokio::time::Instant::now();
    let result =
        tokio::time::timeout(timeout, AssertUnwindSafe(source.refresh()).catch_unwind()).await;
    health
        .metrics
        .refresh_duration
        .set(started.elapsed().as_secs_f64());
    match result {
        Ok(Ok(Ok(snapshot))) => {
            health.succeeded(S::ID);
            publish(snapshot);
            Outcome::Published
        }
        Ok(Ok(Err(e))) => {
            health.failed(S::ID, &e.to_string());
            Outcome::Failed
        }
        Ok(Err(panic)) => {
            let message = panic_message(&*panic);
            tracing::error!(resolver = S::ID.name(), panic = %message, "a refresh panicked; the resolver goes on with its last good labels");
            health.failed(S::ID, &format!("the refresh panicked: {message}"));
            Outcome::Panicked
        }
        Err(_) => {
            let mut error = format!(
                "refresh timed out after {}",
                humantime::format_duration(timeout)
            );
            if let Some(what) = source.stuck_on() {
                error.push_str(&format!(" while reading {what}"));
            }
            health.failed(S::ID, &error);
            Outcome::Failed
        }
    }
}

/// A [`Resolver`] of any source, so the exporter can hold one list of them.
pub trait AnyResolver: Send {
    fn id(&self) -> ResolverId;
    /// [`Resolver::run`].
    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, ()>;
    /// [`Resolver::refresh`].
    fn refresh(&mut self) -> BoxFuture<'_, bool>;
}

impl<S: Source> AnyResolver for Resolver<S> {
    fn id(&self) -> ResolverId {
        S::ID
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(Resolver::run(*self, shutdown))
    }

    fn refresh(&mut self) -> BoxFuture<'_, bool> {
        Box::pin(Resolver::refresh(self))
    }
}

#[cfg(test)]
mod tests {
    //! The loop on paused Tokio time: every duration below is virtual and exact.

    use std::collections::VecDeque;
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;
    use crate::expose::telemetry::Telemetry;

    #[derive(Clone, Copy)]
    enum Step {
        Ok,
        Fail,
        Hang,
        /// Succeeds after a second.
        Slow,
        Panic,
    }

    /// A source that follows a plan (then succeeds) and records when it was asked.
    struct Fake {
        plan: Mutex<VecDeque<Step>>,
        calls: Arc<Mutex<Vec<Duration>>>,
        start: Instant,
    }

    impl Source for Fake {
        type Snapshot = usize;
        type Error = &'static str;
        const ID: ResolverId = ResolverId::Topology;

        async fn refresh(&self) -> Result<usize, &'static str> {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(self.start.elapsed());
                calls.len()
            };
            let step = self.plan.lock().unwrap().pop_front().unwrap_or(Step::Ok);
            match step {
                Step::Ok => Ok(n),
                Step::Fail => Err("broken"),
                Step::Hang => std::future::pending().await,
                Step::Slow => {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    Ok(n)
                }
                Step::Panic => panic!("index out of bounds in refresh {n}"),
            }
        }
    }

    struct Harness {
        calls: Arc<Mutex<Vec<Duration>>>,
        published: Arc<Mutex<Vec<usize>>>,
        telemetry: Telemetry,
        wake: Arc<Notify>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    impl Harness {
        fn start(plan: &[Step], interval: Duration, timeout: Duration) -> Harness {
            let calls = Arc::new(Mutex::new(Vec::new()));
            let published = Arc::new(Mutex::new(Vec::new()));
            let telemetry = Telemetry::new();
            let wake = Arc::new(Notify::new());
            let stop = CancellationToken::new();
            let sink = Arc::clone(&published);
            let resolver = Resolver::new(
                Fake {
                    plan: Mutex::new(plan.iter().copied().collect()),
                    calls: Arc::clone(&calls),
                    start: Instant::now(),
                },
                Schedule { interval, timeout },
                Arc::clone(&wake),
                telemetry.resolver("topology"),
                Box::new(move |n| sink.lock().unwrap().push(n)),
            );
            let task = tokio::spawn(resolver.run(stop.clone()));
            Harness {
                calls,
                published,
                telemetry,
                wake,
                stop,
                task,
            }
        }

        fn calls(&self) -> Vec<Duration> {
            self.calls.lock().unwrap().clone()
        }

        fn published(&self) -> Vec<usize> {
            self.published.lock().unwrap().clone()
        }

        fn metric(&self, name: &str) -> f64 {
            let text = self.telemetry.render_fresh();
            let prefix = format!("truenas_net_exporter_resolver_{name}{{resolver=\"topology\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} missing from {text}"))
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn refreshes_at_once_then_every_interval() {
        let h = Harness::start(&[], secs(10.0), secs(1.0));
        tokio::time::sleep(secs(35.0)).await;
        assert_eq!(h.calls(), [secs(0.0), secs(10.0), secs(20.0), secs(30.0)]);
        assert_eq!(h.published(), [1, 2, 3, 4]);
        assert_eq!(h.metric("up"), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn wakes_are_coalesced_and_spaced_by_the_minimum_gap() {
        use Step::{Ok, Slow};
        let h = Harness::start(&[Ok, Ok, Ok, Slow], Duration::from_secs(3600), secs(1.0));
        tokio::time::sleep(secs(0.1)).await;
        // A burst of wakes 100 ms after the first refresh: one refresh, at the gap.
        for _ in 0..5 {
            h.wake.notify_one();
        }
        tokio::time::sleep(secs(0.9)).await;
        // A wake long after the last refresh is served at once.
        h.wake.notify_one();
        tokio::time::sleep(secs(1.0)).await;
        assert_eq!(h.calls(), [secs(0.0), MIN_WAKE_GAP, secs(1.0)]);
        // A wake during a (slow) refresh asks for one more after it.
        h.wake.notify_one();
        tokio::time::sleep(secs(0.5)).await;
        h.wake.notify_one();
        h.wake.notify_one();
        tokio::time::sleep(secs(2.0)).await;
        assert_eq!(
            h.calls(),
            [secs(0.0), MIN_WAKE_GAP, secs(1.0), secs(2.0), secs(3.0)]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_refresh_times_out_and_the_next_tick_recovers() {
        let h = Harness::start(&[Step::Hang], secs(10.0), secs(2.0));
        tokio::time::sleep(secs(5.0)).await;
        assert_eq!(h.calls(), [secs(0.0)]);
        assert_eq!(h.metric("up"), 0.0);
        assert_eq!(h.metric("errors_total"), 1.0);
        assert_eq!(h.metric("refresh_duration_seconds"), 2.0);
        assert!(
            h.published().is_empty(),
            "a failed refresh publishes nothing"
        );
        tokio::time::sleep(secs(10.0)).await;
        assert_eq!(h.calls(), [secs(0.0), secs(10.0)]);
        assert_eq!(h.metric("up"), 1.0);
        assert_eq!(h.published(), [2]);
    }

    #[tokio::test(start_paused = true)]
    async fn logs_once_per_state_change() {
        let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let logs = Arc::clone(&logs);
            move || Capture(Arc::clone(&logs))
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        use Step::{Fail, Ok};
        let h = Harness::start(&[Fail, Fail, Fail, Ok, Ok, Fail], secs(1.0), secs(1.0));
        tokio::time::sleep(secs(6.5)).await;
        assert_eq!(h.calls().len(), 7);
        assert_eq!(h.metric("errors_total"), 4.0);
        assert_eq!(h.metric("up"), 1.0, "the seventh refresh worked");
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
        assert_eq!(
            count("resolver failing; keeping last good labels"),
            2,
            "{text}"
        );
        assert_eq!(count("resolver recovered"), 2, "{text}");
        assert_eq!(count("broken"), 2, "the error is in the log line: {text}");
    }

    /// A refresh that panics is a failure like any other, logged with its
    /// message; the resolver backs off, then refreshes again.
    #[tokio::test(start_paused = true)]
    async fn a_panicking_refresh_is_caught_logged_and_retried_with_backoff() {
        let logs = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = {
            let logs = Arc::clone(&logs);
            move || Capture(Arc::clone(&logs))
        };
        let subscriber = tracing_subscriber::fmt()
            .with_writer(writer)
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);

        use Step::{Ok, Panic};
        let h = Harness::start(&[Ok, Panic, Panic, Ok], secs(3600.0), secs(1.0));
        tokio::time::sleep(secs(0.1)).await;
        h.wake.notify_one();
        tokio::time::sleep(secs(0.5)).await;
        assert_eq!(h.metric("up"), 0.0, "the panic shows");
        assert_eq!(h.metric("errors_total"), 1.0);
        assert_eq!(h.published(), [1], "the first snapshot stays");
        // Woken at once again, it waits out the backoff: 1 s, then 2 s.
        h.wake.notify_one();
        tokio::time::sleep(secs(1.0)).await;
        assert_eq!(
            h.calls(),
            [secs(0.0), MIN_WAKE_GAP, MIN_WAKE_GAP + PANIC_BACKOFF],
            "the wake waited for the backoff"
        );
        h.wake.notify_one();
        tokio::time::sleep(secs(1.0)).await;
        assert_eq!(h.calls().len(), 3, "still backing off after a second panic");
        tokio::time::sleep(secs(1.0)).await;
        assert_eq!(
            h.calls()[3],
            MIN_WAKE_GAP + PANIC_BACKOFF * 3,
            "started again after twice the backoff"
        );
        assert_eq!(h.metric("up"), 1.0, "and recovered");
        assert_eq!(h.published(), [1, 4]);
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        assert!(text.contains("a refresh panicked"), "{text}");
        assert!(text.contains("index out of bounds in refresh 2"), "{text}");
    }

    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_shutdown_while_idle_and_mid_refresh() {
        let idle = Harness::start(&[], secs(10.0), secs(1.0));
        tokio::time::sleep(secs(1.0)).await;
        idle.stop.cancel();
        tokio::time::timeout(secs(0.001), idle.task)
            .await
            .expect("stops while waiting for its tick")
            .unwrap();

        let busy = Harness::start(&[Step::Hang], secs(10.0), Duration::from_secs(3600));
        tokio::time::sleep(secs(1.0)).await;
        assert_eq!(busy.calls().len(), 1, "refresh in progress");
        busy.stop.cancel();
        tokio::time::timeout(secs(0.001), busy.task)
            .await
            .expect("stops without waiting for the refresh")
            .unwrap();
    }
}
