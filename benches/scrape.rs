//! Scrape-path benchmarks.
//!
//! - `netdev/read` vs `netdev/scrape`: reading `<procfs>/1/net/dev` alone against
//!   the whole server-side scrape (read + parse + join + write + own metrics),
//!   in the same process. `benches/load.sh` runs this inside a private network
//!   namespace holding ~50 interfaces; `TNE_BENCH_ROOTFS`/`TNE_BENCH_PROCFS`
//!   point it at that host (default: this host).
//! - `join_write_10k`: parse + join + write of a synthetic 10,000-interface buffer.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use truenas_net_exporter::cli::Cli;
use truenas_net_exporter::compose;
use truenas_net_exporter::config::RawConfig;
use truenas_net_exporter::labels::LabelSettings;
use truenas_net_exporter::scrape;
use truenas_net_exporter::synthetic;
use truenas_net_exporter::{Config, Exporter};

fn netdev(c: &mut Criterion) {
    let env_path =
        |k: &str, d: &str| PathBuf::from(std::env::var(k).unwrap_or_else(|_| d.to_owned()));
    let cli = Cli {
        rootfs: Some(env_path("TNE_BENCH_ROOTFS", "/")),
        procfs: Some(env_path("TNE_BENCH_PROCFS", "/proc")),
        docker_socket: Some(String::new()),
        ..Cli::default()
    };
    let config = Config::build(RawConfig::default(), &cli).expect("config");
    let path = config.procfs.join("1/net/dev");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let exporter = Exporter::new(config);
    runtime.block_on(exporter.refresh_all_once());
    let mut buf = Vec::new();
    let max = exporter.config.netdev.max_bytes;
    scrape::read_netdev(&path, max, &mut buf).expect("read net/dev");
    let interfaces = truenas_net_exporter::netdev::parse(&buf).count();
    eprintln!(
        "netdev benches: {interfaces} interfaces in {}",
        path.display()
    );

    let mut g = c.benchmark_group(format!("netdev_{interfaces}"));
    g.bench_function("read", |b| {
        b.iter(|| {
            scrape::read_netdev(&path, max, &mut buf).expect("read");
            black_box(buf.len())
        })
    });
    // The scrape is async (its read may leave the thread off procfs); on
    // procfs it never suspends, so a current-thread block_on adds only a poll.
    let local = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    g.bench_function("scrape", |b| {
        b.iter(|| {
            let out = local.block_on(exporter.scrape());
            black_box(out.body.map(|c| c.len()).sum::<usize>())
        })
    });
    let table = exporter.hub.table();
    let mut out = Vec::new();
    g.bench_function("join_write", |b| {
        b.iter(|| {
            out.clear();
            black_box(scrape::join_and_write(
                &buf,
                &table,
                exporter.hub.settings(),
                &mut out,
            ))
        })
    });
    g.finish();
}

fn join_write_10k(c: &mut Criterion) {
    let (buf, topo, owners) = synthetic::host(10_000);
    let settings = LabelSettings::default();
    let table = compose::compose(&topo, &[&owners], &settings);
    let mut out = Vec::new();
    scrape::join_and_write(&buf, &table, &settings, &mut out);
    eprintln!("join_write_10k: {} bytes of output", out.len());
    c.bench_function("join_write_10k", |b| {
        b.iter(|| {
            out.clear();
            black_box(scrape::join_and_write(
                black_box(&buf),
                &table,
                &settings,
                &mut out,
            ))
        })
    });
}

/// The response body at 50 and 10,000 interfaces, plain and gzipped as the
/// server streams it (128 KiB chunks through the encoder): the CPU gzip adds
/// per scrape, and the bytes it saves, decide `[web] compression = "auto"`.
fn gzip(c: &mut Criterion) {
    use truenas_net_exporter::scrape::Scrape;
    use truenas_net_exporter::server::routes::Gzipped;

    for n in [50, 10_000] {
        let (buf, topo, owners) = synthetic::host(n);
        let settings = LabelSettings::default();
        let table = compose::compose(&topo, &[&owners], &settings);
        let chunks = || {
            let mut scrape = Scrape::new(&buf, &table, &settings);
            std::iter::from_fn(move || {
                let mut out = Vec::with_capacity(136 * 1024);
                let more = scrape.write_chunk(&mut out, 128 * 1024);
                (more || !out.is_empty()).then_some(out)
            })
        };
        let plain: usize = chunks().map(|c| c.len()).sum();
        let gzipped: usize = Gzipped::new(chunks()).map(|c| c.len()).sum();
        eprintln!("gzip_{n}: {plain} bytes plain, {gzipped} gzipped");
        let mut g = c.benchmark_group(format!("gzip_{n}"));
        g.bench_function("plain", |b| {
            b.iter(|| black_box(chunks().map(|c| c.len()).sum::<usize>()))
        });
        g.bench_function("gzip", |b| {
            b.iter(|| black_box(Gzipped::new(chunks()).map(|c| c.len()).sum::<usize>()))
        });
        g.finish();
    }
}

criterion_group!(benches, netdev, join_write_10k, gzip);
criterion_main!(benches);
