//! Entry point: flags, config, logging, then the library does the work.
//!
//! Exit codes: 0 done; 1 an error (a configuration or flag value that does
//! not check out, a port that cannot be listened on, a failed
//! `--healthcheck`, which container engines read as "unhealthy"); 2 a
//! command line clap cannot parse (an unknown flag, a missing value: clap's
//! own code); 3 `--once` on a host it cannot see (net/dev unreadable, no
//! root filesystem), the same reason `/-/ready` gives.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use truenas_net_exporter::config::RunMode;
use truenas_net_exporter::config::cli::Cli;
use truenas_net_exporter::exporter::NotReady;
use truenas_net_exporter::{Config, bind, healthcheck, once, run};

/// Errors end the process as one line on stderr, causes included, whatever
/// `RUST_BACKTRACE` says: they are about the configuration or the host, not
/// about this program's code.
fn main() -> ExitCode {
    match try_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.is::<NotReady>() {
                // Apart from 1 (any other error) and 2 (clap's, for a
                // command line it cannot parse).
                ExitCode::from(3)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

fn try_main() -> anyhow::Result<()> {
    limit_malloc_arenas();
    let cli = Cli::parse();
    let config = Config::from_cli(&cli)?;
    match config.mode {
        RunMode::Healthcheck => {
            healthcheck(&config.listen_address, std::time::Duration::from_secs(5))
                .with_context(|| format!("exporter at {} is not healthy", config.listen_address))
        }
        RunMode::Once => on_runtime(&config, print_once(config.clone())),
        RunMode::Serve => on_runtime(&config, serve(config.clone())),
    }
}

/// Runs `work` on the async runtime; then leaves behind any blocking read that
/// is stuck in the kernel instead of waiting for it (dropping the runtime would).
fn on_runtime(
    config: &Config,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let runtime = runtime(config)?;
    let result = runtime.block_on(work);
    runtime.shutdown_background();
    result
}

/// Logging, then the async runtime that serves or runs `--once`.
fn runtime(config: &Config) -> anyhow::Result<tokio::runtime::Runtime> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            config.log_level.as_str(),
        ))
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: `docker logs` shows them raw.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Streams the scrape to stdout: a host with 100,000 interfaces writes tens
/// of megabytes, which need not sit in memory at once.
async fn print_once(config: Config) -> anyhow::Result<()> {
    let body = once(config).await?;
    let mut stdout = std::io::stdout().lock();
    for chunk in body {
        stdout.write_all(&chunk).context("cannot write to stdout")?;
    }
    stdout.flush().context("cannot write to stdout")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = bind(&config.listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_address))?;
    tracing::info!(address = %listener.local_addr()?, path = %config.telemetry_path, "listening");
    run(config, listener, shutdown_signal())
        .await
        .context("cannot start")
}

/// Resolves on SIGINT or SIGTERM (what `docker stop` sends).
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = async {
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}

/// glibc gives each thread that contends for the heap its own arena and keeps
/// freed chunks in each. An exporter serves a few scrapes at a time, so one
/// arena is enough: at 10,000 interfaces it holds RSS at 14 MiB instead of
/// 19 MiB (`benches/load.sh memory`), and scrapes were no slower.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator tuning; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}
