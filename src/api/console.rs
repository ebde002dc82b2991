//! The web console for privacy officers and administrators: static pages
//! embedded in the binary and served at `/console/`, which call the same
//! `/v1` API with the token the person signs in with. No CDN, no external
//! fonts, nothing inline: a strict Content-Security-Policy allows only the
//! console's own script and style, and requests to this origin.

use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");
const ME: &str = include_str!("../../console/me.html");
const ME_SCRIPT: &str = include_str!("../../console/me.js");
const ME_STYLE: &str = include_str!("../../console/me.css");

/// The policy every console answer carries.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_TYPE, content_type),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        // Revalidated on every load, so an upgraded gateway serves its own console.
        (header::CACHE_CONTROL, "no-cache"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `/console`, `/console/` and its two assets. Not audited: they hold no
/// data; every call the pages make is.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route(
            "/console/",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/console/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/console/app.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
        // A resident's own record, phone first.
        .route(
            "/console/me",
            get(|| async { asset("text/html; charset=utf-8", ME) }),
        )
        .route(
            "/console/me.js",
            get(|| async { asset("text/javascript; charset=utf-8", ME_SCRIPT) }),
        )
        .route(
            "/console/me.css",
            get(|| async { asset("text/css; charset=utf-8", ME_STYLE) }),
        )
}
