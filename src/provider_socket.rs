//! The sockets voxbridge opens to its speech providers, STT and TTS alike: URLs derived from a
//! provider's configured base URL, sockets sized for thousands of concurrent calls (small
//! buffers, every frame to the kernel at once), one TLS configuration built once for the process
//! (loading the system's root certificates reads hundreds of files; doing it per connect would
//! cost every call), a bounded handshake, sends that cannot hang, and one reading of an HTTP
//! refusal (the same status means the same thing whichever provider and direction).
//!
//! Each role keeps its own error type ([`crate::stt::SttError`], [`crate::tts::TtsError`]) and
//! maps these results onto it; keep-alive messages are part of each provider's protocol
//! (Deepgram's `KeepAlive`, Sarvam's `ping`) and live with it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};
use url::Url;

/// The client side of a provider socket.
pub type WsStream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Read buffer per socket. tungstenite's default is 128 KiB; provider messages are a few hundred
/// bytes to a few KiB, and the buffer grows for the rare larger one.
const READ_BUFFER: usize = 4 * 1024;

/// Socket settings: small buffers, eager writes (a 20 ms frame must not wait for company), at
/// most `max_unsent` bytes queued when the provider stops reading, and messages up to
/// `max_message` bytes (anything bigger is a broken or hostile peer).
pub fn socket_config(max_message: usize, max_unsent: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(max_unsent)
        .max_message_size(Some(max_message))
        .max_frame_size(Some(max_message))
}

/// The WebSocket URL of `path` on a provider's base URL: `https` becomes `wss`, `http` becomes
/// `ws`, a path prefix in the base URL (a proxy, a self-hosted deployment) is kept, and its
/// query and fragment are dropped.
pub fn websocket_url(base_url: &str, path: &str) -> Result<Url, String> {
    let mut url = join(base_url, path)?;
    let scheme = match url.scheme() {
        "https" | "wss" => "wss",
        "http" | "ws" => "ws",
        other => {
            return Err(format!(
                "base URL {base_url:?} has scheme {other:?}; expected http(s) or ws(s)"
            ));
        }
    };
    url.set_scheme(scheme)
        .map_err(|()| format!("cannot use {scheme} with {base_url:?}"))?;
    Ok(url)
}

/// The HTTP URL of `path` on a provider's base URL.
pub fn http_url(base_url: &str, path: &str) -> Result<Url, String> {
    let url = join(base_url, path)?;
    match url.scheme() {
        "https" | "http" => Ok(url),
        other => Err(format!(
            "base URL {base_url:?} has scheme {other:?}; expected http(s)"
        )),
    }
}

fn join(base_url: &str, path: &str) -> Result<Url, String> {
    let mut url =
        Url::parse(base_url).map_err(|e| format!("invalid base URL {base_url:?}: {e}"))?;
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

/// The upgrade request for `url` with extra headers (credentials).
pub fn upgrade_request(url: &Url, headers: &[(HeaderName, &str)]) -> Result<Request, String> {
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("invalid WebSocket URL {url}: {e}"))?;
    for (name, value) in headers {
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("{name} is not a valid header value"))?;
        request.headers_mut().insert(name.clone(), value);
    }
    Ok(request)
}

/// Why a socket could not be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The provider answered the upgrade with an HTTP error; its headers and body are kept so
    /// each provider can read its own error shape.
    Refused {
        status: u16,
        headers: HeaderMap,
        body: Vec<u8>,
    },
    /// No answer: DNS, TCP, TLS, a malformed upgrade response, or the timeout.
    Failed(String),
}

/// Opens a socket with the shared TLS configuration, bounded by `timeout` (handshake included).
pub async fn open(
    request: Request,
    config: WebSocketConfig,
    timeout: Duration,
) -> Result<WsStream, OpenError> {
    let connecting =
        tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, tls());
    match tokio::time::timeout(timeout, connecting).await {
        Err(_) => Err(OpenError::Failed(format!(
            "no WebSocket handshake within {} ms",
            timeout.as_millis()
        ))),
        Ok(Ok((stream, _response))) => Ok(stream),
        Ok(Err(tungstenite::Error::Http(response))) => {
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

/// Why a send did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Not done within the timeout: the link is stuck.
    Stalled(String),
    /// The socket failed or is closed.
    Closed(String),
}

/// Sends one message; a send that does not complete within `timeout` means the link is stuck.
pub async fn send(ws: &mut WsStream, message: Message, timeout: Duration) -> Result<(), SendError> {
    match tokio::time::timeout(timeout, ws.send(message)).await {
        Err(_) => Err(SendError::Stalled(format!(
            "send did not complete within {timeout:?}"
        ))),
        Ok(Err(e)) => Err(SendError::Closed(format!("send failed: {e}"))),
        Ok(Ok(())) => Ok(()),
    }
}

/// The next frame of an optional socket; never resolves without one (for `select!`).
pub async fn next_frame(ws: &mut Option<WsStream>) -> Option<Result<Message, tungstenite::Error>> {
    match ws {
        Some(ws) => ws.next().await,
        None => std::future::pending().await,
    }
}

/// Closes a socket politely without waiting on a provider that may be gone.
pub async fn close(mut ws: WsStream) {
    let _ = tokio::time::timeout(Duration::from_millis(200), ws.close(None)).await;
}

/// What an HTTP status from a provider (on the upgrade, a request, or inside an error message)
/// means, the same for every provider and role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401, 403: the key is wrong or not allowed; retrying will not help.
    Unauthorized,
    /// 429: too many requests now; retrying later may help.
    RateLimited,
    /// Any other 4xx, 402 (payment required: out of credits) included: this request will be
    /// refused again.
    Rejected,
    /// 5xx and anything else: the provider is down; retrying may help.
    Unavailable,
}

/// Reads an HTTP status.
pub fn classify(status: u16) -> Refusal {
    match status {
        401 | 403 => Refusal::Unauthorized,
        429 => Refusal::RateLimited,
        400..=499 => Refusal::Rejected,
        _ => Refusal::Unavailable,
    }
}

/// The TLS configuration of every provider socket, built once. `None` (no readable root
/// certificates) falls back to tokio-tungstenite's own loader, which works but pays per connect.
fn tls() -> Option<Connector> {
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
    fn derives_websocket_and_http_urls() {
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
            (
                "https://api.cartesia.ai",
                "/tts/websocket",
                "wss://api.cartesia.ai/tts/websocket",
            ),
        ];
        for (base, path, expected) in cases {
            assert_eq!(websocket_url(base, path).unwrap().as_str(), expected);
        }
        assert_eq!(
            http_url("http://proxy/sarvam/", "/text-to-speech")
                .unwrap()
                .as_str(),
            "http://proxy/sarvam/text-to-speech"
        );
        for bad in ["ftp://x", "not a url"] {
            assert!(websocket_url(bad, "/a").is_err(), "{bad}");
            assert!(http_url(bad, "/a").is_err(), "{bad}");
        }
        assert!(http_url("wss://x", "/a").is_err());
    }

    #[test]
    fn a_status_means_the_same_for_every_provider() {
        assert_eq!(classify(401), Refusal::Unauthorized);
        assert_eq!(classify(403), Refusal::Unauthorized);
        assert_eq!(classify(429), Refusal::RateLimited);
        assert_eq!(
            classify(402),
            Refusal::Rejected,
            "out of credits: not a rate"
        );
        assert_eq!(classify(400), Refusal::Rejected);
        assert_eq!(classify(404), Refusal::Rejected);
        assert_eq!(classify(500), Refusal::Unavailable);
        assert_eq!(classify(503), Refusal::Unavailable);
    }

    #[tokio::test]
    async fn a_refused_handshake_keeps_its_status_headers_and_body() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let app = axum::Router::new().route(
                "/ws",
                axum::routing::get(|| async {
                    (
                        axum::http::StatusCode::PAYMENT_REQUIRED,
                        [("dg-error", "out of credits")],
                        "no credits",
                    )
                }),
            );
            axum::serve(listener, app).await.unwrap();
        });
        let url = websocket_url(&format!("http://{addr}"), "/ws").unwrap();
        let request = upgrade_request(&url, &[]).unwrap();
        let Err(OpenError::Refused {
            status,
            headers,
            body,
        }) = open(request, socket_config(1024, 1024), Duration::from_secs(5)).await
        else {
            panic!("expected a refusal")
        };
        assert_eq!(status, 402);
        assert_eq!(headers["dg-error"], "out of credits");
        assert_eq!(body, b"no credits");
    }
}
