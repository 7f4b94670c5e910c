//! Every response this server writes, by kind: plain text (the health check,
//! 404, 405 and the gate's 401 and 503), the live view's page, data, script
//! and style, and the scrape. Each kind's headers are set here and nowhere
//! else; the web config's headers are added to every response afterwards
//! (in `server::Connection`), so they win.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};

use crate::exporter::ScrapeBody;
use crate::server::live;

const TEXT: &str = "text/plain; charset=utf-8";
const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A short plain-text answer: its body says what happened.
pub fn plain(status: StatusCode, body: impl Into<String>) -> warp::reply::Response {
    let mut response = warp::reply::Response::new(body.into().into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(TEXT));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// 405 for a known path asked with another method than GET or HEAD.
pub fn method_not_allowed() -> warp::reply::Response {
    let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "405 method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}

/// 401: basic auth is on and the request's credentials are not a user's.
pub fn unauthorized() -> warp::reply::Response {
    let mut response = plain(StatusCode::UNAUTHORIZED, "401 unauthorized\n");
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"truenas-net-exporter\", charset=\"UTF-8\""),
    );
    response
}

/// What a live view response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Live {
    Page,
    Data,
    Script,
    Style,
}

/// A live view response, with the headers that keep a hostile name from
/// running as script even if it slipped through as markup. The page and its
/// data are a read of now (never cached); the script and style may be kept
/// but are checked again, as they change with the binary.
pub fn live(kind: Live, body: impl Into<Vec<u8>>) -> warp::reply::Response {
    let (content_type, cache) = match kind {
        Live::Page => ("text/html; charset=utf-8", "no-store"),
        Live::Data => ("application/json", "no-store"),
        Live::Script => ("text/javascript; charset=utf-8", "no-cache"),
        Live::Style => ("text/css; charset=utf-8", "no-cache"),
    };
    let mut response = warp::reply::Response::new(body.into().into());
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(live::CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// The scrape, streamed chunk by chunk as it is written (chunked transfer
/// encoding: its length is not known until the end), gzipped if `gzip`.
pub fn metrics(body: ScrapeBody, gzip: bool) -> warp::reply::Response {
    let stream = if gzip {
        Chunks::Gzip(Gzipped::new(body))
    } else {
        Chunks::Plain(body)
    };
    let mut response = warp::reply::stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(METRICS_CONTENT_TYPE),
    );
    // Whether it is gzipped depends on the request's Accept-Encoding.
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// The scrape's chunks as warp streams them, plain or gzipped: one type, so
/// the body needs no box or adapter of its own.
enum Chunks {
    Plain(ScrapeBody),
    Gzip(Gzipped<ScrapeBody>),
}

impl futures_util::Stream for Chunks {
    type Item = Result<Vec<u8>, Infallible>;

    /// Writing a chunk is CPU work on what the scrape already holds: it is
    /// never pending.
    fn poll_next(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let chunk = match self.get_mut() {
            Chunks::Plain(body) => body.next(),
            Chunks::Gzip(body) => body.next(),
        };
        Poll::Ready(chunk.map(Ok))
    }
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

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

    #[test]
    fn each_kind_sets_its_headers() {
        let r = method_not_allowed();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(r.headers()[header::CONTENT_TYPE], TEXT);
        let r = unauthorized();
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
        let r = live(Live::Data, "{}");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
        assert_eq!(
            r.headers()[header::CONTENT_SECURITY_POLICY],
            live::CONTENT_SECURITY_POLICY
        );
    }
}
