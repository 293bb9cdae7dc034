//! The browser widget, embedded in the binary: `voxbridge.js` (a dependency-free ES module: the
//! call, its UI and one-tag embedding), its two AudioWorklets (microphone capture, playback with
//! instant flush), the demo page served at `/` and the call inspector served at `/calls`
//! (`inspector.html` + `inspector.js`: plain SVG, no dependencies). Compiled in with `include_str!`, so a single
//! binary serves everything a page needs and the widget always matches the server's protocol.

pub mod demo;

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The widget module.
pub const VOXBRIDGE_JS: &str = include_str!("voxbridge.js");
/// The microphone AudioWorklet (float → PCM16 frames of 20 ms).
pub const CAPTURE_WORKLET_JS: &str = include_str!("capture-worklet.js");
/// The playback AudioWorklet (queue, flush, progress and loudness reports).
pub const PLAYBACK_WORKLET_JS: &str = include_str!("playback-worklet.js");
/// The demo page.
pub const DEMO_HTML: &str = include_str!("demo.html");
/// The call inspector's page (`/calls`) and its script.
pub const INSPECTOR_HTML: &str = include_str!("inspector.html");
pub const INSPECTOR_JS: &str = include_str!("inspector.js");

/// A served file's body and content type, by its name under `/widget/`.
pub fn asset(name: &str) -> Option<&'static str> {
    match name {
        "voxbridge.js" => Some(VOXBRIDGE_JS),
        "capture-worklet.js" => Some(CAPTURE_WORKLET_JS),
        "playback-worklet.js" => Some(PLAYBACK_WORKLET_JS),
        "inspector.js" => Some(INSPECTOR_JS),
        _ => None,
    }
}

/// `GET /widget/{file}`. Any origin may load the widget (that is what embedding means); the
/// short cache keeps a page on the version its server speaks after an upgrade.
pub async fn serve_asset(Path(name): Path<String>) -> Response {
    let Some(body) = asset(&name) else {
        return (StatusCode::NOT_FOUND, "no such widget file").into_response();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    response
}

/// `GET /favicon.ico`: nothing, said without a 404 in every browser console.
pub async fn no_favicon() -> StatusCode {
    StatusCode::NO_CONTENT
}

/// `GET /calls`: the call inspector. Like the demo page it holds no secret: the API key is
/// pasted into it and kept in the tab only.
pub async fn inspector_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        INSPECTOR_HTML,
    )
        .into_response()
}

/// `GET /`: the demo page.
pub async fn demo_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        DEMO_HTML,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_widget_file_is_embedded() {
        for name in [
            "voxbridge.js",
            "capture-worklet.js",
            "playback-worklet.js",
            "inspector.js",
        ] {
            assert!(asset(name).is_some_and(|body| !body.is_empty()), "{name}");
        }
        assert!(asset("../Cargo.toml").is_none());
        assert!(VOXBRIDGE_JS.contains("export class VoxbridgeCall"));
        assert!(CAPTURE_WORKLET_JS.contains("registerProcessor('voxbridge-capture'"));
        assert!(PLAYBACK_WORKLET_JS.contains("registerProcessor('voxbridge-playback'"));
        assert!(DEMO_HTML.contains("/web-call/create"));
        assert!(INSPECTOR_HTML.contains("/widget/inspector.js"));
    }
}
