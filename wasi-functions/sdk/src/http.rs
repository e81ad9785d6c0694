//! Outbound HTTP over the standard `wasi:http/outgoing-handler`, to the origins the function
//! is granted (`grants.outbound_http`); anything else is refused before a connection is made.
//!
//! ```ignore
//! let response = fogd_sdk::http::post_json("https://api.example.net/rules", &rule)?;
//! if response.status != 201 { ... }
//! ```
//!
//! fogd adds the grant's configured headers (an API token, say) itself; the function never
//! sees them. Redirects are returned, not followed: following one is a new request, checked
//! against the grants like any other.

use serde::Serialize;
use wasi::http::outgoing_handler;
use wasi::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasi::io::streams::StreamError;

/// Most bytes one write to an outgoing body may carry.
const WRITE_CHUNK: usize = 4096;
/// Bytes asked for per read of a response body.
const READ_CHUNK: u64 = 64 * 1024;

/// A request to send with [`send`].
pub struct Request {
    pub method: String,
    /// `http://` or `https://`, host, optional port, path and query.
    pub url: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// What the server answered.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (compared without case), as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// Why a request got no (whole) answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The URL's origin is not in the function's grants: nothing was sent.
    NotGranted,
    /// No answer within the event's deadline (the event fails with kind `timeout`) or the
    /// connection's own timeouts.
    Timeout,
    /// The response body was longer than the function's `limits.http_response_bytes`.
    ResponseTooLarge(Option<u64>),
    /// The URL is not `http(s)://host[:port]/path`.
    BadUrl(String),
    /// Anything else `wasi:http` reports (refused connection, TLS, DNS), as its error code.
    Failed(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotGranted => f.write_str("the origin is not granted to this function"),
            Error::Timeout => f.write_str("timed out"),
            Error::ResponseTooLarge(Some(limit)) => {
                write!(f, "the response is longer than {limit} bytes")
            }
            Error::ResponseTooLarge(None) => f.write_str("the response is too long"),
            Error::BadUrl(url) => write!(f, "{url:?} is not an http(s):// URL"),
            Error::Failed(code) => write!(f, "HTTP request failed: {code}"),
        }
    }
}

impl From<ErrorCode> for Error {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::HttpRequestDenied => Error::NotGranted,
            ErrorCode::ConnectionTimeout
            | ErrorCode::ConnectionReadTimeout
            | ErrorCode::HttpResponseTimeout => Error::Timeout,
            ErrorCode::HttpResponseBodySize(limit) => Error::ResponseTooLarge(limit),
            other => Error::Failed(format!("{other:?}")),
        }
    }
}

/// `GET url`.
pub fn get(url: &str) -> Result<Response, Error> {
    send(&Request {
        method: "GET".into(),
        url: url.into(),
        headers: Vec::new(),
        body: Vec::new(),
    })
}

/// `POST url` with `value` as a JSON body.
pub fn post_json<T: Serialize + ?Sized>(url: &str, value: &T) -> Result<Response, Error> {
    let body = serde_json::to_vec(value).map_err(|error| Error::Failed(error.to_string()))?;
    send(&Request {
        method: "POST".into(),
        url: url.into(),
        headers: vec![("content-type".into(), b"application/json".to_vec())],
        body,
    })
}

/// Sends `request` and reads the whole response.
pub fn send(request: &Request) -> Result<Response, Error> {
    let (scheme, authority, path) =
        split_url(&request.url).ok_or_else(|| Error::BadUrl(request.url.clone()))?;
    let headers = Fields::new();
    for (name, value) in &request.headers {
        headers
            .append(name, value)
            .map_err(|error| Error::Failed(format!("header {name}: {error:?}")))?;
    }
    let outgoing = OutgoingRequest::new(headers);
    let method = match request.method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "DELETE" => Method::Delete,
        "PATCH" => Method::Patch,
        "OPTIONS" => Method::Options,
        other => Method::Other(other.to_owned()),
    };
    let refused = |what: &str| Error::Failed(format!("invalid {what}"));
    outgoing
        .set_method(&method)
        .map_err(|()| refused("method"))?;
    outgoing
        .set_scheme(Some(&scheme))
        .map_err(|()| refused("scheme"))?;
    outgoing
        .set_authority(Some(authority))
        .map_err(|()| refused("authority"))?;
    outgoing
        .set_path_with_query(Some(path))
        .map_err(|()| refused("path"))?;
    let body = outgoing.body().map_err(|()| refused("body"))?;
    let pending = outgoing_handler::handle(outgoing, None)?;
    // A request refused or failed before its body went out closes the body: its own error
    // says why.
    let written = write_body(body, &request.body);
    pending.subscribe().block();
    let response = match pending.get() {
        Some(Ok(Ok(response))) => response,
        Some(Ok(Err(code))) => return Err(code.into()),
        Some(Err(())) | None => return Err(Error::Failed("no response".into())),
    };
    written?;
    let status = response.status();
    let headers = response.headers().entries();
    let incoming = response
        .consume()
        .map_err(|()| Error::Failed("body already taken".into()))?;
    let stream = incoming
        .stream()
        .map_err(|()| Error::Failed("body stream already taken".into()))?;
    let mut body = Vec::new();
    loop {
        match stream.blocking_read(READ_CHUNK) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(match wasi::http::types::http_error_code(&error) {
                    Some(code) => code.into(),
                    None => body_error(error.to_debug_string()),
                });
            }
        }
    }
    drop(stream);
    Ok(Response {
        status,
        headers,
        body,
    })
}

/// A body stream's error as fogd describes it (the stream carries text, not an error code).
fn body_error(text: String) -> Error {
    if text.contains("body size exceeds limit") {
        let limit = text
            .rsplit(": ")
            .next()
            .and_then(|tail| tail.trim_end_matches(" bytes").parse().ok());
        Error::ResponseTooLarge(limit)
    } else if text.contains("timeout") {
        Error::Timeout
    } else {
        Error::Failed(text)
    }
}

fn write_body(body: OutgoingBody, bytes: &[u8]) -> Result<(), Error> {
    let stream = body
        .write()
        .map_err(|()| Error::Failed("request body already taken".into()))?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(|error| Error::Failed(format!("writing the request body: {error:?}")))?;
    }
    drop(stream);
    OutgoingBody::finish(body, None)?;
    Ok(())
}

/// Scheme, authority and path-with-query of an `http(s)://` URL.
fn split_url(url: &str) -> Option<(Scheme, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return None,
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) if rest[at..].starts_with('/') => (&rest[..at], &rest[at..]),
        Some(_) => return None,
        None => (rest, "/"),
    };
    (!authority.is_empty()).then_some((scheme, authority, path))
}
