//! The session protocol's contract, `docs/asyncapi.yaml`, as the tests check it.
//!
//! Every text message a test session receives goes through
//! [`check_server_message`], and every close code through
//! [`check_close_code`], so a message the server sends that the document does
//! not describe (a new field, a new error code, a wrong type) fails whichever
//! test saw it. The schemas are the document's own (`components/schemas`),
//! validated as JSON Schema draft 7, AsyncAPI's default schema format.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

/// The path of the AsyncAPI document, from the repository root.
const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/asyncapi.yaml");

/// The messages of the document, by the `type` they carry.
pub struct SessionContract {
    /// Server → client messages.
    server: HashMap<String, Validator>,
    /// Client → server: the tick.
    tick: Validator,
    /// Close codes the server may send (`x-close-codes`).
    close_codes: Vec<u16>,
}

/// The contract, read once per test binary.
pub fn contract() -> &'static SessionContract {
    static CONTRACT: OnceLock<SessionContract> = OnceLock::new();
    CONTRACT.get_or_init(SessionContract::load)
}

/// Panics unless `text` is a server message the document describes.
pub fn check_server_message(text: &str) {
    contract().check_server_message(text);
}

/// Panics unless `code` is a close code the document lists.
pub fn check_close_code(code: u16) {
    assert!(
        contract().close_codes.contains(&code),
        "close code {code} is not in docs/asyncapi.yaml's x-close-codes"
    );
}

impl SessionContract {
    fn load() -> Self {
        let text = std::fs::read_to_string(DOCUMENT).expect("read docs/asyncapi.yaml");
        let document: Value = yaml_serde::from_str(&text).expect("docs/asyncapi.yaml is YAML");
        let schema = |name: &str| -> Validator {
            // The whole document as the root, so that the schemas' own
            // `#/components/schemas/…` references resolve.
            let mut root = document.clone();
            root["$ref"] = Value::from(format!("#/components/schemas/{name}"));
            jsonschema::draft7::new(&root)
                .unwrap_or_else(|e| panic!("schema {name} of docs/asyncapi.yaml: {e}"))
        };
        let operations = document["operations"]
            .as_object()
            .expect("operations in docs/asyncapi.yaml");
        let mut server = HashMap::new();
        let mut tick = None;
        for operation in operations.values() {
            for message in operation["messages"].as_array().expect("messages") {
                let reference = message["$ref"].as_str().expect("a message reference");
                let name = reference.rsplit('/').next().expect("a message name");
                let payload = document["components"]["messages"][name]["payload"]["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("message {name} has a payload schema"));
                let validator = schema(payload.rsplit('/').next().expect("a schema name"));
                match operation["action"].as_str() {
                    Some("send") => {
                        server.insert(name.to_owned(), validator);
                    }
                    Some("receive") if name == "tick" => tick = Some(validator),
                    other => panic!("unexpected operation {other:?} on {name}"),
                }
            }
        }
        let close_codes = document["channels"]["session"]["x-close-codes"]
            .as_array()
            .expect("x-close-codes")
            .iter()
            .map(|entry| {
                entry["code"]
                    .as_u64()
                    .and_then(|code| u16::try_from(code).ok())
                    .expect("a close code")
            })
            .collect();
        Self {
            server,
            tick: tick.expect("a tick message the server receives"),
            close_codes,
        }
    }

    /// Panics unless `text` is a server message the document describes.
    pub fn check_server_message(&self, text: &str) {
        let message: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("the server sent a frame that is not JSON ({e}): {text}"));
        let kind = message["type"].as_str().unwrap_or_default();
        let validator = self.server.get(kind).unwrap_or_else(|| {
            panic!("the server sent a message of type {kind:?}, not in docs/asyncapi.yaml: {text}")
        });
        let errors: Vec<String> = validator
            .iter_errors(&message)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "the server sent a {kind} message that docs/asyncapi.yaml does not allow: {text}: {}",
            errors.join("; ")
        );
    }

    /// Whether `message` is a tick as the document describes it.
    pub fn is_valid_tick(&self, message: &Value) -> bool {
        self.tick.is_valid(message)
    }

    /// The server message types the document describes.
    pub fn server_message_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.server.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }
}
