//! The HTTP API as an OpenAPI 3.1 document, generated from the handlers' own
//! annotations (`utoipa::path` next to each handler, `ToSchema` on each body),
//! so that what the document says and what the code does are written side by
//! side. Served at `GET /api/v1/openapi.json`; `docs/openapi.json` is a copy
//! that a test keeps equal to it (`resume-server openapi` prints it).
//!
//! The WebSocket session's messages are not HTTP: they are in
//! `docs/asyncapi.yaml`. Here the session appears as its upgrade request and
//! the HTTP errors that refuse it.

use axum::Router;
use axum::http::header::CONTENT_TYPE;
use axum::routing::get;
use utoipa::openapi::OpenApi as Document;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{catalog, ops, progress, session, session_ticket, stream};
use crate::state::AppState;

/// Where the document is served.
pub const PATH: &str = "/api/v1/openapi.json";

/// The path that exists only with the demo login.
const DEMO_LOGIN_PATH: &str = "/api/v1/demo/token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "resume-server",
        description = "Remembers where every viewer stopped watching and puts them back there \
                       when they press Play. Errors are JSON `{\"error\", \"message\"}`; 429 and \
                       503 answers carry `Retry-After`. The guide is docs/protocol.md; the \
                       session's messages are in docs/asyncapi.yaml."
    ),
    paths(
        stream::stream,
        stream::progress,
        session_ticket::issue_ticket,
        session::open_session,
        progress::continue_watching,
        progress::get_progress,
        progress::delete_progress,
        progress::mark_watched,
        progress::mark_unwatched,
        catalog::catalog,
        catalog::demo_token,
        openapi_json,
        ops::healthz,
        ops::readyz,
        ops::metrics,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "playback", description = "Where to start, and saving where the viewer is"),
        (name = "progress", description = "The viewer's titles"),
        (name = "catalog", description = "Titles, and the demo login"),
        (name = "operations", description = "Probes, metrics and this document"),
    )
)]
struct ApiDoc;

/// The two ways a request authenticates (and the document's license, which
/// utoipa fills from the package).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut Document) {
        // The package names no license; an empty one would be invalid.
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("A JWT whose `sub` is the viewer"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_ticket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A single-use session ticket (`POST /api/v1/stream/session-ticket`); only the \
                 session upgrade takes it",
            ))),
        );
    }
}

/// The document of a server with the demo login or without it.
pub fn document(demo_login: bool) -> Document {
    let mut document = ApiDoc::openapi();
    if !demo_login {
        document.paths.paths.shift_remove(DEMO_LOGIN_PATH);
    }
    document
}

/// The document as the server serves it and `docs/openapi.json` holds it.
pub fn document_json(demo_login: bool) -> String {
    let mut json = document(demo_login)
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}

/// Route of the document.
pub fn router(demo_login: bool) -> Router<AppState> {
    let body = document_json(demo_login);
    Router::new().route(
        PATH,
        get(move || {
            let body = body.clone();
            async move { ([(CONTENT_TYPE, "application/json")], body) }
        }),
    )
}

/// This document (public).
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this server", content_type = "application/json")),
    security(())
)]
#[allow(dead_code)]
fn openapi_json() {}
