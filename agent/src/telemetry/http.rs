//! The `/metrics` and `/healthz` endpoint, with the JSON pages other parts add (`/models`).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::{Health, Metrics};

/// A JSON page the endpoint serves beside `/metrics` and `/healthz`, rendered per request.
pub trait JsonPage: Send + Sync {
    fn render(&self) -> serde_json::Value;
}

/// The pages to serve, each at its path (`/models`).
pub type JsonPages = Vec<(&'static str, Arc<dyn JsonPage>)>;

/// Binds `address` and serves until `shutdown` turns true. Returns the bound address.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    pages: JsonPages,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    let pages = Arc::new(pages);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok(connection) => connection,
                    Err(error) => {
                        tracing::warn!(%error, "metrics endpoint: accept failed");
                        continue;
                    }
                },
                _ = shutdown.changed() => return,
            };
            let metrics = metrics.clone();
            let health = health.clone();
            let pages = pages.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| {
                    let response = respond(&request, &metrics, &health, &pages);
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(bound)
}

fn respond(
    request: &Request<Incoming>,
    metrics: &Metrics,
    health: &Health,
    pages: &JsonPages,
) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match request.uri().path() {
        "/metrics" => (
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics.encode(),
        ),
        "/healthz" => {
            let report = health.report();
            let status = if report.status == "ok" {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let body = serde_json::to_string_pretty(&report).unwrap_or_default();
            (status, "application/json", body)
        }
        path => match pages.iter().find(|(at, _)| *at == path) {
            Some((_, page)) => {
                let body = serde_json::to_string_pretty(&page.render()).unwrap_or_default();
                (StatusCode::OK, "application/json", body)
            }
            None => {
                let mut paths = vec!["/metrics", "/healthz"];
                paths.extend(pages.iter().map(|(at, _)| *at));
                let hint = format!("try {}\n", paths.join(", "));
                (StatusCode::NOT_FOUND, "text/plain", hint)
            }
        },
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}
