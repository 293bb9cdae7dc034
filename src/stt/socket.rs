//! STT's side of the shared provider sockets ([`crate::provider_socket`]): the socket limits of
//! a caller-audio stream and the mapping of URL, request and refusal problems onto
//! [`SttError`]. A refused handshake stays data ([`OpenError::Refused`]) so each provider can
//! read its own error shape (Deepgram's `dg-error` header, Sarvam's JSON body) first.

use std::time::Duration;

use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::HeaderName;
use url::Url;

use crate::provider_socket::{self as shared, Refusal};
pub use crate::provider_socket::{OpenError, WsStream};

use super::SttError;

/// Largest message accepted from a provider: a Deepgram result with word timings for a long
/// utterance stays far below this.
const MAX_MESSAGE: usize = 256 * 1024;
/// Bytes that may queue unsent when the provider stops reading. About 2 s of 16 kHz PCM16, the
/// window within which the stall detector fires anyway.
const MAX_UNSENT: usize = 64 * 1024;

/// The WebSocket URL of `path` on a provider's configured base URL.
pub fn websocket_url(base_url: &str, path: &str) -> Result<Url, SttError> {
    shared::websocket_url(base_url, path).map_err(SttError::Config)
}

/// Builds the upgrade request for `url` with extra headers (credentials).
pub fn upgrade_request(url: &Url, headers: &[(HeaderName, &str)]) -> Result<Request, SttError> {
    shared::upgrade_request(url, headers).map_err(SttError::Config)
}

/// Opens the socket, bounded by `timeout` (handshake included).
pub async fn open(request: Request, timeout: Duration) -> Result<WsStream, OpenError> {
    shared::open(
        request,
        shared::socket_config(MAX_MESSAGE, MAX_UNSENT),
        timeout,
    )
    .await
}

/// The error for a refused handshake, by status, with the provider's own explanation.
pub fn refusal_error(status: u16, message: String) -> SttError {
    match shared::classify(status) {
        Refusal::Unauthorized => SttError::Unauthorized { status, message },
        Refusal::RateLimited => SttError::RateLimited { message },
        Refusal::Rejected => SttError::Rejected { status, message },
        Refusal::Unavailable => SttError::Unavailable(format!("{status}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_refusals_by_status() {
        assert!(matches!(
            refusal_error(401, "x".into()),
            SttError::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            refusal_error(429, "x".into()),
            SttError::RateLimited { .. }
        ));
        assert!(matches!(
            refusal_error(402, "x".into()),
            SttError::Rejected { status: 402, .. }
        ));
        assert!(matches!(
            refusal_error(503, "x".into()),
            SttError::Unavailable(_)
        ));
        assert!(matches!(
            websocket_url("ftp://x", "/v1/listen"),
            Err(SttError::Config(_))
        ));
    }
}
