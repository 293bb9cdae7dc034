//! TTS's side of the shared provider sockets ([`crate::provider_socket`]): its write limits and
//! the mapping of URL, handshake, send and status problems onto [`TtsError`].

use std::time::Duration;

use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderName;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use url::Url;

use super::TtsError;
use crate::provider_socket::{self as shared, OpenError, Refusal, SendError};

/// A provider socket.
pub(crate) type Ws = shared::WsStream;

/// Ceiling of unsent data: our messages are text pieces of a few KiB at most.
const MAX_WRITE_BUFFER: usize = 64 * 1024;

/// `base_url` + `path` with the scheme turned into its WebSocket twin (`https` → `wss`,
/// `http` → `ws`). A path prefix in the base URL is kept.
pub(crate) fn ws_url(base_url: &str, path: &str) -> Result<Url, TtsError> {
    shared::websocket_url(base_url, path).map_err(TtsError::Misconfigured)
}

/// `base_url` + `path` for an HTTP request.
pub(crate) fn http_url(base_url: &str, path: &str) -> Result<Url, TtsError> {
    shared::http_url(base_url, path).map_err(TtsError::Misconfigured)
}

/// Socket settings with messages up to `max_message` bytes (the provider's largest plausible
/// audio message).
pub(crate) fn socket_config(max_message: usize) -> WebSocketConfig {
    shared::socket_config(max_message, MAX_WRITE_BUFFER)
}

/// An upgrade request for `url` carrying `headers`.
pub(crate) fn request(url: &Url, headers: &[(&'static str, &str)]) -> Result<Request, TtsError> {
    let headers: Vec<(HeaderName, &str)> = headers
        .iter()
        .map(|(name, value)| (HeaderName::from_static(name), *value))
        .collect();
    shared::upgrade_request(url, &headers).map_err(TtsError::Misconfigured)
}

/// Opens a socket (the process's one TLS configuration), giving up after `timeout`.
pub(crate) async fn connect(
    request: Request,
    config: WebSocketConfig,
    timeout: Duration,
) -> Result<Ws, TtsError> {
    match shared::open(request, config, timeout).await {
        Ok(ws) => Ok(ws),
        Err(OpenError::Refused { status, body, .. }) => {
            let body = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            Err(status_error(status, body))
        }
        Err(OpenError::Failed(why)) => Err(TtsError::Unavailable(format!(
            "websocket connect failed: {why}"
        ))),
    }
}

/// Sends one message; a send that does not complete within `timeout` means the link is stuck.
pub(crate) async fn send(ws: &mut Ws, message: Message, timeout: Duration) -> Result<(), TtsError> {
    shared::send(ws, message, timeout)
        .await
        .map_err(|e| match e {
            SendError::Stalled(why) => TtsError::Stalled(why),
            SendError::Closed(why) => TtsError::Closed(why),
        })
}

/// The next frame of an optional socket; never resolves without one (for `select!`).
pub(crate) async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    shared::next_frame(ws).await
}

/// Closes a socket politely without waiting on a provider that may be gone.
pub(crate) async fn close(ws: Ws) {
    shared::close(ws).await;
}

/// A provider's HTTP status (on the upgrade, an HTTP request or in an error frame) as an error.
pub(crate) fn status_error(status: u16, message: String) -> TtsError {
    match shared::classify(status) {
        Refusal::Unauthorized => TtsError::Unauthorized { status, message },
        Refusal::RateLimited => TtsError::RateLimited {
            message: format!("{status}: {message}"),
        },
        Refusal::Rejected => TtsError::Rejected { status, message },
        Refusal::Unavailable => TtsError::Unavailable(format!("{status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_urls_follow_the_base_url() {
        let url = ws_url("https://api.cartesia.ai", "/tts/websocket").unwrap();
        assert_eq!(url.as_str(), "wss://api.cartesia.ai/tts/websocket");
        let url = ws_url("http://127.0.0.1:9000/", "/text-to-speech/ws").unwrap();
        assert_eq!(url.as_str(), "ws://127.0.0.1:9000/text-to-speech/ws");
        let url = ws_url("http://proxy/sarvam/", "/text-to-speech/ws").unwrap();
        assert_eq!(url.as_str(), "ws://proxy/sarvam/text-to-speech/ws");
        assert!(matches!(
            ws_url("ftp://x", "/a"),
            Err(TtsError::Misconfigured(_))
        ));
        assert!(matches!(
            ws_url("not a url", "/a"),
            Err(TtsError::Misconfigured(_))
        ));
    }

    #[test]
    fn statuses_map_to_typed_errors() {
        assert!(matches!(
            status_error(401, String::new()),
            TtsError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            status_error(403, String::new()),
            TtsError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            status_error(429, String::new()),
            TtsError::RateLimited { .. }
        ));
        assert!(matches!(
            status_error(503, String::new()),
            TtsError::Unavailable(_)
        ));
        assert!(matches!(
            status_error(400, String::new()),
            TtsError::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            status_error(402, String::new()),
            TtsError::Rejected { status: 402, .. }
        ));
    }
}
