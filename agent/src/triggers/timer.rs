//! Timer triggers: an event every period, with a payload cycled from the configured list or
//! `{"tick": n}`.

use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior, interval};

use crate::config::{FunctionSpec, TimerTrigger, TriggerSpec};
use crate::event::{Source, attributes, new_event};
use crate::router::{Dispatch, timer_key};

use super::{Stopping, Tasks, Trigger};

/// The timers of the running functions.
pub struct Timers {
    tasks: Tasks,
    dispatch: Dispatch,
}

/// Starts one task per timer trigger in `functions`.
pub fn start(functions: &[FunctionSpec], dispatch: &Dispatch) -> Timers {
    Timers {
        tasks: start_tasks(functions, dispatch),
        dispatch: dispatch.clone(),
    }
}

impl Trigger for Timers {
    fn kind(&self) -> &'static str {
        self.tasks.kind()
    }

    fn is_alive(&self) -> bool {
        self.tasks.is_alive()
    }

    /// Stops the timers and starts those `functions` have now.
    fn follow<'a>(&'a mut self, functions: &'a [FunctionSpec]) -> Stopping<'a> {
        Box::pin(async move {
            self.tasks.drain().await;
            self.tasks = start_tasks(functions, &self.dispatch);
        })
    }

    fn drain(&mut self) -> Stopping<'_> {
        self.tasks.drain()
    }

    fn stop(self: Box<Self>, deadline: Instant) -> Stopping<'static> {
        Box::new(self.tasks).stop(deadline)
    }
}

fn start_tasks(functions: &[FunctionSpec], dispatch: &Dispatch) -> Tasks {
    let mut tasks = Tasks::new("timer");
    for function in functions {
        for (index, trigger) in function.triggers.iter().enumerate() {
            let TriggerSpec::Timer(timer) = trigger else {
                continue;
            };
            let key = timer_key(&function.name, index);
            tasks.push(tokio::spawn(run(
                key,
                timer.clone(),
                dispatch.clone(),
                tasks.shutdown_signal(),
            )));
        }
    }
    tasks
}

async fn run(
    key: String,
    timer: TimerTrigger,
    dispatch: Dispatch,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = interval(timer.every.as_duration());
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let subject = timer.name.clone().unwrap_or_else(|| key.clone());
    let mut tick: u64 = 0;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let payload = if timer.payloads.is_empty() {
            format!("{{\"tick\":{tick}}}").into_bytes()
        } else {
            timer.payloads[(tick % timer.payloads.len() as u64) as usize]
                .clone()
                .into_bytes()
        };
        let mut event = new_event(Source::Timer, subject.clone(), payload);
        event
            .attributes
            .push((attributes::TIMER.to_owned(), key.clone()));
        dispatch.offer(event);
        tick += 1;
    }
}
