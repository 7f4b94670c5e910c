//! HTTP/1.1 over a unix socket, the one client of the Docker engine (as
//! bollard's transport) and of the Incus API. Connects go through a
//! [`Worker`] (see [`bounded::connect_unix`]); each connection counts what it
//! reads after each request it writes and fails past the cap, reporting the
//! hit to a [`LimitMetric`]; an answer's head comes within a timeout.
//!
//! The cap sits in the connection, not on a body, because bollard collects a
//! response whole out of our reach. A stream that reads without end (Docker's
//! events) fails at the cap too, and its caller reconnects, which costs
//! nothing.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::BoxFuture;
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;

use crate::bounded::{self, Worker};
use crate::expose::telemetry::LimitMetric;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A failed call; `what` is the request and the socket (`GET /1.0 on
/// /var/lib/incus/unix.socket`).
#[derive(Debug, thiserror::Error)]
pub enum UnixHttpError {
    #[error("{what}: {}", chain(source.as_ref()))]
    Http { what: String, source: BoxError },
    #[error("{what}: no answer within {after:?}")]
    Timeout { what: String, after: Duration },
}

/// An error and its causes on one line: hyper's message for a failed body
/// read is "error reading a body from connection"; the cause says why (the
/// cap, say).
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// A client of the socket at one path, sending bodies of type `B`; its
/// connections are pooled and kept alive between requests.
pub struct UnixHttp<B> {
    client: hyper_util::client::legacy::Client<Connector, B>,
    socket: Arc<PathBuf>,
    timeout: Duration,
}

impl<B> UnixHttp<B>
where
    B: http_body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// A client of the socket at `socket`, connecting through `connects`;
    /// a response past `max_response` bytes (head and body) fails and is
    /// counted in `oversize`; an answer's head waits at most `timeout`.
    pub fn new(
        socket: &Path,
        connects: Arc<Worker>,
        max_response: usize,
        oversize: Arc<LimitMetric>,
        timeout: Duration,
    ) -> UnixHttp<B> {
        let socket = Arc::new(socket.to_owned());
        let connector = Connector {
            socket: Arc::clone(&socket),
            max_response,
            oversize,
            connects,
        };
        UnixHttp {
            client: hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                .build(connector),
            socket,
            timeout,
        }
    }

    /// Sends `request` (an absolute URI: its authority becomes the `Host`
    /// header, the socket is the same whatever it says) and waits for the
    /// answer's head. The body is the caller's to read, under the cap but
    /// not the timeout: a stream may last.
    pub async fn request(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<Incoming>, UnixHttpError> {
        let what = self.what(&request);
        match tokio::time::timeout(self.timeout, self.client.request(request)).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(UnixHttpError::Http {
                what,
                source: e.into(),
            }),
            Err(_) => Err(UnixHttpError::Timeout {
                what,
                after: self.timeout,
            }),
        }
    }

    fn what(&self, request: &http::Request<B>) -> String {
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        format!("{} {path} on {}", request.method(), self.socket.display())
    }
}

impl UnixHttp<Empty<Bytes>> {
    /// `GET path` (with its query): the status and the whole body, both
    /// within the timeout.
    pub async fn get(&self, path: &str) -> Result<(u16, Bytes), UnixHttpError> {
        let request = http::Request::get(format!("http://localhost{path}"))
            .body(Empty::new())
            .map_err(|e| UnixHttpError::Http {
                what: format!("GET {path} on {}", self.socket.display()),
                source: e.into(),
            })?;
        let what = self.what(&request);
        // One deadline for the head and the body together.
        let read = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| UnixHttpError::Http {
                    what: what.clone(),
                    source: e.into(),
                })?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| UnixHttpError::Http {
                    what: what.clone(),
                    source: e.into(),
                })?;
            Ok((status, body.to_bytes()))
        };
        match tokio::time::timeout(self.timeout, read).await {
            Ok(result) => result,
            Err(_) => Err(UnixHttpError::Timeout {
                what,
                after: self.timeout,
            }),
        }
    }
}

/// Opens connections to the socket, whatever the URI says.
#[derive(Clone)]
struct Connector {
    socket: Arc<PathBuf>,
    max_response: usize,
    oversize: Arc<LimitMetric>,
    connects: Arc<Worker>,
}

impl tower_service::Service<http::Uri> for Connector {
    type Response = TokioIo<Capped>;
    type Error = io::Error;
    type Future = BoxFuture<'static, io::Result<TokioIo<Capped>>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let stream = bounded::connect_unix(&me.connects, me.socket.as_path()).await?;
            Ok(TokioIo::new(Capped {
                stream,
                read_since_write: 0,
                connector: me,
            }))
        })
    }
}

/// A connection that counts what it reads after each request it writes:
/// the one place the cap is counted.
struct Capped {
    stream: UnixStream,
    read_since_write: usize,
    connector: Connector,
}

impl AsyncRead for Capped {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.stream).poll_read(cx, buf);
        if poll.is_ready() {
            self.read_since_write += buf.filled().len() - before;
            let max = self.connector.max_response;
            if self.read_since_write > max {
                let socket = self.connector.socket.display().to_string();
                let error = format!("a response from {socket} ran past {max} bytes");
                self.connector.oversize.hit(&error);
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::FileTooLarge, error)));
            }
        }
        poll
    }
}

impl AsyncWrite for Capped {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll
            && n > 0
        {
            self.read_since_write = 0;
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Connection for Capped {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};

    use super::*;
    use crate::expose::telemetry::{Limit, Telemetry};

    /// A server that answers `/endless` with a body without end and
    /// anything else with `{}`, keeping connections alive.
    fn serve(socket: &Path) {
        let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    let mut request = String::new();
                    loop {
                        let mut line = String::new();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if request.is_empty() => request = line,
                            Ok(_) if line != "\r\n" => {}
                            Ok(_) if request.starts_with("GET /endless ") => {
                                let _ = out.write_all(
                                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                );
                                let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
                                while out.write_all(chunk.as_bytes()).is_ok() {}
                                return;
                            }
                            Ok(_) => {
                                request.clear();
                                let _ = out
                                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                            }
                        }
                    }
                });
            }
        });
    }

    #[tokio::test]
    async fn reads_answers_and_cuts_an_endless_one_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        serve(&socket);
        let telemetry = Telemetry::new();
        let worker = Arc::new(Worker::new(Duration::from_secs(5)));
        let client = UnixHttp::new(
            &socket,
            worker,
            1024,
            telemetry.limit(Limit::IncusResponse),
            Duration::from_secs(5),
        );
        for _ in 0..3 {
            // Many requests on one kept-alive connection: the count starts
            // again at each.
            let (status, body) = client.get("/1.0").await.unwrap();
            assert_eq!((status, &body[..]), (200, &b"{}"[..]));
        }
        let err = client.get("/endless").await.unwrap_err();
        assert!(err.to_string().contains("ran past 1024 bytes"), "{err}");
        let (status, _) = client.get("/1.0").await.unwrap();
        assert_eq!(status, 200, "and the next request is answered");
        assert!(
            telemetry
                .render_fresh()
                .contains("truenas_net_exporter_limit_hits_total{limit=\"incus_response\"} 1"),
            "the hit is counted"
        );
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        let client = UnixHttp::new(
            &socket,
            Arc::new(Worker::new(Duration::from_secs(5))),
            1024,
            Telemetry::new().limit(Limit::IncusResponse),
            Duration::from_millis(200),
        );
        let err = client.get("/1.0").await.unwrap_err();
        assert!(matches!(err, UnixHttpError::Timeout { .. }), "{err}");
        drop(listener);
    }
}
