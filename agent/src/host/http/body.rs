//! A response body as the guest reads it: cut at the function's limit, and ended by the
//! event's deadline or the request's between-bytes timeout, so a server that trickles or
//! stalls holds the event no longer than its deadline. It holds the request's place among the
//! function's concurrent requests until it is read or dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use wasmtime_wasi_http::Error as HttpError;

use super::origin::GrantedOrigin;
use crate::telemetry::OutboundRequestMetrics;

pub struct ResponseBody {
    pub(super) incoming: Incoming,
    pub(super) read: u64,
    pub(super) limit: u64,
    pub(super) deadline: Pin<Box<Sleep>>,
    pub(super) between_bytes: Option<Duration>,
    pub(super) idle: Option<Pin<Box<Sleep>>>,
    pub(super) deadline_hit: Arc<AtomicBool>,
    pub(super) ended: bool,
    pub(super) granted: Arc<GrantedOrigin>,
    pub(super) metrics: Arc<OutboundRequestMetrics>,
    pub(super) _permit: Option<OwnedSemaphorePermit>,
}

impl ResponseBody {
    fn end(&mut self, error: HttpError) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        self.ended = true;
        Poll::Ready(Some(Err(error)))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.limit {
                        self.metrics.response_cut(self.granted.label());
                        let limit = self.limit;
                        return self.end(HttpError::HttpResponseBodySize(Some(limit)));
                    }
                }
                self.idle = None;
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => self.end(HttpError::Hyper(error)),
            Poll::Ready(None) => {
                self.ended = true;
                Poll::Ready(None)
            }
            Poll::Pending => {
                if self.deadline.as_mut().poll(cx).is_ready() {
                    self.deadline_hit.store(true, Ordering::Relaxed);
                    return self.end(HttpError::ConnectionReadTimeout);
                }
                if let Some(between_bytes) = self.between_bytes {
                    let idle = self
                        .idle
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(between_bytes)));
                    if idle.as_mut().poll(cx).is_ready() {
                        return self.end(HttpError::ConnectionReadTimeout);
                    }
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.incoming.is_end_stream()
    }
}
