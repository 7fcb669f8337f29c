//! WebSocket playback sessions: the protocol, the per-session actor, the
//! position rules it follows (`book`), flood control, and the registry of live
//! sessions.
//!
//! The HTTP upgrade itself lives in `crate::http::session`; this module never
//! sees a request, only an upgraded socket and a verified user.

pub mod actor;
pub mod book;
pub mod flood;
pub mod protocol;
pub mod registry;

pub use actor::{SessionContext, SessionSettings, SessionShared, run_session};
pub use registry::{AdmissionError, LivePosition, SessionRegistry, SessionTicket};
