//! The route table: every path this server answers, declared once, and the
//! warp filter that serves it, one filter per route. All routes are
//! `GET|HEAD`: the telemetry path scrapes; `/` is the live view, with its
//! script, style and JSON (`live`); `/-/healthy` answers without reading
//! anything (liveness: the process serves); `/-/ready` says whether a scrape
//! would find the host (readiness: net/dev reads and the root filesystem is
//! there; what `--healthcheck` asks). Any other path is 404; a known path
//! asked with another method is 405. The admission gate (`gate`) reads the
//! same table to tell which requests take a scrape permit; responses and their
//! headers are built in `reply`.

use std::convert::Infallible;
use std::sync::Arc;

use warp::filters::path::FullPath;
use warp::http::StatusCode;
use warp::{Filter, Rejection};

use crate::config::{Compression, Config};
use crate::exporter::Exporter;
use crate::server::live;
use crate::server::reply::{self, Live};

// benches/scrape.rs measures the scrape's gzip on its own.
pub use crate::server::reply::Gzipped;

/// With `[web] compression = "auto"`, a scrape of at least this many
/// interfaces is gzipped for a client that accepts it. Measured on this
/// project's 2-core machine (benches/scrape.rs, `gzip_*`): see docs/configuration.md, Compression.
pub const GZIP_MIN_INTERFACES: usize = 1000;

/// What a path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// The scrape, at the configured telemetry path.
    Metrics,
    /// The live view's page.
    Page,
    /// The live view's data.
    Api,
    Script,
    Style,
    /// Liveness: answers without reading anything.
    Healthy,
    /// Readiness: reads net/dev (bounded, no join) and looks at the root
    /// filesystem. Takes no `--web.max-requests` permit: a probe must not
    /// be refused because scrapes are busy.
    Ready,
}

impl Route {
    /// Whether answering reads net/dev and writes every interface, as a
    /// scrape does: such a request takes a `--web.max-requests` permit.
    pub fn scrapes(self) -> bool {
        matches!(self, Route::Metrics | Route::Page | Route::Api)
    }
}

/// Every route with its path. The telemetry path is configured; the others
/// are fixed.
#[derive(Debug, Clone)]
pub struct Table {
    routes: [(Route, String); 7],
}

impl Table {
    pub fn new(config: &Config) -> Table {
        let fixed = |route, path: &str| (route, path.to_owned());
        Table {
            // The scrape first: it is what is asked for most, and with a
            // telemetry path that `check` would refuse, it is what is served.
            routes: [
                (Route::Metrics, config.telemetry_path.clone()),
                fixed(Route::Page, "/"),
                fixed(Route::Api, "/api/v1/interfaces"),
                fixed(Route::Script, "/live.js"),
                fixed(Route::Style, "/live.css"),
                fixed(Route::Healthy, "/-/healthy"),
                fixed(Route::Ready, "/-/ready"),
            ],
        }
    }

    /// The route at exactly `path` (no trailing slash, no decoding).
    pub fn route(&self, path: &str) -> Option<Route> {
        self.routes
            .iter()
            .find(|(_, p)| p == path)
            .map(|&(route, _)| route)
    }

    fn path(&self, route: Route) -> &str {
        self.routes
            .iter()
            .find(|(r, _)| *r == route)
            .map_or("", |(_, p)| p.as_str())
    }

    /// Matches `route`'s path exactly, then GET or HEAD. Path first: a known
    /// path asked with another method is then 405, an unknown one 404.
    fn at(&self, route: Route) -> impl Filter<Extract = (), Error = Rejection> + Clone + use<> {
        let path: Arc<str> = self.path(route).into();
        warp::path::full()
            .and_then(move |full: FullPath| {
                let found = full.as_str() == &*path;
                async move {
                    if found {
                        Ok(())
                    } else {
                        Err(warp::reject::not_found())
                    }
                }
            })
            .untuple_one()
            .and(warp::get().or(warp::head()).unify())
    }
}

/// Whether the configured telemetry path leaves the fixed paths alone.
pub fn check(config: &Config) -> Result<(), String> {
    let table = Table::new(config);
    let path = &config.telemetry_path;
    let taken = table
        .routes
        .iter()
        .any(|(route, p)| *route != Route::Metrics && p == path);
    if taken {
        return Err(format!(
            "invalid value for web.telemetry_path: {path:?} is taken by the live view or the health checks"
        ));
    }
    Ok(())
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

/// The request's `Accept-Encoding`; one that is not text counts as absent
/// rather than failing the request.
fn accept_encoding() -> impl Filter<Extract = (Option<String>,), Error = Infallible> + Clone {
    warp::header::optional::<String>("accept-encoding")
        .or(warp::any().map(|| None))
        .unify()
}

/// Every route, as one warp filter: built once per server.
pub fn routes(
    table: &Table,
    exporter: Arc<Exporter>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone + use<> {
    let metrics = {
        let exporter = Arc::clone(&exporter);
        table
            .at(Route::Metrics)
            .and(accept_encoding())
            .then(move |encoding: Option<String>| {
                metrics(Arc::clone(&exporter), accepts_gzip(encoding.as_deref()))
            })
    };
    let page = {
        let exporter = Arc::clone(&exporter);
        table
            .at(Route::Page)
            .then(move || live_view(Arc::clone(&exporter), Live::Page))
    };
    let api = {
        let exporter = Arc::clone(&exporter);
        table
            .at(Route::Api)
            .then(move || live_view(Arc::clone(&exporter), Live::Data))
    };
    let ready = table
        .at(Route::Ready)
        .then(move || ready(Arc::clone(&exporter)));
    let script = table
        .at(Route::Script)
        .map(|| reply::live(Live::Script, live::SCRIPT));
    let style = table
        .at(Route::Style)
        .map(|| reply::live(Live::Style, live::STYLE));
    let healthy = table
        .at(Route::Healthy)
        .map(|| reply::plain(StatusCode::OK, "OK\n"));
    metrics
        .or(page)
        .unify()
        .or(api)
        .unify()
        .or(script)
        .unify()
        .or(style)
        .unify()
        .or(healthy)
        .unify()
        .or(ready)
        .unify()
        .recover(unrouted)
        .unify()
}

/// No route took the request: 405 if one had its path, otherwise 404.
async fn unrouted(rejection: Rejection) -> Result<warp::reply::Response, Infallible> {
    Ok(
        if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
            reply::method_not_allowed()
        } else {
            reply::plain(StatusCode::NOT_FOUND, "404 page not found\n")
        },
    )
}

/// `/-/ready`: 200 `Ready` when a scrape would find the host, otherwise 503
/// with every reason (each names its path).
async fn ready(exporter: Arc<Exporter>) -> warp::reply::Response {
    match exporter.ready().await {
        Ok(()) => reply::plain(StatusCode::OK, "Ready\n"),
        Err(not_ready) => reply::plain(StatusCode::SERVICE_UNAVAILABLE, format!("{not_ready}\n")),
    }
}

/// `/` or `/api/v1/interfaces`: one join of net/dev, as HTML or JSON.
async fn live_view(exporter: Arc<Exporter>, kind: Live) -> warp::reply::Response {
    let (scrape, read_at) = match exporter.read_interfaces().await {
        Ok(joined) => joined,
        // The scrapes count and log it; the viewer gets the reason.
        Err(e) => return reply::plain(StatusCode::SERVICE_UNAVAILABLE, format!("503 {e}\n")),
    };
    let workloads = exporter.read_workloads();
    let peers = exporter.read_peers();
    let names = exporter.read_names();
    let document = live::Document::new(
        &scrape,
        read_at,
        workloads.as_deref(),
        peers.as_deref(),
        &names,
    );
    match kind {
        Live::Page => reply::live(
            kind,
            live::html::page(&document, &exporter.config.telemetry_path),
        ),
        _ => reply::live(kind, document.to_json()),
    }
}

/// The scrape; gzipped when the client accepts it and `[web] compression`
/// says so.
async fn metrics(exporter: Arc<Exporter>, accepts_gzip: bool) -> warp::reply::Response {
    // A net/dev read error is logged and counted inside scrape(); the response
    // still carries the exporter's own metrics so the failure is visible.
    let body = exporter.scrape().await.body;
    let gzip = accepts_gzip
        && match exporter.config.http.compression {
            Compression::Always => true,
            Compression::Never => false,
            Compression::Auto => body.interfaces() >= GZIP_MIN_INTERFACES,
        };
    reply::metrics(body, gzip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_telemetry_path_cannot_take_a_fixed_one() {
        for (path, ok) in [
            ("/metrics", true),
            ("/", false),
            ("/api/v1/interfaces", false),
            ("/-/healthy", false),
            ("/-/ready", false),
        ] {
            let checked = check(&config(&format!("[web]\ntelemetry_path = {path:?}\n")));
            assert_eq!(checked.is_ok(), ok, "{path}");
            if let Err(e) = checked {
                assert!(e.contains("web.telemetry_path"), "{e}");
            }
        }
    }

    fn config(toml: &str) -> Config {
        use crate::config::RawConfig;
        use crate::config::cli::Cli;
        let raw = RawConfig::from_toml(toml, std::path::Path::new("t.toml")).unwrap();
        Config::build(raw, &Cli::default()).unwrap()
    }

    /// The table and the filter agree: each fixed path is served as its
    /// route, exactly; a known path with another method is 405, anything
    /// else 404. (The scrape and the live view read net/dev: the
    /// integration tests serve those.)
    #[tokio::test]
    async fn the_filter_serves_the_table() {
        use tower_service::Service;
        let config = config("[web]\ntelemetry_path = \"/x/net\"\n");
        let table = Table::new(&config);
        assert_eq!(table.route("/x/net"), Some(Route::Metrics));
        assert_eq!(table.route("/"), Some(Route::Page));
        assert_eq!(table.route("/metrics"), None);
        assert_eq!(table.route("/x/net/"), None);
        assert!(Route::Api.scrapes() && !Route::Healthy.scrapes() && !Route::Ready.scrapes());
        let mut service = warp::service(routes(&table, Exporter::new(config)));
        for (method, path, status, content_type) in [
            ("GET", "/-/healthy", 200, "text/plain; charset=utf-8"),
            ("HEAD", "/live.js", 200, "text/javascript; charset=utf-8"),
            ("GET", "/live.css", 200, "text/css; charset=utf-8"),
            ("POST", "/x/net", 405, "text/plain; charset=utf-8"),
            ("DELETE", "/", 405, "text/plain; charset=utf-8"),
            ("GET", "/metrics", 404, "text/plain; charset=utf-8"),
            ("GET", "/-/healthy/", 404, "text/plain; charset=utf-8"),
            ("POST", "/-/ready", 405, "text/plain; charset=utf-8"),
            ("GET", "/-/ready/", 404, "text/plain; charset=utf-8"),
            ("POST", "/favicon.ico", 404, "text/plain; charset=utf-8"),
        ] {
            let request = http::Request::builder()
                .method(method)
                .uri(path)
                .body(String::new())
                .unwrap();
            let Ok(response) = service.call(request).await;
            assert_eq!(response.status().as_u16(), status, "{method} {path}");
            assert_eq!(
                response.headers()[http::header::CONTENT_TYPE],
                content_type,
                "{method} {path}"
            );
            if status == 405 {
                assert_eq!(response.headers()[http::header::ALLOW], "GET, HEAD");
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
}
