//! What the tests and benchmarks feed a hostile function (the probe component).

/// One round of hostile inputs, as (MQTT topic = probe subject, payload): a 64 MiB result, a
/// publish flood past the default limit, a flood within it (100 publishes, kept), and a kv
/// flood past the per-event write budget that then loops until the deadline.
pub const ROUND: [(&str, &str); 4] = [
    ("big", "67108864"),
    (
        "flood",
        r#"{"publish": 1000, "topic": "flood/failed", "bytes": 1000}"#,
    ),
    (
        "flood",
        r#"{"publish": 100, "topic": "flood/kept", "bytes": 1000}"#,
    ),
    ("flood", r#"{"kv": 100000, "size": 10000, "then": "loop"}"#),
];

/// The same round without the input that loops: what stays within the function's own
/// resources except for what it tries to leave behind.
pub const ROUND_WITHOUT_LOOPS: [(&str, &str); 3] = [ROUND[0], ROUND[1], ROUND[2]];
