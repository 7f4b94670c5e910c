//! The edge: TLS and basic auth from a web config file in exporter-toolkit
//! format, checked by a real Prometheus (TLS with basic auth, mutual TLS), by
//! curl and openssl (every refusal, a certificate replaced on disk), and by
//! promtool (docs/security.md's example file); gzip; and the cap on scrapes served
//! at once. Certificates come from openssl, made fresh for each run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use crate::limits::{Exporter, big_host};
use crate::prometheus::{query_values, start_prometheus_with};
use crate::support::{bin, copy_fixture, have, http, parse, require, wait_for};

/// A CA, a server certificate for localhost and 127.0.0.1, a client certificate.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=tne-test-ca",
        ]);
        pki.issue(
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        pki.issue("client", "prometheus", "extendedKeyUsage=clientAuth\n");
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `<name>.crt` and `<name>.key`, signed by the CA.
    fn issue(&self, name: &str, cn: &str, extensions: &str) {
        std::fs::write(self.path(&format!("{name}.ext")), extensions).unwrap();
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &crt,
            "-days",
            "2",
            "-extfile",
            &ext,
        ]);
    }

    /// A web config file in this directory.
    fn web_config(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Two web configs on this PKI's server certificate: TLS with basic auth
    /// (the users of [`users`]), and mutual TLS requiring a client
    /// certificate from this CA.
    fn auth_and_mutual(&self) -> (PathBuf, PathBuf) {
        let auth = self.web_config(
            "auth.yml",
            &format!(
                "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{}",
                users()
            ),
        );
        let mutual = self.web_config(
            "mutual.yml",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n",
        );
        (auth, mutual)
    }
}

fn tools_present() -> bool {
    require(have("openssl"), "openssl not installed")
        && require(have("curl"), "curl not installed")
        && require(
            have("prometheus") && have("promtool"),
            "prometheus not installed (Debian package prometheus)",
        )
}

const PASSWORD: &str = "s3cret";

fn users() -> String {
    format!(
        "basic_auth_users:\n  prometheus: {}\n",
        bcrypt::hash(PASSWORD, 8).unwrap()
    )
}

/// The exporter on the seed-host fixture with `web` as its web config.
fn exporter(host: &Path, web: &Path, extra: &str) -> Exporter {
    let toml = format!(
        "[web]\nconfig_file = {:?}\n{extra}",
        web.display().to_string()
    );
    Exporter::start(host, &toml, Stdio::null())
}

/// `curl` with `args`; its exit code and `%{http_code}`, plus the body.
fn curl(args: &[&str]) -> (i32, String, String) {
    let body = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["-s", "-o"])
        .arg(body.path())
        .args(["-w", "%{http_code}", "--max-time", "10"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        std::fs::read_to_string(body.path()).unwrap_or_default(),
    )
}

fn healthcheck(addr: SocketAddr) -> bool {
    Command::new(bin())
        .args(["--healthcheck", &format!("--web.listen-address={addr}")])
        .status()
        .unwrap()
        .success()
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_over_mutual_tls() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let host = copy_fixture("seed-host");
    let (auth, mutual) = pki.auth_and_mutual();
    // The first also gzips every scrape: Prometheus asks for it.
    let a = exporter(host.path(), &auth, "compression = \"always\"\n");
    let b = exporter(host.path(), &mutual, "");
    // A third, in plain HTTP behind a relay that reads the response headers,
    // to see that what Prometheus takes in is gzipped.
    let c = Exporter::start(
        host.path(),
        "[web]\ncompression = \"always\"\n",
        Stdio::null(),
    );
    let (relay, gzipped) = header_relay(c.addr);
    let ca = pki.path("ca.crt").display().to_string();
    let scrape = format!(
        "scrape_configs:
  - job_name: tls-auth
    scheme: https
    tls_config: {{ca_file: {ca:?}, server_name: localhost}}
    basic_auth: {{username: prometheus, password: {PASSWORD}}}
    static_configs: [{{targets: [\"{}\"]}}]
  - job_name: mutual-tls
    scheme: https
    tls_config: {{ca_file: {ca:?}, server_name: localhost, cert_file: {:?}, key_file: {:?}}}
    static_configs: [{{targets: [\"{}\"]}}]
  - job_name: gzip
    static_configs: [{{targets: [\"{relay}\"]}}]
",
        a.addr,
        pki.path("client.crt").display().to_string(),
        pki.path("client.key").display().to_string(),
        b.addr
    );
    let prom = start_prometheus_with(&scrape, &[]);
    let counted = wait_for(Duration::from_secs(30), || {
        let r = query_values(prom.addr, "count by (job) (net_interface_rx_bytes_total)");
        (r.len() == 3).then_some(r)
    })
    .expect("every job scraped");
    for (labels, count) in counted {
        assert_eq!(count, 21.0, "{labels:?}: every interface");
    }
    let up = query_values(prom.addr, "up");
    assert!(up.iter().all(|(_, v)| *v == 1.0), "{up:?}");

    // Those 21 series of the gzip job came in gzipped.
    assert!(
        gzipped.load(std::sync::atomic::Ordering::Relaxed),
        "the relay saw Content-Encoding: gzip"
    );
}

/// A TCP relay to `to`, on a port of its own; the flag turns true once a
/// response it carries says `Content-Encoding: gzip` in its headers.
fn header_relay(to: SocketAddr) -> (SocketAddr, Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = Arc::clone(&seen);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(to) else {
                continue;
            };
            let (mut up_from, mut up_to) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || std::io::copy(&mut up_from, &mut up_to));
            let (mut from, mut to_client) = (server, client);
            let flag = Arc::clone(&flag);
            std::thread::spawn(move || {
                // Headers end before the body: the head of each response is
                // what to look at, and a response head fits one read here.
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 || to_client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if let Some(head) = text.split("\r\n\r\n").next()
                        && head.starts_with("http/1.1 200")
                        && head.contains("\r\ncontent-encoding: gzip\r\n")
                    {
                        flag.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    (addr, seen)
}

#[test]
fn every_refusal_is_clean_and_a_new_certificate_needs_no_restart() {
    if !tools_present() {
        return;
    }
    let pki = Pki::new();
    let host = copy_fixture("seed-host");
    let (auth, mutual) = pki.auth_and_mutual();
    let a = exporter(host.path(), &auth, "");
    let b = exporter(host.path(), &mutual, "");
    let ca = pki.path("ca.crt").display().to_string();
    let url = |e: &Exporter| format!("https://localhost:{}/metrics", e.addr.port());

    let right = format!("prometheus:{PASSWORD}");
    let (_, status, body) = curl(&["--cacert", &ca, "-u", &right, &url(&a)]);
    assert_eq!(status, "200");
    assert!(body.contains("net_interface_rx_bytes_total{"));
    for user in ["prometheus:wrong", "nobody:s3cret"] {
        assert_eq!(
            curl(&["--cacert", &ca, "-u", user, &url(&a)]).1,
            "401",
            "{user}"
        );
    }
    let (_, status, _) = curl(&["--cacert", &ca, &url(&a)]);
    assert_eq!(status, "401", "no credentials");
    let (_, status, body) = curl(&[&format!("http://127.0.0.1:{}/metrics", a.addr.port())]);
    assert_eq!(status, "400", "plain HTTP to the TLS port");
    assert!(body.contains("HTTP request to an HTTPS server"), "{body}");

    let (code, status, _) = curl(&["--cacert", &ca, &url(&b)]);
    assert!(
        code != 0 && status == "000",
        "no client certificate: curl {code}, {status}"
    );
    let cert = pki.path("client.crt").display().to_string();
    let key = pki.path("client.key").display().to_string();
    let (_, status, _) = curl(&["--cacert", &ca, "--cert", &cert, "--key", &key, &url(&b)]);
    assert_eq!(status, "200", "with one");

    assert!(healthcheck(a.addr), "healthcheck with TLS and auth on");
    assert!(
        healthcheck(b.addr),
        "healthcheck with client certificates required"
    );

    // A renewed certificate, written over the old files, is served at once.
    let served = |e: &Exporter| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect 127.0.0.1:{} -servername localhost </dev/null 2>/dev/null \
                 | openssl x509 -noout -serial",
                e.addr.port()
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let before = served(&a);
    assert!(before.starts_with("serial="), "{before}");
    pki.issue(
        "server",
        "localhost",
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    );
    let after = wait_for(Duration::from_secs(10), || {
        let now = served(&a);
        (now != before).then_some(now)
    })
    .expect("the new certificate is served");
    assert!(after.starts_with("serial="));
    assert_eq!(curl(&["--cacert", &ca, "-u", &right, &url(&a)]).1, "200");
}

/// `cipher_suites` by IANA names, TLS 1.3's among them, starts the exporter
/// and is what a handshake can use: TLS 1.3 is offered only the suite named,
/// TLS 1.2 only its own.
#[test]
fn cipher_suites_by_iana_name_apply_to_tls13_too() {
    if !require(have("openssl"), "openssl not installed") {
        return;
    }
    let pki = Pki::new();
    let web = pki.web_config(
        "suites.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  \
         cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n",
    );
    let host = copy_fixture("seed-host");
    let e = exporter(host.path(), &web, "");
    let handshake = |version: &str, choice: &str, suite: &str| {
        let out = Command::new("openssl")
            .args(["s_client", "-brief", "-connect"])
            .arg(e.addr.to_string())
            .args([version, choice, suite])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), said)
    };
    let (ok, said) = handshake("-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256");
    assert!(ok, "the suite named: {said}");
    assert!(said.contains("TLS_AES_128_GCM_SHA256"), "{said}");
    let (ok, said) = handshake("-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384");
    assert!(!ok, "a TLS 1.3 suite not named: {said}");
    let (ok, said) = handshake("-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384");
    assert!(ok, "the TLS 1.2 suite named: {said}");
    let (ok, said) = handshake("-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256");
    assert!(!ok, "a TLS 1.2 suite not named: {said}");
}

/// The example web config of docs/security.md: promtool accepts it, and so does the
/// exporter (which serves with it).
#[test]
fn the_documented_web_config_is_valid() {
    if !tools_present() {
        return;
    }
    let security = crate::support::doc("docs/security.md");
    let section = &security[security.find("## TLS and basic auth").expect("the section")..];
    let start = section.find("```yaml\n").unwrap() + 8;
    let example = &section[start..start + section[start..].find("```").unwrap()];
    let pki = Pki::new();
    for (from, to) in [("server.crt", "tls.crt"), ("server.key", "tls.key")] {
        std::fs::copy(pki.path(from), pki.path(to)).unwrap();
    }
    let web = pki.web_config("web.yml", example);
    let out = Command::new("promtool")
        .args(["check", "web-config"])
        .arg(&web)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let host = copy_fixture("seed-host");
    let e = exporter(host.path(), &web, "");
    let (_, status, _) = curl(&[
        "--cacert",
        &pki.path("ca.crt").display().to_string(),
        "--cert",
        &pki.path("client.crt").display().to_string(),
        "--key",
        &pki.path("client.key").display().to_string(),
        "-u",
        "prometheus:change-me",
        &format!("https://localhost:{}/metrics", e.addr.port()),
    ]);
    assert_eq!(status, "200");
}

/// A client that asks for gzip gets it (with `always`), and it decompresses
/// to the plain scrape; promtool accepts both. A client that does not ask
/// gets plain text.
#[test]
fn gzip_decompresses_to_the_plain_scrape() {
    if !require(have("curl"), "curl not installed") {
        return;
    }
    let host = copy_fixture("seed-host");
    let e = Exporter::start(
        host.path(),
        "[web]\ncompression = \"always\"\n",
        Stdio::null(),
    );
    let url = format!("http://{}/metrics", e.addr);
    let headers = tempfile::NamedTempFile::new().unwrap();
    let (_, status, gunzipped) = curl(&[
        "--compressed",
        "-D",
        &headers.path().display().to_string(),
        &url,
    ]);
    assert_eq!(status, "200");
    let head = std::fs::read_to_string(headers.path())
        .unwrap()
        .to_ascii_lowercase();
    assert!(head.contains("content-encoding: gzip"), "{head}");
    let plain = http(e.addr, "GET", "/metrics");
    assert!(
        plain.header("content-encoding").is_none(),
        "not asked, not gzipped"
    );
    // The interface lines are the same read twice (a fixture does not move);
    // the exporter's own metrics (scrape durations) do.
    let interfaces = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("net_interface"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(interfaces(&gunzipped), interfaces(&plain.body));
    assert!(!interfaces(&gunzipped).is_empty());
    crate::fixture_host::promtool_check(&gunzipped);
    crate::fixture_host::promtool_check(&plain.body);
}

/// 64 clients at once ask for a 10,000-interface scrape with a cap of 8:
/// the excess get 503 with a body that says why, the rest are whole.
#[test]
fn a_cap_of_eight_against_sixty_four_scrapes() {
    let host = big_host(10_000);
    let e = Exporter::start(host.path(), "[web]\nmax_requests = 8\n", Stdio::null());
    let addr = e.addr;
    assert_eq!(http(addr, "GET", "/metrics").status, 200);
    let rss_before = e.rss_kib();
    let barrier = Arc::new(Barrier::new(64));
    let clients: Vec<_> = (0..64)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let r = http(addr, "GET", "/metrics");
                (r.status, r.body)
            })
        })
        .collect();
    let mut peak = 0;
    while clients.iter().any(|c| !c.is_finished()) {
        peak = peak.max(e.peak_kib());
        std::thread::sleep(Duration::from_millis(20));
    }
    let answers: Vec<(u16, String)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let served: Vec<_> = answers.iter().filter(|(s, _)| *s == 200).collect();
    let refused: Vec<_> = answers.iter().filter(|(s, _)| *s == 503).collect();
    eprintln!(
        "64 scrapes, cap 8: {} served, {} refused; RSS {rss_before} KiB before, peak {} KiB",
        served.len(),
        refused.len(),
        e.peak_kib().max(peak)
    );
    assert_eq!(served.len() + refused.len(), 64, "only 200 and 503");
    // One address: at most half the permits at a time (the rest are kept for
    // other hosts), and a permit given back is taken again.
    assert!(served.len() >= 4, "at least an address's share is served");
    assert!(!refused.is_empty(), "the excess is refused");
    for (_, body) in &refused {
        assert!(body.contains("--web.max-requests"), "{body}");
    }
    for (_, body) in &served {
        let samples = parse(body);
        let last = samples
            .iter()
            .filter(|s| s.name == "net_interface_info")
            .count();
        assert_eq!(last, 10_000, "a served scrape is whole");
    }
    let hits = e.metric("truenas_net_exporter_limit_hits_total{limit=\"http_requests\"}");
    assert_eq!(hits, refused.len() as f64);
}

/// A client that stops reading gives its permit back after a second: with a cap
/// of one, a silent reader of a 10,000-interface scrape does not lock
/// Prometheus out until the write timeout.
#[test]
fn a_silent_reader_gives_its_slot_back() {
    use std::io::Write;

    let host = big_host(10_000);
    let config = "[web]\nmax_requests = 1\nwrite_timeout = \"30s\"\n";
    let e = Exporter::start(host.path(), config, Stdio::null());
    let mut silent = std::net::TcpStream::connect(e.addr).unwrap();
    silent
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let early = http(e.addr, "GET", "/metrics");
    assert_eq!(
        early.status, 503,
        "the permit is taken while the response is written"
    );
    let later = wait_for(Duration::from_secs(5), || {
        let r = http(e.addr, "GET", "/metrics");
        (r.status == 200).then_some(r)
    })
    .expect("the stalled response gave its permit back");
    assert!(
        later
            .body
            .contains("net_interface_info{interface=\"veth0000000\"")
    );
    drop(silent);
}

/// 500 connections from one host hammer the port with wrong passwords (each
/// a new one, so each needs a bcrypt) while Prometheus, from another host,
/// scrapes with the right one every 200 ms: every scrape is served, and
/// promptly. Password checks are answered "busy" rather than queued, a
/// success stays remembered however many failures come, and the flood's
/// connections make room for Prometheus's.
#[test]
fn a_wrong_password_flood_costs_prometheus_no_scrape() {
    use std::io::{Read, Write};

    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    // Cost 10, what `htpasswd -B -C 10` writes: ~70 ms a check here.
    let hash = bcrypt::hash(PASSWORD, 10).unwrap();
    std::fs::write(&web, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
    let host = copy_fixture("seed-host");
    let e = exporter(host.path(), &web, "");
    let addr = e.addr;
    let basic = |password: &str| {
        use base64::Engine;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{password}"));
        format!("Basic {token}")
    };
    let prometheus = std::net::IpAddr::from([127, 0, 0, 2]);
    let right = basic(PASSWORD);
    // A connection refused or reset is a missed scrape too.
    let scrape = |right: &str| {
        std::panic::catch_unwind(|| {
            let r = crate::support::http_with(
                Some(prometheus),
                addr,
                "GET",
                "/metrics",
                &[("Authorization", right)],
            );
            r.status == 200 && r.body.contains("net_interface_rx_bytes_total{")
        })
        .unwrap_or(false)
    };
    assert!(scrape(&right), "Prometheus is let in");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood: Vec<_> = (0..500)
        .map(|i| {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                    // Keep-alive: request after request on one connection.
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let auth = basic(&format!("guess-{i}-{n}"));
                        let request = format!(
                            "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n"
                        );
                        if s.write_all(request.as_bytes()).is_err() {
                            break;
                        }
                        sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let mut buf = [0u8; 4096];
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                }
            })
        })
        .collect();

    let (mut scrapes, mut missed, mut slowest) = (0, 0, Duration::ZERO);
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(20) {
        let t = std::time::Instant::now();
        if !scrape(&right) {
            missed += 1;
        }
        slowest = slowest.max(t.elapsed());
        scrapes += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for f in flood {
        f.join().unwrap();
    }
    eprintln!(
        "wrong-password flood: {} requests from 500 connections; Prometheus {scrapes} scrapes, \
         {missed} missed, slowest {slowest:?}",
        sent.load(std::sync::atomic::Ordering::Relaxed)
    );
    assert!(scrapes >= 30, "{scrapes} scrapes");
    assert_eq!(missed, 0, "scrapes Prometheus missed");
    // Half Prometheus's default scrape timeout (10 s); the wait is the
    // kernel's accept queue, full of the flood's reconnections.
    assert!(
        slowest < Duration::from_secs(5),
        "slowest scrape {slowest:?}"
    );
}

/// Behind basic auth `/-/ready` is as every path, `/-/healthy` included:
/// without the password 401 and nothing else (its reasons name the host's
/// paths); with it, the readiness and its reason. `--healthcheck` cannot log
/// in (the web config holds only hashes), so there 401 counts as up: it
/// passes even though the exporter is not ready.
#[test]
fn ready_is_behind_basic_auth_like_every_path() {
    use base64::Engine;

    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, users()).unwrap();
    let host = copy_fixture("seed-host");
    let netdev = host.path().join("proc/1/net/dev");
    std::fs::remove_file(&netdev).unwrap();
    let e = exporter(host.path(), &web, "");
    let right = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("prometheus:{PASSWORD}"))
    );
    for path in ["/-/ready", "/-/healthy"] {
        let r = http(e.addr, "GET", path);
        assert_eq!(r.status, 401, "{path}");
        assert!(r.header("www-authenticate").is_some(), "{path}");
        assert!(!r.body.contains("net/dev"), "{path}: {}", r.body);
    }
    let ready = |auth: &str| {
        crate::support::http_with(None, e.addr, "GET", "/-/ready", &[("Authorization", auth)])
    };
    let r = ready(&right);
    assert_eq!(r.status, 503);
    assert!(
        r.body
            .starts_with(&format!("not ready: cannot read {}", netdev.display())),
        "{}",
        r.body
    );
    assert_eq!(ready("Basic cHJvbWV0aGV1czp3cm9uZw==").status, 401);
    let (passed, err) = crate::http::healthcheck(e.addr);
    assert!(passed, "401 counts as up: {err}");
    std::fs::write(&netdev, "").unwrap();
    let r = ready(&right);
    assert_eq!((r.status, r.body.as_str()), (200, "Ready\n"));
}
