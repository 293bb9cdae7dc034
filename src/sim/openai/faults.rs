//! What can go wrong, or merely differ, in an OpenAI-compatible server, on demand.
//!
//! Faults are one-shot failures queued on the fake's handle: each request takes the next one
//! (so "429 twice, then a good stream" is two pushes). Quirks are lasting differences of
//! behaviour between real servers (Ollama's whole tool calls, proxies' keep-alive comments,
//! CRLF framing...), set for every response until changed.

use std::time::Duration;

/// One failure, used by the next request that passes authentication and validation.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// An HTTP error instead of a stream.
    Http(HttpFault),
    /// After `after_chunks` data events, `data: {"error": {...}}` and the end of the body.
    MidStreamError { after_chunks: usize },
    /// After `after_chunks` data events, a clean end of the body without `[DONE]`.
    EndWithoutDone { after_chunks: usize },
    /// After `after_chunks` data events, the connection is cut (the body errors).
    Disconnect { after_chunks: usize },
    /// After `after_chunks` data events, a `data:` line that is not JSON; the stream goes on.
    MalformedChunk { after_chunks: usize },
    /// After `after_chunks` data events, silence for `duration`; the stream then goes on.
    Stall {
        after_chunks: usize,
        duration: Duration,
    },
}

/// An error answer: status, OpenAI error body fields and retry headers.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpFault {
    pub status: u16,
    pub message: String,
    pub kind: String,
    pub code: Option<String>,
    /// Sent as `retry-after` (whole seconds, rounded up) and `retry-after-ms`.
    pub retry_after: Option<Duration>,
    /// Sent as `x-should-retry`.
    pub should_retry: Option<bool>,
}

impl Fault {
    /// 429 `rate_limit_exceeded`, asking to come back after `retry_after`.
    pub fn rate_limited(retry_after: Duration) -> Self {
        Fault::Http(HttpFault {
            status: 429,
            message: format!(
                "Rate limit reached for gpt-4o-mini in organization org-sim on requests per min (RPM): Limit 500, Used 500, Requested 1. Please try again in {}ms.",
                retry_after.as_millis()
            ),
            kind: "requests".into(),
            code: Some("rate_limit_exceeded".into()),
            retry_after: Some(retry_after),
            should_retry: None,
        })
    }

    /// 429 `insufficient_quota`: a billing problem, not worth retrying.
    pub fn insufficient_quota() -> Self {
        Fault::Http(HttpFault {
            status: 429,
            message: "You exceeded your current quota, please check your plan and billing details."
                .into(),
            kind: "insufficient_quota".into(),
            code: Some("insufficient_quota".into()),
            retry_after: None,
            should_retry: None,
        })
    }

    /// 500 `server_error`.
    pub fn server_error() -> Self {
        Self::status(
            500,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
        )
    }

    /// 503: the engine is overloaded.
    pub fn overloaded() -> Self {
        Self::status(
            503,
            "The engine is currently overloaded, please try again later.",
            "server_error",
        )
    }

    /// 403: the key may not be used from here.
    pub fn forbidden() -> Self {
        Fault::Http(HttpFault {
            code: Some("unsupported_country_region_territory".into()),
            ..HttpFault::new(
                403,
                "Country, region, or territory not supported",
                "request_forbidden",
            )
        })
    }

    /// Any status with an OpenAI-shaped body.
    pub fn status(status: u16, message: &str, kind: &str) -> Self {
        Fault::Http(HttpFault::new(status, message, kind))
    }
}

impl HttpFault {
    pub fn new(status: u16, message: &str, kind: &str) -> Self {
        Self {
            status,
            message: message.to_owned(),
            kind: kind.to_owned(),
            code: None,
            retry_after: None,
            should_retry: None,
        }
    }
}

/// Lasting ways a server's stream differs from OpenAI's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quirks {
    /// `: keep-alive` comment lines before and between events (proxies, OpenRouter).
    pub keep_alive_comments: bool,
    /// `\r\n` line endings.
    pub crlf: bool,
    /// Each chunk's JSON pretty-printed over several `data:` lines.
    pub multiline_data: bool,
    /// Each event written in pieces of this many bytes.
    pub dribble_bytes: Option<usize>,
    /// Ollama: every tool call whole (id, name, full arguments) in one chunk.
    pub whole_tool_calls: bool,
    /// Tool calls without an `id`.
    pub omit_tool_call_ids: bool,
    /// `finish_reason: "stop"` even when the reply calls tools.
    pub stop_with_tool_calls: bool,
    /// Where usage goes.
    pub usage: UsageMode,
    /// Thinking deltas (`reasoning_content`, then `reasoning`) before the reply.
    pub reasoning: bool,
}

/// Where the usage object is sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum UsageMode {
    /// OpenAI: a last chunk with `"choices": []`, only if `stream_options.include_usage`.
    #[default]
    SeparateChunk,
    /// Inside the chunk that carries the finish reason.
    InFinalChunk,
    /// Never.
    Never,
}

/// Where tool-call arguments are cut into fragments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fragments {
    /// Every this many bytes (moved forward to a character boundary).
    Every(usize),
    /// At these byte offsets (moved forward to character boundaries).
    At(Vec<usize>),
}

impl Default for Fragments {
    fn default() -> Self {
        Fragments::Every(7)
    }
}

impl Fragments {
    /// The pieces of `text`, never splitting a character.
    pub fn split<'a>(&self, text: &'a str) -> Vec<&'a str> {
        let mut cuts: Vec<usize> = match self {
            Fragments::Every(n) => (1..)
                .map(|k| k * (*n).max(1))
                .take_while(|&c| c < text.len())
                .collect(),
            Fragments::At(offsets) => offsets.clone(),
        };
        for cut in &mut cuts {
            *cut = (*cut).min(text.len());
            while !text.is_char_boundary(*cut) {
                *cut += 1;
            }
        }
        cuts.sort_unstable();
        cuts.dedup();
        let mut pieces = Vec::with_capacity(cuts.len() + 1);
        let mut from = 0;
        for cut in cuts.into_iter().chain(std::iter::once(text.len())) {
            if cut > from {
                pieces.push(&text[from..cut]);
                from = cut;
            }
        }
        if pieces.is_empty() {
            pieces.push("");
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragments_cover_the_text_without_splitting_characters() {
        let text = "{\"n\":\"Crème\"}";
        for fragments in [
            Fragments::Every(1),
            Fragments::Every(3),
            Fragments::At(vec![0, 9, 9, 100]),
        ] {
            let pieces = fragments.split(text);
            assert_eq!(pieces.concat(), text);
            assert!(pieces.iter().all(|p| !p.is_empty()));
        }
        assert_eq!(Fragments::Every(4).split(""), vec![""]);
    }
}
