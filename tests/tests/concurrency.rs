//! The executor under load: many events in parallel across functions, bounded queues with
//! counted drops, shutdown that lets admitted events finish, and functions swapped, added and
//! retired while events run.

use std::sync::Arc;

use fogd::config::{Effects, Millis, OrderBy};
use fogd::runtime::{Executor, InvokeError, SubmitError};
use fogd::telemetry::Metrics;
use fogd_tests::{Harness, components, event, spec, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_events_in_parallel_across_functions() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut functions = Vec::new();
    for name in ["echo-a", "echo-b", "probe-c"] {
        let component = if name.starts_with("echo") {
            &components().echo
        } else {
            &components().probe
        };
        let mut spec = spec(name, component);
        spec.limits.concurrency = 2;
        spec.limits.queue = 512;
        functions.push(harness.load(&spec).unwrap());
    }
    let executor = Executor::start(functions, 2, &metrics);
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..300 {
        let name = ["echo-a", "echo-b", "probe-c"][index % 3];
        let queue = executor.queue(name).unwrap().clone();
        calls.spawn(async move {
            let payload = format!("{name} {index}");
            let output = queue.invoke(Arc::new(event("echo", payload.clone()))).await;
            (payload, output)
        });
    }
    let mut done = 0;
    while let Some(result) = calls.join_next().await {
        let (payload, output) = result.unwrap();
        assert_eq!(output, Ok(Some(payload.into_bytes())));
        done += 1;
    }
    assert_eq!(done, 300);
    for name in ["echo-a", "echo-b", "probe-c"] {
        assert_eq!(
            executor.queue(name).unwrap().metrics().invocations.get(),
            100
        );
    }
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_and_counts_and_admits_exactly_concurrency_plus_queue() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut spec = spec("bounded", &components().probe);
    spec.limits.concurrency = 1;
    spec.limits.queue = 2;
    spec.limits.timeout = Millis(60_000);
    // The held event's kv write must be seen while it runs.
    spec.effects = Effects::Keep;
    let executor = Executor::start(vec![harness.load(&spec).unwrap()], 2, &metrics);
    let queue = executor.queue("bounded").unwrap().clone();
    let kv = harness.state.kv("bounded").unwrap();

    let held = queue.try_submit(Arc::new(event("hold", ""))).unwrap();
    wait_until("the first event runs", || kv.get("held").unwrap().is_some()).await;

    let mut admitted = Vec::new();
    let mut refused = 0;
    for index in 0..10 {
        match queue.try_submit(Arc::new(event("echo", format!("{index}")))) {
            Ok(outcome) => admitted.push(outcome),
            Err(SubmitError::Full) => refused += 1,
            Err(SubmitError::Closed) => panic!("queue closed"),
        }
    }
    assert_eq!(admitted.len(), 2, "one running + a queue of two");
    assert_eq!(refused, 8);
    assert_eq!(queue.metrics().dropped_count("queue_full"), 8);
    assert_eq!(
        fogd_tests::logs::lines_with(&["queue full", "bounded"]).len(),
        1,
        "eight drops within a second are one log line"
    );
    assert_eq!(queue.metrics().queue_depth.get(), 2);

    kv.set("release", b"1", None).unwrap();
    assert_eq!(held.await.unwrap(), Ok(Some(b"\"released\"".to_vec())));
    for (index, outcome) in admitted.into_iter().enumerate() {
        assert_eq!(
            outcome.await.unwrap(),
            Ok(Some(index.to_string().into_bytes()))
        );
    }
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_go_together_are_queued_all_or_dropped_all() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut spec = spec("windows", &components().probe);
    spec.limits.concurrency = 1;
    spec.limits.queue = 3;
    spec.limits.timeout = Millis(60_000);
    spec.effects = Effects::Keep;
    let executor = Executor::start(vec![harness.load(&spec).unwrap()], 2, &metrics);
    let queue = executor.queue("windows").unwrap().clone();
    let kv = harness.state.kv("windows").unwrap();
    let held = queue.try_submit(Arc::new(event("hold", ""))).unwrap();
    wait_until("the first event runs", || kv.get("held").unwrap().is_some()).await;

    let window = |size: usize| -> Vec<Arc<_>> {
        (0..size)
            .map(|index| Arc::new(event("echo", format!("{index}"))))
            .collect()
    };
    // Four aggregates do not fit a queue of three: none is queued, each drop is counted.
    assert!(matches!(
        queue.try_submit_all(&window(4)),
        Err(SubmitError::Full)
    ));
    assert_eq!(queue.metrics().dropped_count("queue_full"), 4);
    assert_eq!(
        queue.metrics().queue_depth.get(),
        0,
        "the running event is not queued"
    );
    // Three fit, all of them; then a window of one finds no room.
    queue.try_submit_all(&window(3)).unwrap();
    assert_eq!(queue.metrics().queue_depth.get(), 3);
    assert!(queue.try_submit_all(&window(1)).is_err());
    assert_eq!(queue.metrics().dropped_count("queue_full"), 5);

    kv.set("release", b"1", None).unwrap();
    held.await.unwrap().unwrap();
    wait_until("the window's three events ran", || {
        queue.metrics().invocations.get() == 4
    })
    .await;
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_admitted_events_then_refuses_new_ones() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut spec = spec("draining", &components().probe);
    spec.limits.concurrency = 1;
    spec.limits.timeout = Millis(60_000);
    spec.effects = Effects::Keep;
    let executor = Executor::start(vec![harness.load(&spec).unwrap()], 2, &metrics);
    let queue = executor.queue("draining").unwrap().clone();
    let kv = harness.state.kv("draining").unwrap();

    let held = queue.try_submit(Arc::new(event("hold", ""))).unwrap();
    wait_until("the first event runs", || kv.get("held").unwrap().is_some()).await;
    let queued = queue.try_submit(Arc::new(event("echo", "queued"))).unwrap();

    let shutdown = tokio::spawn(executor.shutdown());
    wait_until("intake stops", || {
        matches!(
            queue.try_submit(Arc::new(event("echo", "late"))),
            Err(SubmitError::Closed)
        )
    })
    .await;
    assert!(
        !shutdown.is_finished(),
        "shutdown must wait for the held event"
    );
    kv.set("release", b"1", None).unwrap();
    shutdown.await.unwrap();
    assert_eq!(held.await.unwrap(), Ok(Some(b"\"released\"".to_vec())));
    assert_eq!(queued.await.unwrap(), Ok(Some(b"queued".to_vec())));
    assert_eq!(
        queue.invoke(Arc::new(event("echo", "after"))).await,
        Err(InvokeError::ShuttingDown)
    );
}

/// An event of `subject` whose ordering key is `key` (attribute `key`).
fn keyed(subject: &str, payload: &str, key: &str) -> Arc<fogd::event::Event> {
    let mut event = event(subject, payload);
    event.attributes.push(("key".into(), key.into()));
    Arc::new(event)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_of_one_key_wait_for_each_other_while_other_keys_run() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut spec = spec("ordered", &components().probe);
    spec.limits.concurrency = 2;
    spec.limits.timeout = Millis(60_000);
    spec.order_by = OrderBy::Attribute("key".into());
    spec.effects = Effects::Keep;
    let executor = Executor::start(vec![harness.load(&spec).unwrap()], 2, &metrics);
    let queue = executor.queue("ordered").unwrap().clone();
    let kv = harness.state.kv("ordered").unwrap();

    let first_a = queue.try_submit(keyed("hold", "", "a")).unwrap();
    wait_until("the first event of key a runs", || {
        kv.get("held").unwrap().is_some()
    })
    .await;
    let mut second_a = queue.try_submit(keyed("echo", "a2", "a")).unwrap();
    let first_b = queue.try_submit(keyed("echo", "b1", "b")).unwrap();
    // A free slot runs key b at once; key a's second event waits for its first.
    assert_eq!(first_b.await.unwrap(), Ok(Some(b"b1".to_vec())));
    assert!(
        second_a.try_recv().is_err(),
        "the second event of key a must not run while the first does"
    );
    kv.set("release", b"1", None).unwrap();
    assert_eq!(first_a.await.unwrap(), Ok(Some(b"\"released\"".to_vec())));
    assert_eq!(second_a.await.unwrap(), Ok(Some(b"a2".to_vec())));
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_ordering_a_free_slot_takes_the_next_event_of_any_key() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut spec = spec("unordered", &components().probe);
    spec.limits.concurrency = 2;
    spec.limits.timeout = Millis(60_000);
    spec.order_by = OrderBy::None;
    spec.effects = Effects::Keep;
    let executor = Executor::start(vec![harness.load(&spec).unwrap()], 2, &metrics);
    let queue = executor.queue("unordered").unwrap().clone();
    let kv = harness.state.kv("unordered").unwrap();

    let held = queue.try_submit(keyed("hold", "", "a")).unwrap();
    wait_until("the held event runs", || kv.get("held").unwrap().is_some()).await;
    let second = queue.try_submit(keyed("echo", "a2", "a")).unwrap();
    assert_eq!(second.await.unwrap(), Ok(Some(b"a2".to_vec())));
    kv.set("release", b"1", None).unwrap();
    assert!(held.await.unwrap().is_ok());
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_version_brings_its_queue_size_and_ordering_to_the_events_after_it() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut spec = spec("changing", &components().probe);
    spec.limits.concurrency = 2;
    spec.limits.queue = 1;
    spec.limits.timeout = Millis(60_000);
    spec.order_by = OrderBy::Attribute("key".into());
    spec.effects = Effects::Keep;
    let executor = Executor::start(vec![harness.load(&spec).unwrap()], 2, &metrics);
    let queue = executor.queue("changing").unwrap().clone();
    let kv = harness.state.kv("changing").unwrap();

    let held = queue.try_submit(keyed("hold", "", "a")).unwrap();
    wait_until("the held event runs", || kv.get("held").unwrap().is_some()).await;
    let mut waiting = queue.try_submit(keyed("echo", "a2", "a")).unwrap();
    assert_eq!(
        queue.try_submit(keyed("echo", "a3", "a")).unwrap_err(),
        SubmitError::Full,
        "a queue of one holds one event"
    );

    spec.limits.queue = 3;
    spec.order_by = OrderBy::None;
    executor.swap(harness.load(&spec).unwrap());
    let unordered = queue.try_submit(keyed("echo", "a3", "a")).unwrap();
    assert_eq!(
        unordered.await.unwrap(),
        Ok(Some(b"a3".to_vec())),
        "without ordering, the new version's event of key a runs beside the held one"
    );
    assert!(
        waiting.try_recv().is_err(),
        "the event admitted under the old ordering still waits for the held one"
    );
    let more: Vec<_> = (0..2)
        .map(|index| queue.try_submit(keyed("echo", &format!("b{index}"), "b")))
        .collect();
    assert!(more.iter().all(Result::is_ok), "the queue grew to three");
    kv.set("release", b"1", None).unwrap();
    assert!(held.await.unwrap().is_ok());
    assert_eq!(waiting.await.unwrap(), Ok(Some(b"a2".to_vec())));
    for outcome in more {
        assert!(outcome.unwrap().await.unwrap().is_ok());
    }
    executor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_function_finishes_what_it_holds_and_an_added_one_serves_at_once() {
    let harness = Harness::new();
    let metrics = Metrics::new();
    let mut old = spec("old", &components().probe);
    old.limits.concurrency = 1;
    old.limits.timeout = Millis(60_000);
    old.effects = Effects::Keep;
    let mut executor = Executor::start(vec![harness.load(&old).unwrap()], 2, &metrics);
    let queue = executor.queue("old").unwrap().clone();
    let kv = harness.state.kv("old").unwrap();

    let held = queue.try_submit(Arc::new(event("hold", ""))).unwrap();
    wait_until("the held event runs", || kv.get("held").unwrap().is_some()).await;
    let queued = queue.try_submit(Arc::new(event("echo", "queued"))).unwrap();
    executor.retire("old");
    assert!(executor.queue("old").is_none());
    wait_until("the retired queue refuses new events", || {
        matches!(
            queue.try_submit(Arc::new(event("echo", "late"))),
            Err(SubmitError::Closed)
        )
    })
    .await;

    executor.add(
        harness.load(&spec("new", &components().echo)).unwrap(),
        &metrics,
    );
    let added = executor.queue("new").unwrap().clone();
    assert_eq!(
        added.invoke(Arc::new(event("echo", "hello"))).await,
        Ok(Some(b"hello".to_vec())),
        "the added function serves while the retired one still holds an event"
    );
    kv.set("release", b"1", None).unwrap();
    assert_eq!(held.await.unwrap(), Ok(Some(b"\"released\"".to_vec())));
    assert_eq!(queued.await.unwrap(), Ok(Some(b"queued".to_vec())));
    executor.shutdown().await;
}
