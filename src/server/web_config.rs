//! The web config file (`--web.config.file`) in the format of Prometheus's
//! exporter-toolkit, so a file written for node_exporter works here: TLS
//! (`tls_server_config`), basic auth (`basic_auth_users`, bcrypt hashes) and
//! response headers (`http_server_config.headers`). A key this exporter does
//! not support is refused by name; nothing is silently ignored. Relative
//! paths are relative to the file, as in the toolkit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use crate::bounded;

#[derive(Debug, thiserror::Error)]
#[error("web config {path}: {reason}")]
pub struct WebConfigError {
    pub path: PathBuf,
    pub reason: String,
}

/// A file as written; the keys the toolkit has that this exporter does not
/// support are read only to be refused by name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebConfig {
    tls_server_config: Option<RawTls>,
    http_server_config: Option<RawHttp>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    curve_preferences: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    cert: Option<serde_norway::Value>,
    key: Option<serde_norway::Value>,
    client_ca: Option<serde_norway::Value>,
    client_allowed_sans: Option<serde_norway::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// Whether and how client certificates are asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Verified against `client_ca_file` when given; not required.
    VerifyIfGiven,
    Required,
}

/// TLS as configured; the certificate and key are read when TLS is set up.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_auth: ClientAuth,
    pub client_ca_file: Option<PathBuf>,
    /// TLS 1.2 and/or 1.3.
    pub versions: Vec<&'static rustls::SupportedProtocolVersion>,
    /// The suites offered, TLS 1.3's included (see [`cipher_suites`]);
    /// `None`: all of rustls's.
    pub cipher_suites: Option<Vec<rustls::SupportedCipherSuite>>,
    pub kx_groups: Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>,
    pub prefer_server_order: bool,
}

/// The checked file.
#[derive(Debug, Clone, Default)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// User name -> bcrypt hash.
    pub users: BTreeMap<String, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// The headers the toolkit lets a config set, with the values it allows
/// (none listed: any value).
const HEADERS: [(&str, &[&str]); 5] = [
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// A config file is a few lines; anything larger is not one.
const MAX_FILE: usize = 1 << 20;

impl WebConfig {
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let fail = |reason: String| WebConfigError {
            path: path.to_owned(),
            reason,
        };
        let text = bounded::read(path, MAX_FILE).map_err(|e| fail(e.to_string()))?;
        let raw: RawWebConfig = if text.iter().all(u8::is_ascii_whitespace) {
            RawWebConfig::default()
        } else {
            serde_norway::from_slice(&text).map_err(|e| fail(e.to_string()))?
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        WebConfig::check(raw, dir).map_err(fail)
    }

    fn check(raw: RawWebConfig, dir: &Path) -> Result<WebConfig, String> {
        if raw.rate_limit.is_some() {
            return Err(unsupported(
                "rate_limit",
                "put a proxy in front for rate limits",
            ));
        }
        let mut headers = Vec::new();
        let http = raw.http_server_config.unwrap_or_default();
        if http.http2 == Some(true) {
            return Err(unsupported(
                "http_server_config.http2: true",
                "this exporter speaks HTTP/1.1 (set it to false or remove it)",
            ));
        }
        for (name, value) in http.headers.unwrap_or_default() {
            let Some((_, allowed)) = HEADERS.iter().find(|(h, _)| h.eq_ignore_ascii_case(&name))
            else {
                return Err(format!(
                    "http_server_config.headers: {name:?} can not be configured (only {})",
                    HEADERS.map(|(h, _)| h).join(", ")
                ));
            };
            if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
                return Err(format!(
                    "http_server_config.headers: {name}: {value:?} is not one of {allowed:?}"
                ));
            }
            let header = HeaderName::try_from(name.as_str())
                .map_err(|e| format!("http_server_config.headers: {name:?}: {e}"))?;
            let value = HeaderValue::try_from(value.as_str())
                .map_err(|e| format!("http_server_config.headers: {name}: {e}"))?;
            headers.push((header, value));
        }
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if user.contains(':') {
                return Err(format!(
                    "basic_auth_users: {user:?}: a user name cannot hold ':'"
                ));
            }
            hash.parse::<bcrypt::HashParts>()
                .map_err(|e| format!("basic_auth_users: {user}: not a bcrypt hash ({e})"))?;
        }
        let tls = match raw.tls_server_config {
            Some(tls) => Some(check_tls(tls, dir)?),
            None => None,
        };
        Ok(WebConfig {
            tls,
            users,
            headers,
        })
    }

    /// Files whose change means the config must be read again.
    pub fn watched(&self) -> Vec<PathBuf> {
        self.tls
            .iter()
            .flat_map(|t| {
                [
                    Some(&t.cert_file),
                    Some(&t.key_file),
                    t.client_ca_file.as_ref(),
                ]
            })
            .flatten()
            .cloned()
            .collect()
    }
}

fn unsupported(key: &str, hint: &str) -> String {
    format!("{key} is not supported by this exporter: {hint}")
}

fn check_tls(raw: RawTls, dir: &Path) -> Result<TlsSettings, String> {
    let k = |key: &str| format!("tls_server_config.{key}");
    for (key, set, hint) in [
        ("cert", raw.cert.is_some(), "use cert_file"),
        ("key", raw.key.is_some(), "use key_file"),
        ("client_ca", raw.client_ca.is_some(), "use client_ca_file"),
        (
            "client_allowed_sans",
            raw.client_allowed_sans.is_some(),
            "restrict clients with client_ca_file",
        ),
    ] {
        if set {
            return Err(unsupported(&k(key), hint));
        }
    }
    let path = |p: PathBuf| if p.is_absolute() { p } else { dir.join(p) };
    let cert_file = raw
        .cert_file
        .map(path)
        .ok_or_else(|| format!("{} is missing", k("cert_file")))?;
    let key_file = raw
        .key_file
        .map(path)
        .ok_or_else(|| format!("{} is missing", k("key_file")))?;
    let client_auth = match raw.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "" | "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::Required,
        other @ ("RequestClientCert" | "RequireAnyClientCert" | "RequireClientCert") => {
            return Err(unsupported(
                &format!("{}: {other}", k("client_auth_type")),
                "a client certificate nobody verifies proves nothing; use RequireAndVerifyClientCert or VerifyClientCertIfGiven",
            ));
        }
        other => {
            return Err(format!(
                "{}: {other:?} is not a client auth type",
                k("client_auth_type")
            ));
        }
    };
    let client_ca_file = raw.client_ca_file.map(path);
    match (client_auth, &client_ca_file) {
        (ClientAuth::None, Some(_)) => {
            return Err(format!(
                "{} is set without a client_auth_type that checks client certificates",
                k("client_ca_file")
            ));
        }
        (ClientAuth::Required | ClientAuth::VerifyIfGiven, None) => {
            return Err(format!(
                "{} needs client_ca_file to verify client certificates",
                k("client_auth_type")
            ));
        }
        _ => {}
    }
    let version = |key: &str, v: Option<String>, default: u8| -> Result<u8, String> {
        match v.as_deref() {
            None => Ok(default),
            Some("TLS10") => Ok(10),
            Some("TLS11") => Ok(11),
            Some("TLS12") => Ok(12),
            Some("TLS13") => Ok(13),
            Some(other) => Err(format!("{}: unknown TLS version {other:?}", k(key))),
        }
    };
    let min = version("min_version", raw.min_version, 12)?;
    let max = version("max_version", raw.max_version, 13)?;
    let versions: Vec<_> = [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, v)| v)
        .collect();
    if versions.is_empty() {
        return Err(format!(
            "{}..{}: this exporter offers TLS 1.2 and 1.3 only",
            k("min_version"),
            k("max_version")
        ));
    }
    let provider = rustls::crypto::ring::default_provider();
    let cipher_suites = match raw.cipher_suites {
        None => None,
        Some(names) => Some(cipher_suites(&provider, &names, &versions)?),
    };
    let kx_groups = match raw.curve_preferences {
        None => None,
        Some(names) => Some(
            names
                .iter()
                .map(|name| {
                    let group = match name.as_str() {
                        "X25519" => "X25519",
                        "CurveP256" => "secp256r1",
                        "CurveP384" => "secp384r1",
                        other => {
                            return Err(format!(
                                "{}: {other} is not offered",
                                k("curve_preferences")
                            ));
                        }
                    };
                    provider
                        .kx_groups
                        .iter()
                        .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(group))
                        .copied()
                        .ok_or_else(|| format!("{}: {name} is not offered", k("curve_preferences")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(TlsSettings {
        cert_file,
        key_file,
        client_auth,
        client_ca_file,
        versions,
        cipher_suites,
        kx_groups,
        prefer_server_order: raw.prefer_server_cipher_suites.unwrap_or(true),
    })
}

/// The suites `cipher_suites` leaves, in rustls's order. Each name is a
/// suite's IANA name, as Go and the toolkit spell them (rustls's own
/// spelling, `TLS13_...` for TLS 1.3, is accepted too). The list applies to
/// TLS 1.3 as well when it names a TLS 1.3 suite; when it names none, TLS 1.3
/// keeps all its suites, as under the toolkit (whose list is for TLS 1.2
/// only), so a node_exporter file does not turn TLS 1.3 off.
fn cipher_suites(
    provider: &rustls::crypto::CryptoProvider,
    names: &[String],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Vec<rustls::SupportedCipherSuite>, String> {
    let key = "tls_server_config.cipher_suites";
    let mut named = Vec::new();
    for name in names {
        let suite = provider
            .cipher_suites
            .iter()
            .find(|s| is_named(s, name))
            .ok_or_else(|| format!("{key}: {name} is not offered"))?;
        named.push(suite.suite());
    }
    let tls13 = |s: &rustls::SupportedCipherSuite| s.version() == &rustls::version::TLS13;
    let names_tls13 = provider
        .cipher_suites
        .iter()
        .any(|s| tls13(s) && named.contains(&s.suite()));
    let kept: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| named.contains(&s.suite()) || (tls13(s) && !names_tls13))
        .copied()
        .collect();
    // Otherwise clients of that version would fail every handshake.
    if versions.contains(&&rustls::version::TLS12)
        && !kept.iter().any(|s| s.version() == &rustls::version::TLS12)
    {
        return Err(format!(
            "{key} names no TLS 1.2 suite, yet TLS 1.2 is allowed: name one, or set min_version: TLS13"
        ));
    }
    Ok(kept)
}

/// Whether `name` is `suite`'s IANA name or rustls's spelling of it.
fn is_named(suite: &rustls::SupportedCipherSuite, name: &str) -> bool {
    let own = format!("{:?}", suite.suite());
    if own == name {
        return true;
    }
    // rustls spells TLS 1.3's TLS_AES_128_GCM_SHA256 as TLS13_AES_128_GCM_SHA256.
    match (own.strip_prefix("TLS13_"), name.strip_prefix("TLS_")) {
        (Some(own), Some(name)) => own == name,
        _ => false,
    }
}

/// The rustls configuration: reads the certificate chain, the key and the
/// client CA now, so a broken file is an error at once.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<rustls::ServerConfig>, String> {
    let read = |what: &str, path: &Path| {
        bounded::read(path, MAX_FILE)
            .map_err(|e| format!("tls_server_config.{what} {}: {e}", path.display()))
    };
    let certs = CertificateDer::pem_slice_iter(&read("cert_file", &tls.cert_file)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            format!(
                "tls_server_config.cert_file {}: {e}",
                tls.cert_file.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!(
            "tls_server_config.cert_file {}: no certificate in it",
            tls.cert_file.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&read("key_file", &tls.key_file)?)
        .map_err(|e| format!("tls_server_config.key_file {}: {e}", tls.key_file.display()))?;
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = &tls.cipher_suites {
        provider.cipher_suites = suites.clone();
    }
    if let Some(groups) = &tls.kx_groups {
        provider.kx_groups = groups.clone();
    }
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&tls.versions)
        .map_err(|e| format!("tls_server_config: {e}"))?;
    let builder = match (&tls.client_auth, &tls.client_ca_file) {
        (ClientAuth::Required | ClientAuth::VerifyIfGiven, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read("client_ca_file", ca)?) {
                let cert = cert.map_err(|e| {
                    format!("tls_server_config.client_ca_file {}: {e}", ca.display())
                })?;
                roots.add(cert).map_err(|e| {
                    format!("tls_server_config.client_ca_file {}: {e}", ca.display())
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if tls.client_auth == ClientAuth::VerifyIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| format!("tls_server_config.client_ca_file {}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!("tls_server_config: the certificate and key do not make a pair: {e}")
    })?;
    config.ignore_client_order = tls.prefer_server_order;
    // HTTP/1.1 only; announcing it keeps clients that ask from guessing.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str) -> Result<WebConfig, String> {
        let raw: RawWebConfig = serde_norway::from_str(yaml).map_err(|e| e.to_string())?;
        WebConfig::check(raw, Path::new("/etc/tne"))
    }

    #[test]
    fn a_node_exporter_file_is_read() {
        let c = check(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: /abs/server.key\n  \
             client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  \
             min_version: TLS12\n  max_version: TLS13\n  prefer_server_cipher_suites: true\n  \
             cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n  curve_preferences: [X25519, CurveP256]\n\
             http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n\
             basic_auth_users:\n  prometheus: $2y$05$YhCIsGUSvq3B5xAH4HdvU.6c6I4B4JVs2ZEkrwuGzuM6B6dG7Kb7y\n",
        )
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(
            tls.cert_file,
            Path::new("/etc/tne/server.crt"),
            "relative to the file"
        );
        assert_eq!(tls.key_file, Path::new("/abs/server.key"));
        assert_eq!(tls.client_auth, ClientAuth::Required);
        assert_eq!(tls.versions.len(), 2);
        let suites = tls.cipher_suites.unwrap();
        assert!(
            suites
                .iter()
                .any(|s| s.version() == &rustls::version::TLS12),
            "the one TLS 1.2 suite named"
        );
        assert_eq!(suites.len(), 4, "and TLS 1.3's three, none of them named");
        assert_eq!(tls.kx_groups.unwrap().len(), 2);
        assert_eq!(c.users.len(), 1);
        assert_eq!(c.headers.len(), 1);
    }

    /// The suites kept for a list of names, by their IANA names.
    fn suites(names: &str, min: &str) -> Result<Vec<String>, String> {
        let c = check(&format!(
            "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: {min}\n  \
             cipher_suites: [{names}]\n"
        ))?;
        let tls = c.tls.ok_or("no tls")?;
        let kept = tls.cipher_suites.ok_or("no list")?;
        Ok(kept
            .iter()
            .map(|s| format!("{:?}", s.suite()).replace("TLS13_", "TLS_"))
            .collect())
    }

    /// TLS 1.3's suites are named as IANA (and Go) name them; a list that
    /// names one restricts TLS 1.3 too, one that names none leaves it all.
    #[test]
    fn tls13_suites_go_by_their_iana_names() {
        const ECDHE: &str = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
        assert_eq!(
            suites(&format!("TLS_AES_128_GCM_SHA256, {ECDHE}"), "TLS12").unwrap(),
            ["TLS_AES_128_GCM_SHA256", ECDHE]
        );
        assert_eq!(
            suites(
                "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256",
                "TLS13"
            )
            .unwrap(),
            ["TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
        );
        assert_eq!(
            suites("TLS13_AES_128_GCM_SHA256", "TLS13").unwrap(),
            ["TLS_AES_128_GCM_SHA256"],
            "rustls's spelling"
        );
        assert_eq!(
            suites(ECDHE, "TLS12").unwrap(),
            [
                "TLS_AES_256_GCM_SHA384",
                "TLS_AES_128_GCM_SHA256",
                "TLS_CHACHA20_POLY1305_SHA256",
                ECDHE
            ],
            "no TLS 1.3 suite named: all of TLS 1.3's"
        );
        let err = suites("TLS_AES_128_GCM_SHA256", "TLS12").unwrap_err();
        assert!(err.contains("no TLS 1.2 suite"), "{err}");
        let err = suites("TLS_AES_128_GCM_SHA512", "TLS13").unwrap_err();
        assert!(
            err.contains("cipher_suites: TLS_AES_128_GCM_SHA512 is not offered"),
            "{err}"
        );
    }

    #[test]
    fn what_is_not_supported_is_refused_by_name() {
        for (yaml, named) in [
            ("tls_server_config:\n  cert: x\n", "tls_server_config.cert"),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_allowed_sans: [x]\n",
                "client_allowed_sans",
            ),
            ("rate_limit:\n  burst: 1\n", "rate_limit"),
            ("http_server_config:\n  http2: true\n", "http2"),
            (
                "http_server_config:\n  headers:\n    Server: x\n",
                "\"Server\"",
            ),
            (
                "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
                "X-Frame-Options",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAnyClientCert\n",
                "RequireAnyClientCert",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  max_version: TLS11\n",
                "TLS 1.2 and 1.3 only",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
                "TLS_RSA_WITH_RC4_128_SHA",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  curve_preferences: [CurveP521]\n",
                "CurveP521",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "key_file is missing",
            ),
            (
                "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: c\n",
                "client_ca_file",
            ),
            ("basic_auth_users:\n  u: plaintext\n", "not a bcrypt hash"),
            ("tls_server_configs: {}\n", "tls_server_configs"),
            ("tls_server_config:\n  certfile: a\n", "certfile"),
        ] {
            let err = check(yaml).unwrap_err();
            assert!(err.contains(named), "{yaml}: {err}");
        }
    }
}
