//! Artifact downloads over HTTPS (rustls): resumable with a `Range` request from what a
//! previous attempt left on disk, never reading more than the document announced. The
//! digest is checked when the revision is staged ([`super::RevisionStore::stage`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::StatusCode;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::io::AsyncWriteExt;

use super::Artifact;
use crate::tls::{self, TlsFileError};

/// Time allowed to connect, and between two pieces of a body, before a download is
/// abandoned (to be resumed on the next attempt).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum DownloadError {
    #[error("{url}: {reason}")]
    Failed { url: String, reason: FetchFailure },
    #[error("{path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("artifact CA file {path}: {reason}")]
    Ca { path: String, reason: String },
}

/// Why fetching an artifact's URL failed; the next attempt resumes.
#[derive(Debug, Error)]
pub enum FetchFailure {
    #[error("only https:// URLs are fetched")]
    NotHttps,
    #[error("port {0:?} is not a number")]
    BadPort(String),
    #[error("the URL names no host, or carries credentials")]
    NoHost,
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("timed out connecting")]
    ConnectTimeout,
    #[error("host {host}: {source}")]
    HostName {
        host: String,
        source: rustls::pki_types::InvalidDnsNameError,
    },
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error(transparent)]
    Http(#[from] hyper::Error),
    #[error(transparent)]
    Request(#[from] hyper::http::Error),
    #[error("the server answered {0}")]
    Status(StatusCode),
    #[error("stalled after {0} bytes")]
    Stalled(u64),
    #[error("longer than the {0} bytes the document gives")]
    TooLong(u64),
    #[error("ended after {held} of {size} bytes")]
    Short { held: u64, size: u64 },
}

pub struct Downloader {
    tls: tokio_rustls::TlsConnector,
}

impl Downloader {
    /// Trusts the CA certificates in `ca_file`, or the system's roots without one.
    pub fn new(ca_file: Option<&Path>) -> Result<Self, DownloadError> {
        let ca_error = |error: TlsFileError| DownloadError::Ca {
            path: error.path,
            reason: error.reason,
        };
        let roots = tls::roots(ca_file).map_err(ca_error)?;
        let config = tls::client_config(roots, None).map_err(ca_error)?;
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Brings `target` to the artifact's full length, continuing from what is already in
    /// it; `progress` is told the bytes held after each piece.
    pub async fn fetch(
        &self,
        artifact: &Artifact,
        target: &Path,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), DownloadError> {
        let file_error = |source| DownloadError::File {
            path: target.display().to_string(),
            source,
        };
        let mut held = match tokio::fs::metadata(target).await {
            Ok(metadata) if metadata.len() <= artifact.size => metadata.len(),
            Ok(_) => {
                tokio::fs::remove_file(target).await.map_err(file_error)?;
                0
            }
            Err(_) => 0,
        };
        if held == artifact.size {
            progress(held);
            return Ok(());
        }
        let failed = |reason: FetchFailure| DownloadError::Failed {
            url: artifact.url.clone(),
            reason,
        };
        let location = Location::parse(&artifact.url).map_err(failed)?;
        let mut response = tokio::time::timeout(STALL_TIMEOUT, self.request(&location, held))
            .await
            .map_err(|_| failed(FetchFailure::ConnectTimeout))?
            .map_err(failed)?;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(target)
            .await
            .map_err(file_error)?;
        match response.status() {
            StatusCode::PARTIAL_CONTENT => {}
            StatusCode::OK => {
                // The server ignored the range: start over.
                file.set_len(0).await.map_err(file_error)?;
                held = 0;
            }
            status => return Err(failed(FetchFailure::Status(status))),
        }
        let body = response.body_mut();
        loop {
            let frame = tokio::time::timeout(STALL_TIMEOUT, body.frame())
                .await
                .map_err(|_| failed(FetchFailure::Stalled(held)))?;
            let Some(frame) = frame else { break };
            let frame = frame.map_err(|error| failed(error.into()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            held += data.len() as u64;
            if held > artifact.size {
                return Err(failed(FetchFailure::TooLong(artifact.size)));
            }
            file.write_all(&data).await.map_err(file_error)?;
            progress(held);
        }
        file.sync_all().await.map_err(file_error)?;
        if held != artifact.size {
            return Err(failed(FetchFailure::Short {
                held,
                size: artifact.size,
            }));
        }
        Ok(())
    }

    async fn request(
        &self,
        location: &Location,
        from: u64,
    ) -> Result<hyper::Response<hyper::body::Incoming>, FetchFailure> {
        let tcp = tokio::net::TcpStream::connect((location.host.as_str(), location.port))
            .await
            .map_err(FetchFailure::Connect)?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(location.host.clone()).map_err(|source| {
            FetchFailure::HostName {
                host: location.host.clone(),
                source,
            }
        })?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(FetchFailure::Tls)?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(connection);
        let mut request = hyper::Request::get(location.path.as_str())
            .header(hyper::header::HOST, location.authority.as_str())
            .header(
                hyper::header::USER_AGENT,
                concat!("fogd/", env!("CARGO_PKG_VERSION")),
            );
        if from > 0 {
            request = request.header(hyper::header::RANGE, format!("bytes={from}-"));
        }
        let request = request.body(Empty::<Bytes>::new())?;
        Ok(sender.send_request(request).await?)
    }
}

/// The parts of an `https://` URL a request needs.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    authority: String,
    host: String,
    port: u16,
    path: String,
}

impl Location {
    fn parse(url: &str) -> Result<Self, FetchFailure> {
        let rest = url.strip_prefix("https://").ok_or(FetchFailure::NotHttps)?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], rest[at..].to_owned()),
            Some(at) => (&rest[..at], format!("/{}", &rest[at..])),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !port.contains(']') => (
                host,
                port.parse()
                    .map_err(|_| FetchFailure::BadPort(port.to_owned()))?,
            ),
            _ => (authority, 443),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || authority.contains('@') {
            return Err(FetchFailure::NoHost);
        }
        Ok(Self {
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Location;

    #[test]
    fn urls_split_into_host_port_and_path() {
        let location = Location::parse("https://files.example:8443/fleet/echo.wasm?v=2").unwrap();
        assert_eq!(location.host, "files.example");
        assert_eq!(location.port, 8443);
        assert_eq!(location.path, "/fleet/echo.wasm?v=2");
        assert_eq!(location.authority, "files.example:8443");
        let location = Location::parse("https://[::1]/a").unwrap();
        assert_eq!((location.host.as_str(), location.port), ("::1", 443));
        assert_eq!(Location::parse("https://h").unwrap().path, "/");
        for refused in [
            "http://files.example/a",
            "https:///a",
            "https://user:pw@files.example/a",
            "https://files.example:http/a",
        ] {
            assert!(Location::parse(refused).is_err(), "{refused}");
        }
    }
}
