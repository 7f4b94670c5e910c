//! truenas-net-exporter: per-interface traffic counters from `/proc/1/net/dev`,
//! labelled with what each interface is and who owns it.
//!
//! Resolvers ([`resolve`], one per source in [`resolve::sources`]) refresh
//! in the background and publish into the [`hub`]; the [`composer`] joins
//! their snapshots into one label table; each [`scrape`] reads net/dev and
//! joins it against that table, with traffic per workload ([`workloads`])
//! beside it; the [`server`] answers HTTP. [`config`] builds the settings,
//! [`exporter`] holds it all as one value, and this module runs it.

pub mod bounded;
pub(crate) mod clients;
pub mod composer;
pub mod config;
pub mod exporter;
pub mod expose;
pub mod hub;
pub mod model;
pub mod resolve;
pub mod scrape;
pub mod server;
#[doc(hidden)]
pub mod synthetic;
pub mod workloads;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;
pub use exporter::Exporter;

/// Runs resolvers and the HTTP server on `listener` until `shutdown` resolves.
///
/// One shutdown: every long-lived task (resolvers, their watches, the
/// middleware connection, HTTP connections) watches one cancellation token
/// and is started on one task tracker, which the way out awaits for at most
/// `[web] shutdown_timeout`; a task still running then (a read stuck in the
/// kernel keeps its thread) is left behind, said in the log. Then the
/// counting programs are detached, whatever is still running.
///
/// The resolvers get a runtime of their own on one thread: a Docker refresh
/// deserialises an inspect per container, and on the scrape workers that work
/// would sit in front of scrapes arriving meanwhile.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    server::routes::check(&config).map_err(std::io::Error::other)?;
    let access = server::access::Access::load_bounded(config.web_config_file.clone())
        .await
        .map_err(std::io::Error::other)?;
    let exporter = Exporter::new(config);
    let stop = CancellationToken::new();
    let tasks = TaskTracker::new();
    let resolver_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let on_resolvers = resolver_runtime.handle().clone();
    let background = exporter.background(&stop);
    for resolver in background.resolvers {
        tasks.spawn_on(resolver.run(stop.clone()), &on_resolvers);
    }
    for task in background.tasks {
        tasks.spawn_on(task, &on_resolvers);
    }
    let resolver_thread = {
        let tasks = tasks.clone();
        std::thread::Builder::new()
            .name("resolvers".into())
            .spawn(move || {
                // Drives the resolvers until the tracker is closed and empty.
                resolver_runtime.block_on(tasks.wait());
                // A read stuck in the kernel keeps its blocking thread: leave
                // it behind rather than wait for it (dropping the runtime would).
                resolver_runtime.shutdown_background();
            })?
    };
    let serving = server::serve(
        Arc::clone(&exporter),
        listener,
        Arc::new(access),
        stop.clone(),
        tasks.clone(),
    );
    tokio::select! {
        _ = serving => {}
        _ = shutdown => {}
    }
    stop.cancel();
    tasks.close();
    // Connections close themselves at the shutdown timeout: a moment more
    // lets them finish closing before anything is called left behind.
    let grace = exporter.config.http.shutdown_timeout + Duration::from_millis(500);
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            left = tasks.len(),
            ?grace,
            "tasks still running at the end of the shutdown timeout; leaving them behind"
        );
    }
    exporter.detach();
    if tasks.is_empty() {
        // Joining blocks: do it off the async workers.
        let joined = tokio::task::spawn_blocking(move || resolver_thread.join()).await;
        if !matches!(joined, Ok(Ok(()))) {
            tracing::error!("the resolver thread panicked");
        }
    }
    Ok(())
}

/// `--once`: readiness first (net/dev reads, the root filesystem is there;
/// see [`Exporter::ready`]), so that a host the exporter cannot see fails at
/// once, with its reason, before any resolver runs; then refresh every
/// enabled resolver once, then one scrape, whose body writes itself chunk by
/// chunk (the caller streams it).
pub async fn once(config: Config) -> Result<exporter::ScrapeBody, exporter::NotReady> {
    let exporter = Exporter::new(config);
    exporter.ready().await?;
    exporter.refresh_all_once().await;
    let out = exporter.scrape().await;
    match out.netdev_error {
        Some(e) => Err(exporter::NotReady(vec![e.to_string()])),
        None => Ok(out.body),
    }
}

/// Binds the configured listen address. `:PORT` means every address: IPv6
/// dual-stack where the host has IPv6, IPv4 otherwise.
pub async fn bind(listen_address: &str) -> std::io::Result<tokio::net::TcpListener> {
    match listen_address.strip_prefix(':') {
        Some(port) => match tokio::net::TcpListener::bind(format!("[::]:{port}")).await {
            Ok(l) => Ok(l),
            Err(_) => tokio::net::TcpListener::bind(format!("0.0.0.0:{port}")).await,
        },
        None => tokio::net::TcpListener::bind(listen_address).await,
    }
}

pub use server::healthcheck::healthcheck;
