//! `/call/*` records: list (paginated, filtered by assistant, status, direction and creation
//! time) and details (with the transcript, each reply's timings, what its providers went
//! through, the rendered texts and the webhook delivery state). Outbound calls and hang-ups live in `outbound.rs`; a call's webhook
//! attempts in `call_webhooks.rs`.

use axum::extract::{Query, State};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::auth::Caller;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::path::ApiPath;
use crate::analysis::Analysis;
use crate::store::{
    CallFilter, CallRecord, CallStatus, DeliveryState, Direction, ProviderEvent, StoredAnalysis,
    TurnRecord, TurnTiming,
};

/// Largest page of `GET /call/list`.
const MAX_PAGE_SIZE: i64 = 100;

/// Query of `GET /call/list`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// 1-based page number (default 1).
    pub page: Option<i64>,
    /// Calls per page, 1-100 (default 20).
    pub page_size: Option<i64>,
    /// Only calls of this assistant.
    pub assistant_id: Option<String>,
    /// Only calls in this status (`queued`, `ringing`, `in-progress`, `completed`, `busy`,
    /// `no-answer`, `failed`, `canceled`).
    pub status: Option<String>,
    /// Only calls of this direction (`inbound`, `outbound`, `web`; calls only).
    pub direction: Option<String>,
    /// Only calls created at or after this UTC date or time (`2026-01-15`,
    /// `2026-01-15T10:00:00`).
    pub created_after: Option<String>,
    /// Only calls created before this UTC date or time.
    pub created_before: Option<String>,
}

/// One call in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallSummary {
    pub call_id: String,
    pub assistant_id: String,
    pub trunk_id: Option<String>,
    /// `inbound`, `outbound` or `web`.
    pub direction: String,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub status: String,
    pub end_reason: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
}

/// `data` of `GET /call/list`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallPage {
    pub calls: Vec<CallSummary>,
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
}

/// One transcript line.
#[derive(Debug, Serialize, ToSchema)]
pub struct TranscriptTurn {
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub text: String,
    /// Milliseconds from the start of the call.
    pub offset_ms: i64,
    /// The caller cut this assistant turn short; its text is what was heard.
    pub interrupted: bool,
}

impl From<TurnRecord> for TranscriptTurn {
    fn from(t: TurnRecord) -> Self {
        Self {
            role: t.role,
            text: t.text,
            offset_ms: t.offset_ms,
            interrupted: t.interrupted,
        }
    }
}

/// The end-of-call webhook's delivery state.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub delivery_id: String,
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

impl From<DeliveryState> for WebhookDelivery {
    fn from(d: DeliveryState) -> Self {
        Self {
            delivery_id: d.id,
            url: d.url,
            status: d.status,
            attempts: d.attempts,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
        }
    }
}

/// `data` of `GET /call/details/{call_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallDetails {
    #[serde(flatten)]
    pub summary: CallSummary,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub rendered_prompt: String,
    pub rendered_start_instruction: Option<String>,
    /// The assistant's voicemail message as rendered for this call (outbound calls of an
    /// assistant with `assistant_voicemail_message`).
    pub rendered_voicemail_message: Option<String>,
    /// Placeholders that had neither a metadata value nor a default.
    pub missing_variables: Vec<String>,
    /// Who answered an outbound call with voicemail, as Twilio's answering-machine detection
    /// found: `human`, `machine_start`, `machine_end_beep`, `machine_end_silence`,
    /// `machine_end_other`, `fax` or `unknown`; null without detection.
    pub answered_by: Option<String>,
    pub duration_seconds: Option<f64>,
    pub transcript: Vec<TranscriptTurn>,
    /// Each reply of the agent's, in order: when each stage of it happened (milliseconds from
    /// the call's start, on the transcript's clock), how long each took, its interruptions and
    /// its tool calls.
    pub turns: Vec<TurnTiming>,
    /// What the call's providers went through, in order: the LLM asked again after a failure
    /// (`retry`), its fallback model asked (`fallback`), a reply that failed for good
    /// (`failed`), the apology said instead (`apology`).
    pub provider_events: Vec<ProviderEvent>,
    pub webhook_deliveries: Vec<WebhookDelivery>,
    /// `pending`, `completed`, `invalid`, `failed` or `skipped`; null when the assistant asks
    /// for no analysis.
    pub analysis_status: Option<String>,
    /// `{summary, structured_data, success}` (each null unless asked for), plus `error` when
    /// the analysis failed.
    #[schema(value_type = Option<Analysis>)]
    pub analysis: Option<Value>,
    /// Where the call's recording is served (`GET /call/recording/{call_id}`); null when the
    /// call was not recorded or its recording is past its retention.
    pub recording_url: Option<String>,
}

pub(super) fn summary(c: &CallRecord) -> CallSummary {
    CallSummary {
        call_id: c.id.clone(),
        assistant_id: c.assistant_id.clone(),
        trunk_id: c.trunk_id.clone(),
        direction: c.direction.as_str().to_owned(),
        from_number: c.from_number.clone(),
        to_number: c.to_number.clone(),
        status: c.status.as_str().to_owned(),
        end_reason: c.end_reason.clone(),
        created_at: c.created_at.clone(),
        started_at: c.started_at.clone(),
        ended_at: c.ended_at.clone(),
    }
}

fn details_of(
    c: CallRecord,
    (turns, timings, provider_events): (Vec<TurnRecord>, Vec<TurnTiming>, Vec<ProviderEvent>),
    deliveries: Vec<DeliveryState>,
    analysis: Option<StoredAnalysis>,
    recording_url: Option<String>,
) -> CallDetails {
    let (analysis_status, analysis) = match analysis {
        Some(a) => (Some(a.status), a.result),
        None => (None, None),
    };
    let report = crate::call::report::end_of_call_report(&c, &[]);
    CallDetails {
        summary: summary(&c),
        duration_seconds: report["duration_seconds"].as_f64(),
        metadata: c.metadata,
        rendered_prompt: c.rendered_prompt,
        rendered_start_instruction: c.rendered_start_instruction,
        rendered_voicemail_message: c.rendered_voicemail_message,
        missing_variables: c.missing_variables,
        answered_by: c.answered_by,
        transcript: turns.into_iter().map(TranscriptTurn::from).collect(),
        turns: timings,
        provider_events,
        webhook_deliveries: deliveries.into_iter().map(WebhookDelivery::from).collect(),
        analysis_status,
        analysis,
        recording_url,
    }
}

/// The filter a list query asks for (`chats`: of text chats rather than calls) and its page
/// number, or why it is not a valid query.
pub(super) fn list_filter(query: ListQuery, chats: bool) -> Result<(CallFilter, i64), ApiError> {
    let page = query.page.unwrap_or(1);
    let page_size = query.page_size.unwrap_or(20);
    if page < 1 {
        return Err(ApiError::invalid("page", "must be 1 or more"));
    }
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(ApiError::invalid(
            "page_size",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(
            CallStatus::parse(s)
                .filter(|p| p.as_str() == s)
                .ok_or_else(|| {
                    let all: Vec<&str> = CallStatus::ALL.iter().map(|s| s.as_str()).collect();
                    ApiError::invalid("status", format!("must be one of: {}", all.join(", ")))
                })?,
        ),
    };
    if query
        .assistant_id
        .as_deref()
        .is_some_and(crate::validation::has_control_characters)
    {
        return Err(ApiError::invalid(
            "assistant_id",
            "must not contain control characters",
        ));
    }
    let direction = match query.direction.as_deref() {
        None => None,
        Some(d) => Some(
            Direction::parse(d)
                .filter(|d| !chats && *d != Direction::Chat)
                .ok_or_else(|| {
                    ApiError::invalid("direction", "must be one of: inbound, outbound, web")
                })?,
        ),
    };
    for (field, value) in [
        ("created_after", &query.created_after),
        ("created_before", &query.created_before),
    ] {
        if value.as_deref().is_some_and(|v| !is_utc_time(v)) {
            return Err(ApiError::invalid(
                field,
                "must be a UTC date or time like 2026-01-15 or 2026-01-15T10:00:00",
            ));
        }
    }
    let filter = CallFilter {
        chats,
        assistant_id: query.assistant_id,
        status,
        direction,
        created_after: query.created_after,
        created_before: query.created_before,
        limit: page_size,
        offset: (page - 1).saturating_mul(page_size),
    };
    Ok((filter, page))
}

/// A date (`YYYY-MM-DD`), optionally followed by a time (`THH:MM`, seconds and up to six
/// fraction digits optional): compared as text with the stored timestamps, so it must have
/// their shape.
fn is_utc_time(value: &str) -> bool {
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    let Some(date) = value.get(..10) else {
        return false;
    };
    if time::Date::parse(date, date_format).is_err() {
        return false;
    }
    let rest = &value[10..];
    if rest.is_empty() {
        return true;
    }
    let clock = rest.strip_prefix('T').unwrap_or("");
    let formats = [
        time::macros::format_description!("[hour]:[minute]"),
        time::macros::format_description!("[hour]:[minute]:[second]"),
        time::macros::format_description!("[hour]:[minute]:[second].[subsecond]"),
    ];
    formats
        .iter()
        .any(|format| time::Time::parse(clock, format).is_ok())
        && clock.len() <= 15
}

#[utoipa::path(
    get, path = "/call/list", operation_id = "call_list", tag = "calls",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Calls retrieved successfully, newest first", body = Envelope<CallPage>),
        (status = 400, description = "Invalid query", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let (filter, page) = list_filter(query, false)?;
    let page_size = filter.limit;
    let (calls, total) = state.store.list_calls(&owner.id, &filter).await?;
    let page = CallPage {
        calls: calls.iter().map(summary).collect(),
        page,
        page_size,
        total,
    };
    Ok(ok("Calls retrieved successfully", page))
}

#[utoipa::path(
    get, path = "/call/details/{call_id}", operation_id = "call_details", tag = "calls",
    params(("call_id" = String, Path, description = "The call id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Call details retrieved", body = Envelope<CallDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Call not found", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let call = state
        .store
        .get_call(&owner.id, &id)
        .await?
        .filter(|c| c.direction != Direction::Chat)
        .ok_or_else(|| ApiError::NotFound("Call not found".to_owned()))?;
    let turns = state.store.call_turns(&call.id).await?;
    let timings = state.store.turn_timings(&call.id).await?;
    let provider_events = state.store.provider_events(&call.id).await?;
    let deliveries = state.store.call_webhooks(&call.id).await?;
    let analysis = state.store.analysis(&call.id).await?;
    let recording_url = state.calls.recording_url(&call.id).await;
    Ok(ok(
        "Call details retrieved successfully",
        details_of(
            call,
            (turns, timings, provider_events),
            deliveries,
            analysis,
            recording_url,
        ),
    ))
}
