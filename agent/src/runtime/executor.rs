//! Queues and runs events. Each function has a bounded queue and a concurrency limit; all
//! functions share `workers` threads from tokio's blocking pool, so guests never run on (or
//! block) the async reactor. Events with the same ordering key (the subject, unless the
//! function says otherwise) run one at a time, in arrival order; events of different keys run
//! at once up to the concurrency. Shutdown stops intake, lets queued and in-flight events
//! finish.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::order::{Ordered, ordering_key};
use super::{InvokeError, LoadedFunction, Outcome};
use crate::event::Event;
use crate::telemetry::{EventDrop, FunctionMetrics, Metrics, SpacedLog};

/// Most events one hand-off to the blocking pool runs in a row.
const MAX_BATCH: usize = 32;
/// A batch stops taking its next event after running this long, so that under load one
/// function's backlog does not hold a worker while other functions wait for one.
const BATCH_BUDGET: Duration = Duration::from_millis(2);

struct Job {
    event: Arc<Event>,
    /// The version the event was queued for: it runs on that one even if another is swapped
    /// in before it starts.
    function: Arc<LoadedFunction>,
    reply: Option<oneshot::Sender<Outcome>>,
    /// Its place in the queue, given back when it starts running.
    queued: Option<OwnedSemaphorePermit>,
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
    sender: mpsc::UnboundedSender<Job>,
    /// One permit per free place in the queue: events wait here only while they hold one.
    places: Arc<Semaphore>,
    name: Arc<str>,
    /// The version the next queued event runs on; a reconfiguration swaps in another in place,
    /// so the queue, its order and its waiting events carry on.
    current: Arc<RwLock<Arc<LoadedFunction>>>,
    metrics: FunctionMetrics,
    drop_log: Arc<SpacedLog>,
}

impl FunctionQueue {
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The version the next queued event runs on.
    pub fn function(&self) -> Arc<LoadedFunction> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Puts `function` in place of the current version. A new queue size holds from now on:
    /// places are added at once; those taken away are taken as events leave the queue.
    fn swap(&self, function: LoadedFunction) {
        let before = self.function().limits().queue as usize;
        let after = function.limits().queue as usize;
        let function = Arc::new(function);
        match self.current.write() {
            Ok(mut current) => *current = function,
            Err(poisoned) => *poisoned.into_inner() = function,
        }
        if after > before {
            self.places.add_permits(after - before);
        } else if after < before {
            let owed = (before - after) - self.places.forget_permits(before - after);
            if owed > 0 {
                let places = self.places.clone();
                tokio::spawn(async move {
                    if let Ok(taken) = places.acquire_many_owned(owed as u32).await {
                        taken.forget();
                    }
                });
            }
        }
        self.update_depth();
    }

    pub fn metrics(&self) -> &FunctionMetrics {
        &self.metrics
    }

    /// Queues an event if there is room, for sources that cannot wait (QoS 0, traps,
    /// timers). A full queue drops the event and counts it. The receiver may be dropped.
    pub fn try_submit(&self, event: Arc<Event>) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        match self.places.clone().try_acquire_owned() {
            Ok(place) => self.send(event, place),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                self.metrics.dropped(EventDrop::QueueFull);
                if let Some(dropped) = self.drop_log.report() {
                    tracing::warn!(function = %self.name, event_id = %event.id, dropped, "queue full: events dropped (one line a second at most; fogd_events_dropped_total counts each)");
                }
                Err(SubmitError::Full)
            }
            Err(tokio::sync::TryAcquireError::Closed) => Err(SubmitError::Closed),
        }
    }

    /// Queues all of `events` if there is room for all of them, or none: for inputs whose
    /// parts mean little apart (the aggregates of one flow window). A full queue drops them
    /// all and counts each.
    pub fn try_submit_all(&self, events: &[Arc<Event>]) -> Result<(), SubmitError> {
        let Ok(wanted) = u32::try_from(events.len()) else {
            return Err(SubmitError::Full);
        };
        match self.places.clone().try_acquire_many_owned(wanted) {
            Ok(mut places) => {
                for event in events {
                    // One permit per event: the split cannot come up short.
                    let Some(place) = places.split(1) else { break };
                    self.send(event.clone(), place)?;
                }
                Ok(())
            }
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                for _ in events {
                    self.metrics.dropped(EventDrop::QueueFull);
                }
                if let Some(dropped) = self.drop_log.report() {
                    tracing::warn!(function = %self.name, events = events.len(), dropped, "queue full: a whole flow window or batch dropped (one line a second at most; fogd_events_dropped_total counts each event)");
                }
                Err(SubmitError::Full)
            }
            Err(tokio::sync::TryAcquireError::Closed) => Err(SubmitError::Closed),
        }
    }

    /// Queues an event, waiting for room (backpressure), and returns where its outcome
    /// will arrive.
    pub async fn submit(
        &self,
        event: Arc<Event>,
    ) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        let place = self
            .places
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| SubmitError::Closed)?;
        self.send(event, place)
    }

    fn send(
        &self,
        event: Arc<Event>,
        place: OwnedSemaphorePermit,
    ) -> Result<oneshot::Receiver<Outcome>, SubmitError> {
        let (reply, outcome) = oneshot::channel();
        let job = Job {
            event,
            function: self.function(),
            reply: Some(reply),
            queued: Some(place),
        };
        self.sender.send(job).map_err(|_| SubmitError::Closed)?;
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
        let capacity = self.function().limits().queue as usize;
        let depth = capacity.saturating_sub(self.places.available_permits());
        self.metrics.queue_depth.set(depth as i64);
    }
}

/// Runs every loaded function's queue.
pub struct Executor {
    running: HashMap<Arc<str>, Running>,
    /// Dispatchers of removed functions, finishing what was queued for them.
    retiring: Vec<JoinHandle<()>>,
    workers: Arc<Semaphore>,
    /// How many workers one function may hold: all of them when it is alone, otherwise all
    /// but one, which stays for the others.
    share: Arc<AtomicUsize>,
    worker_count: usize,
}

/// One function's queue and the dispatcher that runs it.
struct Running {
    queue: FunctionQueue,
    dispatcher: JoinHandle<()>,
    /// Tells the dispatcher to stop intake and finish what is queued.
    close: watch::Sender<bool>,
}

impl Running {
    fn close(self) -> JoinHandle<()> {
        self.close.send_replace(true);
        self.dispatcher
    }
}

impl Executor {
    /// Starts one dispatcher per function; at most `workers` guests run at once overall, and
    /// where there are several functions, none holds every worker.
    pub fn start(functions: Vec<LoadedFunction>, workers: usize, metrics: &Metrics) -> Self {
        let workers = workers.max(1);
        let mut executor = Self {
            running: HashMap::new(),
            retiring: Vec::new(),
            workers: Arc::new(Semaphore::new(workers)),
            share: Arc::new(AtomicUsize::new(workers)),
            worker_count: workers,
        };
        for function in functions {
            executor.add(function, metrics);
        }
        executor
    }

    /// Starts a queue for `function`, a name that has none. Where there was one (a name
    /// given twice), the earlier queue is retired.
    pub fn add(&mut self, function: LoadedFunction, metrics: &Metrics) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let queue = FunctionQueue {
            sender,
            places: Arc::new(Semaphore::new(function.limits().queue as usize)),
            metrics: metrics.function(function.name()),
            drop_log: Arc::default(),
            name: function.name().clone(),
            current: Arc::new(RwLock::new(Arc::new(function))),
        };
        let (close, closing) = watch::channel(false);
        let dispatcher = tokio::spawn(dispatch(
            receiver,
            queue.clone(),
            Workers {
                pool: self.workers.clone(),
                share: self.share.clone(),
            },
            closing,
        ));
        let running = Running {
            queue: queue.clone(),
            dispatcher,
            close,
        };
        if let Some(earlier) = self.running.insert(queue.name.clone(), running) {
            self.retiring.push(earlier.close());
        }
        self.update_share();
    }

    /// Stops `function`'s intake; what was queued for it still runs. Callers route events
    /// elsewhere first: one submitted from now on is refused as closed.
    pub fn retire(&mut self, function: &str) {
        if let Some(running) = self.running.remove(function) {
            self.retiring.push(running.close());
            self.update_share();
        }
    }

    fn update_share(&self) {
        let share = if self.running.len() > 1 {
            (self.worker_count - 1).max(1)
        } else {
            self.worker_count
        };
        self.share.store(share, Ordering::Relaxed);
    }

    pub fn queue(&self, function: &str) -> Option<&FunctionQueue> {
        self.running.get(function).map(|running| &running.queue)
    }

    /// Runs `function` for the events queued from now on, in place of the version of the
    /// same name (those already queued run on the version they were queued for): its queue
    /// and the order of its events carry on; its new limits and ordering apply to the events
    /// that follow. A name with no queue changes nothing.
    pub fn swap(&self, function: LoadedFunction) {
        if let Some(running) = self.running.get(function.name()) {
            running.queue.swap(function);
        }
    }

    pub fn queues(&self) -> impl Iterator<Item = &FunctionQueue> {
        self.running.values().map(|running| &running.queue)
    }

    /// Whether every function's dispatcher is still running.
    pub fn is_alive(&self) -> bool {
        self.running
            .values()
            .all(|running| !running.dispatcher.is_finished())
    }

    /// Stops intake, then waits until every queued and in-flight event has finished.
    pub async fn shutdown(self) {
        let mut dispatchers = self.retiring;
        dispatchers.extend(self.running.into_values().map(Running::close));
        for dispatcher in dispatchers {
            let _ = dispatcher.await;
        }
    }
}

type WorkerWait = std::pin::Pin<
    Box<dyn Future<Output = Result<OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>,
>;

/// Events of one ordering key that run one after another in a hand-off: a ready event and
/// those queued behind it. A keyless event runs alone.
struct Run {
    key: Option<u64>,
    jobs: Vec<Job>,
}

/// What one hand-off to the blocking pool did.
struct Finished {
    /// The ordering keys of the runs it finished.
    keys: Vec<Option<u64>>,
    /// What it took and did not run (its budget ran out), in order.
    unrun: Vec<Run>,
}

/// The worker threads a dispatcher draws from, and how many it may hold at once.
struct Workers {
    pool: Arc<Semaphore>,
    share: Arc<AtomicUsize>,
}

async fn dispatch(
    mut receiver: mpsc::UnboundedReceiver<Job>,
    queue: FunctionQueue,
    workers: Workers,
    mut shutdown: watch::Receiver<bool>,
) {
    let (finished_tx, mut finished) = mpsc::unbounded_channel::<Finished>();
    let mut jobs = Ordered::default();
    let mut running = 0usize;
    let mut intake = true;
    let mut closing = false;
    // The wait for a worker is kept across turns of the loop: the workers are handed out in
    // the order functions asked, and a new wait would go to the back of the line.
    let mut worker_wait: Option<WorkerWait> = None;
    loop {
        if !intake && running == 0 && jobs.is_empty() {
            break;
        }
        // A reconfiguration may change the concurrency in place.
        let concurrency = (queue.function().limits().concurrency as usize)
            .min(workers.share.load(Ordering::Relaxed))
            .max(1);
        if worker_wait.is_none() && running < concurrency && jobs.ready_len() > 0 {
            worker_wait = Some(Box::pin(workers.pool.clone().acquire_owned()));
        }
        let next_worker = async {
            match worker_wait.as_mut() {
                Some(wait) => wait.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            Some(done) = finished.recv() => {
                running -= 1;
                for run in done.unrun.into_iter().rev() {
                    jobs.put_back(run.key, run.jobs);
                }
                for key in done.keys {
                    jobs.finish(key);
                }
            }
            _ = shutdown.changed(), if !closing => {
                // Intake stops at once; what was queued still runs.
                closing = true;
                queue.places.close();
                receiver.close();
            }
            job = receiver.recv(), if intake => match job {
                Some(job) => admit(&mut jobs, job),
                None => intake = false,
            },
            worker = next_worker => {
                worker_wait = None;
                let Ok(worker) = worker else { break };
                while let Ok(job) = receiver.try_recv() {
                    admit(&mut jobs, job);
                }
                // Under load, ready events run in one hand-off, one after another: the
                // thread switch is paid once per batch. The ready ones are shared out
                // among the free slots; each takes the events queued behind it on its key
                // along, since they could only run after it anyway.
                let free = concurrency.saturating_sub(running).max(1);
                let size = jobs.ready_len().div_ceil(free).clamp(1, MAX_BATCH);
                let mut batch = Vec::new();
                let mut taken = 0;
                while taken < size {
                    let Some((key, job)) = jobs.next_ready() else { break };
                    let mut run = vec![job];
                    run.extend(jobs.take_followers(key, MAX_BATCH - taken - 1));
                    taken += run.len();
                    batch.push(Run { key, jobs: run });
                }
                running += 1;
                let queue = queue.clone();
                let finished_tx = finished_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let done = run_batch(&queue, batch);
                    drop(worker);
                    queue.update_depth();
                    let _ = finished_tx.send(done);
                });
            }
        }
    }
}

/// Takes `job` in under the ordering of the version it was queued for.
fn admit(jobs: &mut Ordered<Job>, job: Job) {
    let key = ordering_key(job.function.order_by(), &job.event);
    jobs.admit(key, job);
}

fn run_batch(queue: &FunctionQueue, batch: Vec<Run>) -> Finished {
    let started = Instant::now();
    let mut keys = Vec::with_capacity(batch.len());
    let mut unrun = Vec::new();
    let mut runs = batch.into_iter();
    while let Some(Run { key, jobs }) = runs.next() {
        let mut jobs = jobs.into_iter();
        let mut over_budget = false;
        for job in jobs.by_ref() {
            run(queue, job);
            if started.elapsed() >= BATCH_BUDGET {
                over_budget = true;
                break;
            }
        }
        let rest: Vec<Job> = jobs.collect();
        if rest.is_empty() {
            keys.push(key);
        } else {
            unrun.push(Run { key, jobs: rest });
        }
        if over_budget {
            unrun.extend(runs);
            break;
        }
    }
    Finished { keys, unrun }
}

fn run(queue: &FunctionQueue, mut job: Job) {
    // The event leaves the queue as it starts: the gauge says so now, not when it ends.
    drop(job.queued.take());
    queue.update_depth();
    let function = job.function.clone();
    let metrics = &queue.metrics;
    let event = &job.event;
    let mut report = function.call(event);
    metrics.invocations.inc();
    metrics.cold_start.observe(report.instantiate.as_secs_f64());
    metrics.duration.observe(report.total.as_secs_f64());
    metrics.latency.record(report.total);
    if report.unpublished.count > 0 {
        metrics.dropped_many(
            EventDrop::OutputUnavailable,
            u64::from(report.unpublished.count),
        );
        if let Some(error) = &report.unpublished.first_error {
            tracing::warn!(function = %function.name(), event_id = %event.id, count = report.unpublished.count, %error, "publishes not queued");
        }
    }
    match &report.outcome {
        Ok(Some(output)) => {
            let properties = std::mem::take(&mut report.result_properties);
            match function.result_message(event, output.clone(), properties) {
                Some(message) => {
                    if let Err(error) = function.caps().grants.messaging.sink().send(message) {
                        metrics.dropped(EventDrop::OutputUnavailable);
                        tracing::warn!(function = %function.name(), event_id = %event.id, %error, "result not published");
                    }
                }
                None => {
                    tracing::debug!(function = %function.name(), event_id = %event.id, bytes = output.len(), "result (no output topic)")
                }
            }
        }
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
