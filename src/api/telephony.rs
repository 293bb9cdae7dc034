//! The routes every telephony provider's side of a call comes through, whichever the provider:
//! `/{provider}/voice` (an inbound call asking what to do, or an outbound call's answer URL),
//! `/{provider}/status` and `/{provider}/amd` (callbacks about a call: its progress, the verdict
//! of answering-machine detection) and `/{provider}/media` (the media-stream socket). The
//! provider reads and signs its own webhooks and writes its own answer documents
//! (`TelephonyProvider`); what is done with them — routing to an assistant, the owner's call
//! limit, stream tokens, draining, statuses — is decided here once. These answer providers, not
//! API users, so they speak each provider's documents and plain status codes rather than the JSON
//! envelope. Twilio's URLs (`/twilio/voice`, …) are these routes.

use std::time::Duration;

use axum::extract::ws::WebSocket;
use axum::extract::{OriginalUri, Path, State, WebSocketUpgrade};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::AppState;
use crate::call::io::Control;
use crate::call::runner::{queue_report, run_call};
use crate::call::setup::{CallDraft, prepare_call};
use crate::store::{CallRecord, CallStatus, Direction};
use crate::telephony::TelephonyProvider;
use crate::telephony::provider::{
    Answer, CallbackEvent, Document, MediaProtocol, StreamTarget, Webhook,
};
use crate::telephony::registry::{MediaVisitor, TrunkProvider};
use crate::tokens::token_hash;
use crate::transport::MediaSink;

/// How long the one-time stream token of a call lives (an outbound call may ring a while).
pub const STREAM_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

fn document(answer: Document) -> Response {
    ([(header::CONTENT_TYPE, answer.content_type)], answer.body).into_response()
}

/// The provider a route names (`None`: not a route at all).
fn provider(name: &str) -> Option<TrunkProvider> {
    TrunkProvider::parse(name)
}

/// What `/{anything}/voice` answers for a name that is no provider: the API's unknown route.
fn no_such_route() -> Response {
    super::ApiError::NotFound("No such route".to_owned()).into_response()
}

/// The URL the provider requested, as it knows it: our public base URL plus the path and query.
fn public_url(state: &AppState, uri: &axum::http::Uri) -> String {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{}{path_and_query}", state.config.public_base_url())
}

/// The media-stream URL of a provider's calls: the public URL with a WebSocket scheme.
pub fn media_stream_url(state: &AppState, provider: TrunkProvider) -> String {
    format!("{}/{provider}/media", state.config.public_ws_base_url())
}

/// Answers a provider's request with `answer`, or a 500 if its document cannot be written.
fn answer_with(p: &dyn TelephonyProvider, answer: Answer<'_>) -> Response {
    match p.answer(answer) {
        Ok(doc) => document(doc),
        Err(e) => {
            tracing::error!(provider = p.name(), error = %e, "answer document not built");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// `GET|POST /{provider}/voice`: a call asking what to do. With our `call_id` and `token` in the
/// query it is an outbound call we placed through a provider that fetches its instructions
/// (its answer URL); otherwise an inbound call to one of our numbers.
pub async fn voice(
    State(state): State<AppState>,
    Path(name): Path<String>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = provider(&name) else {
        return no_such_route();
    };
    let p = state.telephony.get(provider);
    let url = public_url(&state, &uri);
    let request = Webhook {
        url: &url,
        method: &method,
        headers: &headers,
        body: &body,
    };
    if let (Some(call_id), Some(token)) =
        (request.query_value("call_id"), request.query_value("token"))
    {
        return outbound_answer(&state, provider, &request, &call_id, &token).await;
    }
    let inbound = match p.inbound_call(&request) {
        Ok(inbound) => inbound,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let to = inbound.to.as_str();
    let route = match state.store.find_inbound_route(to).await {
        Ok(Some(route)) if route.trunk.provider == provider => route,
        Ok(_) => {
            tracing::info!(
                provider = p.name(),
                to,
                "inbound call to a number with no active assistant on this provider; rejected"
            );
            return answer_with(p, Answer::Reject);
        }
        Err(e) => {
            tracing::error!(error = %e, "inbound route lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if !p.verify_webhook(&route.trunk, &request) {
        tracing::warn!(
            provider = p.name(),
            to,
            "inbound webhook with a bad signature refused"
        );
        return (StatusCode::FORBIDDEN, "invalid signature").into_response();
    }
    if state.calls.live.draining() {
        // The provider asks for the same URL again; behind a load balancer that has seen this
        // node's `/readyz` fail, another node answers it.
        tracing::info!(to, "draining: inbound call redirected to another node");
        return match p.answer(Answer::AskAgain { url: &url }) {
            Ok(doc) => document(doc),
            Err(e) => {
                tracing::error!(error = %e, "redirect not built (check public_url)");
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            }
        };
    }
    let assistant = match state
        .store
        .get_assistant(&route.owner_id, &route.assistant_id)
        .await
    {
        Ok(Some(assistant)) => assistant,
        _ => return answer_with(p, Answer::Reject),
    };
    let prepared = prepare_call(CallDraft {
        assistant: &assistant,
        direction: Direction::Inbound,
        trunk_id: Some(route.trunk.id.clone()),
        from_number: Some(inbound.from.clone()),
        to_number: Some(inbound.to.clone()),
        metadata: serde_json::json!({}),
        status: CallStatus::Ringing,
        provider_call_sid: Some(inbound.provider_call_id.clone()),
        token_ttl: STREAM_TOKEN_TTL,
    });
    // The owner's limit holds for calls that come in as for calls the API makes: beyond it the
    // caller hears a busy tone (a reservation, like the API's, so a burst cannot pass it).
    let limit = i64::from(state.config.max_concurrent_calls_per_owner);
    match state
        .store
        .insert_call_within_limit(&prepared.call, limit)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(to, limit, "inbound call over the owner's call limit; busy");
            metrics::counter!(crate::metrics::CALLS_REFUSED, "reason" => "limit").increment(1);
            return answer_with(p, Answer::Busy);
        }
        Err(e) => {
            tracing::error!(error = %e, "inbound call not stored");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let media = p.media_url(&route.trunk, media_stream_url(&state, provider));
    tracing::info!(
        provider = p.name(),
        call_id = prepared.call.id,
        from = inbound.from,
        to,
        "inbound call answered with a media stream"
    );
    answer_with(
        p,
        Answer::Stream(StreamTarget {
            url: &media,
            call_id: &prepared.call.id,
            token: &prepared.stream_token,
        }),
    )
}

/// The answer URL of an outbound call: the stream document, once the request is proven to be
/// the provider's for the call's trunk. The token is only passed on; the media socket consumes
/// it.
async fn outbound_answer(
    state: &AppState,
    provider: TrunkProvider,
    request: &Webhook<'_>,
    call_id: &str,
    token: &str,
) -> Response {
    let p = state.telephony.get(provider);
    let call = match state.store.get_call_any_owner(call_id).await {
        Ok(Some(call)) if call.direction == Direction::Outbound => call,
        Ok(_) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "answer URL lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(trunk) = call_trunk(state, &call).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if trunk.provider != provider || !p.verify_webhook(&trunk, request) {
        tracing::warn!(call_id, "answer URL request with a bad signature refused");
        return (StatusCode::FORBIDDEN, "invalid signature").into_response();
    }
    let media = p.media_url(&trunk, media_stream_url(state, provider));
    answer_with(
        p,
        Answer::Stream(StreamTarget {
            url: &media,
            call_id,
            token,
        }),
    )
}

/// The trunk a call was placed or received on, deleted or not.
async fn call_trunk(state: &AppState, call: &CallRecord) -> Option<crate::telephony::Trunk> {
    let trunk_id = call.trunk_id.as_ref()?;
    state
        .store
        .get_trunk_for_callbacks(trunk_id)
        .await
        .ok()
        .flatten()
}

/// `POST /{provider}/status?call_id=…` and `POST /{provider}/amd?call_id=…`: callbacks about a
/// call (its progress; the verdict of answering-machine detection, asked for on outbound calls
/// whose assistant has a voicemail message). The call is found by our `call_id`, else by the
/// provider's id for it, and the request proven with the call's trunk before anything is read
/// from it.
pub async fn callback(
    State(state): State<AppState>,
    Path(name): Path<String>,
    OriginalUri(uri): OriginalUri,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(provider) = provider(&name) else {
        return no_such_route();
    };
    let p = state.telephony.get(provider);
    let url = public_url(&state, &uri);
    let request = Webhook {
        url: &url,
        method: &method,
        headers: &headers,
        body: &body,
    };
    let parsed = p.callback(&request);
    let call = match request.query_value("call_id") {
        Some(id) => state.store.get_call_any_owner(&id).await,
        None => match parsed
            .as_ref()
            .ok()
            .and_then(|c| c.provider_call_id.clone())
        {
            Some(sid) => state.store.get_call_by_provider_sid(&sid).await,
            None => {
                return (
                    StatusCode::BAD_REQUEST,
                    "call_id or the provider's call id required",
                )
                    .into_response();
            }
        },
    };
    let call = match call {
        Ok(Some(call)) => call,
        Ok(None) => return StatusCode::NOT_FOUND.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "callback's call lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let Some(trunk) = call_trunk(&state, &call).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if trunk.provider != provider || !p.verify_webhook(&trunk, &request) {
        tracing::warn!(call_id = call.id, "callback with a bad signature refused");
        return (StatusCode::FORBIDDEN, "invalid signature").into_response();
    }
    let callback = match parsed {
        Ok(callback) => callback,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    // A provider may name the call differently once it exists (Plivo answers a placed call
    // with a request id; its callbacks then carry the call's own id, which hang-ups need).
    if let Some(sid) = &callback.provider_call_id
        && call.provider_call_sid.as_deref() != Some(sid.as_str())
    {
        let _ = state.store.set_provider_call_sid(&call.id, sid).await;
    }
    match callback.event {
        CallbackEvent::Status(status) => call_status(&state, &call, status).await,
        CallbackEvent::AnsweredBy(answered_by) => {
            // Stored before it is sent: a call registering meanwhile reads it after registering,
            // so it is never missed between the two. A call that has ended (or not started yet)
            // is no error to the provider: the stored verdict is what a call starting later
            // reads.
            if let Err(e) = state
                .store
                .set_answered_by(&call.id, answered_by.as_str())
                .await
            {
                tracing::error!(call_id = call.id, error = %e, "answered_by not stored");
            }
            let live = match state
                .calls
                .control(&call, Control::AnsweredBy(answered_by))
                .await
            {
                Ok(live) => live,
                Err(e) => {
                    tracing::warn!(call_id = call.id, error = %e, "verdict not relayed to the call's node");
                    false
                }
            };
            tracing::info!(
                call_id = call.id,
                answered_by = answered_by.as_str(),
                live,
                "answering-machine detection"
            );
            StatusCode::NO_CONTENT.into_response()
        }
        CallbackEvent::Ignored => StatusCode::NO_CONTENT.into_response(),
    }
}

/// Stores a call's progress.
async fn call_status(state: &AppState, call: &CallRecord, new_status: CallStatus) -> Response {
    // A call whose session runs (here or on another node) gets its end reason from the session
    // (`voicemail`, `assistant_ended_call`, …), which knows why, or as `server_lost` from a
    // survivor if its node dies; the provider's `completed` only says that it ended, and often
    // arrives first, since providers report as soon as the stream closes.
    let session_runs = state.calls.live.contains(&call.id) || call.node_id.is_some();
    let reason = (new_status.is_terminal() && !session_runs).then(|| new_status.as_str());
    match state
        .store
        .advance_call_status(&call.id, new_status, reason)
        .await
    {
        Ok(true) => {
            tracing::info!(
                call_id = call.id,
                status = new_status.as_str(),
                "call status"
            );
            // A call that ended without ever streaming (busy, no answer, failed) still reports;
            // a call that streamed reports when its session ends (its socket closes with it).
            if new_status.is_terminal() && call.started_at.is_none() {
                queue_report(&state.calls, &call.id).await;
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "call status not stored");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /{provider}/media`: the media stream of a call.
pub async fn media(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    match provider(&name) {
        Some(provider) => provider.with_media(MediaUpgrade {
            state,
            provider,
            headers,
            upgrade,
        }),
        None => no_such_route(),
    }
}

/// The upgrade of a media socket, compiled per provider's protocol.
struct MediaUpgrade {
    state: AppState,
    provider: TrunkProvider,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
}

impl MediaVisitor for MediaUpgrade {
    type Output = Response;

    fn visit<M: MediaProtocol>(self) -> Response {
        let Self {
            state,
            provider,
            headers,
            upgrade,
        } = self;
        let limit = M::LIMITS.max_message_bytes;
        upgrade
            // Small buffers: a call holds this socket for minutes, and there are thousands of
            // calls. And tungstenite zeroes the free part of its read buffer before every read,
            // once per ~350-byte frame here: 1 KiB holds a few frames and zeroes a quarter of
            // what 4 KiB did (the buffer still grows for a larger message).
            .read_buffer_size(1024)
            .write_buffer_size(0)
            .max_message_size(limit)
            .max_frame_size(limit)
            .on_upgrade(move |socket| stream::<M>(state, provider, headers, socket))
    }
}

async fn stream<M: MediaProtocol>(
    state: AppState,
    provider: TrunkProvider,
    headers: HeaderMap,
    socket: WebSocket,
) {
    let inactivity = Duration::from_secs(state.config.media_inactivity_secs);
    let (start, source, mut sink) = match M::accept(socket, inactivity).await {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(provider = provider.as_str(), error = %e, "media stream refused before start");
            return;
        }
    };
    let (Some(call_id), Some(token)) = (&start.call_id, &start.token) else {
        tracing::warn!(
            provider = provider.as_str(),
            stream_id = start.stream_id,
            "media stream without call_id/token closed"
        );
        let _ = sink.close().await;
        return;
    };
    // The socket is proven to be the call's provider (for providers that prove it on the
    // upgrade) before the token is spent: a socket without the credentials must not burn the
    // token the provider's own socket will bring.
    let p = state.telephony.get(provider);
    let trunk = match state.store.get_call_any_owner(call_id).await {
        Ok(Some(call)) => call_trunk(&state, &call).await,
        Ok(None) => None,
        Err(e) => {
            tracing::error!(error = %e, "stream's call lookup failed");
            let _ = sink.close().await;
            return;
        }
    };
    if let Some(trunk) = &trunk
        && (trunk.provider != provider || !p.verify_media_upgrade(trunk, &headers))
    {
        tracing::warn!(
            call_id,
            provider = provider.as_str(),
            "media stream not proven to be the call's provider; closed"
        );
        let _ = sink.close().await;
        return;
    }
    // The token is checked before any provider is contacted; a used or unknown one ends here
    // (so does a provider's second socket for a call that has ended, as Plivo opens).
    let call = match state
        .store
        .consume_stream_token(call_id, &token_hash(token))
        .await
    {
        Ok(Some(call)) => call,
        Ok(None) => {
            tracing::warn!(
                call_id,
                "media stream with an unknown, used or expired token closed"
            );
            let _ = sink.close().await;
            return;
        }
        Err(e) => {
            tracing::error!(error = %e, "stream token check failed");
            let _ = sink.close().await;
            return;
        }
    };
    if call.provider_call_sid.is_none()
        && let Some(sid) = &start.provider_call_id
    {
        let _ = state.store.set_provider_call_sid(&call.id, sid).await;
    }
    let provider_call_id = start
        .provider_call_id
        .clone()
        .or_else(|| call.provider_call_sid.clone());
    let control = match (&trunk, provider_call_id) {
        (Some(trunk), Some(sid)) => {
            let our_number = match call.direction {
                Direction::Outbound => call.from_number.clone(),
                _ => call.to_number.clone(),
            };
            p.call_control(trunk, &sid, our_number)
        }
        _ => None,
    };
    run_call(state.calls.clone(), call, source, sink, control).await;
}
