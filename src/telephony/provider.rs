//! The seam between voxbridge and a telephony provider. A provider is one folder under
//! `src/telephony/` that implements [`TelephonyProvider`] (its control plane: webhooks, answer
//! documents, the REST calls that place, end and move calls) and [`MediaProtocol`] (its media
//! stream, monomorphised into the call so the hot path has no dynamic dispatch), and one line of
//! `registry.rs`. Everything else — the routes, limits, stream tokens, the call itself — is shared
//! and never names a provider.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use axum::http::HeaderMap;
use futures_util::future::BoxFuture;

use super::Trunk;
use crate::call::voicemail::AnsweredBy;
use crate::store::CallStatus;
use crate::transport::{MediaSink, MediaSource};
use crate::validation::Violations;

/// A webhook request from a provider, as it was sent: the handler has not read anything yet.
pub struct Webhook<'a> {
    /// The URL the provider requested, as it knows it (our public base URL, path and query).
    pub url: &'a str,
    pub method: &'a axum::http::Method,
    pub headers: &'a HeaderMap,
    /// The raw body (form or JSON, as the provider sends it).
    pub body: &'a [u8],
}

impl Webhook<'_> {
    /// The body's form fields, in the order they were sent.
    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body)
            .into_owned()
            .collect()
    }

    /// The URL's query fields.
    pub fn query(&self) -> Vec<(String, String)> {
        url::Url::parse(self.url)
            .map(|u| u.query_pairs().into_owned().collect())
            .unwrap_or_default()
    }

    /// One query field (ours: `call_id`, `token`).
    pub fn query_value(&self, name: &str) -> Option<String> {
        self.query()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// A header's value, if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A webhook the provider's rules do not let us read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadWebhook(pub String);

/// What an inbound call's webhook says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundCall {
    /// Our number that was called (E.164), which routes the call to an assistant.
    pub to: String,
    pub from: String,
    /// The provider's id of the call.
    pub provider_call_id: String,
}

/// Where a call's audio goes: our media socket for this provider, with the call's id and
/// one-time stream token (each provider carries them its own way: stream parameters, headers,
/// the URL's query).
#[derive(Debug, Clone, Copy)]
pub struct StreamTarget<'a> {
    /// `wss://…/{provider}/media`.
    pub url: &'a str,
    pub call_id: &'a str,
    pub token: &'a str,
}

/// How to answer a provider's request for instructions.
#[derive(Debug, Clone, Copy)]
pub enum Answer<'a> {
    /// Connect the call's audio to our media socket.
    Stream(StreamTarget<'a>),
    /// The owner has as many calls as allowed: the caller hears busy.
    Busy,
    /// No assistant takes calls to this number.
    Reject,
    /// This node is draining: ask again (behind a load balancer, another node answers).
    AskAgain { url: &'a str },
}

/// An answer document (TwiML, Plivo XML, an NCCO, …) and its content type.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub content_type: &'static str,
    pub body: String,
}

/// What a provider's callback about a call reports.
#[derive(Debug, Clone, PartialEq)]
pub enum CallbackEvent {
    /// The call's progress, in our vocabulary.
    Status(CallStatus),
    /// The verdict of answering-machine detection.
    AnsweredBy(AnsweredBy),
    /// Something we neither need nor refuse (a stream-status event, a recording, …).
    Ignored,
}

/// A callback about a call: the provider's id for it, when the callback names it (our own
/// `?call_id=` on the callback URL is what finds the call otherwise), and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Callback {
    pub provider_call_id: Option<String>,
    pub event: CallbackEvent,
}

/// An outbound call to place. Each provider takes what its API needs: inline instructions with
/// the stream (Twilio, Vonage), the URL where it fetches them (Plivo, Exotel), or the stream URL
/// itself (Telnyx).
#[derive(Debug, Clone, Copy)]
pub struct PlaceCall<'a> {
    pub to: &'a str,
    pub from: &'a str,
    pub stream: StreamTarget<'a>,
    /// Our `/{provider}/voice?call_id=…&token=…`: answered with the stream's document.
    pub answer_url: &'a str,
    /// Our `/{provider}/status?call_id=…`.
    pub status_callback: &'a str,
    /// Our `/{provider}/amd?call_id=…`, when the assistant has a voicemail message to leave.
    pub amd_callback: Option<&'a str>,
    /// How long the callee's phone may ring.
    pub ring_timeout_secs: u32,
    /// The provider ends the call after this long even if voxbridge somehow does not.
    pub time_limit_secs: u32,
}

/// A provider's REST API refused or could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum TelephonyError {
    /// The provider answered with an error.
    #[error("{provider} answered {status}{}: {message}", code.as_deref().map(|c| format!(" (code {c})")).unwrap_or_default())]
    Refused {
        provider: &'static str,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// The provider could not be reached, or answered something unreadable.
    #[error("{provider} could not be reached: {message}")]
    Unreachable {
        provider: &'static str,
        message: String,
    },
    /// The request was refused before it was sent (it would have been malformed).
    #[error("invalid {provider} request: {message}")]
    Invalid {
        provider: &'static str,
        message: String,
    },
    /// The provider cannot do this at all.
    #[error("{provider} cannot {what}")]
    Unsupported {
        provider: &'static str,
        what: &'static str,
    },
}

impl TelephonyError {
    /// True when the request itself was wrong (a bad number, bad credentials): retrying cannot
    /// help, and the message is worth showing to whoever made it.
    pub fn is_client_error(&self) -> bool {
        matches!(self, TelephonyError::Refused { status, .. } if (400..500).contains(status))
            || matches!(self, TelephonyError::Invalid { .. })
    }

    /// The provider's own error code, when it gave one.
    pub fn code(&self) -> Option<&str> {
        match self {
            TelephonyError::Refused { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A boxed answer from a provider's REST API.
pub type RestFuture<T> = BoxFuture<'static, Result<T, TelephonyError>>;

/// What a live call's agent may ask of its provider beyond the media stream.
pub trait CallControl: Send + Sync {
    /// Moves the live call to `to` (the media stream ends as a result).
    fn transfer(&self, to: String) -> BoxFuture<'static, Result<(), String>>;
}

/// A provider's control plane. One value per provider lives in the registry for the server's
/// life; its REST client shares the server's connection pool.
pub trait TelephonyProvider: Send + Sync + 'static {
    /// The provider's name in URLs, trunks and `call_service` (`twilio`, `plivo`, …).
    fn name(&self) -> &'static str;

    /// Checks the shapes of a trunk's credentials and options, so a typo is a 400 now rather
    /// than a failed call later. `fields` name the account, secret and options fields.
    fn check_trunk(&self, trunk: &Trunk, fields: TrunkFields, v: &mut Violations);

    /// The trunk options that are secrets: stored and used, never shown.
    fn secret_options(&self) -> &'static [&'static str] {
        &[]
    }

    /// Reads an inbound call's webhook (not yet verified: the trunk whose secret proves it is
    /// found from the number called).
    fn inbound_call(&self, request: &Webhook<'_>) -> Result<InboundCall, BadWebhook>;

    /// Whether the request was signed by the provider for this trunk.
    fn verify_webhook(&self, trunk: &Trunk, request: &Webhook<'_>) -> bool;

    /// The document answering a request for instructions.
    fn answer(&self, answer: Answer<'_>) -> Result<Document, BadWebhook>;

    /// Reads a callback about a call (status, answering-machine verdict).
    fn callback(&self, request: &Webhook<'_>) -> Result<Callback, BadWebhook>;

    /// Places an outbound call; answers the provider's id for it.
    fn place_call(&self, trunk: &Trunk, call: PlaceCall<'_>) -> RestFuture<String>;

    /// Ends a call (ringing or live). A call that has already ended is no error.
    fn hang_up(&self, trunk: &Trunk, provider_call_id: &str) -> RestFuture<()>;

    /// What the agent can do to this live call (transfer), if the provider supports it.
    fn call_control(
        &self,
        trunk: &Trunk,
        provider_call_id: &str,
        our_number: Option<String>,
    ) -> Option<Arc<dyn CallControl>>;

    /// The media-stream URL as this trunk's calls must reach it (`url` is our
    /// `wss://…/{provider}/media`). Exotel adds the trunk's stream credentials as userinfo,
    /// which it sends back as Basic auth on the upgrade (checked by
    /// [`verify_media_upgrade`](Self::verify_media_upgrade)); others use it as is.
    fn media_url(&self, trunk: &Trunk, url: String) -> String {
        let _ = trunk;
        url
    }

    /// Whether the media socket's upgrade request is the provider's, for providers that prove it
    /// on the socket (Exotel's Basic credentials) rather than through the stream token alone.
    fn verify_media_upgrade(&self, trunk: &Trunk, headers: &HeaderMap) -> bool {
        let _ = (trunk, headers);
        true
    }
}

/// The field names of a trunk's credentials in the request being checked.
#[derive(Debug, Clone, Copy)]
pub struct TrunkFields {
    pub account: &'static str,
    pub secret: &'static str,
    pub options: &'static str,
}

/// What a media stream's first messages said: the call it belongs to (our id and one-time
/// token, carried as the provider carries custom values) and the provider's ids.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStart {
    pub call_id: Option<String>,
    pub token: Option<String>,
    /// The provider's id of the call (Twilio's CallSid, Plivo's callId, …), if it says.
    pub provider_call_id: Option<String>,
    /// The provider's id of the stream, for logs.
    pub stream_id: String,
}

/// Size limits of a provider's media socket.
#[derive(Debug, Clone, Copy)]
pub struct SocketLimits {
    /// The largest message the socket accepts (a frame beyond it closes the socket).
    pub max_message_bytes: usize,
}

/// A provider's media stream. Static, so a call's reader and writer are compiled for the
/// provider's source and sink: the 50 frames a second of each direction pass no vtable and no
/// boxed future.
pub trait MediaProtocol: Send + 'static {
    type Source: MediaSource;
    type Sink: MediaSink;

    /// Limits for the upgrade.
    const LIMITS: SocketLimits;

    /// Reads the stream's first messages (within a provider-specific bound) and splits the
    /// socket into the call's two halves. After it, a stream that sends nothing for
    /// `inactivity` ends as a hang-up.
    fn accept(
        socket: WebSocket,
        inactivity: Duration,
    ) -> impl Future<Output = Result<(StreamStart, Self::Source, Self::Sink), String>> + Send;
}
