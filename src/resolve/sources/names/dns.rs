//! Reverse DNS for private peers: one async resolver (hickory, reading the
//! host's resolv.conf), so a lookup holds no thread; every lookup bounded by
//! `dns_timeout`, at most [`MAX_NEW`] new ones a refresh, [`CONCURRENCY`] at
//! once; every answer, and every lack of one, kept for `dns_cache`. Public
//! addresses are never looked up: their names are not the LAN's, and each
//! lookup would tell a resolver outside whom this host talks to.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;
use tokio::time::Instant;

use crate::model::peer::is_lan;

/// New lookups a refresh starts at most; the rest wait for the next one
/// (cached answers cost nothing).
pub const MAX_NEW: usize = 64;
/// Lookups in flight at once.
pub const CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot read the host's DNS configuration: {0}")]
    Config(String),
    #[error("no reverse lookup was answered ({failed} failed; the last: {last})")]
    NoAnswers { failed: usize, last: String },
    #[error("the lookups took more than the refresh's {}; the answers so far are kept", humantime::format_duration(*.0))]
    OutOfTime(Duration),
}

struct Cached {
    name: Option<String>,
    until: Instant,
}

pub struct ReverseDns {
    timeout: Duration,
    keep: Duration,
    /// Built at the first refresh, and again after one where no lookup was
    /// answered (resolv.conf may have changed).
    resolver: Mutex<Option<TokioResolver>>,
    cache: Mutex<HashMap<IpAddr, Cached>>,
}

impl ReverseDns {
    pub fn new(timeout: Duration, keep: Duration) -> ReverseDns {
        ReverseDns {
            timeout,
            keep,
            resolver: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn resolver(&self) -> Result<TokioResolver, DnsError> {
        let mut slot = self.resolver.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(r) = &*slot {
            return Ok(r.clone());
        }
        let mut builder =
            TokioResolver::builder_tokio().map_err(|e| DnsError::Config(e.to_string()))?;
        let options = builder.options_mut();
        options.timeout = self.timeout;
        options.attempts = 1;
        // Answers are kept here, with the lack of one, for `dns_cache`.
        options.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| DnsError::Config(e.to_string()))?;
        *slot = Some(resolver.clone());
        Ok(resolver)
    }

    /// The names of `addrs` (the private ones) that DNS knows: from the
    /// cache, then from new lookups. Fails only when lookups were made and
    /// none was answered (a name that does not exist is an answer).
    pub async fn names(
        &self,
        addrs: impl IntoIterator<Item = IpAddr>,
    ) -> Result<HashMap<IpAddr, String>, DnsError> {
        let now = Instant::now();
        let mut named = HashMap::new();
        let mut wanted = Vec::new();
        {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.retain(|_, c| c.until > now);
            for ip in addrs.into_iter().filter(|ip| is_lan(*ip)) {
                match cache.get(&ip) {
                    Some(Cached { name: Some(n), .. }) => {
                        named.insert(ip, n.clone());
                    }
                    Some(Cached { name: None, .. }) => {}
                    None if wanted.len() < MAX_NEW && !wanted.contains(&ip) => wanted.push(ip),
                    None => {}
                }
            }
        }
        if wanted.is_empty() {
            return Ok(named);
        }
        let resolver = self.resolver()?;
        let asked = wanted.len();
        let lookups = wanted.into_iter().map(|ip| {
            let resolver = resolver.clone();
            async move {
                let answer = tokio::time::timeout(self.timeout, resolver.reverse_lookup(ip)).await;
                let answer = match answer {
                    Err(_) => Err("no answer in time".to_owned()),
                    Ok(Ok(lookup)) => Ok(lookup.answers().iter().find_map(|r| match &r.data {
                        RData::PTR(ptr) => super::clean(ptr.0.to_utf8().trim_end_matches('.')),
                        _ => None,
                    })),
                    Ok(Err(e)) if e.is_no_records_found() || e.is_nx_domain() => Ok(None),
                    Ok(Err(e)) => Err(e.to_string()),
                };
                (ip, answer)
            }
        });
        let mut answers = stream::iter(lookups).buffer_unordered(CONCURRENCY);
        let mut failed = 0;
        let mut last = String::new();
        while let Some((ip, answer)) = answers.next().await {
            match answer {
                Ok(name) => {
                    if let Some(n) = &name {
                        named.insert(ip, n.clone());
                    }
                    // Kept as it comes: a refresh cut short keeps what it got.
                    self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
                        ip,
                        Cached {
                            name,
                            until: Instant::now() + self.keep,
                        },
                    );
                }
                Err(e) => {
                    failed += 1;
                    last = e;
                }
            }
        }
        if failed == asked {
            *self.resolver.lock().unwrap_or_else(|e| e.into_inner()) = None;
            return Err(DnsError::NoAnswers { failed, last });
        }
        Ok(named)
    }
}
