//! `--healthcheck`: is the exporter at the listen address up and ready? It
//! asks for `/-/ready` (200 when net/dev reads and the root filesystem is
//! there; 503 with the reason otherwise, which it prints) and needs no
//! configuration of its own, so the container's HEALTHCHECK works whatever
//! the web config says: plain HTTP first, and TLS when the server answers
//! that it speaks HTTPS. With basic auth on, 401 is an answer too: the web
//! config holds only the passwords' hashes, so the check cannot log in, and
//! then it tells only that the exporter serves. With client certificates
//! required, so is the server's refusal of a client without one. Blocking
//! and std-only: it runs in a fresh process.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

const REQUEST: &[u8] = b"GET /-/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";

pub fn healthcheck(listen_address: &str, timeout: Duration) -> io::Result<()> {
    let target = match listen_address.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => listen_address
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:"),
    };
    let addr = target
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other(format!("{target}: no address")))?;
    let answer = plain(addr, timeout)?;
    let answer = if answer.contains("HTTPS server") {
        tls(addr, timeout)?
    } else {
        answer
    };
    match answer.split(' ').nth(1) {
        Some("200" | "401") => Ok(()),
        _ => {
            let status = answer.lines().next().unwrap_or("");
            // The body's first line: `/-/ready`'s reason.
            let reason = answer
                .split_once("\r\n\r\n")
                .and_then(|(_, body)| body.lines().next())
                .filter(|line| !line.is_empty());
            Err(io::Error::other(match reason {
                Some(reason) => format!("{target} answered {status}: {reason}"),
                None => format!("{target} answered {status}"),
            }))
        }
    }
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    Ok(stream)
}

/// The start of the answer (status line and a little more).
fn ask(stream: &mut impl ReadWrite) -> io::Result<String> {
    stream.write_all(REQUEST)?;
    let mut answer = Vec::new();
    stream.take(1024).read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn plain(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    ask(&mut connect(addr, timeout)?)
}

fn tls(addr: SocketAddr, timeout: Duration) -> io::Result<String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let name = ServerName::IpAddress(addr.ip().into());
    let connection =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(connection, connect(addr, timeout)?);
    match ask(&mut stream) {
        Ok(answer) => Ok(answer),
        // A server that wants a client certificate refuses us: it is up.
        Err(e) if refused_for_certificate(&e) => {
            Ok("HTTP/1.1 200 client certificate required".into())
        }
        Err(e) => Err(e),
    }
}

fn refused_for_certificate(e: &io::Error) -> bool {
    use rustls::AlertDescription::{BadCertificate, CertificateRequired, HandshakeFailure};
    let alert = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    matches!(
        alert,
        Some(rustls::Error::AlertReceived(
            CertificateRequired | BadCertificate | HandshakeFailure
        ))
    )
}

/// Takes any server certificate: the check is whether this host's exporter
/// answers, not who it is (its certificate names the host as the network
/// sees it, not 127.0.0.1). Signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
