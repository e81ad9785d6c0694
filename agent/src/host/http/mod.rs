//! `wasi:http/outgoing-handler`, the WASI standard, so any language's HTTP client for WASI
//! works unchanged: requests go only to the origins the function is granted (anything else is
//! refused before a connection is made), through one kept-alive connection pool per granted
//! origin, within the event's deadline, with the response body cut at the function's limit.
//! Requests take effect when they are made, whatever `effects` says: they cannot be held back.

mod body;
mod origin;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use http_body_util::BodyExt;
use hyper::body::Body as _;
use hyper::http::{Request, Response};
use tokio::sync::Semaphore;
use wasmtime::component::Linker;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use super::requests::EventRequests;
use super::{Capability, GrantError, HostResources, HostState};
use crate::config::{FunctionSpec, HttpScheme, split_host_port};
use crate::telemetry::{OutboundRequestMetrics, RequestOutcome, SpacedLog};

use body::ResponseBody;
use origin::GrantedOrigin;

/// The `target` label of requests that matched no grant.
pub(super) const NOT_GRANTED: &str = "none";

/// The origins one function may reach and what its requests are held to.
pub struct HttpGrants {
    origins: Vec<Arc<GrantedOrigin>>,
    in_flight: Arc<Semaphore>,
    /// Requests waiting for a place among the `in_flight` ones.
    waiting: Arc<AtomicUsize>,
    response_limit: u64,
    metrics: Arc<OutboundRequestMetrics>,
    refusal_log: SpacedLog,
}

impl Capability for HttpGrants {
    fn prepare(spec: &FunctionSpec, resources: &HostResources) -> Result<Self, GrantError> {
        let origins = spec
            .grants
            .outbound_http
            .iter()
            .enumerate()
            .map(|(index, grant)| GrantedOrigin::prepare(index, grant).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            origins,
            in_flight: Arc::new(Semaphore::new(spec.limits.http_concurrency as usize)),
            waiting: Arc::default(),
            response_limit: spec.limits.http_response_bytes,
            metrics: Arc::new(resources.metrics.outbound_requests(&spec.name, "http")),
            refusal_log: SpacedLog::default(),
        })
    }

    fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)
    }
}

impl HttpGrants {
    fn granted(&self, scheme: HttpScheme, host: &str, port: u16) -> Option<&Arc<GrantedOrigin>> {
        self.origins
            .iter()
            .find(|granted| granted.origin().matches(scheme, host, port))
    }

    /// Counts of this function's requests to `target` that ended as `outcome`.
    pub fn request_count(&self, target: &str, outcome: RequestOutcome) -> u64 {
        self.metrics.request_count(target, outcome)
    }

    /// Requests of the function waiting for a place (`limits.http_concurrency` are in flight).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

/// Counts a request as waiting for its place until it has one, or is given up.
struct Waiting(Arc<AtomicUsize>);

impl Waiting {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        Self(count.clone())
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EventRequests {
    /// Counts and logs a request to an origin the function is not granted.
    fn refuse(&self, scheme: &str, authority: &str) -> HttpError {
        let grants = &self.caps.grants.http;
        grants
            .metrics
            .request(NOT_GRANTED, RequestOutcome::NotGranted);
        if let Some(refused) = grants.refusal_log.report() {
            // Scheme and authority only: paths and queries may carry secrets.
            tracing::warn!(function = %self.caps.name, event_id = %self.event_id(), origin = %format!("{scheme}://{authority}"), refused, "HTTP request refused: origin not granted (one line a second at most; fogd_outbound_requests_total counts each)");
        }
        HttpError::HttpRequestDenied
    }
}

/// Scheme, host and port a request goes to.
fn destination<B>(request: &Request<B>) -> Option<(HttpScheme, String, u16)> {
    let uri = request.uri();
    let scheme = match uri.scheme_str()? {
        "http" => HttpScheme::Http,
        "https" => HttpScheme::Https,
        _ => return None,
    };
    let (host, port) = split_host_port(uri.authority()?.as_str())?;
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => scheme.default_port(),
    };
    Some((scheme, host.to_owned(), port))
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                ),
                HttpError,
            >,
        > + Send,
>;

fn failed(error: HttpError) -> ResponseFuture {
    Box::new(async move { Err(error) })
}

impl WasiHttpHooks for EventRequests {
    fn send_request(
        &mut self,
        mut request: Request<WasiBody>,
        options: Option<RequestOptions>,
        _: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> ResponseFuture {
        let Some((scheme, host, port)) = destination(&request) else {
            let uri = request.uri();
            let authority = uri.authority().map_or("", |a| a.as_str());
            return failed(self.refuse(uri.scheme_str().unwrap_or(""), authority));
        };
        let caps = self.caps.clone();
        let grants = &caps.grants.http;
        let Some(granted) = grants.granted(scheme, &host, port).cloned() else {
            return failed(self.refuse(scheme.as_str(), &format!("{host}:{port}")));
        };
        granted.add_headers(request.headers_mut());
        let deadline = self.deadline();
        let options = options.unwrap_or_default();
        // The guest's own timeouts apply where they are shorter than the event's deadline.
        let own_timeout = match (options.connect_timeout, options.first_byte_timeout) {
            (None, None) => None,
            (connect, first_byte) => Some(
                connect
                    .unwrap_or_default()
                    .saturating_add(first_byte.unwrap_or_default()),
            ),
        };
        let head_deadline = own_timeout
            .and_then(|timeout| Instant::now().checked_add(timeout))
            .map_or(deadline, |own| own.min(deadline));
        let deadline_hit = self.deadline_flag();
        let in_flight = grants.in_flight.clone();
        let waiting = grants.waiting.clone();
        let metrics = grants.metrics.clone();
        let response_limit = grants.response_limit;
        Box::new(async move {
            let target = granted.label();
            let started = Instant::now();
            let exchange = async {
                let place = Waiting::new(&waiting);
                // The semaphore is never closed.
                let permit = in_flight.acquire_owned().await.ok();
                drop(place);
                (permit, granted.client().request(request).await)
            };
            let (permit, response) =
                match tokio::time::timeout_at(head_deadline.into(), exchange).await {
                    Ok(exchanged) => exchanged,
                    Err(_) => {
                        if head_deadline == deadline {
                            deadline_hit.store(true, Ordering::Relaxed);
                        }
                        metrics.request(target, RequestOutcome::Timeout);
                        return Err(HttpError::HttpResponseTimeout);
                    }
                };
            let response = match response {
                Ok(response) => response,
                Err(error) => {
                    metrics.request(target, RequestOutcome::Failed);
                    return Err(origin::client_error(&error));
                }
            };
            metrics.request(target, RequestOutcome::Answered);
            metrics.answered_after(target, started.elapsed());
            // A body announced longer than the limit is refused with the response, where the
            // guest gets the error code itself (errors on the body stream reach it as text).
            if response
                .body()
                .size_hint()
                .exact()
                .is_some_and(|length| length > response_limit)
            {
                metrics.response_cut(target);
                return Err(HttpError::HttpResponseBodySize(Some(response_limit)));
            }
            let response = response.map(|incoming| {
                ResponseBody {
                    incoming,
                    read: 0,
                    limit: response_limit,
                    deadline: Box::pin(tokio::time::sleep_until(deadline.into())),
                    between_bytes: options.between_bytes_timeout,
                    idle: None,
                    deadline_hit,
                    ended: false,
                    granted: granted.clone(),
                    metrics,
                    _permit: permit,
                }
                .boxed_unsync()
            });
            let io: Box<dyn Future<Output = Result<(), HttpError>> + Send> =
                Box::new(async { Ok(()) });
            Ok((response, io))
        })
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http_context,
            table: &mut self.table,
            hooks: &mut self.requests,
        }
    }
}
