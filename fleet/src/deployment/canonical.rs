//! The canonical encoding that deployment signatures cover: JSON with object keys in
//! byte order, no whitespace, strings escaped as serde_json writes them and numbers in
//! serde_json's shortest round-trip form. Signer and verifier both re-encode the parsed
//! document, so formatting, key order and whitespace of the file on the wire never matter.

use serde_json::Value;

/// The canonical bytes of `value`.
pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(value, &mut out);
    out
}

fn write(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {
            out.extend_from_slice(value.to_string().as_bytes());
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|(a, _), (b, _)| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(key.clone()).to_string().as_bytes());
                out.push(b':');
                write(item, out);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_encoding() {
        let a: Value =
            serde_json::from_str(r#"{ "b": [1, 2.5, {"y": null, "x": true}], "a": "é\n" }"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a":"é\n","b":[1,2.5,{"x":true,"y":null}]}"#).unwrap();
        assert_eq!(encode(&a), encode(&b));
        assert_eq!(
            String::from_utf8(encode(&a)).unwrap(),
            r#"{"a":"é\n","b":[1,2.5,{"x":true,"y":null}]}"#
        );
    }

    #[test]
    fn different_values_encode_differently() {
        assert_ne!(
            encode(&json!({"revision": 1})),
            encode(&json!({"revision": 2}))
        );
        assert_ne!(encode(&json!(["a", "b"])), encode(&json!(["b", "a"])));
    }
}
