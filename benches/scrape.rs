//! Scrape-path benchmarks.
//!
//! - `netdev/read` vs `netdev/scrape`: reading `<procfs>/1/net/dev` alone against
//!   the whole server-side scrape (read + parse + join + write + own metrics),
//!   in the same process. `benches/load.sh` runs this inside a private network
//!   namespace holding ~50 interfaces; `TNE_BENCH_ROOTFS`/`TNE_BENCH_PROCFS`
//!   point it at that host (default: this host).
//! - `join_write_10k`: parse + join + write of a synthetic 10,000-interface buffer.
//! - `workloads_{100,10000}`: the scrape's added cost of traffic per workload
//!   at that many counted cgroups, each a service of its own (as root: the
//!   counting programs linked to a cgroup of the bench's own, each child
//!   cgroup sending one datagram): `read` the kernel's map alone, `write`
//!   the whole part a scrape adds (read, sum per workload, the families).
//! - `peers`: what `[peers]` adds to the written scrape: a 48-interface
//!   host's join and write plus the `net_workload_*` families of 100
//!   workloads (`without`), the same plus a `PeerTable` of those 100
//!   workloads x (10 peers + `other`), one protocol and side (`with`), and
//!   `PeerTable::write` alone (`table`). Rows built by hand, as the tick
//!   renders them; no kernel.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use truenas_net_exporter::composer;
use truenas_net_exporter::config::RawConfig;
use truenas_net_exporter::config::cli::Cli;
use truenas_net_exporter::model::labels::LabelSettings;
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
    let interfaces = truenas_net_exporter::expose::netdev::parse(&buf).count();
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
    let table = composer::compose(&topo, &[&owners], &settings);
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
        let table = composer::compose(&topo, &[&owners], &settings);
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

fn workloads(c: &mut Criterion) {
    use std::os::unix::fs::MetadataExt;
    use truenas_net_exporter::resolve::sources::Claims;
    use truenas_net_exporter::workloads::Workloads;
    use truenas_net_exporter::workloads::accounting::{Accounting, cgroup2_mount};
    use truenas_net_exporter::workloads::cgroups::{Cgroup, CgroupTree};

    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some(v2) = cgroup2_mount(&mountinfo) else {
        eprintln!("workloads benches skipped: no cgroup v2 hierarchy");
        return;
    };
    let top = v2.join(format!("tne-bench-{}", std::process::id()));
    let slice = top.join("b.slice");
    if let Err(e) = std::fs::create_dir_all(&slice) {
        eprintln!("workloads benches skipped: {}: {e}", slice.display());
        return;
    }
    let home = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(str::to_owned))
        })
        .map(|p| v2.join(p.trim_start_matches('/')))
        .unwrap_or_else(|| v2.clone());
    for n in [100usize, 10_000] {
        let accounting = match Accounting::attach(&top, (n as u32).max(4096) * 2) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("workloads benches skipped: {e}");
                break;
            }
        };
        let mut tree = CgroupTree::default();
        for i in 0..n {
            let dir = slice.join(format!("c{i}.service"));
            std::fs::create_dir_all(&dir).expect("mkdir");
            std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
                .expect("move into the cgroup");
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("socket");
            let _ = socket.send_to(b"x", "127.0.0.1:9");
            drop(socket);
            tree.cgroups.push(Cgroup {
                id: std::fs::metadata(&dir).expect("stat").ino(),
                path: format!("/b.slice/c{i}.service"),
            });
        }
        std::fs::write(home.join("cgroup.procs"), std::process::id().to_string())
            .expect("move back");
        let workloads = Workloads::new(accounting, None, "instance");
        workloads
            .publish(&tree, 1, &[&Claims::default()], false)
            .expect("publish");
        let mut out = Vec::new();
        let stats = workloads.write(&mut out);
        eprintln!(
            "workloads_{n}: {} workloads, {} bytes of output",
            stats.workloads,
            out.len()
        );
        let mut g = c.benchmark_group(format!("workloads_{n}"));
        g.bench_function("read", |b| b.iter(|| black_box(workloads.read().1.len())));
        g.bench_function("write", |b| {
            b.iter(|| {
                out.clear();
                black_box(workloads.write(&mut out))
            })
        });
        g.finish();
        drop(workloads);
        for i in 0..n {
            let _ = std::fs::remove_dir(slice.join(format!("c{i}.service")));
        }
    }
    let _ = std::fs::remove_dir(&slice);
    let _ = std::fs::remove_dir(&top);
}

fn peers(c: &mut Criterion) {
    use std::sync::Arc;
    use truenas_net_exporter::expose::encoder;
    use truenas_net_exporter::workloads::accounting::Counts;
    use truenas_net_exporter::workloads::peers::{PeerRow, PeerTable};
    use truenas_net_exporter::workloads::{render, write_families};

    const WORKLOADS: usize = 100;
    const PEERS: usize = 10;
    let (buf, topo, owners) = synthetic::host(48);
    let settings = LabelSettings::default();
    let table = composer::compose(&topo, &[&owners], &settings);
    // Counters of a host up for a while: 9 to 12 digits.
    let counts = |i: usize| Counts {
        rx_bytes: 987_654_321 + i as u64 * 1_234_567_891,
        rx_packets: 654_321 + i as u64 * 1_234_567,
        tx_bytes: 123_456_789 + i as u64 * 987_654_323,
        tx_packets: 456_789 + i as u64 * 987_653,
    };
    // Half Docker apps, half host services, as a TrueNAS host's.
    let mut workloads: Vec<(Box<str>, Counts)> = (0..WORKLOADS)
        .map(|w| {
            let labels = if w % 2 == 0 {
                render(
                    "instance",
                    "docker",
                    &format!("ix-app{w}-web-1"),
                    &format!("app{w}"),
                )
            } else {
                render("instance", "service", &format!("service{w}"), "")
            };
            (labels, counts(w))
        })
        .collect();
    workloads.sort_by(|a, b| a.0.cmp(&b.0));
    let workload_rows: Vec<(&str, Counts)> = workloads.iter().map(|(l, c)| (&**l, *c)).collect();
    let mut rows = Vec::with_capacity(WORKLOADS * (PEERS + 1));
    for (w, (labels, _)) in workloads.iter().enumerate() {
        let workload: Arc<str> = Arc::from(&**labels);
        let protocol: Arc<str> = Arc::from("smb");
        let peers = (0..PEERS)
            .map(|p| format!("192.168.{}.{}", w % 250, 10 + p))
            .chain(std::iter::once("other".to_owned()));
        for (p, peer) in peers.enumerate() {
            let rendered = format!(
                "{workload},{}",
                encoder::render_labels([
                    ("peer", peer.as_bytes()),
                    ("protocol", protocol.as_bytes()),
                    ("side", b"server".as_slice()),
                ])
            );
            rows.push(PeerRow {
                rendered: Arc::from(rendered),
                workload: Arc::clone(&workload),
                peer: Arc::from(peer),
                protocol: Arc::clone(&protocol),
                side: "server",
                counts: counts(w * (PEERS + 1) + p),
            });
        }
    }
    rows.sort_by(|a, b| a.rendered.cmp(&b.rendered));
    let peer_table = PeerTable {
        rows,
        ..PeerTable::default()
    };

    let mut out = Vec::new();
    let without = |out: &mut Vec<u8>| {
        out.clear();
        scrape::join_and_write(&buf, &table, &settings, out);
        write_families(out, &workload_rows);
    };
    without(&mut out);
    let base = out.len();
    peer_table.write(&mut out);
    eprintln!(
        "peers: 48 interfaces + {WORKLOADS} workloads: {base} bytes; with {} peer rows: {} bytes (+{})",
        peer_table.rows.len(),
        out.len(),
        out.len() - base
    );
    let mut g = c.benchmark_group("peers");
    g.bench_function("without", |b| {
        b.iter(|| {
            without(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("with", |b| {
        b.iter(|| {
            without(&mut out);
            black_box(&peer_table).write(&mut out);
            black_box(out.len())
        })
    });
    g.bench_function("table", |b| {
        b.iter(|| {
            out.clear();
            black_box(&peer_table).write(&mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, netdev, join_write_10k, gzip, workloads, peers);
criterion_main!(benches);
