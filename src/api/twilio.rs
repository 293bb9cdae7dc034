//! Twilio's side of a call: the signed voice webhook of an inbound call (answered with
//! `<Connect><Stream>` TwiML), the signed status callbacks of every call, the signed verdict of
//! answering-machine detection of an outbound call with a voicemail message, and the
//! media-stream WebSocket. These answer Twilio, not API users, so they speak TwiML and plain
//! status codes rather than the JSON envelope.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use axum::extract::{Form, OriginalUri, State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::call::io::{AnsweredBy, Control};
use crate::call::runner::{queue_report, run_call};
use crate::call::setup::{CallDraft, prepare_call};
use crate::store::{CallRecord, CallStatus, Direction};
use crate::telephony::twilio_control::TwilioCallControl;
use crate::telephony::twilio_rest::TwilioCredentials;
use crate::telephony::twilio_signature::{SIGNATURE_HEADER, validate_signature};
use crate::telephony::twiml::{RejectReason, StreamSpec, Twiml, connect_stream, reject};
use crate::tokens::token_hash;
use crate::transport::MediaSink;
use crate::transport::twilio::{self, MAX_FRAME_BYTES};

/// How long the one-time stream token of a call lives (an outbound call may ring a while).
pub const STREAM_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// Form fields in the order Twilio sent them.
type FormFields = Vec<(String, String)>;

fn field<'a>(fields: &'a FormFields, name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn twiml(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

/// The URL Twilio requested, as it knows it: our public base URL plus the path and query.
fn public_url(state: &AppState, uri: &axum::http::Uri) -> String {
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    format!("{}{path_and_query}", state.config.public_base_url())
}

/// The media-stream URL for TwiML: the public URL with a WebSocket scheme.
pub fn media_stream_url(state: &AppState) -> String {
    format!("{}/twilio/media", state.config.public_ws_base_url())
}

fn signed(headers: &HeaderMap, auth_token: &str, url: &str, fields: &FormFields) -> bool {
    headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|signature| validate_signature(auth_token, url, fields, signature))
}

/// `POST /twilio/voice`: an inbound call to one of our numbers.
pub async fn voice(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Form(fields): Form<FormFields>,
) -> Response {
    let (Some(to), Some(from), Some(call_sid)) = (
        field(&fields, "To"),
        field(&fields, "From"),
        field(&fields, "CallSid"),
    ) else {
        return (StatusCode::BAD_REQUEST, "To, From and CallSid are required").into_response();
    };
    let route = match state.store.find_inbound_route(to).await {
        Ok(Some(route)) => route,
        Ok(None) => {
            tracing::info!(
                to,
                "inbound call to a number with no active assistant; rejected"
            );
            return twiml(reject(RejectReason::Rejected));
        }
        Err(e) => {
            tracing::error!(error = %e, "inbound route lookup failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if !signed(
        &headers,
        &route.trunk.auth_token,
        &public_url(&state, &uri),
        &fields,
    ) {
        tracing::warn!(to, "inbound webhook with a bad X-Twilio-Signature refused");
        return (StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").into_response();
    }
    if state.calls.live.draining() {
        // Twilio asks for the same URL again; behind a load balancer that has seen this node's
        // `/readyz` fail, another node answers it.
        tracing::info!(to, "draining: inbound call redirected to another node");
        return match Twiml::new().redirect(&public_url(&state, &uri)) {
            Ok(doc) => twiml(doc.finish()),
            Err(e) => {
                tracing::error!(error = %e, "redirect TwiML not built (check public_url)");
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
        _ => return twiml(reject(RejectReason::Rejected)),
    };
    let prepared = prepare_call(CallDraft {
        assistant: &assistant,
        direction: Direction::Inbound,
        trunk_id: Some(route.trunk.id.clone()),
        from_number: Some(from.to_owned()),
        to_number: Some(to.to_owned()),
        metadata: serde_json::json!({}),
        status: CallStatus::Ringing,
        provider_call_sid: Some(call_sid.to_owned()),
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
            return twiml(reject(RejectReason::Busy));
        }
        Err(e) => {
            tracing::error!(error = %e, "inbound call not stored");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    let url = media_stream_url(&state);
    let parameters = [
        ("call_id", prepared.call.id.as_str()),
        ("token", prepared.stream_token.as_str()),
    ];
    match connect_stream(&StreamSpec {
        url: &url,
        name: None,
        status_callback: None,
        parameters: &parameters,
    }) {
        Ok(body) => {
            tracing::info!(
                call_id = prepared.call.id,
                from,
                to,
                "inbound call answered with a media stream"
            );
            twiml(body)
        }
        Err(e) => {
            tracing::error!(error = %e, "TwiML for the stream could not be built (check public_url)");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The call a callback about a call (`?call_id=…`, else its `CallSid`) is for, once its
/// `X-Twilio-Signature` is proven with the Auth Token of the call's trunk; otherwise the answer
/// to give Twilio.
async fn signed_call(
    state: &AppState,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    fields: &FormFields,
    what: &str,
) -> Result<CallRecord, Response> {
    let call_id = uri.query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "call_id")
            .map(|(_, v)| v.into_owned())
    });
    let call = match call_id {
        Some(id) => state.store.get_call_any_owner(&id).await,
        None => match field(fields, "CallSid") {
            Some(sid) => state.store.get_call_by_provider_sid(sid).await,
            None => {
                return Err(
                    (StatusCode::BAD_REQUEST, "call_id or CallSid required").into_response()
                );
            }
        },
    };
    let call = match call {
        Ok(Some(call)) => call,
        Ok(None) => return Err(StatusCode::NOT_FOUND.into_response()),
        Err(e) => {
            tracing::error!(error = %e, "{what} lookup failed");
            return Err(StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
    };
    let trunk = match &call.trunk_id {
        Some(trunk_id) => state
            .store
            .get_trunk_for_callbacks(trunk_id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let Some(trunk) = trunk else {
        return Err(StatusCode::NOT_FOUND.into_response());
    };
    if !signed(headers, &trunk.auth_token, &public_url(state, uri), fields) {
        tracing::warn!(
            call_id = call.id,
            "{what} with a bad X-Twilio-Signature refused"
        );
        return Err((StatusCode::FORBIDDEN, "invalid X-Twilio-Signature").into_response());
    }
    Ok(call)
}

/// `POST /twilio/status?call_id=…`: Twilio's call-progress callbacks.
pub async fn status(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Form(fields): Form<FormFields>,
) -> Response {
    let call = match signed_call(&state, &uri, &headers, &fields, "status callback").await {
        Ok(call) => call,
        Err(answer) => return answer,
    };
    if call.provider_call_sid.is_none()
        && let Some(sid) = field(&fields, "CallSid")
    {
        let _ = state.store.set_provider_call_sid(&call.id, sid).await;
    }
    let Some(new_status) = field(&fields, "CallStatus").and_then(CallStatus::parse) else {
        return (StatusCode::BAD_REQUEST, "unknown CallStatus").into_response();
    };
    // A call whose session runs (here or on another node) gets its end reason from the session
    // (`voicemail`, `assistant_ended_call`, …), which knows why, or as `server_lost` from a
    // survivor if its node dies; Twilio's `completed` only says that it ended, and often arrives
    // first, since Twilio reports as soon as the stream closes.
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

/// `POST /twilio/amd?call_id=…`: the verdict of asynchronous answering-machine detection,
/// asked for on outbound calls whose assistant has a voicemail message. It is stored on the call
/// and handed to the live call's agent; a call that has ended (or not started yet) is no error to
/// Twilio: the stored verdict is what a call starting later reads.
pub async fn amd(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    Form(fields): Form<FormFields>,
) -> Response {
    let call = match signed_call(&state, &uri, &headers, &fields, "AMD callback").await {
        Ok(call) => call,
        Err(answer) => return answer,
    };
    let Some(answered_by) = field(&fields, "AnsweredBy").and_then(AnsweredBy::parse) else {
        return (StatusCode::BAD_REQUEST, "unknown AnsweredBy").into_response();
    };
    // Stored before it is sent: a call registering meanwhile reads it after registering, so it
    // is never missed between the two.
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
            // Stored above: a session that has not read it yet will.
            tracing::warn!(call_id = call.id, error = %e, "verdict not relayed to the call's node");
            false
        }
    };
    tracing::info!(
        call_id = call.id,
        answered_by = answered_by.as_str(),
        detection_ms = field(&fields, "MachineDetectionDuration"),
        live,
        "answering-machine detection"
    );
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /twilio/media`: the media stream of a call.
pub async fn media(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        // Small buffers: a call holds this socket for minutes, and there are thousands of calls.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(4 * MAX_FRAME_BYTES)
        .max_frame_size(4 * MAX_FRAME_BYTES)
        .on_upgrade(move |socket| stream(state, socket))
}

async fn stream(state: AppState, socket: WebSocket) {
    let inactivity = Duration::from_secs(state.config.media_inactivity_secs);
    let (start, source, mut sink) = match twilio::accept(socket, inactivity).await {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(error = %e, "media stream refused before start");
            return;
        }
    };
    let params = &start.custom_parameters;
    let (Some(call_id), Some(token)) = (params.get("call_id"), params.get("token")) else {
        tracing::warn!(
            stream_sid = start.stream_sid,
            "media stream without call_id/token closed"
        );
        let _ = sink.close().await;
        return;
    };
    // The token is checked before any provider is contacted; a used or unknown one ends here.
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
    if call.provider_call_sid.is_none() && !start.call_sid.is_empty() {
        let _ = state
            .store
            .set_provider_call_sid(&call.id, &start.call_sid)
            .await;
    }
    let control = match &call.trunk_id {
        Some(trunk_id) => state
            .store
            .get_trunk_for_callbacks(trunk_id)
            .await
            .ok()
            .flatten()
            .map(|trunk| {
                let our_number = match call.direction {
                    Direction::Outbound => call.from_number.clone(),
                    _ => call.to_number.clone(),
                };
                Arc::new(TwilioCallControl {
                    rest: state.twilio.clone(),
                    credentials: TwilioCredentials::from(&trunk),
                    call_sid: start.call_sid.clone(),
                    caller_id: our_number,
                }) as Arc<dyn crate::call::io::CallControl>
            }),
        None => None,
    };
    run_call(state.calls.clone(), call, source, sink, control).await;
}
