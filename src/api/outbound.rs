//! `POST /call/outbound` and `POST /call/hangup/{call_id}`: placing a call through one of the
//! owner's trunks with the assistant's texts rendered from the request's metadata, and ending a
//! call early. The call is stored before the provider is asked to dial, so a failure leaves a
//! call marked failed, never a dangling one.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;
use super::telephony::{STREAM_TOKEN_TTL, media_stream_url};
use crate::call::io::Control;
use crate::call::runner::queue_report;
use crate::call::setup::{CallDraft, prepare_call};
use crate::store::{CallStatus, Direction, NewCall};
use crate::telephony::TrunkProvider;
use crate::telephony::provider::{PlaceCall, StreamTarget, TelephonyError};
use crate::validation::{Violations, is_e164};

/// Body of `POST /call/outbound`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutboundCall {
    /// The caller's own active assistant.
    #[schema(required = true)]
    pub assistant_id: Option<String>,
    /// The caller's own active trunk (`ST_…`); its default caller number is the caller ID.
    #[schema(required = true)]
    pub trunk_id: Option<String>,
    /// The number to call, E.164.
    #[schema(required = true)]
    pub to_number: Option<String>,
    /// The telephony service; must be the trunk's provider (`twilio`, …).
    #[schema(required = true)]
    pub call_service: Option<String>,
    /// Values for the `{{key}}` placeholders of the prompt, start instruction and voicemail
    /// message.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `data` of a placed call.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboundPlaced {
    pub call_id: String,
    /// `queued`: the provider accepted the call; progress arrives by status callbacks.
    pub status: String,
    /// The provider's id of the call (Twilio `CA…`, Plivo's request UUID, …).
    pub provider_call_sid: String,
    pub from_number: String,
    pub to_number: String,
    /// Placeholders that had neither a metadata value nor a default (rendered empty).
    pub missing_variables: Vec<String>,
}

/// `data` of a hang-up.
#[derive(Debug, Serialize, ToSchema)]
pub struct HungUp {
    pub call_id: String,
    pub status: String,
}

#[utoipa::path(
    post, path = "/call/outbound", operation_id = "call_outbound", tag = "calls",
    request_body = OutboundCall,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Call placed", body = Envelope<OutboundPlaced>),
        (status = 400, description = "Invalid input, or the provider refused the call (its message is in `message`)", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 429, description = "Too many concurrent calls for this owner", body = Envelope<Value>),
        (status = 502, description = "The provider could not be reached", body = Envelope<Value>),
        (status = 503, description = "This server is shutting down; another takes the call", body = Envelope<Value>),
    )
)]
pub async fn place(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<OutboundCall>,
) -> Result<Response, ApiError> {
    super::health::refuse_if_draining(&state)?;
    let mut v = Violations::new();
    v.required_text("assistant_id", body.assistant_id.as_deref());
    v.required_text("trunk_id", body.trunk_id.as_deref());
    match body.to_number.as_deref() {
        None => v.add("to_number", "is required"),
        Some(n) if !is_e164(n) => {
            v.add("to_number", "must be an E.164 number such as +15550200000")
        }
        Some(_) => {}
    }
    let service = body.call_service.as_deref();
    match service {
        None => v.add(
            "call_service",
            format!("is required ({})", TrunkProvider::names()),
        ),
        Some(s) => {
            TrunkProvider::parse_field(s, "call_service", &mut v);
        }
    }
    let metadata = call_metadata(&mut v, body.metadata.clone());
    if !v.is_empty() {
        return Err(ApiError::Invalid(v.into_result().err().unwrap_or_default()));
    }
    let assistant_id = body.assistant_id.unwrap_or_default();
    let trunk_id = body.trunk_id.unwrap_or_default();
    let to = body.to_number.unwrap_or_default();
    let assistant = state.store.get_assistant(&owner.id, &assistant_id).await?;
    let trunk = state
        .store
        .get_trunk_for_owner(&owner.id, &trunk_id)
        .await?;
    if assistant.is_none() {
        v.add("assistant_id", "no active assistant with this id");
    }
    match &trunk {
        None => v.add("trunk_id", "no active trunk with this id"),
        Some(t) if Some(t.provider.as_str()) != service => v.add(
            "call_service",
            format!("trunk {} is a {} trunk", t.id, t.provider.as_str()),
        ),
        Some(_) => {}
    }
    let (Some(assistant), Some(trunk)) = (assistant, trunk) else {
        return Err(ApiError::Invalid(v.into_result().err().unwrap_or_default()));
    };
    v.into_result().map_err(ApiError::Invalid)?;

    let prepared = prepare_call(CallDraft {
        assistant: &assistant,
        direction: Direction::Outbound,
        trunk_id: Some(trunk.id.clone()),
        from_number: Some(trunk.default_caller_number.clone()),
        to_number: Some(to.clone()),
        metadata,
        status: CallStatus::Queued,
        provider_call_sid: None,
        token_ttl: STREAM_TOKEN_TTL,
    });
    let call_id = prepared.call.id.clone();
    insert_call_within_limit(&state, &prepared.call).await?;

    let provider = state.telephony.get(trunk.provider);
    let base = state.config.public_base_url();
    let media = provider.media_url(&trunk, media_stream_url(&state, trunk.provider));
    let stream = StreamTarget {
        url: &media,
        call_id: &call_id,
        token: &prepared.stream_token,
    };
    let answer_url = format!(
        "{base}/{}/voice?call_id={call_id}&token={}",
        trunk.provider, prepared.stream_token
    );
    let status_callback = format!("{base}/{}/status?call_id={call_id}", trunk.provider);
    // Detection only when there is a message to leave: otherwise a machine gets the same
    // conversation a person would, and nothing about the call changes.
    let amd_callback = prepared
        .call
        .rendered_voicemail_message
        .as_ref()
        .map(|_| format!("{base}/{}/amd?call_id={call_id}", trunk.provider));
    let placed = provider
        .place_call(
            &trunk,
            PlaceCall {
                to: &to,
                from: &trunk.default_caller_number,
                stream,
                answer_url: &answer_url,
                status_callback: &status_callback,
                amd_callback: amd_callback.as_deref(),
                ring_timeout_secs: 60,
                // The provider ends the call too if voxbridge somehow does not.
                time_limit_secs: assistant.settings.max_call_duration_secs + 60,
            },
        )
        .await;
    let provider_call_sid = match placed {
        Ok(sid) => sid,
        Err(error) => return Err(provider_refused(&state, &call_id, error).await),
    };
    state
        .store
        .set_provider_call_sid(&call_id, &provider_call_sid)
        .await?;
    tracing::info!(
        call_id,
        provider = trunk.provider.as_str(),
        provider_call_sid,
        to,
        "outbound call placed"
    );
    Ok(ok(
        "Call placed successfully",
        OutboundPlaced {
            call_id,
            status: CallStatus::Queued.as_str().to_owned(),
            provider_call_sid,
            from_number: trunk.default_caller_number,
            to_number: to,
            missing_variables: prepared.call.missing_variables,
        },
    ))
}

/// Marks the call failed and turns the provider's refusal into an API error.
async fn provider_refused(state: &AppState, call_id: &str, error: TelephonyError) -> ApiError {
    let reason = match error.code() {
        Some(code) => format!("provider_rejected: {code}"),
        None => "provider_unreachable".to_owned(),
    };
    if let Err(e) = state
        .store
        .advance_call_status(call_id, CallStatus::Failed, Some(&reason))
        .await
    {
        tracing::error!(call_id, error = %e, "failed call not stored");
    }
    tracing::warn!(call_id, %error, "the provider refused the outbound call");
    queue_report(&state.calls, call_id).await;
    match &error {
        TelephonyError::Refused {
            provider,
            code,
            message,
            ..
        } if error.is_client_error() => ApiError::BadRequest(format!(
            "{provider} refused the call ({}): {message}",
            code.as_deref().unwrap_or("no code")
        )),
        TelephonyError::Invalid { provider, message } => {
            ApiError::BadRequest(format!("{provider} refused the call: {message}"))
        }
        _ => ApiError::BadGateway(format!("The provider could not place the call: {error}")),
    }
}

#[utoipa::path(
    post, path = "/call/hangup/{call_id}", operation_id = "call_hangup", tag = "calls",
    params(("call_id" = String, Path, description = "The call id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The call is being ended", body = Envelope<HungUp>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Call not found", body = Envelope<Value>),
        (status = 409, description = "The call has already ended", body = Envelope<Value>),
        (status = 502, description = "The provider could not be reached", body = Envelope<Value>),
        (status = 504, description = "The server process holding the call did not act on it in time", body = Envelope<Value>),
    )
)]
pub async fn hang_up(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(call_id): ApiPath,
) -> Result<Response, ApiError> {
    let call = state
        .store
        .get_call(&owner.id, &call_id)
        .await?
        .filter(|c| c.direction != Direction::Chat)
        .ok_or_else(|| ApiError::NotFound("Call not found".to_owned()))?;
    if call.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "The call has already ended ({})",
            call.status.as_str()
        )));
    }
    // A live session ends itself (politely closing the stream ends the phone call), on whichever
    // node holds it; the provider is told too, so a call that is still ringing stops ringing,
    // and a phone call ends even if the node holding it does not answer.
    let relayed = state.calls.control(&call, Control::HangUp).await;
    let provider = match (&call.provider_call_sid, &call.trunk_id) {
        (Some(sid), Some(trunk_id)) => state
            .store
            .get_trunk_for_callbacks(trunk_id)
            .await?
            .map(|trunk| (sid, trunk)),
        _ => None,
    };
    if let Err(e) = &relayed {
        tracing::warn!(call_id = call.id, error = %e, "hang-up not relayed to the call's node");
        if provider.is_none() {
            return Err(ApiError::GatewayTimeout(format!(
                "The server process holding the call did not answer: {e}"
            )));
        }
    }
    if let Some((sid, trunk)) = provider {
        state
            .telephony
            .get(trunk.provider)
            .hang_up(&trunk, sid)
            .await
            .map_err(|e| {
                ApiError::BadGateway(format!("The provider could not end the call: {e}"))
            })?;
    }
    let _ = state.store.set_end_reason(&call.id, "hung_up_by_api").await;
    Ok(ok(
        "Call is being ended",
        HungUp {
            call_id: call.id,
            status: call.status.as_str().to_owned(),
        },
    ))
}

/// A call's `metadata`: an object (absent means empty); anything else is a 400 on `metadata`.
pub(super) fn call_metadata(v: &mut Violations, metadata: Option<Value>) -> Value {
    let metadata = metadata.unwrap_or_else(|| Value::Object(Default::default()));
    if !metadata.is_object() {
        v.add("metadata", "must be a JSON object");
    }
    metadata
}

/// Writes a call that counts towards the owner's `max_concurrent_calls_per_owner`, or answers
/// 429 when the owner already has as many calls queued, ringing or in progress as allowed. The
/// check and the write are one reservation in the store, so a burst of requests (on one node or
/// many) cannot pass the limit together.
pub(super) async fn insert_call_within_limit(
    state: &AppState,
    call: &NewCall,
) -> Result<(), ApiError> {
    let limit = i64::from(state.config.max_concurrent_calls_per_owner);
    if !state.store.insert_call_within_limit(call, limit).await? {
        return Err(ApiError::TooManyRequests(format!(
            "Too many concurrent calls: this account may have {limit} calls queued, ringing or in progress at once"
        )));
    }
    Ok(())
}
