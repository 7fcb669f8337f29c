//! The session protocol against its contract, `docs/asyncapi.yaml`: the
//! document describes every message the code can send and nothing else, its
//! own examples are valid, and a live server answers exactly the client
//! messages the document calls invalid with an error. (Every message the other
//! session tests receive is checked too, by `support::contract`.)

use futures_util::StreamExt;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use resume_server::metrics::RejectReason;
use resume_server::session::protocol::{ServerMessage, SupersededBy, error_code};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::contract::contract;
use crate::support::{DEADLINE, Session, TestServer};

/// One message of each kind and variant the server can send, built by the
/// server's own code.
fn every_server_message() -> Vec<String> {
    let mut messages = [
        ServerMessage::Hello {
            session_id: 1,
            movie_id: "clock",
            resume_position_seconds: 42.5,
            flush_interval_ms: 4000,
        },
        ServerMessage::Saved {
            position_seconds: 0.0,
        },
        ServerMessage::Superseded {
            position_seconds: 10.0,
            by: SupersededBy::NewerPosition {
                current_position_seconds: 3600.0,
            },
        },
        ServerMessage::Superseded {
            position_seconds: 20.0,
            by: SupersededBy::Delete,
        },
    ]
    .iter()
    .map(ServerMessage::to_json)
    .collect::<Vec<_>>();
    // Every refusal a session answers (over-rate messages are not answered).
    for reason in [
        RejectReason::InvalidJson,
        RejectReason::UnknownType,
        RejectReason::InvalidPosition,
        RejectReason::InvalidState,
        RejectReason::Binary,
    ] {
        messages.push(
            ServerMessage::Error {
                code: error_code(reason),
                message: "detail".into(),
            }
            .to_json(),
        );
    }
    messages
}

#[test]
fn the_document_describes_every_message_the_server_can_send_and_no_other() {
    let sent: Vec<String> = every_server_message();
    for text in &sent {
        contract().check_server_message(text);
    }
    let mut kinds: Vec<String> = sent
        .iter()
        .map(|text| {
            serde_json::from_str::<Value>(text).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(contract().server_message_types(), kinds);
}

#[test]
fn the_documents_examples_follow_its_schemas() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml"))
        .unwrap();
    let document: Value = yaml_serde::from_str(&text).unwrap();
    let messages = document["components"]["messages"].as_object().unwrap();
    let mut checked = 0;
    for (name, message) in messages {
        for example in message["examples"].as_array().into_iter().flatten() {
            let payload = &example["payload"];
            if name == "tick" {
                assert!(
                    contract().is_valid_tick(payload),
                    "{name} example {payload}"
                );
            } else {
                contract().check_server_message(&payload.to_string());
            }
            checked += 1;
        }
    }
    assert!(checked >= messages.len(), "every message has an example");
}

/// A client message as a strategy generates it: a JSON value, or raw text
/// that is not JSON at all.
#[derive(Debug, Clone)]
enum Candidate {
    Json(Value),
    Text(String),
}

fn position() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => (0.0..100_000.0f64).prop_map(Value::from),
        3 => (0u64..100_000).prop_map(Value::from),
        1 => (-100_000.0..-0.001f64).prop_map(Value::from),
        1 => "[a-z0-9]{0,5}".prop_map(Value::from),
        1 => Just(Value::Null),
        1 => Just(json!([1])),
    ]
}

fn state() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(None),
        4 => prop::sample::select(vec!["playing", "paused", "ended"]).prop_map(|s| Some(json!(s))),
        1 => "[a-z]{1,8}".prop_map(|s| Some(json!(s))),
        1 => Just(Some(Value::Null)),
        1 => Just(Some(json!(1))),
    ]
}

fn kind() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        8 => Just(Some(json!("tick"))),
        1 => Just(None),
        1 => "[a-z]{1,8}".prop_map(|s| Some(json!(s))),
        1 => Just(Some(json!(7))),
    ]
}

fn candidate() -> impl Strategy<Value = Candidate> {
    let object = (
        kind(),
        prop::option::weighted(0.9, position()),
        state(),
        prop::option::of("[a-z]{1,6}"),
    )
        .prop_map(|(kind, position, state, extra)| {
            let mut object = serde_json::Map::new();
            if let Some(kind) = kind {
                object.insert("type".into(), kind);
            }
            if let Some(position) = position {
                object.insert("position_seconds".into(), position);
            }
            if let Some(state) = state {
                object.insert("state".into(), state);
            }
            if let Some(extra) = extra {
                object.insert(extra, json!(true));
            }
            Candidate::Json(Value::Object(object))
        });
    prop_oneof![
        8 => object,
        1 => prop_oneof![Just(json!([1, 2])), Just(json!(3)), Just(json!("tick"))].prop_map(Candidate::Json),
        1 => "[^{}]{0,12}".prop_map(Candidate::Text),
    ]
}

/// The next `error` message; `saved` and `superseded` in between are skipped
/// (they are checked against the contract on the way).
async fn next_error(session: &mut Session) -> Value {
    loop {
        let message = tokio::time::timeout(DEADLINE, session.ws.next())
            .await
            .expect("an answer in time")
            .expect("the session is open")
            .expect("a frame");
        if let Message::Text(text) = message {
            crate::support::contract::check_server_message(&text);
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["type"] == "error" {
                return value;
            }
        }
    }
}

/// Schema-valid and schema-invalid client messages against a live session: a
/// valid tick is taken without a word, anything else gets an error, and the
/// session goes on. Each candidate is followed by a sentinel with an error of
/// its own, so "no answer" is observed, not waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_answers_exactly_the_messages_the_contract_refuses() {
    let server = TestServer::start(&["--tick-rate", "10000"]).await;
    let (mut session, _hello) = server.session("alice", "clock").await;
    let mut runner = TestRunner::new(ProptestConfig::with_cases(300));
    let strategy = candidate();
    let (mut valid, mut invalid) = (0, 0);
    for _ in 0..300 {
        let case = strategy.new_tree(&mut runner).unwrap().current();
        let (text, schema_valid) = match &case {
            Candidate::Json(value) => (value.to_string(), contract().is_valid_tick(value)),
            // Not JSON: no schema accepts it.
            Candidate::Text(text) => (
                text.clone(),
                serde_json::from_str::<Value>(text).is_ok_and(|v| contract().is_valid_tick(&v)),
            ),
        };
        session.send_text(&text).await;
        session.send_text(r#"{"type":"sentinel"}"#).await;
        let first = next_error(&mut session).await;
        let sentinel = |error: &Value| {
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("sentinel"))
        };
        if schema_valid {
            valid += 1;
            assert!(sentinel(&first), "the valid {text} was refused: {first}");
        } else {
            invalid += 1;
            assert!(
                !sentinel(&first),
                "the invalid {text} was taken without an error"
            );
            assert!(sentinel(&next_error(&mut session).await));
        }
    }
    assert!(
        valid > 50 && invalid > 50,
        "both kinds generated: {valid} valid, {invalid} invalid"
    );
    session.close().await;
}
