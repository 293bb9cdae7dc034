//! The WebSocket plumbing the streaming TTS clients share: URLs derived from a provider's base
//! URL, a small-buffer socket configuration (a call holds three sockets and must stay under its
//! memory budget), a bounded handshake, sends that cannot hang, and HTTP statuses mapped to
//! typed errors.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use url::Url;

use super::TtsError;

/// A provider socket.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer of a provider socket: enough for a typical frame header and a small message;
/// larger messages grow it temporarily.
const READ_BUFFER: usize = 4 * 1024;
/// Ceiling of unsent data: our messages are text pieces of a few KiB at most.
const MAX_WRITE_BUFFER: usize = 64 * 1024;

/// `base_url` + `path` with the scheme turned into its WebSocket twin (`https` → `wss`,
/// `http` → `ws`). A path prefix in the base URL is kept.
pub(crate) fn ws_url(base_url: &str, path: &str) -> Result<Url, TtsError> {
    let mut url = join(base_url, path)?;
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        other => {
            return Err(TtsError::Misconfigured(format!(
                "base url {base_url:?} has scheme {other:?}; expected http(s)"
            )));
        }
    };
    url.set_scheme(scheme).map_err(|()| {
        TtsError::Misconfigured(format!("cannot derive a websocket url from {base_url:?}"))
    })?;
    Ok(url)
}

/// `base_url` + `path` for an HTTP request.
pub(crate) fn http_url(base_url: &str, path: &str) -> Result<Url, TtsError> {
    let url = join(base_url, path)?;
    match url.scheme() {
        "https" | "http" => Ok(url),
        other => Err(TtsError::Misconfigured(format!(
            "base url {base_url:?} has scheme {other:?}; expected http(s)"
        ))),
    }
}

fn join(base_url: &str, path: &str) -> Result<Url, TtsError> {
    let mut url = Url::parse(base_url)
        .map_err(|e| TtsError::Misconfigured(format!("invalid base url {base_url:?}: {e}")))?;
    let joined = format!("{}{}", url.path().trim_end_matches('/'), path);
    url.set_path(&joined);
    Ok(url)
}

/// Socket settings: small buffers, eager writes (latency), and a message limit sized from the
/// provider's largest plausible audio message.
pub(crate) fn socket_config(max_message: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// An upgrade request for `url` carrying `headers`.
pub(crate) fn request(url: &Url, headers: &[(&'static str, &str)]) -> Result<Request, TtsError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| TtsError::Misconfigured(format!("invalid websocket url {url}: {e}")))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| TtsError::Misconfigured(format!("{name} is not a valid header value")))?;
        request.headers_mut().insert(*name, value);
    }
    Ok(request)
}

/// Opens a socket, giving up after `timeout`.
pub(crate) async fn connect(
    request: Request,
    config: WebSocketConfig,
    timeout: Duration,
) -> Result<Ws, TtsError> {
    let handshake = tokio_tungstenite::connect_async_with_config(request, Some(config), true);
    match tokio::time::timeout(timeout, handshake).await {
        Err(_) => Err(TtsError::Unavailable(format!(
            "websocket handshake timed out after {timeout:?}"
        ))),
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let body = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(&b[..b.len().min(512)]).into_owned())
                .unwrap_or_default();
            Err(status_error(status, body))
        }
        Ok(Err(e)) => Err(TtsError::Unavailable(format!(
            "websocket connect failed: {e}"
        ))),
        Ok(Ok((ws, _response))) => Ok(ws),
    }
}

/// Sends one message; a send that does not complete within `timeout` means the link is stuck.
pub(crate) async fn send(ws: &mut Ws, message: Message, timeout: Duration) -> Result<(), TtsError> {
    match tokio::time::timeout(timeout, ws.send(message)).await {
        Err(_) => Err(TtsError::Stalled(format!(
            "send did not complete within {timeout:?}"
        ))),
        Ok(Err(e)) => Err(TtsError::Closed(format!("send failed: {e}"))),
        Ok(Ok(())) => Ok(()),
    }
}

/// The next frame of an optional socket; never resolves without one (for `select!`).
pub(crate) async fn next_frame(ws: &mut Option<Ws>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Closes a socket politely without waiting on a provider that may be gone.
pub(crate) async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
}

/// A provider's HTTP status (on the upgrade, an HTTP request or in an error frame) as an error.
pub(crate) fn status_error(status: u16, message: String) -> TtsError {
    match status {
        401 | 403 => TtsError::Unauthorized { status, message },
        402 | 429 => TtsError::RateLimited {
            message: format!("{status}: {message}"),
        },
        500..=599 => TtsError::Unavailable(format!("{status}: {message}")),
        _ => TtsError::Rejected { status, message },
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
    }
}
