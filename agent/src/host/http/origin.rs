//! One granted origin as a function holds it: its connection pool (TLS with the grant's
//! roots and client certificate), the headers fogd adds, and what its failures mean to the
//! guest.

use std::error::Error as _;
use std::time::Duration;

use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use super::super::GrantError;
use crate::config::{HttpGrant, HttpOrigin};
use crate::tls::{self, ClientIdentity};

/// How long an idle kept-alive connection stays in the pool.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per host.
const POOL_IDLE_PER_HOST: usize = 4;

pub struct GrantedOrigin {
    origin: HttpOrigin,
    /// The origin as the metrics name it.
    label: String,
    client: Client<HttpsConnector<HttpConnector>, WasiBody>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl GrantedOrigin {
    /// Parses the grant and reads its files; a grant that cannot be used stops the function
    /// from loading, naming the file and why.
    pub fn prepare(index: usize, grant: &HttpGrant) -> Result<Self, GrantError> {
        let refused = |reason: String| GrantError::Http {
            index,
            reason: format!("{}: {reason}", grant.url),
        };
        let origin = HttpOrigin::parse(&grant.url).map_err(refused)?;
        let roots = tls::roots(grant.ca_file.as_deref()).map_err(|e| refused(e.to_string()))?;
        let identity = match (&grant.client_cert, &grant.client_key) {
            (Some(cert_file), Some(key_file)) => Some(ClientIdentity {
                cert_file,
                key_file,
            }),
            _ => None,
        };
        let tls = tls::client_config(roots, identity).map_err(|e| refused(e.to_string()))?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
            .build(connector);
        let mut headers = Vec::new();
        for (name, value) in &grant.headers {
            headers.push(header(name, value.as_bytes(), false).map_err(refused)?);
        }
        for (name, path) in &grant.secret_headers {
            let value = std::fs::read(path)
                .map_err(|error| refused(format!("{}: {error}", path.display())))?;
            let value = value.strip_suffix(b"\n").unwrap_or(&value);
            // The error names the header and the file, never the value.
            headers.push(header(name, value, true).map_err(|_| {
                refused(format!(
                    "{}: not a valid value for header {name}",
                    path.display()
                ))
            })?);
        }
        Ok(Self {
            label: origin.to_string(),
            origin,
            client,
            headers,
        })
    }

    pub fn origin(&self) -> &HttpOrigin {
        &self.origin
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn client(&self) -> &Client<HttpsConnector<HttpConnector>, WasiBody> {
        &self.client
    }

    /// Sets the grant's headers on a request, replacing the guest's of the same name.
    pub fn add_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

fn header(name: &str, value: &[u8], secret: bool) -> Result<(HeaderName, HeaderValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let mut value =
        HeaderValue::from_bytes(value).map_err(|_| format!("not a valid value for {name}"))?;
    value.set_sensitive(secret);
    Ok((name, value))
}

/// What a failed exchange means in `wasi:http`'s terms.
pub fn client_error(error: &hyper_util::client::legacy::Error) -> HttpError {
    let mut source = error.source();
    let mut dns = false;
    while let Some(cause) = source {
        dns |= cause.to_string().starts_with("dns error");
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return tls_error(tls);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return tls_error(tls);
            }
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return HttpError::ConnectionRefused,
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof => {
                    return HttpError::ConnectionTerminated;
                }
                _ => {}
            }
        }
        source = cause.source();
    }
    if dns {
        return HttpError::DnsError {
            rcode: None,
            info_code: None,
        };
    }
    if error.is_connect() {
        return HttpError::DestinationUnavailable;
    }
    HttpError::HttpProtocolError
}

fn tls_error(error: &rustls::Error) -> HttpError {
    match error {
        rustls::Error::InvalidCertificate(_) => HttpError::TlsCertificateError,
        rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
            alert_id: Some(u8::from(*alert)),
            alert_message: Some(format!("{alert:?}")),
        },
        _ => HttpError::TlsProtocolError,
    }
}
