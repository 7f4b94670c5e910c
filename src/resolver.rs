//! Runs a resolver: refresh on its interval or when woken, bound every refresh
//! by a timeout, record health metrics, log once per state change, and hand
//! each good snapshot to a publisher. A failed refresh publishes nothing, so
//! the last good snapshot (and its labels) stays.

use std::future::Future;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Notify, watch};

use crate::telemetry::ResolverMetrics;

/// A source of facts about interfaces.
pub trait Source: Send + Sync + 'static {
    type Snapshot: Send + 'static;
    type Error: std::fmt::Display + Send;
    /// Short name, used as the `resolver` label and in logs.
    const NAME: &'static str;
    fn refresh(&self) -> impl Future<Output = Result<Self::Snapshot, Self::Error>> + Send;
}

/// A shared source is a source: the Docker resolver is also held by its event watcher.
impl<S: Source> Source for std::sync::Arc<S> {
    type Snapshot = S::Snapshot;
    type Error = S::Error;
    const NAME: &'static str = S::NAME;

    fn refresh(&self) -> impl Future<Output = Result<Self::Snapshot, Self::Error>> + Send {
        S::refresh(self)
    }
}

/// A resolver's blocking work that panicked.
#[derive(Debug, thiserror::Error)]
#[error("blocking read panicked: {0}")]
pub struct Panicked(String);

/// Runs a resolver's sysfs and /proc reads on the blocking pool: they block,
/// and the resolver runtime has a single thread.
pub async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Panicked> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Panicked(e.to_string()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    pub interval: Duration,
    pub timeout: Duration,
}

/// Wake-triggered refreshes are spaced at least this far apart, so that a burst
/// of engine events (a `docker run` sends a connect, then a start) costs two
/// refreshes, not one per event. Short, because it delays a new container's
/// labels: with 1 s they took ~700 ms to appear, with 250 ms 60-240 ms.
const MIN_WAKE_GAP: Duration = Duration::from_millis(250);

/// Tracks health across refreshes so logs fire on changes, not every interval.
pub struct Health {
    metrics: ResolverMetrics,
    failing: Option<bool>,
}

impl Health {
    pub fn new(metrics: ResolverMetrics) -> Health {
        Health {
            metrics,
            failing: None,
        }
    }
}

/// One bounded refresh with its bookkeeping.
pub async fn refresh_once<S: Source>(
    source: &S,
    timeout: Duration,
    health: &mut Health,
) -> Option<S::Snapshot> {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, source.refresh()).await;
    health
        .metrics
        .refresh_duration
        .set(started.elapsed().as_secs_f64());
    let error = match result {
        Ok(Ok(snapshot)) => {
            health.metrics.up.set(1.0);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            health.metrics.last_success.set(now.as_secs_f64());
            if health.failing != Some(false) {
                health.metrics.state_changed();
            }
            if health.failing == Some(true) {
                tracing::info!(resolver = S::NAME, "resolver recovered");
            }
            health.failing = Some(false);
            return Some(snapshot);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => format!(
            "refresh timed out after {}",
            humantime::format_duration(timeout)
        ),
    };
    health.metrics.up.set(0.0);
    health.metrics.errors.increment(1);
    if health.failing != Some(true) {
        health.metrics.state_changed();
        tracing::warn!(resolver = S::NAME, %error, "resolver failing; keeping last good labels");
    } else {
        tracing::debug!(resolver = S::NAME, %error, "resolver still failing");
    }
    health.failing = Some(true);
    None
}

/// The resolver task: runs until `shutdown` changes.
pub async fn run<S: Source>(
    source: S,
    schedule: Schedule,
    wake: std::sync::Arc<Notify>,
    mut health: Health,
    publish: impl Fn(S::Snapshot) + Send,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(schedule.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None::<tokio::time::Instant>;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
            _ = wake.notified() => {
                if let Some(last) = last {
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep_until(last + MIN_WAKE_GAP) => {}
                    }
                }
            }
        }
        last = Some(tokio::time::Instant::now());
        if let Some(snapshot) = refresh_once(&source, schedule.timeout, &mut health).await {
            publish(snapshot);
        }
    }
}
