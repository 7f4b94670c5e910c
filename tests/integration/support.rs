//! Helpers shared by the integration tests: the binary, fixtures, skips,
//! a strict text-format parser and a tiny HTTP/1.1 client.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_truenas-net-exporter")
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Under CI every test must run: a missing component fails instead of
/// skipping. CI services set `CI` to `true`, `1` or their own name; only an
/// empty value, `false` or `0` means "not CI".
pub fn strict() -> bool {
    let set = |name| std::env::var(name).is_ok_and(|v| !matches!(v.as_str(), "" | "false" | "0"));
    set("CI") || set("TNE_REQUIRE_ALL")
}

/// `true` if the test may go on; otherwise prints why it skips (or fails under CI).
pub fn require(ok: bool, reason: &str) -> bool {
    if ok {
        return true;
    }
    assert!(!strict(), "required under CI but missing: {reason}");
    eprintln!("SKIP: {reason}");
    false
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

pub fn have(cmd: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(cmd).is_file()))
}

/// Runs the binary with `--once` plus `args`.
pub fn run_once(args: &[&str]) -> Output {
    Command::new(bin())
        .arg("--once")
        .args(args)
        .output()
        .expect("run exporter binary")
}

/// Runs `--once` against a fixture host and returns stdout, asserting success.
pub fn once_on_host(root: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        format!("--path.rootfs={}", root.display()),
        format!("--path.procfs={}", root.join("proc").display()),
        "--docker.socket=".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_once(&refs);
    assert!(
        out.status.success(),
        "exporter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("exposition is UTF-8")
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A strict parser of the text exposition format: every non-comment line must be
/// `name{k="v",...} value`, with `\\`, `\"` and `\n` the only escapes.
pub fn parse(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fail = |why: &str| -> ! { panic!("bad exposition line ({why}): {line}") };
        let name_end = line.find(['{', ' ']).unwrap_or_else(|| fail("no value"));
        let name = &line[..name_end];
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
        {
            fail("metric name");
        }
        let mut labels = Vec::new();
        let mut rest = &line[name_end..];
        if let Some(body) = rest.strip_prefix('{') {
            let mut chars = body.char_indices().peekable();
            let end;
            loop {
                let key_start = match chars.peek() {
                    Some(&(i, '}')) => {
                        end = i;
                        break;
                    }
                    Some(&(i, _)) => i,
                    None => fail("unterminated labels"),
                };
                let eq = body[key_start..].find('=').unwrap_or_else(|| fail("no =")) + key_start;
                let key = body[key_start..eq].to_owned();
                while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                    chars.next();
                }
                if chars.next().map(|(_, c)| c) != Some('"') {
                    fail("value not quoted");
                }
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => fail("bad escape"),
                        },
                        Some((_, '"')) => break,
                        Some((_, '\n')) => fail("raw newline"),
                        Some((_, c)) => value.push(c),
                        None => fail("unterminated value"),
                    }
                }
                labels.push((key, value));
                if chars.peek().is_some_and(|&(_, c)| c == ',') {
                    chars.next();
                }
            }
            rest = &body[end + 1..];
        }
        let value = rest.trim_start().split(' ').next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().unwrap_or_else(|_| fail("value")),
        };
        out.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    out
}

/// The sample of `metric` for `interface`, which must exist exactly once.
pub fn one<'a>(samples: &'a [Sample], metric: &str, interface: &str) -> &'a Sample {
    let found: Vec<_> = samples
        .iter()
        .filter(|s| s.name == metric && s.label("interface") == Some(interface))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{metric}{{interface={interface:?}}} found {} times",
        found.len()
    );
    found[0]
}

pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    http_with(None, addr, method, path, &[])
}

/// A connection to `addr` from the local address `from`: every 127.x.y.z is
/// this host, so one test can play several client hosts.
pub fn connect_from(from: std::net::IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&addr.into(), Duration::from_secs(10))?;
    Ok(socket.into())
}

/// [`http`] from the local address `from` (if given), with extra headers.
pub fn http_with(
    from: Option<std::net::IpAddr>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let mut s = match from {
        Some(from) => {
            connect_from(from, addr).unwrap_or_else(|e| panic!("connect from {from}: {e}"))
        }
        None => TcpStream::connect(addr).expect("connect"),
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("header end");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    HttpResponse {
        status,
        head: head.to_owned(),
        body,
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// Polls `check` until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if start.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Copies a fixture tree (keeping symlinks) into a fresh temporary directory.
pub fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture(name).display()))
        .arg(dir.path())
        .status()
        .expect("cp");
    assert!(status.success());
    dir
}

/// Columns of a net/dev line after the interface name.
pub const RX_BYTES: usize = 0;
pub const TX_BYTES: usize = 8;

/// A growing counter: interface, column, bytes per second.
type Counter = (String, usize, u64);

/// Traffic on fixture hosts: counters of their net/dev that each grow by
/// their own steady number of bytes per second, written by a thread until
/// this is dropped.
pub struct GrowingRx {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl GrowingRx {
    /// `enp8s0f0` of each host receives its own number of bytes per second.
    pub fn start(hosts: &[(&Path, u64)]) -> GrowingRx {
        let counters: Vec<_> = hosts
            .iter()
            .map(|(p, r)| (*p, "enp8s0f0", RX_BYTES, *r))
            .collect();
        GrowingRx::counters(&counters)
    }

    /// Each `(host, interface, column, bytes per second)` grows.
    pub fn counters(counters: &[(&Path, &str, usize, u64)]) -> GrowingRx {
        let mut hosts: Vec<(PathBuf, Vec<Counter>)> = Vec::new();
        for (root, interface, column, per_second) in counters {
            let counter = (interface.to_string(), *column, *per_second);
            match hosts.iter_mut().find(|(r, _)| r == root) {
                Some((_, list)) => list.push(counter),
                None => hosts.push((root.to_path_buf(), vec![counter])),
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let start = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    let elapsed = start.elapsed().as_secs_f64();
                    for (root, list) in &hosts {
                        let values: Vec<(&str, usize, u64)> = list
                            .iter()
                            .map(|(i, c, r)| {
                                (i.as_str(), *c, 1_000_000 + (elapsed * *r as f64) as u64)
                            })
                            .collect();
                        // Fails only once a failed test has removed the hosts.
                        if set_counters(root, &values).is_err() {
                            return;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        GrowingRx {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for GrowingRx {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sets counters (`interface`, column, value) in a fixture host's net/dev, atomically.
fn set_counters(host: &Path, values: &[(&str, usize, u64)]) -> std::io::Result<()> {
    let netdev = host.join("proc/1/net/dev");
    let text = std::fs::read_to_string(&netdev)?;
    let text: String = text
        .lines()
        .map(|line| {
            let Some((name, rest)) = line.split_once(':') else {
                return format!("{line}\n");
            };
            let mine: Vec<_> = values
                .iter()
                .filter(|(i, _, _)| *i == name.trim())
                .collect();
            if mine.is_empty() {
                return format!("{line}\n");
            }
            let mut fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            for (_, column, value) in mine {
                fields[*column] = value.to_string();
            }
            format!("{name}: {}\n", fields.join(" "))
        })
        .collect();
    let tmp = host.join("proc/1/net/dev.new");
    std::fs::write(&tmp, text)?;
    std::fs::rename(tmp, netdev)
}

/// `tests/integration/<script>` in bash, as pid 1's child in a private
/// host (network, pid and mount namespaces, its own /proc), killed with the
/// `unshare` that runs it; `BIN` is the exporter's binary.
pub fn in_private_host(script: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args([
        "-n",
        "-p",
        "-f",
        "-m",
        "--mount-proc",
        "--kill-child=SIGTERM",
        "bash",
    ])
    .arg(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/integration")
            .join(script),
    )
    .env("BIN", bin());
    c
}

/// The next HTTP/1.1 request's first line (its headers read past), or
/// `None` once the client has gone: for the fake servers the tests run.
pub fn next_request(reader: &mut impl std::io::BufRead) -> Option<String> {
    let mut request = String::new();
    if reader.read_line(&mut request).unwrap_or(0) == 0 {
        return None;
    }
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
            return Some(request);
        }
    }
}

/// A script in a private host ([`in_private_host`]) driven by files in
/// `root`: the script, its pid 1 as seen from here (for `nsenter`), and
/// its root; killed and reaped when dropped.
pub struct PrivateHost {
    pub unshare: std::process::Child,
    pub root: tempfile::TempDir,
}

impl PrivateHost {
    pub fn log(&self) -> String {
        ["script.log", "exporter.log", "qemu.log", "dockerd.log"]
            .map(|f| std::fs::read_to_string(self.root.path().join(f)).unwrap_or_default())
            .join("\n")
    }

    pub fn wait_file(&self, name: &str) {
        let found = wait_for(Duration::from_secs(60), || {
            self.root.path().join(name).exists().then_some(())
        });
        assert!(found.is_some(), "no {name}: {}", self.log());
    }

    pub fn touch(&self, name: &str) {
        std::fs::write(self.root.path().join(name), "").unwrap();
    }

    /// GET `path` from the exporter inside, through its network namespace.
    pub fn get(&self, path: &str) -> String {
        self.get_on(9551, path)
    }

    /// GET `path` from whatever listens on `port` inside.
    pub fn get_on(&self, port: u16, path: &str) -> String {
        let pid = self.unshare.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap();
        let init = children
            .split_whitespace()
            .next()
            .expect("the namespace's pid 1");
        let out = Command::new("nsenter")
            .args(["-t", init, "-n", "curl", "-sS", "--max-time", "5"])
            .arg(format!("http://127.0.0.1:{port}{path}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for PrivateHost {
    fn drop(&mut self) {
        self.touch("done");
        std::thread::sleep(Duration::from_millis(200));
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// A documentation file, by its path from the repository's root
/// (`README.md`, `docs/prometheus.md`, `CONTRIBUTING.md`).
pub fn doc(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every documentation file with its path, in reading order: README.md,
/// docs/*.md by name, CONTRIBUTING.md.
pub fn doc_files() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    std::iter::once("README.md".to_owned())
        .chain(docs)
        .chain(std::iter::once("CONTRIBUTING.md".to_owned()))
        .map(|p| {
            let text = doc(&p);
            (p, text)
        })
        .collect()
}

/// The section of a Markdown `text` whose heading line starts with
/// `heading` (`## Limits`), to the next heading of its level or above.
pub fn doc_section(text: &str, heading: &str) -> String {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = text
        .lines()
        .scan(0, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| line.starts_with(heading))
        .map(|(at, _)| at)
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &text[start..];
    let mut end = rest.len();
    let mut at = 0;
    let mut fenced = false;
    for line in rest.lines() {
        if line.starts_with("```") {
            fenced = !fenced;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if at > 0 && !fenced && (1..=level).contains(&hashes) && line[hashes..].starts_with(' ') {
            end = at;
            break;
        }
        at += line.len() + 1;
    }
    rest[..end].to_owned()
}

/// The fenced blocks tagged `lang` in `text`, in order.
pub fn doc_blocks(text: &str, lang: &str) -> Vec<String> {
    text.split(&format!("```{lang}\n"))
        .skip(1)
        .map(|b| b[..b.find("```").expect("a closed block")].to_owned())
        .collect()
}
