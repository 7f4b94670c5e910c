//! Who may talk to the exporter, from the web config file: the TLS
//! certificate, the basic auth users, the extra response headers. The file and
//! the files it names are looked at again at most once a second (when a
//! connection arrives, so an idle exporter does nothing) and re-read when one
//! changed: a renewed certificate needs no restart. A change that does not
//! check out is logged and the last good config stays.
//!
//! Nothing here blocks a connection: looking at the files, reading them and
//! hashing run on a blocking thread (a [`Worker`], so a file on a hung mount
//! costs one thread and the next connection is served with the config in
//! force), and a password check either gets its turn at bcrypt within a
//! bound or is answered "busy". A client that knows no password can neither
//! push Prometheus's remembered success out nor queue up checks.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::web_config::{self, WebConfig, WebConfigError};
use crate::bounded::{Fs, Worker};

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Looking at and reading the files: past this they count as hung.
const FILE_TIMEOUT: Duration = Duration::from_secs(5);

/// Remembered answers, each kind bounded on its own and emptied when full:
/// only a right password adds to the successes, so failures (anyone can
/// make them) never push a success out.
const CACHE_MAX: usize = 256;

/// A password check waits at most this long for its turn at bcrypt, then is
/// answered "busy": waiting is bounded, never a queue that grows.
const BCRYPT_WAIT: Duration = Duration::from_secs(1);

/// One checked config, ready to use.
pub struct AccessState {
    pub config: WebConfig,
    pub tls: Option<TlsAcceptor>,
    /// A hash of the users' cost for names that are not users, so an unknown
    /// user costs what a wrong password costs.
    dummy_hash: Option<String>,
    /// sha256(user, hash, password) of checks that matched, and of those
    /// that did not.
    granted: Mutex<HashSet<[u8; 32]>>,
    refused: Mutex<HashSet<[u8; 32]>>,
}

impl AccessState {
    /// Reads the TLS files and hashes the dummy password: blocking work.
    fn new(config: WebConfig) -> Result<AccessState, String> {
        let tls = match &config.tls {
            Some(settings) => Some(TlsAcceptor::from(web_config::server_config(settings)?)),
            None => None,
        };
        let dummy_hash = match config.users.values().next() {
            Some(hash) => {
                let cost = hash
                    .parse::<bcrypt::HashParts>()
                    .map(|p| p.get_cost())
                    .map_err(|e| e.to_string())?;
                Some(bcrypt::hash("not anybody's password", cost).map_err(|e| e.to_string())?)
            }
            None => None,
        };
        Ok(AccessState {
            config,
            tls,
            dummy_hash,
            granted: Mutex::default(),
            refused: Mutex::default(),
        })
    }

    pub fn needs_auth(&self) -> bool {
        !self.config.users.is_empty()
    }

    fn remember(&self, key: [u8; 32], matched: bool) {
        let cache = if matched {
            &self.granted
        } else {
            &self.refused
        };
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.clear();
        }
        cache.insert(key);
    }

    fn recall(&self, key: &[u8; 32]) -> Option<bool> {
        let has = |cache: &Mutex<HashSet<[u8; 32]>>| {
            cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(key)
        };
        if has(&self.granted) {
            Some(true)
        } else if has(&self.refused) {
            Some(false)
        } else {
            None
        }
    }
}

/// A file's identity and age, to notice a change.
type Stamp = Option<(SystemTime, u64, u64)>;

/// When the files were last looked at, and what each was then.
type Seen = Mutex<(Instant, Vec<(PathBuf, Stamp)>)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn stamps(path: Option<&Path>, config: &WebConfig) -> Vec<(PathBuf, Stamp)> {
    path.map(Path::to_owned)
        .into_iter()
        .chain(config.watched())
        .map(|p| {
            let s = stamp(&p);
            (p, s)
        })
        .collect()
}

/// What a basic auth check says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Granted,
    Refused,
    /// No turn at bcrypt in time, or this address already has a check
    /// under way: try again (503).
    Busy,
}

pub struct Access {
    path: Option<PathBuf>,
    state: Arc<ArcSwap<AccessState>>,
    /// When the files were last looked at, and what they were.
    seen: Arc<Seen>,
    /// A look at the files is under way.
    checking: Arc<AtomicBool>,
    files: Arc<Worker>,
    /// One bcrypt at a time: it is CPU work by design.
    bcrypt: Arc<Semaphore>,
    /// Addresses with a password check waiting or running: one each.
    checking_for: Arc<Mutex<HashSet<IpAddr>>>,
    /// The last reload error, so each is logged once.
    last_error: Arc<Mutex<Option<String>>>,
}

impl Access {
    /// Reads the web config file, if any; an error here stops the start.
    /// Blocking: see [`Access::load_bounded`].
    pub fn load(path: Option<&Path>) -> Result<Access, WebConfigError> {
        let config = match path {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::default(),
        };
        let state = AccessState::new(config).map_err(|reason| WebConfigError {
            path: path.map(Path::to_owned).unwrap_or_default(),
            reason,
        })?;
        let seen = stamps(path, &state.config);
        Ok(Access {
            path: path.map(Path::to_owned),
            state: Arc::new(ArcSwap::from_pointee(state)),
            seen: Arc::new(Mutex::new((Instant::now(), seen))),
            checking: Arc::default(),
            files: Arc::new(Worker::new(FILE_TIMEOUT)),
            bcrypt: Arc::new(Semaphore::new(1)),
            checking_for: Arc::default(),
            last_error: Arc::default(),
        })
    }

    /// [`Access::load`] on a blocking thread, within [`FILE_TIMEOUT`].
    pub async fn load_bounded(path: Option<PathBuf>) -> Result<Access, WebConfigError> {
        let shown = path.clone().unwrap_or_default();
        let load = tokio::task::spawn_blocking(move || Access::load(path.as_deref()));
        match tokio::time::timeout(FILE_TIMEOUT, load).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(e)) => Err(WebConfigError {
                path: shown,
                reason: e.to_string(),
            }),
            Err(_) => Err(WebConfigError {
                path: shown,
                reason: format!(
                    "no answer within {}: is it on a hung mount?",
                    humantime::format_duration(FILE_TIMEOUT)
                ),
            }),
        }
    }

    /// The config in force. At most once a second this also starts a look
    /// at the files in the background; a change applies from the connection
    /// after it has been read.
    pub fn current(&self) -> Arc<AccessState> {
        if let Some(path) = &self.path
            && self.due()
            && !self.checking.swap(true, Ordering::AcqRel)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(self.check(path.clone()));
        }
        self.state.load_full()
    }

    fn due(&self) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.0.elapsed() >= CHECK_EVERY
    }

    /// Looks at the files on the worker and reads them again if one changed.
    fn check(&self, path: PathBuf) -> impl std::future::Future<Output = ()> + Send + 'static {
        let old = self.state.load_full();
        let (seen, checking, files) = (
            Arc::clone(&self.seen),
            Arc::clone(&self.checking),
            Arc::clone(&self.files),
        );
        let state = Arc::clone(&self.state);
        let last_error = Arc::clone(&self.last_error);
        async move {
            let looked = {
                let (seen, path) = (Arc::clone(&seen), path.clone());
                files
                    .run(move |fs| reread_if_changed(fs, &path, &old, &seen))
                    .await
            };
            match looked {
                Ok(None) => {}
                Ok(Some(Ok(new))) => {
                    state.store(Arc::new(new));
                    *last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    tracing::info!(path = %path.display(), "web config read again");
                }
                Ok(Some(Err(error))) => log_reload_error(&last_error, error),
                // A hung file: the last good config stays; said once per error.
                Err(e) => {
                    seen.lock().unwrap_or_else(|e| e.into_inner()).0 = Instant::now();
                    log_reload_error(&last_error, e.to_string());
                }
            }
            checking.store(false, Ordering::Release);
        }
    }

    /// Whether `authorization` (the request's header) names a user with the
    /// right password. An unknown user pays a full bcrypt against a hash of
    /// the same cost, and answers are cached alike, so the time taken does
    /// not tell unknown users from wrong passwords. A check that is not in
    /// the cache waits at most [`BCRYPT_WAIT`] for its turn, and an address
    /// gets one check at a time: otherwise [`Verdict::Busy`].
    pub async fn authorize(
        &self,
        state: &AccessState,
        authorization: Option<&HeaderValue>,
        peer: IpAddr,
    ) -> Verdict {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return Verdict::Refused;
        };
        let known = state.config.users.get(&user);
        let Some(hash) = known.or(state.dummy_hash.as_ref()).cloned() else {
            return Verdict::Refused;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let matched = match state.recall(&key) {
            Some(matched) => matched,
            None => {
                let Some(_mine) = OneAt::claim(&self.checking_for, peer.to_canonical()) else {
                    return Verdict::Busy;
                };
                let turn =
                    tokio::time::timeout(BCRYPT_WAIT, Arc::clone(&self.bcrypt).acquire_owned())
                        .await;
                let Ok(Ok(turn)) = turn else {
                    return Verdict::Busy;
                };
                // The turn goes with the work: a client that hangs up does
                // not free it while its bcrypt still runs.
                let checked = tokio::task::spawn_blocking(move || {
                    let _turn = turn;
                    bcrypt::verify(password, &hash).unwrap_or(false)
                })
                .await;
                let matched = checked.unwrap_or(false);
                state.remember(key, matched);
                matched
            }
        };
        if matched && known.is_some() {
            Verdict::Granted
        } else {
            Verdict::Refused
        }
    }
}

/// An address's one password check: claimed, or `None` if it has one.
struct OneAt {
    set: Arc<Mutex<HashSet<IpAddr>>>,
    peer: IpAddr,
}

impl OneAt {
    fn claim(set: &Arc<Mutex<HashSet<IpAddr>>>, peer: IpAddr) -> Option<OneAt> {
        let fresh = set.lock().unwrap_or_else(|e| e.into_inner()).insert(peer);
        fresh.then(|| OneAt {
            set: Arc::clone(set),
            peer,
        })
    }
}

impl Drop for OneAt {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.peer);
    }
}

/// On the worker: `None` if no file changed; otherwise the config read
/// again, or why it does not check out (then the files are looked at again
/// only once one changes once more).
fn reread_if_changed(
    fs: &Fs,
    path: &Path,
    old: &AccessState,
    seen: &Seen,
) -> Option<Result<AccessState, String>> {
    // The files are looked at outside the lock: connections read it (when
    // was the last look?) and must never wait for a hung stat.
    let known = {
        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.0 = Instant::now();
        seen.1.clone()
    };
    if !known.iter().any(|(p, s)| {
        fs.at(p);
        stamp(p) != *s
    }) {
        return None;
    }
    fs.at(path);
    let result = WebConfig::load(path)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            if config.tls.is_some() != old.config.tls.is_some() {
                return Err(format!(
                    "web config {}: turning TLS on or off needs a restart",
                    path.display()
                ));
            }
            AccessState::new(config)
        });
    let watched = match &result {
        Ok(new) => stamps(Some(path), &new.config),
        Err(_) => stamps(Some(path), &old.config),
    };
    *seen.lock().unwrap_or_else(|e| e.into_inner()) = (Instant::now(), watched);
    Some(result)
}

fn log_reload_error(last_error: &Mutex<Option<String>>, error: String) {
    let mut last = last_error.lock().unwrap_or_else(|e| e.into_inner());
    if last.as_deref() != Some(&error) {
        tracing::error!(%error, "web config not read again; the last good one stays");
        *last = Some(error);
    }
}

/// `Basic base64(user:password)`.
fn basic_credentials(header: &HeaderValue) -> Option<(String, String)> {
    let encoded = header.to_str().ok()?;
    let (scheme, encoded) = encoded.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, password: &str) -> HeaderValue {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
    }

    const HERE: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn access_with(users: &str) -> (tempfile::TempDir, Arc<Access>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, format!("basic_auth_users:\n{users}")).unwrap();
        let access = Arc::new(Access::load(Some(&path)).unwrap());
        (dir, access)
    }

    #[tokio::test]
    async fn users_passwords_and_the_cache() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let (_dir, access) = access_with(&format!("  prometheus: {hash}\n"));
        let state = access.current();
        assert!(state.needs_auth());
        let check = |h: Option<HeaderValue>| {
            let (access, state) = (Arc::clone(&access), Arc::clone(&state));
            async move { access.authorize(&state, h.as_ref(), HERE).await }
        };
        assert_eq!(
            check(Some(header("prometheus", "secret"))).await,
            Verdict::Granted
        );
        assert_eq!(
            check(Some(header("prometheus", "secret"))).await,
            Verdict::Granted,
            "cached"
        );
        assert_eq!(
            check(Some(header("prometheus", "wrong"))).await,
            Verdict::Refused
        );
        assert_eq!(
            check(Some(header("nobody", "secret"))).await,
            Verdict::Refused
        );
        assert_eq!(check(None).await, Verdict::Refused);
        assert_eq!(
            check(Some(HeaderValue::from_static("Bearer x"))).await,
            Verdict::Refused
        );
        assert_eq!(state.granted.lock().unwrap().len(), 1);
        assert_eq!(state.refused.lock().unwrap().len(), 2);
    }

    /// Failures, however many, never push the remembered success out.
    #[tokio::test]
    async fn failures_cannot_evict_a_success() {
        let hash = bcrypt::hash("secret", 4).unwrap();
        let (_dir, access) = access_with(&format!("  prometheus: {hash}\n"));
        let state = access.current();
        let right = header("prometheus", "secret");
        assert_eq!(
            access.authorize(&state, Some(&right), HERE).await,
            Verdict::Granted
        );
        for i in 0..CACHE_MAX * 2 {
            let wrong = header("prometheus", &format!("guess-{i}"));
            assert_eq!(
                access.authorize(&state, Some(&wrong), HERE).await,
                Verdict::Refused
            );
        }
        assert_eq!(
            state.recall(&key_of(&state, "prometheus", "secret")),
            Some(true),
            "the success is still remembered"
        );
        assert_eq!(
            access.authorize(&state, Some(&right), HERE).await,
            Verdict::Granted
        );
    }

    fn key_of(state: &AccessState, user: &str, password: &str) -> [u8; 32] {
        let hash = &state.config.users[user];
        Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into()
    }

    /// Checks that are not cached get a turn at bcrypt within a bound, one
    /// per address: a flood of wrong passwords is answered "busy" at once
    /// instead of queueing, and another address still gets its turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn password_checks_never_queue() {
        // Cost 10: ~60 ms a check here, long enough for the flood to pile up
        // behind (it arrives within a millisecond), and short enough that a
        // loaded machine does not stretch it past the wait this checks.
        let hash = bcrypt::hash("secret", 10).unwrap();
        let (_dir, access) = access_with(&format!("  prometheus: {hash}\n"));
        let state = access.current();
        let flooder = IpAddr::from([10, 0, 0, 1]);
        let started = Instant::now();
        let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let flood: Vec<_> = (0..200)
            .map(|i| {
                let (access, state) = (Arc::clone(&access), Arc::clone(&state));
                let answered = Arc::clone(&answered);
                tokio::spawn(async move {
                    let wrong = header("prometheus", &format!("guess-{i}"));
                    let verdict = access.authorize(&state, Some(&wrong), flooder).await;
                    answered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    verdict
                })
            })
            .collect();
        // Ask once the flood is answered but for the check still running, so
        // the other address waits behind one bcrypt at most, however slowly a
        // loaded machine schedules the flood.
        while answered.load(std::sync::atomic::Ordering::Relaxed) < 199
            && started.elapsed() < Duration::from_secs(5)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let other = IpAddr::from([10, 0, 0, 2]);
        let right = header("prometheus", "secret");
        let asked = Instant::now();
        let verdict = access.authorize(&state, Some(&right), other).await;
        let took = asked.elapsed();
        let mut busy = 0;
        for f in flood {
            if f.await.unwrap() == Verdict::Busy {
                busy += 1;
            }
        }
        let all = started.elapsed();
        assert_eq!(verdict, Verdict::Granted, "another address got its turn");
        assert!(took < BCRYPT_WAIT * 2, "within the bound: {took:?}");
        assert!(busy >= 198, "{busy} of 200 answered busy");
        assert!(all < BCRYPT_WAIT * 3, "nothing queued: {all:?}");
    }

    #[tokio::test]
    async fn a_changed_file_is_read_again_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "").unwrap();
        let access = Access::load(Some(&path)).unwrap();
        assert!(!access.current().needs_auth());
        let hash = bcrypt::hash("secret", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  u: {hash}\n")).unwrap();
        tokio::time::sleep(CHECK_EVERY).await;
        let reread = async {
            while !access.current().needs_auth() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), reread)
            .await
            .expect("read again");
        std::fs::write(&path, "basic_auth_users: [").unwrap();
        tokio::time::sleep(CHECK_EVERY).await;
        access.current();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(access.current().needs_auth(), "the last good config stays");
    }
}
