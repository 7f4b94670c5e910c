//! The routes: `GET|HEAD <telemetry path>` scrapes, `GET|HEAD /` is a small
//! landing page, anything else is 404 (or 405 for other methods).

use std::sync::Arc;

use warp::http::{Method, Response, StatusCode, header};
use warp::{Filter, Reply};

use crate::exporter::Exporter;

const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn landing_page(path: &str) -> String {
    // `path` was validated to start with `/`; escape it anyway, it is config input.
    let path = path
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    format!(
        "<!DOCTYPE html>\n<html><head><title>TrueNAS Net Exporter</title></head>\n<body>\n\
         <h1>TrueNAS Net Exporter</h1>\n<p>Per-interface traffic with container, VM and app labels. Version {}.</p>\n\
         <p><a href=\"{path}\">Metrics</a></p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    )
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
    resp
}

/// Routes one request.
pub async fn handle(
    exporter: &Arc<Exporter>,
    method: &Method,
    path: &str,
) -> warp::reply::Response {
    let path_known = path == "/" || path == exporter.config.telemetry_path;
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
    if path == "/" {
        return respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            landing_page(&exporter.config.telemetry_path),
        );
    }
    // A net/dev read error is logged and counted inside scrape(); the response
    // still carries the exporter's own metrics so the failure is visible.
    let body = exporter
        .scrape()
        .await
        .body
        .map(Ok::<_, std::convert::Infallible>);
    let mut resp = warp::reply::stream(futures_util::stream::iter(body)).into_response();
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
    warp::method().and(warp::path::full()).then(
        move |method: Method, path: warp::path::FullPath| {
            let exporter = Arc::clone(&exporter);
            async move { handle(&exporter, &method, path.as_str()).await }
        },
    )
}
