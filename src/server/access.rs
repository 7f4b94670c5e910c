//! Who may talk to the exporter, from the web config file: the TLS
//! certificate, the basic auth users, the extra response headers. The file and
//! the files it names are looked at again at most once a second (when a
//! connection arrives, so an idle exporter does nothing) and re-read when one
//! changed: a renewed certificate needs no restart. A change that does not
//! check out is logged and the last good config stays.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use base64::Engine;
use http::HeaderValue;
use sha2::{Digest, Sha256};
use tokio_rustls::TlsAcceptor;

use super::web_config::{self, WebConfig, WebConfigError};

/// How often the files are looked at, at most.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Remembered bcrypt answers: a scrape every second must not pay for a full
/// bcrypt each time. Bounded: emptied when full.
const CACHE_MAX: usize = 256;

/// One checked config, ready to use.
pub struct AccessState {
    pub config: WebConfig,
    pub tls: Option<TlsAcceptor>,
    /// A hash of the users' cost for names that are not users, so an unknown
    /// user costs what a wrong password costs.
    dummy_hash: Option<String>,
    /// sha256(user, hash, password) -> whether they matched.
    cache: Mutex<HashMap<[u8; 32], bool>>,
}

impl AccessState {
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
            cache: Mutex::default(),
        })
    }

    pub fn needs_auth(&self) -> bool {
        !self.config.users.is_empty()
    }
}

/// A file's identity and age, to notice a change.
type Stamp = Option<(SystemTime, u64, u64)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

pub struct Access {
    path: Option<PathBuf>,
    state: ArcSwap<AccessState>,
    /// When the files were last looked at, and what they were.
    seen: Mutex<(Instant, Vec<(PathBuf, Stamp)>)>,
    /// One bcrypt at a time: it is CPU work by design.
    bcrypt: tokio::sync::Mutex<()>,
    /// The last reload error, so each is logged once.
    last_error: Mutex<Option<String>>,
}

impl Access {
    /// Reads the web config file, if any; an error here stops the start.
    pub fn load(path: Option<&Path>) -> Result<Access, WebConfigError> {
        let config = match path {
            Some(path) => WebConfig::load(path)?,
            None => WebConfig::default(),
        };
        let state = AccessState::new(config).map_err(|reason| WebConfigError {
            path: path.map(Path::to_owned).unwrap_or_default(),
            reason,
        })?;
        let seen = Access::stamps(path, &state.config);
        Ok(Access {
            path: path.map(Path::to_owned),
            state: ArcSwap::from_pointee(state),
            seen: Mutex::new((Instant::now(), seen)),
            bcrypt: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(None),
        })
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

    /// The config in force, read again first if a file changed.
    pub fn current(&self) -> Arc<AccessState> {
        let Some(path) = &self.path else {
            return self.state.load_full();
        };
        let changed = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.0.elapsed() < CHECK_EVERY {
                false
            } else {
                seen.0 = Instant::now();
                seen.1.iter().any(|(p, s)| stamp(p) != *s)
            }
        };
        if changed {
            self.reload(path);
        }
        self.state.load_full()
    }

    fn reload(&self, path: &Path) {
        let old = self.state.load();
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
        let mut last_error = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(state) => {
                *self.seen.lock().unwrap_or_else(|e| e.into_inner()) =
                    (Instant::now(), Access::stamps(Some(path), &state.config));
                self.state.store(Arc::new(state));
                *last_error = None;
                tracing::info!(path = %path.display(), "web config read again");
            }
            Err(error) => {
                // Looked at again only when a file changes once more.
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.1 = Access::stamps(Some(path), &old.config);
                if last_error.as_deref() != Some(&error) {
                    tracing::error!(%error, "web config not read again; the last good one stays");
                    *last_error = Some(error);
                }
            }
        }
    }

    /// Whether `authorization` (the request's header) names a user with the
    /// right password. An unknown user pays a full bcrypt against a hash of
    /// the same cost, and answers are cached alike, so the time taken does
    /// not tell unknown users from wrong passwords.
    pub async fn authorize(
        &self,
        state: &AccessState,
        authorization: Option<&HeaderValue>,
    ) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let known = state.config.users.get(&user);
        let Some(hash) = known.or(state.dummy_hash.as_ref()).cloned() else {
            return false;
        };
        let key: [u8; 32] = Sha256::new()
            .chain_update(user.as_bytes())
            .chain_update([0])
            .chain_update(hash.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let cached = state
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .copied();
        let matched = match cached {
            Some(matched) => matched,
            None => {
                let _one_at_a_time = self.bcrypt.lock().await;
                let matched = tokio::task::spawn_blocking(move || {
                    bcrypt::verify(password, &hash).unwrap_or(false)
                })
                .await
                .unwrap_or(false);
                let mut cache = state.cache.lock().unwrap_or_else(|e| e.into_inner());
                if cache.len() >= CACHE_MAX {
                    cache.clear();
                }
                cache.insert(key, matched);
                matched
            }
        };
        matched && known.is_some()
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

    #[tokio::test]
    async fn users_passwords_and_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let hash = bcrypt::hash("secret", 4).unwrap();
        std::fs::write(&path, format!("basic_auth_users:\n  prometheus: {hash}\n")).unwrap();
        let access = Access::load(Some(&path)).unwrap();
        let state = access.current();
        assert!(state.needs_auth());
        assert!(
            access
                .authorize(&state, Some(&header("prometheus", "secret")))
                .await
        );
        assert!(
            access
                .authorize(&state, Some(&header("prometheus", "secret")))
                .await,
            "cached"
        );
        assert!(
            !access
                .authorize(&state, Some(&header("prometheus", "wrong")))
                .await
        );
        assert!(
            !access
                .authorize(&state, Some(&header("nobody", "secret")))
                .await
        );
        assert!(!access.authorize(&state, None).await);
        assert!(
            !access
                .authorize(&state, Some(&HeaderValue::from_static("Bearer x")))
                .await
        );
        assert_eq!(state.cache.lock().unwrap().len(), 3);
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
        std::thread::sleep(CHECK_EVERY);
        assert!(access.current().needs_auth(), "read again");
        std::fs::write(&path, "basic_auth_users: [").unwrap();
        std::thread::sleep(CHECK_EVERY);
        assert!(access.current().needs_auth(), "the last good config stays");
    }
}
