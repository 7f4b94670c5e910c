//! One HTTP/1.1 GET over a unix socket (the Incus API), bounded in bytes:
//! a response body past `max` bytes is an error, not a buffer that grows.
//! The caller bounds it in time.

use std::path::Path;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::clients::bounded::{self, Worker};

#[derive(Debug, thiserror::Error)]
pub enum UnixHttpError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("GET {uri} on {path}: {source}")]
    Http {
        path: String,
        uri: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// `GET uri` on the socket at `path`, connected through `worker` (see
/// [`bounded::connect_unix`]): the status and the whole body.
pub async fn get(
    worker: &Worker,
    path: &Path,
    uri: &str,
    max: usize,
) -> Result<(u16, Bytes), UnixHttpError> {
    let shown = path.display().to_string();
    let stream = bounded::connect_unix(worker, path)
        .await
        .map_err(|source| UnixHttpError::Connect {
            path: shown.clone(),
            source,
        })?;
    let http = |source: Box<dyn std::error::Error + Send + Sync>| UnixHttpError::Http {
        path: shown.clone(),
        uri: uri.to_owned(),
        source,
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(e.into()))?;
    // Drives the connection; it ends when the response is read or dropped.
    let driver = tokio::spawn(connection);
    let request = http::Request::get(uri)
        .header(http::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http(e.into()))?;
    let result = async {
        let response = sender.send_request(request).await?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), max)
            .collect()
            .await?
            .to_bytes();
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((status, body))
    }
    .await;
    driver.abort();
    result.map_err(http)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    #[tokio::test]
    async fn reads_a_response_and_refuses_an_endless_one() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s");
        let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        std::thread::spawn(move || {
            for (i, conn) in listener.incoming().enumerate() {
                let mut conn = conn.unwrap();
                let mut head = [0u8; 1024];
                let _ = conn.read(&mut head);
                if i == 0 {
                    let _ = conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
                } else {
                    let _ =
                        conn.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
                    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
                    while conn.write_all(chunk.as_bytes()).is_ok() {}
                }
            }
        });
        let worker = Worker::new(std::time::Duration::from_secs(5));
        let (status, body) = get(&worker, &socket, "/1.0", 1024).await.unwrap();
        assert_eq!((status, &body[..]), (200, &b"{}"[..]));
        let err = get(&worker, &socket, "/1.0", 64 * 1024).await.unwrap_err();
        assert!(err.to_string().contains("length limit exceeded"), "{err}");
    }
}
