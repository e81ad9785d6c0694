//! A diagnostic function that exercises every host interface and failure mode, chosen by
//! the event subject. The test suite and `fogd bench kv` use it; see README.md.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use fogd_sdk::inference::{self, ElementType, Tensor};
use fogd_sdk::messaging::{Qos, publish};
use fogd_sdk::{Event, Guest, config, export, kv, log, response, snmp};
use serde_json::{Value, json};

struct Probe;

fn snmp_value(value: &snmp::Value) -> Value {
    use snmp::Value as V;
    match value {
        V::Integer(v) => json!({"integer": v}),
        V::Unsigned(v) => json!({"unsigned": v}),
        V::Counter32(v) => json!({"counter32": v}),
        V::Counter64(v) => json!({"counter64": v}),
        V::Timeticks(v) => json!({"timeticks": v}),
        V::IpAddress((a, b, c, d)) => json!({"ip-address": format!("{a}.{b}.{c}.{d}")}),
        V::Oid(oid) => json!({"oid": oid}),
        V::OctetString(bytes) => json!({"octet-string": String::from_utf8_lossy(bytes)}),
        V::Opaque(bytes) => json!({"opaque": bytes}),
        V::Null => json!("null"),
        V::NoSuchObject => json!("no-such-object"),
        V::NoSuchInstance => json!("no-such-instance"),
        V::EndOfMibView => json!("end-of-mib-view"),
    }
}

/// `{"type": "integer"|"octet-string"|..., "value"}` -> a value to set.
fn value_to_set(spec: &Value) -> snmp::Value {
    let number = spec["value"].as_u64().unwrap_or_default();
    match text(spec, "type").as_str() {
        "integer" => snmp::Value::Integer(spec["value"].as_i64().unwrap_or_default() as i32),
        "unsigned" => snmp::Value::Unsigned(number as u32),
        "timeticks" => snmp::Value::Timeticks(number as u32),
        "oid" => snmp::Value::Oid(text(spec, "value")),
        _ => snmp::Value::OctetString(text(spec, "value").into_bytes()),
    }
}

/// `{"op": "get"|"get-next"|"walk"|"set", "target", "oids", "subtree", "max", "varbinds"}` ->
/// `[{"oid", "value"}]`, or `{"error"}`.
fn snmp_request(request: &Value) -> Value {
    let target = text(request, "target");
    let oids: Vec<String> = request["oids"]
        .as_array()
        .map(|oids| {
            oids.iter()
                .filter_map(|o| o.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let result = match text(request, "op").as_str() {
        "get" => snmp::get(&target, &oids),
        "get-next" => snmp::get_next(&target, &oids),
        "walk" => snmp::walk(
            &target,
            &text(request, "subtree"),
            request["max"].as_u64().unwrap_or(100) as u32,
        ),
        "set" => {
            let varbinds: Vec<snmp::Varbind> = request["varbinds"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .map(|v| snmp::Varbind {
                            oid: text(v, "oid"),
                            value: value_to_set(v),
                        })
                        .collect()
                })
                .unwrap_or_default();
            snmp::set(&target, &varbinds)
        }
        other => return json!({"error": format!("unknown op {other:?}")}),
    };
    match result {
        Ok(varbinds) => json!(
            varbinds
                .iter()
                .map(|v| json!({"oid": v.oid, "value": snmp_value(&v.value)}))
                .collect::<Vec<_>>()
        ),
        Err(error) => json!({"error": format!("{error:?}")}),
    }
}

/// `{"method", "url", "headers": {name: value}, "body"}` -> `{"status", "body", "headers"}`,
/// or `{"error"}` with the SDK's reason.
fn http(request: &Value) -> Value {
    let headers = request["headers"]
        .as_object()
        .map(|headers| {
            headers
                .iter()
                .map(|(name, value)| {
                    let value = value.as_str().unwrap_or_default();
                    (name.clone(), value.as_bytes().to_vec())
                })
                .collect()
        })
        .unwrap_or_default();
    let method = match text(request, "method") {
        method if method.is_empty() => "GET".to_owned(),
        method => method,
    };
    let request = fogd_sdk::http::Request {
        method,
        url: text(request, "url"),
        headers,
        body: text(request, "body").into_bytes(),
    };
    match fogd_sdk::http::send(&request) {
        Ok(response) => json!({
            "status": response.status,
            "body": String::from_utf8_lossy(&response.body),
            "bytes": response.body.len(),
            "location": response.header("location"),
        }),
        Err(error) => json!({"error": format!("{error:?}")}),
    }
}

/// Counts calls within one instance; fogd gives every event a fresh instance, so this is
/// always 1 when observed.
static CALLS: AtomicU64 = AtomicU64::new(0);

fn json_payload(event: &Event) -> Result<Value, String> {
    serde_json::from_slice(&event.payload).map_err(|e| format!("payload is not JSON: {e}"))
}

fn text(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn floats(value: &Value) -> Vec<Vec<f32>> {
    value
        .as_array()
        .map(|tensors| {
            tensors
                .iter()
                .map(|t| {
                    t.as_array()
                        .map(|v| {
                            v.iter()
                                .filter_map(Value::as_f64)
                                .map(|x| x as f32)
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn element(name: &str) -> ElementType {
    match name {
        "uint8" => ElementType::Uint8,
        "float32" => ElementType::Float32,
        _ => ElementType::Int8,
    }
}

fn element_name(element: ElementType) -> &'static str {
    match element {
        ElementType::Int8 => "int8",
        ElementType::Uint8 => "uint8",
        ElementType::Float32 => "float32",
    }
}

/// `{"model", "element", "shape", "data"}` -> one raw tensor run; outputs as byte lists.
fn infer_raw(request: &Value) -> Result<Value, String> {
    let tensor = Tensor {
        element_type: element(&text(request, "element")),
        shape: request["shape"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(Value::as_u64)
                    .map(|x| x as u32)
                    .collect()
            })
            .unwrap_or_default(),
        data: request["data"]
            .as_array()
            .map(|d| {
                d.iter()
                    .filter_map(Value::as_i64)
                    .map(|x| x as u8)
                    .collect()
            })
            .unwrap_or_default(),
    };
    let outputs =
        inference::run(&text(request, "model"), &[tensor]).map_err(|e| format!("{e:?}"))?;
    Ok(json!(
        outputs.iter().map(|t| t.data.clone()).collect::<Vec<_>>()
    ))
}

fn kv_step(step: &Value) -> Value {
    let op = text(step, "op");
    let key = text(step, "key");
    let bytes = |name: &str| {
        step.get(name)
            .and_then(Value::as_str)
            .map(|s| s.as_bytes().to_vec())
    };
    let shown = |result: Result<Value, kv::Error>| match result {
        Ok(value) => json!({"ok": value}),
        Err(error) => json!({"error": format!("{error:?}")}),
    };
    let as_text = |v: Option<Vec<u8>>| v.map(|b| String::from_utf8_lossy(&b).into_owned());
    match op.as_str() {
        "get" => shown(kv::get(&key).map(|v| json!(as_text(v)))),
        "set" => {
            let ttl = step.get("ttl_ms").and_then(Value::as_u64);
            let value = bytes("value").unwrap_or_default();
            shown(kv::set(&key, &value, ttl).map(|()| json!(null)))
        }
        "set_size" => {
            let size = step.get("size").and_then(Value::as_u64).unwrap_or(0) as usize;
            shown(kv::set(&key, &vec![b'v'; size], None).map(|()| json!(null)))
        }
        "delete" => shown(kv::delete(&key).map(|v| json!(v))),
        "incr" => shown(
            kv::incr(&key, step.get("delta").and_then(Value::as_i64).unwrap_or(1))
                .map(|v| json!(v)),
        ),
        "cas" => shown(
            kv::compare_and_swap(&key, bytes("expected").as_deref(), bytes("new").as_deref())
                .map(|v| json!(v)),
        ),
        "scan" => {
            let limit = step.get("limit").and_then(Value::as_u64).unwrap_or(100) as u32;
            shown(kv::scan(&text(step, "prefix"), limit).map(|entries| {
                json!(
                    entries
                        .into_iter()
                        .map(|(k, v)| json!([k, as_text(Some(v))]))
                        .collect::<Vec<_>>()
                )
            }))
        }
        other => json!({"error": format!("unknown op {other:?}")}),
    }
}

/// `{"publish": N, "topic", "bytes", "kv": N, "size", "then": "loop"}`: makes up to N
/// publishes and N kv writes, stopping each at its first refusal as a careful guest would,
/// then returns what got through (or loops, with `then = "loop"`).
fn flood(request: &Value) -> Result<Option<Vec<u8>>, String> {
    let count = |name: &str| request.get(name).and_then(Value::as_u64).unwrap_or(0);
    let topic = text(request, "topic");
    let payload = vec![b'p'; count("bytes") as usize];
    let mut published = 0;
    let mut refusal = None;
    for _ in 0..count("publish") {
        match publish(&topic, &payload, Qos::AtLeastOnce, false) {
            Ok(()) => published += 1,
            Err(error) => {
                refusal = Some(format!("{error:?}"));
                break;
            }
        }
    }
    let value = vec![b'v'; count("size") as usize];
    let mut written = 0;
    for index in 0..count("kv") {
        match kv::set(&format!("flood/{index}"), &value, None) {
            Ok(()) => written += 1,
            Err(error) => {
                refusal = Some(format!("{error:?}"));
                break;
            }
        }
    }
    if text(request, "then") == "loop" {
        loop {
            std::hint::spin_loop();
        }
    }
    Ok(Some(
        json!({"published": published, "written": written, "refusal": refusal})
            .to_string()
            .into_bytes(),
    ))
}

fn busy_wait(duration: Duration) {
    let start = Instant::now();
    while start.elapsed() < duration {
        std::hint::spin_loop();
    }
}

impl Guest for Probe {
    fn handle(event: Event) -> Result<Option<Vec<u8>>, String> {
        let calls = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let reply = |value: Value| Ok(Some(value.to_string().into_bytes()));
        match event.subject.as_str() {
            "echo" => Ok(Some(event.payload)),
            "respond" => {
                let request = json_payload(&event)?;
                if let Some(content_type) = request["content_type"].as_str() {
                    response::set_content_type(content_type)?;
                }
                for pair in request["user_properties"].as_array().into_iter().flatten() {
                    let text = |index: usize| pair[index].as_str().unwrap_or_default();
                    response::add_user_property(text(0), text(1))?;
                }
                Ok(Some(event.payload))
            }
            "calls" => reply(json!(calls)),
            "event" => reply(json!({
                "id": event.id, "subject": event.subject, "source": format!("{:?}", event.source),
                "payload": String::from_utf8_lossy(&event.payload), "attributes": event.attributes,
                "received_at": event.received_at,
            })),
            "kv" => {
                let steps = json_payload(&event)?;
                let steps = steps.as_array().ok_or("kv expects a JSON array of steps")?;
                reply(json!(steps.iter().map(kv_step).collect::<Vec<_>>()))
            }
            "publish" => {
                let request = json_payload(&event)?;
                let qos = match request.get("qos").and_then(Value::as_u64) {
                    Some(0) => Qos::AtMostOnce,
                    Some(2) => Qos::ExactlyOnce,
                    _ => Qos::AtLeastOnce,
                };
                let retain = request
                    .get("retain")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                publish(
                    &text(&request, "topic"),
                    text(&request, "payload").as_bytes(),
                    qos,
                    retain,
                )
                .map_err(|e| format!("publish refused: {e:?}"))?;
                reply(json!("published"))
            }
            "log" => {
                for (level, name) in [
                    (log::Level::Debug, "debug"),
                    (log::Level::Info, "info"),
                    (log::Level::Warn, "warn"),
                    (log::Level::Error, "error"),
                ] {
                    log::log(
                        level,
                        &format!("probe {name} record"),
                        &[("level".into(), name.into())],
                    );
                }
                reply(json!("logged"))
            }
            "config" => {
                reply(json!({"entries": config::entries(), "factor": config::get("factor")}))
            }
            "env" => reply(json!(std::env::vars().collect::<Vec<_>>())),
            "fs" => reply(json!({
                "read": std::fs::read_to_string("/etc/hostname").map_err(|e| e.to_string()),
                "list": std::fs::read_dir("/").map(|_| "listed").map_err(|e| e.to_string()),
            })),
            "stdin" => {
                let mut line = String::new();
                let read = std::io::stdin()
                    .read_line(&mut line)
                    .map_err(|e| e.to_string())?;
                reply(json!({"bytes": read}))
            }
            "stdout" => {
                println!("probe says hello on stdout");
                eprintln!("probe says hello on stderr");
                reply(json!("printed"))
            }
            "busy" => {
                let ms = String::from_utf8_lossy(&event.payload)
                    .trim()
                    .parse()
                    .unwrap_or(10);
                busy_wait(Duration::from_millis(ms));
                reply(json!(ms))
            }
            "hold" => {
                // Marks itself running, then waits until the host side sets `release`.
                kv::set("held", b"1", None).map_err(|e| format!("{e:?}"))?;
                while kv::get("release").map_err(|e| format!("{e:?}"))?.is_none() {
                    std::hint::spin_loop();
                }
                reply(json!("released"))
            }
            "loop" => loop {
                std::hint::spin_loop();
            },
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1024 * 1024]);
                }
            }
            "grow-handled" => {
                // Asks for 64 MiB straight from `memory.grow` and carries on when refused.
                let pages = (64 * 1024 * 1024) / 65536;
                let grown = core::arch::wasm32::memory_grow(0, pages);
                reply(json!(if grown == usize::MAX {
                    "refused"
                } else {
                    "grown"
                }))
            }
            "big" => {
                let bytes = String::from_utf8_lossy(&event.payload)
                    .trim()
                    .parse()
                    .unwrap_or(0);
                Ok(Some(vec![b'x'; bytes]))
            }
            "flood" => flood(&json_payload(&event)?),
            // Adds 1 to the decimal counter under the payload's key with `kv_update`.
            "kv-update" => {
                let key = String::from_utf8_lossy(&event.payload).into_owned();
                let stored = fogd_sdk::kv_update(&key, |current| {
                    let count: u64 = current
                        .and_then(|bytes| std::str::from_utf8(bytes).ok()?.parse().ok())
                        .unwrap_or(0);
                    Some((count + 1).to_string().into_bytes())
                })
                .map_err(|e| format!("{e:?}"))?;
                Ok(stored)
            }
            "panic" => panic!("probe was asked to panic"),
            // A load far past the end of linear memory: a trap that is not a panic.
            "trap" => {
                let address = std::hint::black_box(usize::MAX - 16);
                // SAFETY: none; the point is the out-of-bounds trap the host must contain.
                let value = unsafe { std::ptr::read_volatile(address as *const u64) };
                reply(json!(value))
            }
            "fail" => Err("probe was asked to fail".into()),
            "kv-bench" => {
                let operations: u32 = String::from_utf8_lossy(&event.payload)
                    .trim()
                    .parse()
                    .unwrap_or(1000);
                let value = [7u8; 16];
                let mut latencies = Vec::with_capacity(operations as usize * 4);
                for index in 0..operations {
                    let key = format!("bench/{}", index % 1000);
                    let start = Instant::now();
                    let ok = if index % 2 == 0 {
                        kv::set(&key, &value, None).is_ok()
                    } else {
                        kv::get(&key).is_ok()
                    };
                    let elapsed = start.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                    if !ok {
                        return Err(format!("kv operation {index} failed"));
                    }
                    latencies.extend_from_slice(&elapsed.to_le_bytes());
                }
                Ok(Some(latencies))
            }
            "http" => reply(http(&json_payload(&event)?)),
            // Like kv-bench: {"url", "iterations"} GETs the URL that many times, or
            // {"target", "oid", "iterations"} SNMP-gets the OID; returns each request's latency
            // (ns, little-endian u32) measured in the guest.
            "http-bench" | "snmp-bench" => {
                let request = json_payload(&event)?;
                let iterations = request["iterations"].as_u64().unwrap_or(100);
                let mut latencies = Vec::with_capacity(iterations as usize * 4);
                for index in 0..iterations {
                    let start = Instant::now();
                    let answered = if event.subject == "http-bench" {
                        fogd_sdk::http::get(&text(&request, "url"))
                            .map(|response| response.status == 200)
                            .unwrap_or(false)
                    } else {
                        fogd_sdk::snmp_get(&text(&request, "target"), &text(&request, "oid"))
                            .is_ok()
                    };
                    let elapsed = start.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                    if !answered {
                        return Err(format!("request {index} failed"));
                    }
                    latencies.extend_from_slice(&elapsed.to_le_bytes());
                }
                Ok(Some(latencies))
            }
            "snmp" => reply(snmp_request(&json_payload(&event)?)),
            "snmp-many" => {
                let requests = json_payload(&event)?;
                let list = requests.as_array().cloned().unwrap_or_default();
                reply(json!(list.iter().map(snmp_request).collect::<Vec<_>>()))
            }
            "models" => Ok(Some(json!(inference::models()).to_string().into_bytes())),
            "signature" => {
                let model = String::from_utf8_lossy(&event.payload).into_owned();
                let signature = inference::signature(&model).map_err(|e| format!("{e:?}"))?;
                let describe = |infos: &[inference::TensorInfo]| {
                    infos
                        .iter()
                        .map(|i| {
                            json!({
                                "name": i.name,
                                "shape": i.shape,
                                "element": element_name(i.element_type),
                                "scale": i.quantization.map(|q| q.scale),
                                "zero_point": i.quantization.map(|q| q.zero_point),
                            })
                        })
                        .collect::<Vec<_>>()
                };
                let body = json!({
                    "model": signature.model,
                    "version": signature.version,
                    "inputs": describe(&signature.inputs),
                    "outputs": describe(&signature.outputs),
                });
                Ok(Some(body.to_string().into_bytes()))
            }
            // {"model": "...", "inputs": [[f32, ...]]}: the float convenience call.
            "infer" => {
                let request = json_payload(&event)?;
                let outputs =
                    inference::run_f32(&text(&request, "model"), &floats(&request["inputs"]))
                        .map_err(|e| format!("{e:?}"))?;
                Ok(Some(json!(outputs).to_string().into_bytes()))
            }
            "infer-raw" => Ok(Some(
                infer_raw(&json_payload(&event)?)?.to_string().into_bytes(),
            )),
            // Like kv-bench: {"model", "inputs", "iterations"} runs `run-f32` that many times
            // and returns each call's latency (ns, little-endian u32) measured in the guest.
            "infer-bench" => {
                let request = json_payload(&event)?;
                let model = text(&request, "model");
                let inputs = floats(&request["inputs"]);
                let iterations = request["iterations"].as_u64().unwrap_or(1000);
                let mut latencies = Vec::with_capacity(iterations as usize * 4);
                for index in 0..iterations {
                    let start = Instant::now();
                    inference::run_f32(&model, &inputs)
                        .map_err(|e| format!("inference call {index} failed: {e:?}"))?;
                    let elapsed = start.elapsed().as_nanos().min(u128::from(u32::MAX)) as u32;
                    latencies.extend_from_slice(&elapsed.to_le_bytes());
                }
                Ok(Some(latencies))
            }
            other => Err(format!("unknown probe subject {other:?}")),
        }
    }
}

export!(Probe);
