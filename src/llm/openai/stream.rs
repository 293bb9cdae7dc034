//! A streamed completion turned into [`LlmEvent`]s: bytes → SSE events → chunks → text deltas,
//! with tool-call fragments accumulated until the end.
//!
//! The stream is a plain state machine polled by the consumer: no task, no channel, no lock
//! between the socket and the agent. Dropping it drops the HTTP response, which closes the
//! connection: that is how a barge-in aborts the model. Deadlines are checked around every read.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::Response;
use tokio::time::{Instant, timeout_at};

use super::exchange::{Exchange, Failure, describe};
use super::wire::{self, Chunk};
use crate::generation::Generation;
use crate::llm::sse::{SseEvent, SseParser};
use crate::llm::tool_calls::{ToolCallAccumulator, ToolCallFragment};
use crate::llm::{FinishReason, LlmError, LlmEvent, LlmStream, Usage};

/// How long `Finished` may wait for the end of the body after `[DONE]`. The end usually arrives
/// with `[DONE]`; reading it is what puts the connection back in the pool for the next turn
/// (instead of paying a new TCP and TLS handshake).
const END_OF_BODY_WAIT: Duration = Duration::from_millis(50);
/// How long a background task keeps waiting for it after that.
const DRAIN_FOR_REUSE: Duration = Duration::from_secs(2);

/// Wraps a started response into the event stream of its turn.
pub(super) fn events(exchange: Exchange, response: Response, generation: Generation) -> LlmStream {
    let completion = Completion {
        exchange,
        response: Some(response),
        sse: SseParser::new(),
        reply: Reply::default(),
        generation,
        pending: None,
        done: false,
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
    /// `[DONE]` (or a finish reason and the end of the body) arrived.
    done: bool,
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
            self.release_connection().await;
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
                Step::Done => {
                    let step = self.complete();
                    if self.pending.is_none() {
                        self.release_connection().await;
                    }
                    return Some(step);
                }
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
        self.done = true;
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

impl Completion {
    /// Reads the end of a finished body so its connection goes back to the pool: the client
    /// only reports the end once the connection is pooled. Briefly here; if the end is late, in
    /// a short-lived task, so `Finished` is not held up.
    async fn release_connection(&mut self) {
        let Some(mut response) = self.response.take() else {
            return;
        };
        let deadline = (Instant::now() + END_OF_BODY_WAIT).min(self.exchange.deadline(true));
        if timeout_at(deadline, read_to_end(&mut response))
            .await
            .is_err()
        {
            drain_in_background(response);
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        // Dropped between `ToolCalls` and `Finished`: the reply was whole, keep the connection.
        // Any other drop (barge-in, error) closes it, which is what aborts the request.
        if self.done
            && let Some(response) = self.response.take()
        {
            drain_in_background(response);
        }
    }
}

async fn read_to_end(response: &mut Response) {
    while let Ok(Some(_)) = response.chunk().await {}
}

fn drain_in_background(mut response: Response) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = tokio::time::timeout(DRAIN_FOR_REUSE, read_to_end(&mut response)).await;
        });
    }
}

/// Runs a streamed body, cut into `reads` as the network delivered them, through the SSE parser
/// and the chunk decoding of a live completion, up to `[DONE]`: the text deltas and the whole
/// tool calls, or the error the stream would end with. No socket, deadline or resend. The entry
/// point of the fuzz target (`fuzz/`).
#[doc(hidden)]
pub fn read_body<'a>(
    reads: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<LlmEvent>, Vec<crate::llm::ToolCall>), LlmError> {
    let mut sse = SseParser::new();
    let mut reply = Reply::default();
    let mut events = Vec::new();
    for read in reads {
        sse.push(read);
        loop {
            let step = match sse.next_event() {
                Err(e) => return Err(LlmError::Protocol(e.to_string())),
                Ok(None) => break,
                Ok(Some(SseEvent::Done)) => Step::Done,
                Ok(Some(SseEvent::Data(data))) => reply.apply(data, Generation(1)),
            };
            match step {
                Step::Event(event) => events.push(event),
                Step::Continue => {}
                Step::Fail { error, .. } => return Err(error),
                Step::Done => {
                    let calls = reply
                        .tool_calls
                        .finish()
                        .map_err(|e| LlmError::Protocol(e.to_string()))?;
                    return Ok((events, calls));
                }
            }
        }
    }
    Err(LlmError::Truncated)
}
