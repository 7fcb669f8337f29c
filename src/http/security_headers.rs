//! The headers that lock a browser down on every response: a strict Content
//! Security Policy, no MIME sniffing, no `Referer`.
//!
//! The demo page is the reason, but every response carries them: an API answer
//! opened in a tab is a page too, and one policy for all is one to review.
//! The policy allows only this server's own scripts, styles, images and media,
//! and connections (`fetch`, WebSocket) only back to it — CSP3's `'self'`
//! covers `ws:`/`wss:` to the page's own host and port. No inline script or
//! style, no `eval`, no plugins, no `<base>`, no framing. So a script injected
//! into the page, or a page that frames it, gets nothing to work with, and the
//! page cannot send a viewer's token anywhere else. The page must keep to it:
//! no inline `<script>`, `style=` or `on…=` handlers (the browser test fails on
//! any violation it reports).
//!
//! `Referrer-Policy: no-referrer` keeps URLs of this origin out of requests to
//! other origins; `X-Content-Type-Options: nosniff` makes the browser trust the
//! served `Content-Type`, so a JSON answer is never run as a script.

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use tower_http::set_header::SetResponseHeaderLayer;

/// The Content Security Policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; media-src 'self'; connect-src 'self'; \
     manifest-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// The browser security headers, each with its one value.
pub const SECURITY_HEADERS: [(HeaderName, &str); 3] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// `router` with the security headers set on every response (replacing any a
/// handler set, so no route can weaken them by accident).
pub fn with_security_headers(router: Router) -> Router {
    SECURITY_HEADERS
        .into_iter()
        .fold(router, |router, (name, value)| {
            router.layer(SetResponseHeaderLayer::overriding(
                name,
                HeaderValue::from_static(value),
            ))
        })
}
