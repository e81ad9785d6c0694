//! fogctl's connection to the fleet's broker, driven by a task of its own: it reads and
//! acknowledges the report stream as fast as the broker sends it and hands each event over a
//! channel, so the rollout's bookkeeping never holds the socket up (a subscriber that falls
//! behind fills the broker's queue for it, and the broker drops what overflows). Publishes
//! wait in the task and go out as the broker acknowledges earlier ones, so a wave of any size
//! never fills the client's request queue, where the acknowledgements of received reports
//! must always find room.

use std::collections::VecDeque;
use std::time::Duration;

use fogd_fleet::mqtt::control::{ControlConnection, ControlEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How long a closing connection may take to send its DISCONNECT.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

enum Request {
    Publish {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
    },
    /// Answered once every publish requested before it was acknowledged.
    Flush(oneshot::Sender<()>),
}

pub struct Link {
    requests: mpsc::UnboundedSender<Request>,
    events: mpsc::UnboundedReceiver<ControlEvent>,
    task: JoinHandle<()>,
}

impl Link {
    /// Starts driving `connection`; at most `window` publishes wait for the broker at once.
    pub fn start(connection: ControlConnection, window: usize) -> Self {
        let (requests, request_queue) = mpsc::unbounded_channel();
        let (event_sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(drive(
            connection,
            window.max(1),
            request_queue,
            event_sender,
        ));
        Self {
            requests,
            events,
            task,
        }
    }

    /// The next event; `None` once the connection task ended.
    pub async fn next(&mut self) -> Option<ControlEvent> {
        self.events.recv().await
    }

    /// Queues a QoS 1 publish; an empty retained payload clears the topic.
    pub fn publish(&self, topic: String, payload: Vec<u8>, retain: bool) {
        let _ = self.requests.send(Request::Publish {
            topic,
            payload,
            retain,
        });
    }

    /// Waits until the broker acknowledged every publish queued so far; false after
    /// `timeout`. Events arriving meanwhile stay queued for [`next`](Self::next).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (done, flushed) = oneshot::channel();
        if self.requests.send(Request::Flush(done)).is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, flushed).await, Ok(Ok(())))
    }

    /// Disconnects cleanly.
    pub async fn close(self) {
        drop(self.requests);
        let _ = self.task.await;
    }
}

async fn drive(
    mut connection: ControlConnection,
    window: usize,
    mut requests: mpsc::UnboundedReceiver<Request>,
    events: mpsc::UnboundedSender<ControlEvent>,
) {
    let mut waiting: VecDeque<(String, Vec<u8>, bool)> = VecDeque::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let mut open = true;
    while open {
        while connection.unacknowledged() < window
            && let Some((topic, payload, retain)) = waiting.pop_front()
        {
            if connection.publish(&topic, payload.clone(), retain).is_err() {
                // The client's queue is full: try again after the next event.
                waiting.push_front((topic, payload, retain));
                break;
            }
        }
        if waiting.is_empty() && connection.unacknowledged() == 0 {
            for flush in flushes.drain(..) {
                let _ = flush.send(());
            }
        }
        tokio::select! {
            request = requests.recv() => match request {
                Some(Request::Publish { topic, payload, retain }) => {
                    waiting.push_back((topic, payload, retain));
                }
                Some(Request::Flush(done)) => flushes.push(done),
                None => open = false,
            },
            event = connection.next() => {
                if events.send(event).is_err() {
                    open = false;
                }
            }
        }
    }
    connection.close(CLOSE_TIMEOUT).await;
}
