//! Opening a provider's streaming WebSocket: the URL derived from the configured base URL, a
//! socket configured for thousands of concurrent calls (small buffers, Nagle off), one shared TLS
//! configuration, and a refused handshake kept as data so each provider can read its own error
//! shape (Deepgram's `dg-error` header, Sarvam's JSON body) before it becomes an [`SttError`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

use super::SttError;

/// The client side of a provider socket.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per socket. tungstenite's default is 128 KiB; provider messages are a few hundred
/// bytes (a long Deepgram result a few KiB), and the buffer grows for the rare larger one.
const READ_BUFFER: usize = 4 * 1024;
/// Largest message accepted from a provider: a Deepgram result with word timings for a long
/// utterance stays far below this; anything bigger is a broken or hostile peer.
const MAX_MESSAGE: usize = 256 * 1024;
/// Bytes that may queue unsent when the provider stops reading. About 2 s of 16 kHz PCM16, the
/// window within which the stall detector fires anyway.
const MAX_UNSENT: usize = 64 * 1024;

/// Socket settings for every STT stream.
pub fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        // 0: every frame goes to the kernel at once; a 20 ms frame must not wait for company.
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_UNSENT)
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Derives the WebSocket URL of `path` on a provider's configured base URL: `https` becomes
/// `wss`, `http` becomes `ws`, and a path prefix in the base URL (a proxy, a self-hosted
/// deployment) is kept.
pub fn websocket_url(base_url: &str, path: &str) -> Result<Url, SttError> {
    let mut url = Url::parse(base_url)
        .map_err(|e| SttError::Config(format!("invalid base URL {base_url:?}: {e}")))?;
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        other => {
            return Err(SttError::Config(format!(
                "base URL {base_url:?} has scheme {other:?}; expected http(s) or ws(s)"
            )));
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| SttError::Config(format!("cannot use {scheme} with {base_url:?}")))?;
    let joined = format!(
        "{}/{}",
        url.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Builds the upgrade request for `url` with extra headers (credentials).
pub fn upgrade_request(url: &Url, headers: &[(HeaderName, &str)]) -> Result<Request, SttError> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| SttError::Config(format!("invalid WebSocket URL: {e}")))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| SttError::Config(format!("{name} is not a valid header value")))?;
        request.headers_mut().insert(name.clone(), value);
    }
    Ok(request)
}

/// Why a socket could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The provider answered the upgrade with an HTTP error.
    Refused {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    /// No answer: DNS, TCP, TLS, a malformed upgrade response, or the connect timeout.
    Failed(String),
}

/// Opens the socket, bounded by `timeout` (handshake included).
pub async fn open(request: Request, timeout: Duration) -> Result<WsStream, OpenError> {
    let connecting = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(socket_config()),
        true,
        tls_connector(),
    );
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(OpenError::Failed(format!(
            "no WebSocket handshake within {} ms",
            timeout.as_millis()
        ))),
        Ok(Ok((stream, _response))) => Ok(stream),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
            let status = response.status().as_u16();
            let headers = response.headers().clone();
            let body = response.into_body().unwrap_or_default();
            Err(OpenError::Refused {
                status,
                headers,
                body,
            })
        }
        Ok(Err(e)) => Err(OpenError::Failed(e.to_string())),
    }
}

/// The error for a refused handshake, by status: the same mapping for every provider, with the
/// provider's own explanation in `message`.
pub fn refusal_error(status: u16, message: String) -> SttError {
    match status {
        401 | 403 => SttError::Unauthorized { status, message },
        429 => SttError::RateLimited { message },
        400..=499 => SttError::Rejected { status, message },
        _ => SttError::Unavailable(format!("{status}: {message}")),
    }
}

/// The TLS configuration shared by every provider socket. Loading the system's root
/// certificates per connection (tokio-tungstenite's default) would read hundreds of files for
/// every call; it is done once. `None` falls back to that default if the roots cannot be read.
fn tls_connector() -> Option<Connector> {
    static CONFIG: OnceLock<Option<Arc<rustls::ClientConfig>>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let loaded = rustls_native_certs::load_native_certs();
            if !loaded.errors.is_empty() {
                tracing::warn!(errors = ?loaded.errors, "some native root certificates failed to load");
            }
            let mut roots = rustls::RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(loaded.certs);
            if added == 0 {
                tracing::warn!("no native root certificates; provider TLS will use the default loader");
                return None;
            }
            let config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(Arc::new(config))
        })
        .clone()
        .map(Connector::Rustls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derives_websocket_urls() {
        let cases = [
            (
                "https://api.deepgram.com",
                "/v1/listen",
                "wss://api.deepgram.com/v1/listen",
            ),
            (
                "http://127.0.0.1:9000/",
                "/v1/listen",
                "ws://127.0.0.1:9000/v1/listen",
            ),
            (
                "https://proxy.example/deepgram/",
                "v1/listen",
                "wss://proxy.example/deepgram/v1/listen",
            ),
            (
                "wss://api.sarvam.ai?x=1",
                "/speech-to-text/ws",
                "wss://api.sarvam.ai/speech-to-text/ws",
            ),
        ];
        for (base, path, expected) in cases {
            assert_eq!(websocket_url(base, path).unwrap().as_str(), expected);
        }
    }

    #[test]
    fn rejects_unusable_base_urls() {
        assert!(matches!(
            websocket_url("ftp://x", "/v1/listen"),
            Err(SttError::Config(_))
        ));
        assert!(matches!(
            websocket_url("not a url", "/v1/listen"),
            Err(SttError::Config(_))
        ));
    }

    #[test]
    fn maps_refusals_by_status() {
        assert!(matches!(
            refusal_error(401, "x".into()),
            SttError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            refusal_error(403, "x".into()),
            SttError::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            refusal_error(429, "x".into()),
            SttError::RateLimited { .. }
        ));
        assert!(matches!(
            refusal_error(400, "x".into()),
            SttError::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            refusal_error(503, "x".into()),
            SttError::Unavailable(_)
        ));
    }
}
