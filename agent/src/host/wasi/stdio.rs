//! Guest stdout and stderr, written line by line into fogd's log with the function's name.
//! Partial lines wait for their end (or for the instance to go away), so a message written in
//! pieces still arrives as one record.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// Largest write accepted at once; longer output is split by the guest's libc.
const WRITE_BUDGET: usize = 64 * 1024;

/// A partial line longer than this is logged without waiting for its end.
const MAX_PENDING: usize = 4096;

/// One instance's stdout or stderr. Clones share the pending partial line.
#[derive(Clone)]
pub struct GuestOutput {
    lines: Arc<Mutex<LineLog>>,
}

struct LineLog {
    function: Arc<str>,
    stderr: bool,
    pending: Vec<u8>,
}

impl GuestOutput {
    pub fn stdout(function: Arc<str>) -> Self {
        Self::new(function, false)
    }

    pub fn stderr(function: Arc<str>) -> Self {
        Self::new(function, true)
    }

    fn new(function: Arc<str>, stderr: bool) -> Self {
        Self {
            lines: Arc::new(Mutex::new(LineLog {
                function,
                stderr,
                pending: Vec::new(),
            })),
        }
    }

    fn emit(&self, bytes: &[u8]) {
        if let Ok(mut lines) = self.lines.lock() {
            lines.write(bytes);
        }
    }
}

impl LineLog {
    fn write(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.log(&line[..end]);
        }
        if self.pending.len() > MAX_PENDING {
            let line = std::mem::take(&mut self.pending);
            self.log(&line);
        }
    }

    fn log(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end();
        if line.is_empty() {
            return;
        }
        if self.stderr {
            tracing::warn!(function = %self.function, stream = "stderr", "{line}");
        } else {
            tracing::info!(function = %self.function, stream = "stdout", "{line}");
        }
    }
}

impl Drop for LineLog {
    fn drop(&mut self) {
        let rest = std::mem::take(&mut self.pending);
        self.log(&rest);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.emit(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_BUDGET)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for GuestOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.emit(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
