//! The routes, all `GET|HEAD`: the telemetry path scrapes; `/` is the live
//! view, with its script, style and JSON (`live`); `/-/healthy` answers
//! without reading anything (the container healthcheck). Anything else is 404,
//! other methods 405.

use std::sync::Arc;

use warp::http::{Method, Response, StatusCode, header};
use warp::{Filter, Reply};

use crate::config::{Compression, Config};
use crate::exporter::Exporter;
use crate::server::live;

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The live view's page and its data; both read net/dev as a scrape does.
pub const PAGE_PATH: &str = "/";
pub const API_PATH: &str = "/api/v1/interfaces";
/// Every path besides the telemetry path, which may be none of them.
pub const FIXED_PATHS: [&str; 5] = [PAGE_PATH, API_PATH, "/live.js", "/live.css", "/-/healthy"];

/// With `[web] compression = "auto"`, a scrape of at least this many
/// interfaces is gzipped for a client that accepts it. Measured on this
/// project's 2-core machine (benches/scrape.rs, `gzip_*`): see the README.
pub const GZIP_MIN_INTERFACES: usize = 1000;

/// Whether the configured telemetry path leaves the fixed paths alone.
pub fn check(config: &Config) -> Result<(), String> {
    let path = &config.telemetry_path;
    if FIXED_PATHS.contains(&path.as_str()) {
        return Err(format!(
            "invalid value for web.telemetry_path: {path:?} is taken by the live view or the health check"
        ));
    }
    Ok(())
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Vec<u8>>,
) -> warp::reply::Response {
    let mut resp = Response::new(body.into().into());
    *resp.status_mut() = status;
    if let Ok(v) = header::HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Whether an `Accept-Encoding` value accepts gzip (`gzip` or `*`, not `q=0`).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.is_some_and(|value| {
        value.split(',').any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let refused = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
    })
}

/// A body of chunks, gzipped as it goes: each chunk is fed to the encoder
/// and whatever it has produced is passed on; the last chunk ends the stream.
pub struct Gzipped<I> {
    chunks: I,
    encoder: Option<flate2::write::GzEncoder<Vec<u8>>>,
}

impl<I> Gzipped<I> {
    pub fn new(chunks: I) -> Gzipped<I> {
        // The fastest level: a scrape is text with long repeats (the label
        // blocks), which level 1 already shrinks ~20-fold.
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        Gzipped {
            chunks,
            encoder: Some(encoder),
        }
    }
}

impl<I: Iterator<Item = Vec<u8>>> Iterator for Gzipped<I> {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        use std::io::Write;
        loop {
            let encoder = self.encoder.as_mut()?;
            match self.chunks.next() {
                Some(chunk) => {
                    // Writing into a Vec cannot fail.
                    let _ = encoder.write_all(&chunk);
                    let out = std::mem::take(encoder.get_mut());
                    if !out.is_empty() {
                        return Some(out);
                    }
                }
                None => return self.encoder.take()?.finish().ok(),
            }
        }
    }
}

/// Routes one request.
pub async fn handle(
    exporter: &Arc<Exporter>,
    method: &Method,
    path: &str,
    accept_encoding: Option<&str>,
) -> warp::reply::Response {
    let path_known = path == exporter.config.telemetry_path || FIXED_PATHS.contains(&path);
    if !path_known {
        return respond(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "404 page not found\n",
        );
    }
    if method != Method::GET && method != Method::HEAD {
        let mut resp = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "405 method not allowed\n",
        );
        resp.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return resp;
    }
    match path {
        "/-/healthy" => respond(StatusCode::OK, "text/plain; charset=utf-8", "OK\n"),
        "/live.js" => live_asset("text/javascript; charset=utf-8", live::SCRIPT, "no-cache"),
        "/live.css" => live_asset("text/css; charset=utf-8", live::STYLE, "no-cache"),
        PAGE_PATH | API_PATH => live_view(exporter, path == PAGE_PATH).await,
        _ => metrics(exporter, accept_encoding).await,
    }
}

/// A response of the live view, with the headers that keep a hostile name
/// from running as script even if it slipped through as markup.
fn live_asset(
    content_type: &str,
    body: impl Into<Vec<u8>>,
    cache: &'static str,
) -> warp::reply::Response {
    let mut resp = respond(StatusCode::OK, content_type, body);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(live::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        header::HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static(cache),
    );
    resp
}

/// `/` or `/api/v1/interfaces`: one join of net/dev, as HTML or JSON.
async fn live_view(exporter: &Arc<Exporter>, page: bool) -> warp::reply::Response {
    let (scrape, read_at) = match exporter.join().await {
        Ok(joined) => joined,
        // The scrapes count and log it; the viewer gets the reason.
        Err(e) => {
            return respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
                format!("503 {e}\n"),
            );
        }
    };
    let workloads = exporter.read_workloads();
    let document = live::Document::new(&scrape, read_at, workloads.as_deref());
    if page {
        let html = live::html::page(&document, &exporter.config.telemetry_path);
        live_asset("text/html; charset=utf-8", html, "no-store")
    } else {
        live_asset("application/json", document.to_json(), "no-store")
    }
}

async fn metrics(exporter: &Arc<Exporter>, accept_encoding: Option<&str>) -> warp::reply::Response {
    // A net/dev read error is logged and counted inside scrape(); the response
    // still carries the exporter's own metrics so the failure is visible.
    let body = exporter.scrape().await.body;
    let gzip = accepts_gzip(accept_encoding)
        && match exporter.config.http.compression {
            Compression::Always => true,
            Compression::Never => false,
            Compression::Auto => body.interfaces() >= GZIP_MIN_INTERFACES,
        };
    let chunks: Box<dyn Iterator<Item = Vec<u8>> + Send + Sync> = if gzip {
        Box::new(Gzipped::new(body))
    } else {
        Box::new(body)
    };
    let stream = futures_util::stream::iter(chunks.map(Ok::<_, std::convert::Infallible>));
    let mut resp = warp::reply::stream(stream).into_response();
    resp.headers_mut().insert(
        header::VARY,
        header::HeaderValue::from_static("Accept-Encoding"),
    );
    if gzip {
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            header::HeaderValue::from_static("gzip"),
        );
    }
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    resp
}

/// Every route, as one warp filter.
pub fn routes(
    exporter: Arc<Exporter>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = std::convert::Infallible> + Clone {
    warp::method()
        .and(warp::path::full())
        .and(warp::header::headers_cloned())
        .then(
            move |method: Method, path: warp::path::FullPath, headers: header::HeaderMap| {
                let exporter = Arc::clone(&exporter);
                async move {
                    let encoding = headers
                        .get(header::ACCEPT_ENCODING)
                        .and_then(|v| v.to_str().ok());
                    handle(&exporter, &method, path.as_str(), encoding).await
                }
            },
        )
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn the_telemetry_path_cannot_take_a_fixed_one() {
        use crate::config::RawConfig;
        use crate::config::cli::Cli;
        for (path, ok) in [
            ("/metrics", true),
            ("/", false),
            ("/api/v1/interfaces", false),
            ("/-/healthy", false),
        ] {
            let toml = format!("[web]\ntelemetry_path = {path:?}\n");
            let raw = RawConfig::from_toml(&toml, std::path::Path::new("t.toml")).unwrap();
            let config = Config::build(raw, &Cli::default()).unwrap();
            let checked = check(&config);
            assert_eq!(checked.is_ok(), ok, "{path}");
            if let Err(e) = checked {
                assert!(e.contains("web.telemetry_path"), "{e}");
            }
        }
    }

    #[test]
    fn gzip_is_asked_for_by_name_or_star_unless_refused() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("identity, br")));
        assert!(!accepts_gzip(None));
    }

    /// Chunk by chunk, the gzipped stream decompresses to exactly the chunks.
    #[test]
    fn gzipped_chunks_decompress_to_the_whole() {
        let chunks: Vec<Vec<u8>> = (0..300)
            .map(|i| {
                format!("net_interface_rx_bytes_total{{interface=\"veth{i}\"}} {i}\n").repeat(400)
            })
            .map(String::into_bytes)
            .collect();
        let plain: Vec<u8> = chunks.concat();
        let gzipped: Vec<u8> = Gzipped::new(chunks.into_iter()).flatten().collect();
        assert!(
            gzipped.len() * 10 < plain.len(),
            "{} -> {}",
            plain.len(),
            gzipped.len()
        );
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gzipped[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, plain);
        let empty: Vec<u8> = Gzipped::new(std::iter::empty()).flatten().collect();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&empty[..])
            .read_to_end(&mut back)
            .unwrap();
        assert!(back.is_empty(), "an empty body is a valid gzip stream");
    }
}
