//! The session wire protocol: what clients send and what the server answers.
//!
//! Parsing is a pure function from a text frame to a [`ClientMessage`] or a
//! [`ProtocolError`] that names the problem; the actor decides what to do with
//! it. See `docs/protocol.md` for the protocol as clients see it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metrics::RejectReason;
use crate::resume::position_ms_from_seconds;

/// What the player says it is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackState {
    /// Playing; ticks arrive about once a second.
    Playing,
    /// Paused; the position will not move.
    Paused,
    /// Reached the end; save now.
    Ended,
}

/// A valid message from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage {
    /// The player's position, validated and clamped to the title's duration.
    Tick {
        /// Position in milliseconds.
        position_ms: u64,
        /// The player's state, when sent.
        state: Option<PlaybackState>,
    },
}

/// Why a frame was refused; the session goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// Not a JSON object.
    #[error("message is not a JSON object: {0}")]
    InvalidJson(String),
    /// `type` missing or unknown.
    #[error("unknown message type {0:?}; expected \"tick\"")]
    UnknownType(String),
    /// Position missing, not a number, negative, or not finite.
    #[error("{0}")]
    InvalidPosition(String),
    /// `state` not one of playing, paused, ended.
    #[error("state must be \"playing\", \"paused\" or \"ended\"")]
    InvalidState,
}

impl ProtocolError {
    /// The metric label and the `code` of the error message sent back.
    pub fn reason(&self) -> RejectReason {
        match self {
            Self::InvalidJson(_) => RejectReason::InvalidJson,
            Self::UnknownType(_) => RejectReason::UnknownType,
            Self::InvalidPosition(_) => RejectReason::InvalidPosition,
            Self::InvalidState => RejectReason::InvalidState,
        }
    }
}

/// The frame as received; fields are checked one by one so the error can say which is wrong.
#[derive(Deserialize)]
struct RawMessage {
    #[serde(rename = "type")]
    kind: Option<Value>,
    position_seconds: Option<Value>,
    state: Option<Value>,
}

/// A well-formed tick, borrowed from the frame: the common case, parsed without
/// building a JSON tree.
#[derive(Deserialize)]
struct TickFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    position_seconds: f64,
    state: Option<&'a str>,
}

/// Parses one text frame for a title of `duration_ms`.
pub fn parse_client_message(text: &str, duration_ms: u64) -> Result<ClientMessage, ProtocolError> {
    if let Ok(tick) = serde_json::from_str::<TickFrame<'_>>(text)
        && tick.kind == "tick"
    {
        let state = match tick.state {
            None => None,
            Some("playing") => Some(PlaybackState::Playing),
            Some("paused") => Some(PlaybackState::Paused),
            Some("ended") => Some(PlaybackState::Ended),
            Some(_) => return Err(ProtocolError::InvalidState),
        };
        let position_ms = position_ms_from_seconds(tick.position_seconds, duration_ms)
            .map_err(|e| ProtocolError::InvalidPosition(e.to_string()))?;
        return Ok(ClientMessage::Tick { position_ms, state });
    }
    // Anything else takes the slow path, which says precisely what is wrong.
    let raw: RawMessage =
        serde_json::from_str(text).map_err(|e| ProtocolError::InvalidJson(e.to_string()))?;
    match raw.kind {
        Some(Value::String(kind)) if kind == "tick" => {}
        Some(Value::String(kind)) => return Err(ProtocolError::UnknownType(kind)),
        Some(other) => return Err(ProtocolError::UnknownType(other.to_string())),
        None => return Err(ProtocolError::UnknownType(String::new())),
    }
    let seconds = match raw.position_seconds {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(_) => {
            return Err(ProtocolError::InvalidPosition(
                "position_seconds must be a number".into(),
            ));
        }
        None => {
            return Err(ProtocolError::InvalidPosition(
                "position_seconds is missing".into(),
            ));
        }
    };
    let position_ms = position_ms_from_seconds(seconds, duration_ms)
        .map_err(|e| ProtocolError::InvalidPosition(e.to_string()))?;
    let state = match raw.state {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(match s.as_str() {
            "playing" => PlaybackState::Playing,
            "paused" => PlaybackState::Paused,
            "ended" => PlaybackState::Ended,
            _ => return Err(ProtocolError::InvalidState),
        }),
        Some(_) => return Err(ProtocolError::InvalidState),
    };
    Ok(ClientMessage::Tick { position_ms, state })
}

/// Messages from the server.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    /// First message of every session.
    Hello {
        /// Identifies the session in logs.
        session_id: u64,
        /// The title of the session.
        movie_id: &'a str,
        /// Where to start, after the completion threshold.
        resume_position_seconds: f64,
        /// How often the server writes the position.
        flush_interval_ms: u64,
    },
    /// A position of this session is durable and is the viewer's stored position.
    Saved {
        /// The position written.
        position_seconds: f64,
    },
    /// A position of this session was written but lost to a newer write from
    /// elsewhere (another device, a delete): it is not the stored position.
    Superseded {
        /// The position that lost.
        position_seconds: f64,
        /// What holds the title instead.
        #[serde(flatten)]
        by: SupersededBy,
    },
    /// A message was refused; the session goes on.
    Error {
        /// Stable code (see docs/protocol.md).
        code: &'a str,
        /// Human-readable detail.
        message: String,
    },
}

/// What a superseded position lost to.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum SupersededBy {
    /// A position received later, from another session or device.
    NewerPosition {
        /// The stored position now.
        current_position_seconds: f64,
    },
    /// The viewer removed the title after this position was received.
    Delete,
}

impl ServerMessage<'_> {
    /// The JSON text of the message.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The `code` field for a refusal reason.
pub fn error_code(reason: RejectReason) -> &'static str {
    match reason {
        RejectReason::InvalidJson => "invalid_json",
        RejectReason::UnknownType => "unknown_type",
        RejectReason::InvalidPosition => "invalid_position",
        RejectReason::InvalidState => "invalid_state",
        RejectReason::Binary => "binary_not_supported",
        RejectReason::RateLimited => "rate_limited",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DURATION: u64 = 60_000;

    #[test]
    fn parses_ticks_with_and_without_state() {
        assert_eq!(
            parse_client_message(r#"{"type":"tick","position_seconds":12.5}"#, DURATION),
            Ok(ClientMessage::Tick {
                position_ms: 12_500,
                state: None
            })
        );
        assert_eq!(
            parse_client_message(
                r#"{"type":"tick","position_seconds":3,"state":"ended","extra":1}"#,
                DURATION
            ),
            Ok(ClientMessage::Tick {
                position_ms: 3_000,
                state: Some(PlaybackState::Ended)
            })
        );
    }

    #[test]
    fn clamps_beyond_the_duration() {
        assert_eq!(
            parse_client_message(r#"{"type":"tick","position_seconds":1e9}"#, DURATION),
            Ok(ClientMessage::Tick {
                position_ms: DURATION,
                state: None
            })
        );
    }

    #[test]
    fn names_what_is_wrong() {
        let reason = |text: &str| parse_client_message(text, DURATION).unwrap_err().reason();
        assert_eq!(reason("not json"), RejectReason::InvalidJson);
        assert_eq!(reason("[1,2]"), RejectReason::InvalidJson);
        assert_eq!(
            reason(r#"{"type":"seek","position_seconds":1}"#),
            RejectReason::UnknownType
        );
        assert_eq!(
            reason(r#"{"position_seconds":1}"#),
            RejectReason::UnknownType
        );
        assert_eq!(reason(r#"{"type":"tick"}"#), RejectReason::InvalidPosition);
        assert_eq!(
            reason(r#"{"type":"tick","position_seconds":"5"}"#),
            RejectReason::InvalidPosition
        );
        assert_eq!(
            reason(r#"{"type":"tick","position_seconds":-1}"#),
            RejectReason::InvalidPosition
        );
        assert_eq!(
            reason(r#"{"type":"tick","position_seconds":NaN}"#),
            RejectReason::InvalidJson
        );
        assert_eq!(
            reason(r#"{"type":"tick","position_seconds":1,"state":"rewinding"}"#),
            RejectReason::InvalidState
        );
    }

    #[test]
    fn server_messages_have_the_documented_shape() {
        let hello = ServerMessage::Hello {
            session_id: 7,
            movie_id: "clock",
            resume_position_seconds: 1.5,
            flush_interval_ms: 4000,
        };
        let json: Value = serde_json::from_str(&hello.to_json()).unwrap();
        assert_eq!(json["type"], "hello");
        assert_eq!(json["resume_position_seconds"], 1.5);
        let saved: Value = serde_json::from_str(
            &ServerMessage::Saved {
                position_seconds: 2.0,
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            saved,
            serde_json::json!({"type":"saved","position_seconds":2.0})
        );
        let lost = |by| {
            serde_json::from_str::<Value>(
                &ServerMessage::Superseded {
                    position_seconds: 10.0,
                    by,
                }
                .to_json(),
            )
            .unwrap()
        };
        assert_eq!(
            lost(SupersededBy::NewerPosition {
                current_position_seconds: 3600.0
            }),
            serde_json::json!({"type":"superseded","position_seconds":10.0,
                "by":"newer_position","current_position_seconds":3600.0})
        );
        assert_eq!(
            lost(SupersededBy::Delete),
            serde_json::json!({"type":"superseded","position_seconds":10.0,"by":"delete"})
        );
    }

    proptest! {
        #[test]
        fn never_panics_on_any_text(text in ".{0,512}") {
            let _ = parse_client_message(&text, DURATION);
        }

        #[test]
        fn accepted_positions_are_within_the_title(seconds in proptest::num::f64::ANY) {
            let text = format!(r#"{{"type":"tick","position_seconds":{seconds}}}"#);
            if let Ok(ClientMessage::Tick { position_ms, .. }) = parse_client_message(&text, DURATION) {
                prop_assert!(position_ms <= DURATION);
                prop_assert!(seconds >= 0.0);
            }
        }
    }
}
