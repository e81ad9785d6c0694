//! Queues and runs events. Each function has a bounded queue and a concurrency limit; all
//! functions share `workers` threads from tokio's blocking pool, so guests never run on (or
//! block) the async reactor. Shutdown stops intake, lets queued and in-flight events finish.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::{InvokeError, LoadedFunction, Outcome};
use crate::event::Event;
use crate::telemetry::{FunctionMetrics, Metrics};

/// Most events one hand-off to the blocking pool runs in a row.
const MAX_BATCH: usize = 32;

struct Job {
    event: Arc<Event>,
    reply: Option<oneshot::Sender<Outcome>>,
}

#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
pub enum SubmitError {
    #[error("the function's queue is full")]
    Full,
    #[error("the function is no longer accepting events")]
    Closed,
}

/// The entry point of one function's queue. Cheap to clone.
#[derive(Clone)]
pub struct FunctionQueue {
    sender: mpsc::Sender<Job>,
    function: Arc<LoadedFunction>,
    metrics: FunctionMetrics,
}

impl FunctionQueue {
    pub fn function(&self) -> &Arc<LoadedFunction> {
        &self.function
    }

    pub fn metrics(&self) -> &FunctionMetrics {
        &self.metrics
    }

    /// Queues an event if there is room, for sources that cannot wait (QoS 0, traps,
    /// timers). A full queue drops the event and counts it. The receiver may be dropped.
    pub fn try_submit(&self, event: Arc<Event>) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            event,
            reply: Some(reply),
        };
        match self.sender.try_send(job) {
            Ok(()) => {
                self.update_depth();
                Ok(outcome)
            }
            Err(mpsc::error::TrySendError::Full(job)) => {
                self.metrics.dropped("queue_full");
                tracing::warn!(function = %self.function.name(), event_id = %job.event.id, "queue full: event dropped");
                Err(SubmitError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Closed),
        }
    }

    /// Queues an event, waiting for room (backpressure), and returns where its outcome
    /// will arrive.
    pub async fn submit(
        &self,
        event: Arc<Event>,
    ) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send(Job {
                event,
                reply: Some(reply),
            })
            .await
            .map_err(|_| SubmitError::Closed)?;
        self.update_depth();
        Ok(outcome)
    }

    /// Queues an event and waits for its outcome.
    pub async fn invoke(&self, event: Arc<Event>) -> Outcome {
        let outcome = self
            .submit(event)
            .await
            .map_err(|_| InvokeError::ShuttingDown)?;
        outcome.await.unwrap_or(Err(InvokeError::ShuttingDown))
    }

    fn update_depth(&self) {
        let depth = self.sender.max_capacity() - self.sender.capacity();
        self.metrics.queue_depth.set(depth as i64);
    }
}

/// Runs every loaded function's queue.
pub struct Executor {
    queues: HashMap<Arc<str>, FunctionQueue>,
    dispatchers: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl Executor {
    /// Starts one dispatcher per function; at most `workers` guests run at once overall.
    pub fn start(functions: Vec<LoadedFunction>, workers: usize, metrics: &Metrics) -> Self {
        let workers = Arc::new(Semaphore::new(workers.max(1)));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut queues = HashMap::new();
        let mut dispatchers = Vec::new();
        for function in functions {
            let function = Arc::new(function);
            let (sender, receiver) = mpsc::channel(function.limits().queue as usize);
            let queue = FunctionQueue {
                sender,
                metrics: metrics.function(function.name()),
                function,
            };
            dispatchers.push(tokio::spawn(dispatch(
                receiver,
                queue.clone(),
                workers.clone(),
                shutdown_rx.clone(),
            )));
            queues.insert(queue.function.name().clone(), queue);
        }
        Self {
            queues,
            dispatchers,
            shutdown,
        }
    }

    pub fn queue(&self, function: &str) -> Option<&FunctionQueue> {
        self.queues.get(function)
    }

    pub fn queues(&self) -> impl Iterator<Item = &FunctionQueue> {
        self.queues.values()
    }

    /// Whether every function's dispatcher is still running.
    pub fn is_alive(&self) -> bool {
        self.dispatchers
            .iter()
            .all(|dispatcher| !dispatcher.is_finished())
    }

    /// Stops intake, then waits until every queued and in-flight event has finished.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for dispatcher in self.dispatchers {
            let _ = dispatcher.await;
        }
    }
}

async fn dispatch(
    mut receiver: mpsc::Receiver<Job>,
    queue: FunctionQueue,
    workers: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let concurrency = queue.function.limits().concurrency;
    let slots = Arc::new(Semaphore::new(concurrency as usize));
    let mut closing = false;
    loop {
        // Take a slot before a job: while all slots are busy, events stay in the bounded
        // queue, so at most `concurrency + queue` events are admitted. Shutdown is watched
        // during both waits: it stops intake at once, then the queue drains.
        let slot = match or_shutdown(slots.clone().acquire_owned(), &mut shutdown, closing).await {
            Some(Ok(slot)) => slot,
            Some(Err(_)) => break,
            None => {
                receiver.close();
                closing = true;
                continue;
            }
        };
        let job = match or_shutdown(receiver.recv(), &mut shutdown, closing).await {
            Some(job) => job,
            None => {
                receiver.close();
                closing = true;
                continue;
            }
        };
        let Some(job) = job else { break };
        queue.update_depth();
        let Ok(worker) = workers.clone().acquire_owned().await else {
            break;
        };
        // Under load, events already waiting run in the same hand-off to the blocking pool,
        // one after another in this slot: the thread switch is paid once per batch.
        let mut batch = vec![job];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let queue = queue.clone();
        tokio::task::spawn_blocking(move || {
            for job in batch {
                run(&queue, job);
            }
            queue.update_depth();
            drop((slot, worker));
        });
    }
    // In-flight events hold slots; taking all of them waits for the last to finish.
    let _ = slots.acquire_many(concurrency).await;
}

/// Waits for `work`, or returns `None` as soon as shutdown is signalled (unless the
/// dispatcher is already closing, when only `work` counts).
async fn or_shutdown<T>(
    work: impl Future<Output = T>,
    shutdown: &mut watch::Receiver<bool>,
    closing: bool,
) -> Option<T> {
    tokio::select! {
        biased;
        _ = shutdown.changed(), if !closing => None,
        done = work => Some(done),
    }
}

fn run(queue: &FunctionQueue, job: Job) {
    let function = &queue.function;
    let metrics = &queue.metrics;
    let event = &job.event;
    let report = function.call(event);
    metrics.invocations.inc();
    metrics.cold_start.observe(report.instantiate.as_secs_f64());
    metrics.duration.observe(report.total.as_secs_f64());
    metrics.latency.record(report.total);
    if report.unpublished.count > 0 {
        metrics.dropped_many("output_unavailable", u64::from(report.unpublished.count));
        if let Some(error) = &report.unpublished.first_error {
            tracing::warn!(function = %function.name(), event_id = %event.id, count = report.unpublished.count, %error, "publishes not queued");
        }
    }
    match &report.outcome {
        Ok(Some(output)) => match function.result_message(event, output.clone()) {
            Some(message) => {
                if let Err(error) = function.caps().publish.sink().send(message) {
                    metrics.dropped("output_unavailable");
                    tracing::warn!(function = %function.name(), event_id = %event.id, %error, "result not published");
                }
            }
            None => {
                tracing::debug!(function = %function.name(), event_id = %event.id, bytes = output.len(), "result (no output topic)")
            }
        },
        Ok(None) => {}
        Err(error) => {
            metrics.error(error.kind());
            tracing::warn!(function = %function.name(), event_id = %event.id, kind = error.kind(), %error, "event failed");
        }
    }
    if let Some(reply) = job.reply {
        let _ = reply.send(report.outcome);
    }
}
