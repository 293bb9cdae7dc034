//! Text chats: `POST /chat/create`, `POST /chat/message/{chat_id}` (JSON, or SSE with
//! `Accept: text/event-stream`), `GET /chat/details/{chat_id}`, `GET /chat/list`,
//! `POST /chat/end/{chat_id}`. The agent behind them is the one calls use (see [`crate::chat`]).

use std::convert::Infallible;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::calls::{ListQuery, TranscriptTurn, WebhookDelivery, list_filter};
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::json::ApiJson;
use super::outbound::call_metadata;
use super::path::ApiPath;
use crate::analysis::Analysis;
use crate::chat::{self, ChatEnd, ChatError, ChatLine, MAX_MESSAGE_CHARS, Replied};
use crate::store::{CallRecord, Direction, TurnTiming};
use crate::validation::Violations;

/// Body of `POST /chat/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatCreate {
    /// The caller's own active assistant.
    #[schema(required = true)]
    pub assistant_id: Option<String>,
    /// Values for the `{{key}}` placeholders of the prompt and start instruction.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// Body of `POST /chat/message/{chat_id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageIn {
    /// What the user says, 1 to 10,000 characters.
    #[schema(required = true)]
    pub text: Option<String>,
}

/// One message of a chat.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessageOut {
    /// `assistant` or `user`.
    pub role: String,
    pub text: String,
}

impl From<ChatLine> for ChatMessageOut {
    fn from(line: ChatLine) -> Self {
        Self {
            role: line.role.to_owned(),
            text: line.text,
        }
    }
}

/// `data` of `POST /chat/create`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCreated {
    pub chat_id: String,
    /// Placeholders that had neither a metadata value nor a default (rendered empty).
    pub missing_variables: Vec<String>,
    /// The assistant's greeting, when it speaks first; else empty.
    pub messages: Vec<ChatMessageOut>,
}

/// `data` of `POST /chat/message/{chat_id}` (and of the SSE `done` event).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatReply {
    /// The assistant's messages answering this one (more than one when it used tools).
    pub messages: Vec<ChatMessageOut>,
    /// The assistant ended the chat; further messages answer 409.
    pub ended: bool,
}

impl From<Replied> for ChatReply {
    fn from(replied: Replied) -> Self {
        Self {
            messages: replied.messages.into_iter().map(Into::into).collect(),
            ended: replied.ended,
        }
    }
}

/// One chat in a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatSummary {
    pub chat_id: String,
    pub assistant_id: String,
    /// `in-progress` or `completed`.
    pub status: String,
    /// `assistant_ended_chat`, `ended_by_api` or `idle_timeout`.
    pub end_reason: Option<String>,
    pub created_at: String,
    pub ended_at: Option<String>,
}

/// `data` of `GET /chat/list`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatPage {
    pub chats: Vec<ChatSummary>,
    pub page: i64,
    pub page_size: i64,
    pub total: i64,
}

/// `data` of `GET /chat/details/{chat_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatDetails {
    #[serde(flatten)]
    pub summary: ChatSummary,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub rendered_prompt: String,
    pub missing_variables: Vec<String>,
    /// Every message, tool calls included (`role` `tool`), in order.
    pub messages: Vec<TranscriptTurn>,
    /// Each reply's timings (LLM request → first token, tool calls), in order.
    pub turns: Vec<TurnTiming>,
    pub webhook_deliveries: Vec<WebhookDelivery>,
    pub analysis_status: Option<String>,
    #[schema(value_type = Option<Analysis>)]
    pub analysis: Option<Value>,
}

/// `data` of `POST /chat/end/{chat_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatEnded {
    pub chat_id: String,
    pub status: String,
}

impl From<ChatError> for ApiError {
    fn from(e: ChatError) -> Self {
        match e {
            ChatError::NotFound => ApiError::NotFound("Chat not found".to_owned()),
            ChatError::Ended => ApiError::Conflict("The chat has ended".to_owned()),
            ChatError::Busy => ApiError::Conflict(
                "A reply to this chat is in progress; send the next message after it".to_owned(),
            ),
            ChatError::Llm(e) => ApiError::BadGateway(format!("The assistant's model failed: {e}")),
            ChatError::Store(e) => ApiError::from(e),
        }
    }
}

fn summary(c: &CallRecord) -> ChatSummary {
    ChatSummary {
        chat_id: c.id.clone(),
        assistant_id: c.assistant_id.clone(),
        status: c.status.as_str().to_owned(),
        end_reason: c.end_reason.clone(),
        created_at: c.created_at.clone(),
        ended_at: c.ended_at.clone(),
    }
}

#[utoipa::path(
    post, path = "/chat/create", operation_id = "chat_create", tag = "chats",
    request_body = ChatCreate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Chat created", body = Envelope<ChatCreated>),
        (status = 400, description = "Invalid input", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "No active assistant with this id", body = Envelope<Value>),
        (status = 502, description = "The assistant's model failed to greet", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<ChatCreate>,
) -> Result<Response, ApiError> {
    let mut v = Violations::new();
    v.required_text("assistant_id", body.assistant_id.as_deref());
    let metadata = call_metadata(&mut v, body.metadata);
    v.into_result().map_err(ApiError::Invalid)?;
    let (assistant, tools) = state
        .store
        .assistant_with_tools(&owner.id, body.assistant_id.as_deref().unwrap_or_default())
        .await?
        .ok_or_else(|| ApiError::NotFound("Assistant not found".to_owned()))?;
    let created = chat::create(&state.calls, &assistant, tools, metadata).await?;
    Ok(ok(
        "Chat created",
        ChatCreated {
            chat_id: created.chat.id,
            missing_variables: created.chat.missing_variables,
            messages: created.messages.into_iter().map(Into::into).collect(),
        },
    ))
}

#[utoipa::path(
    post, path = "/chat/message/{chat_id}", operation_id = "chat_message", tag = "chats",
    params(("chat_id" = String, Path, description = "The chat id")),
    request_body = ChatMessageIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The assistant's reply; with `Accept: text/event-stream`, SSE: `delta` events (`{\"text\"}`) as the reply streams, then `done` (this body's `data`) or `error` (`{\"message\"}`)", body = Envelope<ChatReply>),
        (status = 400, description = "Invalid input", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Chat not found", body = Envelope<Value>),
        (status = 409, description = "The chat has ended, or a reply to it is in progress", body = Envelope<Value>),
        (status = 502, description = "The assistant's model failed (nothing was kept: send again)", body = Envelope<Value>),
    )
)]
pub async fn message(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(chat_id): ApiPath,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ChatMessageIn>,
) -> Result<Response, ApiError> {
    let mut v = Violations::new();
    v.required_text("text", body.text.as_deref());
    if let Some(text) = &body.text {
        v.char_length("text", text, 0, MAX_MESSAGE_CHARS);
    }
    v.into_result().map_err(ApiError::Invalid)?;
    let text = body.text.unwrap_or_default();
    let wants_stream = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !wants_stream {
        let replied = chat::reply(&state.calls, &owner.id, &chat_id, &text, None).await?;
        return Ok(ok("Reply", ChatReply::from(replied)));
    }
    // The reply runs on its own: a client that disconnects does not lose it. The response is
    // an error envelope if the reply fails before its first word, else a stream.
    let (deltas_tx, mut deltas) = mpsc::channel::<String>(64);
    let (done_tx, mut done) = oneshot::channel();
    let services = state.calls.clone();
    tokio::spawn(async move {
        let result = chat::reply(&services, &owner.id, &chat_id, &text, Some(deltas_tx)).await;
        let _ = done_tx.send(result);
    });
    let first = tokio::select! {
        biased;
        Some(delta) = deltas.recv() => Some(delta),
        result = &mut done => match result {
            Ok(Err(e)) => return Err(e.into()),
            Ok(Ok(replied)) => return Ok(sse(stream::iter(done_events(Ok(replied)))).into_response()),
            Err(_) => return Err(ApiError::Internal("the reply task ended".into())),
        },
    };
    let deltas = stream::iter(first)
        .chain(tokio_stream_of(deltas))
        .map(|text| {
            Event::default()
                .event("delta")
                .data(json!({ "text": text }).to_string())
        });
    let end = stream::once(async move {
        let result = done.await.unwrap_or(Err(ChatError::Busy));
        stream::iter(done_events(result))
    })
    .flatten();
    Ok(sse(deltas.chain(end)).into_response())
}

fn sse(events: impl Stream<Item = Event> + Send + 'static) -> impl IntoResponse {
    Sse::new(events.map(Ok::<_, Infallible>))
}

/// The stream's last event: `done` with the reply, or `error`.
fn done_events(result: Result<Replied, ChatError>) -> Option<Event> {
    Some(match result {
        Ok(replied) => Event::default()
            .event("done")
            .data(serde_json::to_string(&ChatReply::from(replied)).expect("serialises")),
        Err(e) => {
            let message = ApiError::from(e).to_string();
            Event::default()
                .event("error")
                .data(json!({ "message": message }).to_string())
        }
    })
}

/// The receiver as a stream, until its sender is dropped.
fn tokio_stream_of(mut rx: mpsc::Receiver<String>) -> impl Stream<Item = String> {
    stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[utoipa::path(
    get, path = "/chat/details/{chat_id}", operation_id = "chat_details", tag = "chats",
    params(("chat_id" = String, Path, description = "The chat id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Chat details", body = Envelope<ChatDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Chat not found", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(chat_id): ApiPath,
) -> Result<Response, ApiError> {
    let chat = state
        .store
        .get_call(&owner.id, &chat_id)
        .await?
        .filter(|c| c.direction == Direction::Chat)
        .ok_or_else(|| ApiError::from(ChatError::NotFound))?;
    let turns = state.store.call_turns(&chat.id).await?;
    let deliveries = state.store.call_webhooks(&chat.id).await?;
    let timings = state.store.turn_timings(&chat.id).await?;
    let (analysis_status, analysis) = match state.store.analysis(&chat.id).await? {
        Some(a) => (Some(a.status), a.result),
        None => (None, None),
    };
    let details = ChatDetails {
        summary: summary(&chat),
        metadata: chat.metadata,
        rendered_prompt: chat.rendered_prompt,
        missing_variables: chat.missing_variables,
        messages: turns.into_iter().map(TranscriptTurn::from).collect(),
        turns: timings,
        webhook_deliveries: deliveries.into_iter().map(WebhookDelivery::from).collect(),
        analysis_status,
        analysis,
    };
    Ok(ok("Chat details retrieved successfully", details))
}

#[utoipa::path(
    get, path = "/chat/list", operation_id = "chat_list", tag = "chats",
    params(ListQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Chats, newest first", body = Envelope<ChatPage>),
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
    let (filter, page) = list_filter(query, true)?;
    let page_size = filter.limit;
    let (chats, total) = state.store.list_calls(&owner.id, &filter).await?;
    Ok(ok(
        "Chats retrieved successfully",
        ChatPage {
            chats: chats.iter().map(summary).collect(),
            page,
            page_size,
            total,
        },
    ))
}

#[utoipa::path(
    post, path = "/chat/end/{chat_id}", operation_id = "chat_end", tag = "chats",
    params(("chat_id" = String, Path, description = "The chat id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Chat ended; its webhook and analysis follow", body = Envelope<ChatEnded>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Chat not found", body = Envelope<Value>),
        (status = 409, description = "The chat had already ended", body = Envelope<Value>),
    )
)]
pub async fn end(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(chat_id): ApiPath,
) -> Result<Response, ApiError> {
    chat::end(&state.calls, &owner.id, &chat_id, ChatEnd::EndedByApi).await?;
    Ok(ok(
        "Chat ended",
        ChatEnded {
            chat_id,
            status: "completed".to_owned(),
        },
    ))
}
