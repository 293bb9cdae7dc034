//! A streamed completion turned into [`LlmEvent`]s: bytes → SSE events → chunks → text deltas,
//! with tool-call fragments accumulated until the end.
//!
//! The stream is a plain state machine polled by the consumer: no task, no channel, no lock
//! between the socket and the agent. Dropping it drops the HTTP response, which closes the
//! connection: that is how a barge-in aborts the model. Deadlines are checked around every read.

use futures_util::{FutureExt, StreamExt};
use reqwest::Response;
use tokio::time::timeout_at;

use super::exchange::{Exchange, Failure, describe};
use super::wire::{self, Chunk};
use crate::generation::Generation;
use crate::llm::sse::{SseEvent, SseParser};
use crate::llm::tool_calls::{ToolCallAccumulator, ToolCallFragment};
use crate::llm::{FinishReason, LlmError, LlmEvent, LlmStream, Usage};

/// How long a finished response may take to deliver its last bytes, so its connection goes back
/// to the pool instead of being closed (a new TLS handshake costs a whole round trip or two).
const DRAIN_FOR_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// Wraps a started response into the event stream of its turn.
pub(super) fn events(exchange: Exchange, response: Response, generation: Generation) -> LlmStream {
    let completion = Completion {
        exchange,
        response: Some(response),
        sse: SseParser::new(),
        reply: Reply::default(),
        generation,
        pending: None,
        ended: false,
    };
    futures_util::stream::unfold(completion, |mut completion| async move {
        let item = completion.next().await?;
        Some((item, completion))
    })
    .boxed()
}

struct Completion {
    exchange: Exchange,
    response: Option<Response>,
    sse: SseParser,
    reply: Reply,
    generation: Generation,
    /// `Finished`, waiting behind the `ToolCalls` event.
    pending: Option<LlmEvent>,
    ended: bool,
}

/// What the turn has produced so far.
#[derive(Default)]
struct Reply {
    tool_calls: ToolCallAccumulator,
    finish_reason: Option<FinishReason>,
    usage: Option<Usage>,
    /// Text or a tool call arrived: from now on nothing is resent and only the total deadline
    /// applies.
    first_token_seen: bool,
}

/// The outcome of one step of the state machine.
enum Step {
    Event(LlmEvent),
    Continue,
    Done,
    Fail { error: LlmError, retryable: bool },
}

impl Completion {
    async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        if let Some(event) = self.pending.take() {
            return Some(Ok(event));
        }
        if self.ended {
            return None;
        }
        loop {
            let step = match self.sse.next_event() {
                Err(e) => Step::Fail {
                    error: LlmError::Protocol(e.to_string()),
                    retryable: false,
                },
                Ok(Some(SseEvent::Done)) => Step::Done,
                Ok(Some(SseEvent::Data(data))) => self.reply.apply(data, self.generation),
                Ok(None) => self.read().await,
            };
            match step {
                Step::Event(event) => return Some(Ok(event)),
                Step::Continue => {}
                Step::Done => return Some(self.complete()),
                Step::Fail { error, retryable } => {
                    if retryable && !self.reply.first_token_seen {
                        match self.resend(error).await {
                            Ok(()) => continue,
                            Err(error) => return Some(self.fail(error)),
                        }
                    }
                    return Some(self.fail(error));
                }
            }
        }
    }

    /// Reads the next piece of the body, within the deadline that applies.
    async fn read(&mut self) -> Step {
        let Some(response) = self.response.as_mut() else {
            return Step::Fail {
                error: LlmError::Truncated,
                retryable: false,
            };
        };
        let seen = self.reply.first_token_seen;
        match timeout_at(self.exchange.deadline(seen), response.chunk()).await {
            Err(_) => Step::Fail {
                error: self.exchange.timeout_error(seen),
                retryable: false,
            },
            Ok(Ok(Some(bytes))) => {
                self.sse.push(&bytes);
                Step::Continue
            }
            // Some servers close without `[DONE]`; a finish reason already said the reply is whole.
            Ok(Ok(None)) if self.reply.finish_reason.is_some() => Step::Done,
            Ok(Ok(None)) => Step::Fail {
                error: LlmError::Truncated,
                retryable: true,
            },
            Ok(Err(e)) => Step::Fail {
                error: LlmError::Stream(describe(&e)),
                retryable: true,
            },
        }
    }

    /// Starts the turn over on a new response (nothing has been produced yet).
    async fn resend(&mut self, error: LlmError) -> Result<(), LlmError> {
        self.response = None;
        self.exchange
            .wait_before_resend(Failure::retryable(error))
            .await?;
        self.response = Some(self.exchange.open().await?);
        self.sse.reset();
        self.reply = Reply::default();
        Ok(())
    }

    /// `[DONE]`: hands out the tool calls (if any), then `Finished`.
    fn complete(&mut self) -> Result<LlmEvent, LlmError> {
        self.ended = true;
        release_for_reuse(self.response.take());
        let calls = self
            .reply
            .tool_calls
            .finish()
            .map_err(|e| LlmError::Protocol(e.to_string()))?;
        let reason = match self.reply.finish_reason.take() {
            // Some local servers say `stop` (or nothing) and still call tools.
            Some(FinishReason::Stop) | None if !calls.is_empty() => FinishReason::ToolCalls,
            Some(reason) => reason,
            None => FinishReason::Stop,
        };
        let finished = LlmEvent::Finished {
            generation: self.generation,
            reason,
            usage: self.reply.usage,
        };
        if calls.is_empty() {
            return Ok(finished);
        }
        self.pending = Some(finished);
        Ok(LlmEvent::ToolCalls {
            generation: self.generation,
            calls,
        })
    }

    fn fail(&mut self, error: LlmError) -> Result<LlmEvent, LlmError> {
        self.ended = true;
        self.response = None;
        Err(error)
    }
}

impl Reply {
    /// Applies one chunk.
    fn apply(&mut self, data: &[u8], generation: Generation) -> Step {
        if data.trim_ascii().is_empty() {
            return Step::Continue;
        }
        let chunk: Chunk<'_> = match serde_json::from_slice(data) {
            Ok(chunk) => chunk,
            Err(e) => {
                return Step::Fail {
                    error: LlmError::Protocol(format!("malformed chunk: {e}")),
                    retryable: false,
                };
            }
        };
        if let Some(message) = chunk.error_message() {
            return Step::Fail {
                error: LlmError::MidStream { message },
                retryable: true,
            };
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }
        let Some(choice) = chunk.choice else {
            return Step::Continue;
        };
        if let Some(usage) = choice.usage {
            self.usage = Some(usage.into());
        }
        if let Some(reason) = choice.finish_reason {
            self.finish_reason = Some(wire::finish_reason(&reason));
        }
        let Some(delta) = choice.delta else {
            return Step::Continue;
        };
        for call in delta.tool_calls.iter().flatten() {
            let function = call.function.as_ref();
            self.tool_calls.push(ToolCallFragment {
                index: call.index,
                id: call.id.as_deref(),
                name: function.and_then(|f| f.name.as_deref()),
                arguments: function.and_then(|f| f.arguments.as_deref()),
            });
            self.first_token_seen = true;
        }
        match delta.content {
            Some(text) if !text.is_empty() => {
                self.first_token_seen = true;
                Step::Event(LlmEvent::Delta {
                    generation,
                    text: text.into_owned(),
                })
            }
            _ => Step::Continue,
        }
    }
}

/// Lets a finished response deliver its last bytes (the end of the chunked body) so that its
/// connection returns to the pool. Usually they are already here; otherwise a short-lived task
/// waits for them, so the consumer gets `Finished` without waiting.
fn release_for_reuse(response: Option<Response>) {
    let Some(mut response) = response else {
        return;
    };
    for _ in 0..8 {
        match response.chunk().now_or_never() {
            Some(Ok(Some(_))) => {}
            Some(_) => return,
            None => break,
        }
    }
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let drain = async { while let Ok(Some(_)) = response.chunk().await {} };
            let _ = tokio::time::timeout(DRAIN_FOR_REUSE, drain).await;
        });
    }
}
