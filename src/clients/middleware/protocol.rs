//! The middleware's two websocket protocols as text in and text out, with no
//! I/O: JSON-RPC 2.0 (`/api/current`, 25.04 and later) and the legacy
//! protocol (`/websocket`, 24.10's only one). Parsing never fails: a frame of
//! any other shape is [`Incoming::Other`].

use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    JsonRpc,
    Legacy,
}

impl Protocol {
    /// The request path of its websocket.
    pub fn path(self) -> &'static str {
        match self {
            Protocol::JsonRpc => "/api/current",
            Protocol::Legacy => "/websocket",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Protocol::JsonRpc => "JSON-RPC",
            Protocol::Legacy => "legacy",
        }
    }
}

/// The legacy protocol's opening message; JSON-RPC has none.
pub const LEGACY_CONNECT: &str = r#"{"msg":"connect","version":"1","support":["1"],"features":[]}"#;

/// A method call with no parameters.
pub fn call(protocol: Protocol, id: u64, method: &str) -> String {
    match protocol {
        Protocol::JsonRpc => {
            json!({"jsonrpc": "2.0", "id": id, "method": method, "params": []}).to_string()
        }
        Protocol::Legacy => {
            json!({"msg": "method", "id": id.to_string(), "method": method, "params": []})
                .to_string()
        }
    }
}

/// A subscription to `collection`'s events.
pub fn subscribe(protocol: Protocol, id: u64, collection: &str) -> String {
    match protocol {
        Protocol::JsonRpc => json!({
            "jsonrpc": "2.0", "id": id, "method": "core.subscribe", "params": [collection]
        })
        .to_string(),
        Protocol::Legacy => {
            json!({"msg": "sub", "id": format!("sub{id}"), "name": collection}).to_string()
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The result, as JSON text.
    Answer(String),
    /// This release has no such method.
    NoMethod,
    /// Any other error, as the middleware words it.
    Failed(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Added,
    Changed,
    Removed,
}

/// A change to one row of a collection (`vm.query`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub collection: String,
    pub change: Change,
    /// `fields.status.pid`: the VM's QEMU or the container's init, where the
    /// row has one and it is running.
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// The legacy handshake went through.
    Connected,
    /// The legacy handshake was refused.
    Refused,
    Result {
        id: u64,
        outcome: Outcome,
    },
    Event(Event),
    /// The middleware ended the events of a collection.
    Unsubscribed {
        collection: String,
    },
    Other,
}

/// What one text frame says.
pub fn parse(protocol: Protocol, text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Other;
    };
    match protocol {
        Protocol::JsonRpc => parse_jsonrpc(&v),
        Protocol::Legacy => parse_legacy(&v),
    }
}

fn parse_jsonrpc(v: &Value) -> Incoming {
    match v["method"].as_str() {
        Some("collection_update") => {
            return event(&v["params"], v["params"]["msg"].as_str()).unwrap_or(Incoming::Other);
        }
        Some("notify_unsubscribed") => {
            return unsubscribed(&v["params"]["collection"]);
        }
        Some(_) => return Incoming::Other,
        None => {}
    }
    let Some(id) = v["id"].as_u64() else {
        return Incoming::Other;
    };
    let outcome = match (v.get("result"), v.get("error")) {
        (Some(result), None) => Outcome::Answer(result.to_string()),
        (_, Some(error)) if error["code"].as_i64() == Some(-32601) => Outcome::NoMethod,
        (_, Some(error)) => Outcome::Failed(error_text(error)),
        (None, None) => return Incoming::Other,
    };
    Incoming::Result { id, outcome }
}

fn parse_legacy(v: &Value) -> Incoming {
    match v["msg"].as_str() {
        Some("connected") => Incoming::Connected,
        Some("failed") => Incoming::Refused,
        Some("result") => {
            let Some(id) = v["id"].as_str().and_then(|id| id.parse().ok()) else {
                return Incoming::Other;
            };
            let outcome = match (v.get("result"), v.get("error")) {
                (_, Some(error)) if !error.is_null() => {
                    if error["errname"] == "ENOMETHOD" {
                        Outcome::NoMethod
                    } else {
                        Outcome::Failed(error_text(error))
                    }
                }
                (Some(result), _) => Outcome::Answer(result.to_string()),
                (None, _) => return Incoming::Other,
            };
            Incoming::Result { id, outcome }
        }
        Some("nosub") => unsubscribed(&v["collection"]),
        msg @ Some("added" | "changed" | "removed") => event(v, msg).unwrap_or(Incoming::Other),
        _ => Incoming::Other,
    }
}

/// An event from the object holding `collection`, `id` and `fields`.
fn event(v: &Value, msg: Option<&str>) -> Option<Incoming> {
    let change = match msg? {
        "added" => Change::Added,
        "changed" => Change::Changed,
        "removed" => Change::Removed,
        _ => return None,
    };
    let pid = v["fields"]["status"]["pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok())
        .filter(|&p| p > 0);
    Some(Incoming::Event(Event {
        collection: v["collection"].as_str()?.to_owned(),
        change,
        pid,
    }))
}

fn unsubscribed(collection: &Value) -> Incoming {
    match collection.as_str() {
        Some(c) => Incoming::Unsubscribed {
            collection: c.to_owned(),
        },
        None => Incoming::Other,
    }
}

/// The most specific words an error object has.
fn error_text(error: &Value) -> String {
    let text = error["data"]["reason"]
        .as_str()
        .or_else(|| error["reason"].as_str())
        .or_else(|| error["message"].as_str())
        .unwrap_or("an error without a message");
    // Bounded: it goes into logs and metrics' error text.
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_the_shapes_each_protocol_takes() {
        let v: Value = serde_json::from_str(&call(Protocol::JsonRpc, 7, "vm.query")).unwrap();
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":7,"method":"vm.query","params":[]})
        );
        let v: Value = serde_json::from_str(&call(Protocol::Legacy, 7, "vm.query")).unwrap();
        assert_eq!(
            v,
            json!({"msg":"method","id":"7","method":"vm.query","params":[]})
        );
        let v: Value = serde_json::from_str(&subscribe(Protocol::JsonRpc, 8, "vm.query")).unwrap();
        assert_eq!(v["method"], "core.subscribe");
        assert_eq!(v["params"], json!(["vm.query"]));
        let v: Value = serde_json::from_str(&subscribe(Protocol::Legacy, 8, "vm.query")).unwrap();
        assert_eq!(v, json!({"msg":"sub","id":"sub8","name":"vm.query"}));
    }

    #[test]
    fn jsonrpc_answers_errors_and_events() {
        let p = Protocol::JsonRpc;
        assert_eq!(
            parse(p, r#"{"jsonrpc":"2.0","result":[{"id":1}],"id":1}"#),
            Incoming::Result {
                id: 1,
                outcome: Outcome::Answer(r#"[{"id":1}]"#.into())
            }
        );
        assert_eq!(
            parse(
                p,
                r#"{"jsonrpc":"2.0","error":{"code":-32601,"message":"Method does not exist"},"id":2}"#
            ),
            Incoming::Result {
                id: 2,
                outcome: Outcome::NoMethod
            }
        );
        let failed = parse(
            p,
            r#"{"jsonrpc":"2.0","error":{"code":-32001,"message":"Method call error","data":{"error":207,"errname":"ENOTAUTHENTICATED","reason":"[ENOTAUTHENTICATED] Not authenticated"}},"id":3}"#,
        );
        assert_eq!(
            failed,
            Incoming::Result {
                id: 3,
                outcome: Outcome::Failed("[ENOTAUTHENTICATED] Not authenticated".into())
            }
        );
        assert_eq!(
            parse(
                p,
                r#"{"jsonrpc":"2.0","method":"collection_update","params":{"msg":"changed","collection":"vm.query","id":3,"fields":{"status":{"state":"RUNNING","pid":4242}}}}"#
            ),
            Incoming::Event(Event {
                collection: "vm.query".into(),
                change: Change::Changed,
                pid: Some(4242)
            })
        );
        assert_eq!(
            parse(
                p,
                r#"{"jsonrpc":"2.0","method":"collection_update","params":{"msg":"removed","collection":"vm.query","id":3}}"#
            ),
            Incoming::Event(Event {
                collection: "vm.query".into(),
                change: Change::Removed,
                pid: None
            })
        );
        assert_eq!(
            parse(
                p,
                r#"{"jsonrpc":"2.0","method":"notify_unsubscribed","params":{"collection":"vm.query","error":null}}"#
            ),
            Incoming::Unsubscribed {
                collection: "vm.query".into()
            }
        );
    }

    #[test]
    fn legacy_answers_errors_and_events() {
        let p = Protocol::Legacy;
        assert_eq!(
            parse(p, r#"{"msg":"connected","session":"x"}"#),
            Incoming::Connected
        );
        assert_eq!(
            parse(p, r#"{"msg":"failed","version":"1"}"#),
            Incoming::Refused
        );
        assert_eq!(
            parse(p, r#"{"msg":"result","id":"4","result":[]}"#),
            Incoming::Result {
                id: 4,
                outcome: Outcome::Answer("[]".into())
            }
        );
        assert_eq!(
            parse(
                p,
                r#"{"msg":"result","id":"5","error":{"error":201,"errname":"ENOMETHOD","type":null,"reason":"[ENOMETHOD] Method 'foo' not found in 'vm'"}}"#
            ),
            Incoming::Result {
                id: 5,
                outcome: Outcome::NoMethod
            }
        );
        assert_eq!(
            parse(
                p,
                r#"{"msg":"added","collection":"container.query","id":9,"fields":{"status":{"pid":77}}}"#
            ),
            Incoming::Event(Event {
                collection: "container.query".into(),
                change: Change::Added,
                pid: Some(77)
            })
        );
        assert_eq!(
            parse(p, r#"{"msg":"nosub","collection":"vm.query"}"#),
            Incoming::Unsubscribed {
                collection: "vm.query".into()
            }
        );
    }

    #[test]
    fn anything_else_is_other() {
        for p in [Protocol::JsonRpc, Protocol::Legacy] {
            for text in [
                "",
                "not json",
                "[1,2]",
                r#"{"id":"x"}"#,
                r#"{"msg":"ready","subs":["s1"]}"#,
                r#"{"jsonrpc":"2.0","method":"collection_update","params":{"msg":"odd"}}"#,
                r#"{"msg":"changed"}"#,
            ] {
                assert_eq!(parse(p, text), Incoming::Other, "{p:?}: {text}");
            }
        }
    }
}
