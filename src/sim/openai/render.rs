//! Turns a scripted reply into what a real server sends: the chunk sequence of a streamed
//! completion (role chunk, content pieces, tool-call fragments, finish reason, usage, `[DONE]`)
//! framed as SSE, or one `chat.completion` object when the client did not ask to stream.
//!
//! The stream is planned up front as a list of writes and pauses, so quirks (framing, Ollama's
//! whole tool calls) and faults (an error or a cut after the n-th event) are easy to place.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::faults::{Fault, Fragments, Quirks, UsageMode};
use super::script::Reply;
use super::validate::ValidRequest;
use crate::sim::Latency;

/// One step of a planned response body.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    Send(Bytes),
    Sleep(Duration),
    /// Cut the connection (the body fails).
    Cut,
}

/// How replies are cut into chunks.
#[derive(Debug, Clone)]
pub(super) struct Shape {
    pub text_chunk_chars: usize,
    pub fragments: Fragments,
    pub quirks: Quirks,
    pub latency: Latency,
}

/// One completion's identity, shared by all its chunks.
pub(super) struct Completion<'a> {
    pub id: String,
    pub created: u64,
    pub model: &'a str,
    pub reply: &'a Reply,
    pub request: &'a ValidRequest,
    /// Tool call ids, one per call of the reply.
    pub call_ids: Vec<String>,
}

impl<'a> Completion<'a> {
    pub fn new(reply: &'a Reply, request: &'a ValidRequest) -> Self {
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            id: format!(
                "chatcmpl-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..29]
            ),
            created,
            model: &request.model,
            reply,
            request,
            call_ids: reply
                .tool_calls
                .iter()
                .map(|_| format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24]))
                .collect(),
        }
    }

    fn finish_reason(&self, quirks: &Quirks) -> &'static str {
        if self.reply.tool_calls.is_empty() || quirks.stop_with_tool_calls {
            "stop"
        } else {
            "tool_calls"
        }
    }

    fn usage(&self) -> Value {
        let tokens = |chars: usize| chars.div_ceil(4);
        let prompt: usize = self
            .request
            .messages
            .iter()
            .map(|m| 4 + tokens(m.content.len()))
            .sum();
        let completion = 1 + tokens(
            self.reply.text.len()
                + self
                    .reply
                    .tool_calls
                    .iter()
                    .map(|c| c.name.len() + c.arguments.len())
                    .sum::<usize>(),
        );
        json!({
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0}
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>, usage: Option<Value>) -> Value {
        let mut chunk = self.envelope("chat.completion.chunk");
        chunk.insert(
            "choices".into(),
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]),
        );
        if let Some(usage) = usage {
            chunk.insert("usage".into(), usage);
        } else if self.request.include_usage {
            chunk.insert("usage".into(), Value::Null);
        }
        Value::Object(chunk)
    }

    fn envelope(&self, object: &str) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("id".into(), json!(self.id));
        map.insert("object".into(), json!(object));
        map.insert("created".into(), json!(self.created));
        map.insert("model".into(), json!(self.model));
        map.insert("system_fingerprint".into(), json!("fp_sim"));
        map
    }

    fn tool_call(&self, index: usize, arguments: &str, quirks: &Quirks) -> Value {
        let call = &self.reply.tool_calls[index];
        let mut value = json!({
            "index": index,
            "type": "function",
            "function": {"name": call.name, "arguments": arguments}
        });
        if !quirks.omit_tool_call_ids {
            value["id"] = json!(self.call_ids[index]);
        }
        value
    }

    /// The `chat.completion` object of a non-streamed answer.
    pub fn whole(&self, quirks: &Quirks) -> Value {
        let mut message = json!({
            "role": "assistant",
            "content": if self.reply.text.is_empty() { Value::Null } else { json!(self.reply.text) },
            "refusal": null,
        });
        if !self.reply.tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(
                (0..self.reply.tool_calls.len())
                    .map(|i| {
                        let mut call =
                            self.tool_call(i, &self.reply.tool_calls[i].arguments, quirks);
                        if let Some(map) = call.as_object_mut() {
                            map.remove("index");
                        }
                        call
                    })
                    .collect(),
            );
        }
        let mut whole = self.envelope("chat.completion");
        whole.insert(
            "choices".into(),
            json!([{"index": 0, "message": message, "logprobs": null,
                    "finish_reason": self.finish_reason(quirks)}]),
        );
        whole.insert("usage".into(), self.usage());
        whole.insert("service_tier".into(), json!("default"));
        Value::Object(whole)
    }

    /// The chunks of the streamed answer, each flagged when it is model output (paced by the
    /// per-chunk latency).
    fn chunks(&self, shape: &Shape) -> Vec<(Value, bool)> {
        let quirks = &shape.quirks;
        let text = &self.reply.text;
        let mut chunks = Vec::new();
        let role_content = if text.is_empty() && !self.reply.tool_calls.is_empty() {
            Value::Null
        } else {
            json!("")
        };
        chunks.push((
            self.chunk(
                json!({"role": "assistant", "content": role_content, "refusal": null}),
                None,
                None,
            ),
            false,
        ));
        if quirks.reasoning {
            chunks.push((
                self.chunk(json!({"reasoning_content": "Let me think."}), None, None),
                true,
            ));
            chunks.push((
                self.chunk(
                    json!({"reasoning": " The caller wants an answer."}),
                    None,
                    None,
                ),
                true,
            ));
        }
        for piece in text_pieces(text, shape.text_chunk_chars) {
            chunks.push((self.chunk(json!({"content": piece}), None, None), true));
        }
        if quirks.whole_tool_calls {
            if !self.reply.tool_calls.is_empty() {
                let calls: Vec<Value> = (0..self.reply.tool_calls.len())
                    .map(|i| self.tool_call(i, &self.reply.tool_calls[i].arguments, quirks))
                    .collect();
                chunks.push((self.chunk(json!({"tool_calls": calls}), None, None), true));
            }
        } else {
            for (i, call) in self.reply.tool_calls.iter().enumerate() {
                chunks.push((
                    self.chunk(
                        json!({"tool_calls": [self.tool_call(i, "", quirks)]}),
                        None,
                        None,
                    ),
                    true,
                ));
                if call.arguments.is_empty() {
                    continue;
                }
                for piece in shape.fragments.split(&call.arguments) {
                    let fragment = json!({"index": i, "function": {"arguments": piece}});
                    chunks.push((
                        self.chunk(json!({"tool_calls": [fragment]}), None, None),
                        true,
                    ));
                }
            }
        }
        let usage_in_final = (quirks.usage == UsageMode::InFinalChunk).then(|| self.usage());
        chunks.push((
            self.chunk(json!({}), Some(self.finish_reason(quirks)), usage_in_final),
            false,
        ));
        if quirks.usage == UsageMode::SeparateChunk && self.request.include_usage {
            let mut last = self.envelope("chat.completion.chunk");
            last.insert("choices".into(), json!([]));
            last.insert("usage".into(), self.usage());
            chunks.push((Value::Object(last), false));
        }
        chunks
    }

    /// The whole streamed response as writes and pauses, with the fault (if any) in place.
    pub fn stream_plan(&self, shape: &Shape, fault: Option<&Fault>) -> VecDeque<Action> {
        let framing = Framing::of(&shape.quirks);
        let chunks = self.chunks(shape);
        let mut plan = VecDeque::new();
        let mut first_output = true;
        for (sent, (chunk, output)) in chunks.iter().enumerate() {
            if let Some(fault) = fault
                && fault_position(fault) == Some(sent)
                && !framing.inject(fault, &mut plan)
            {
                return plan;
            }
            if *output {
                if !first_output && !shape.latency.per_chunk.is_zero() {
                    plan.push_back(Action::Sleep(shape.latency.per_chunk));
                }
                first_output = false;
            }
            framing.event(&chunk_text(chunk, shape.quirks.multiline_data), &mut plan);
        }
        if let Some(fault) = fault
            && fault_position(fault).is_some_and(|at| at >= chunks.len())
            && !framing.inject(fault, &mut plan)
        {
            return plan;
        }
        framing.event("[DONE]", &mut plan);
        plan
    }
}

fn chunk_text(chunk: &Value, multiline: bool) -> String {
    if multiline {
        serde_json::to_string_pretty(chunk).unwrap_or_else(|_| chunk.to_string())
    } else {
        chunk.to_string()
    }
}

fn fault_position(fault: &Fault) -> Option<usize> {
    match fault {
        Fault::Http(_) => None,
        Fault::MidStreamError { after_chunks }
        | Fault::EndWithoutDone { after_chunks }
        | Fault::Disconnect { after_chunks }
        | Fault::MalformedChunk { after_chunks }
        | Fault::Stall { after_chunks, .. } => Some(*after_chunks),
    }
}

/// Pieces of `size` characters.
fn text_pieces(text: &str, size: usize) -> Vec<&str> {
    let size = size.max(1);
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (at, _) in text.char_indices() {
        if count == size {
            pieces.push(&text[start..at]);
            start = at;
            count = 0;
        }
        count += 1;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

/// How events are written on the wire.
struct Framing {
    eol: &'static str,
    keep_alive: bool,
    dribble: Option<usize>,
}

impl Framing {
    fn of(quirks: &Quirks) -> Self {
        Self {
            eol: if quirks.crlf { "\r\n" } else { "\n" },
            keep_alive: quirks.keep_alive_comments,
            dribble: quirks.dribble_bytes.filter(|n| *n > 0),
        }
    }

    /// One `data:` event (a line per line of `data`), preceded by a comment if asked.
    fn event(&self, data: &str, plan: &mut VecDeque<Action>) {
        let mut text = String::with_capacity(data.len() + 32);
        if self.keep_alive {
            text.push_str(": keep-alive");
            text.push_str(self.eol);
            text.push_str(self.eol);
        }
        for line in data.lines() {
            text.push_str("data: ");
            text.push_str(line);
            text.push_str(self.eol);
        }
        text.push_str(self.eol);
        self.write(Bytes::from(text), plan);
    }

    fn write(&self, bytes: Bytes, plan: &mut VecDeque<Action>) {
        match self.dribble {
            Some(n) => {
                let mut at = 0;
                while at < bytes.len() {
                    let end = (at + n).min(bytes.len());
                    plan.push_back(Action::Send(bytes.slice(at..end)));
                    at = end;
                }
            }
            None => plan.push_back(Action::Send(bytes)),
        }
    }

    /// Places a fault; `false` if the stream ends there.
    fn inject(&self, fault: &Fault, plan: &mut VecDeque<Action>) -> bool {
        match fault {
            Fault::Http(_) => true,
            Fault::MidStreamError { .. } => {
                let error = json!({"error": {
                    "message": "The server had an error while processing your request. Sorry about that!",
                    "type": "server_error", "param": null, "code": null}});
                self.event(&error.to_string(), plan);
                false
            }
            Fault::EndWithoutDone { .. } => false,
            Fault::Disconnect { .. } => {
                // A pause first lets the server flush what it wrote, so the client gets the
                // chunks sent before the cut, as it would from a real connection that drops.
                plan.push_back(Action::Sleep(Duration::from_millis(20)));
                plan.push_back(Action::Cut);
                false
            }
            Fault::MalformedChunk { .. } => {
                self.event(
                    "{\"id\":\"chatcmpl-broken\",\"choices\":[{\"delta\":{\"content\":\"oops\"",
                    plan,
                );
                true
            }
            Fault::Stall { duration, .. } => {
                plan.push_back(Action::Sleep(*duration));
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::openai::script::ScriptedCall;
    use crate::sim::openai::validate::{Message, Role};

    fn request() -> ValidRequest {
        ValidRequest {
            model: "gpt-4o-mini".into(),
            stream: true,
            include_usage: true,
            messages: vec![Message {
                role: Role::User,
                content: "hi".into(),
                tool_calls: vec![],
                tool_call_id: None,
            }],
            tool_names: vec!["f".into()],
            response_format: Default::default(),
        }
    }

    fn shape(quirks: Quirks) -> Shape {
        Shape {
            text_chunk_chars: 4,
            fragments: Fragments::Every(3),
            quirks,
            latency: Latency::NONE,
        }
    }

    fn body(plan: &VecDeque<Action>) -> String {
        plan.iter()
            .filter_map(|a| match a {
                Action::Send(b) => Some(String::from_utf8(b.to_vec()).unwrap()),
                _ => None,
            })
            .collect()
    }

    fn data_events(body: &str) -> Vec<Value> {
        body.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    fn reply() -> Reply {
        Reply {
            text: "Let me check.".into(),
            tool_calls: vec![ScriptedCall {
                name: "f".into(),
                arguments: "{\"city\":\"Paris\"}".into(),
            }],
        }
    }

    #[test]
    fn a_stream_has_the_openai_sequence() {
        let reply = reply();
        let request = request();
        let completion = Completion::new(&reply, &request);
        let text = body(&completion.stream_plan(&shape(Quirks::default()), None));
        assert!(text.ends_with("data: [DONE]\n\n"));
        let events = data_events(&text);
        assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
        let content: String = events
            .iter()
            .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
            .collect();
        assert_eq!(content, "Let me check.");
        let arguments: String = events
            .iter()
            .filter_map(|e| {
                e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(arguments, "{\"city\":\"Paris\"}");
        let finish = &events[events.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        let usage = events.last().unwrap();
        assert_eq!(usage["choices"], json!([]));
        assert!(usage["usage"]["total_tokens"].as_u64().unwrap() > 0);
        assert!(events.iter().all(|e| e["id"] == events[0]["id"]));
    }

    #[test]
    fn faults_land_after_the_nth_event() {
        let reply = reply();
        let request = request();
        let completion = Completion::new(&reply, &request);
        let plan = completion.stream_plan(
            &shape(Quirks::default()),
            Some(&Fault::EndWithoutDone { after_chunks: 2 }),
        );
        let text = body(&plan);
        assert_eq!(data_events(&text).len(), 2);
        assert!(!text.contains("[DONE]"));

        let plan = completion.stream_plan(
            &shape(Quirks::default()),
            Some(&Fault::Disconnect { after_chunks: 1 }),
        );
        assert_eq!(plan.back(), Some(&Action::Cut));
    }

    #[test]
    fn quirks_change_the_framing() {
        let reply = reply();
        let request = request();
        let completion = Completion::new(&reply, &request);
        let quirks = Quirks {
            crlf: true,
            keep_alive_comments: true,
            whole_tool_calls: true,
            omit_tool_call_ids: true,
            stop_with_tool_calls: true,
            ..Quirks::default()
        };
        let text = body(&completion.stream_plan(&shape(quirks), None));
        assert!(text.contains(": keep-alive\r\n\r\ndata: "));
        assert!(!text.replace("\r\n", "").contains('\n'));
        let events = data_events(&text.replace("\r\n", "\n").replace(": keep-alive\n\n", ""));
        let whole = events
            .iter()
            .find(|e| !e["choices"][0]["delta"]["tool_calls"].is_null())
            .unwrap();
        let call = &whole["choices"][0]["delta"]["tool_calls"][0];
        assert_eq!(call["function"]["arguments"], "{\"city\":\"Paris\"}");
        assert!(call.get("id").is_none());
        assert!(text.contains("\"finish_reason\":\"stop\""));
    }

    #[test]
    fn the_non_streamed_answer_is_a_chat_completion() {
        let reply = reply();
        let request = request();
        let whole = Completion::new(&reply, &request).whole(&Quirks::default());
        assert_eq!(whole["object"], "chat.completion");
        let message = &whole["choices"][0]["message"];
        assert_eq!(message["content"], "Let me check.");
        assert_eq!(
            message["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert!(message["tool_calls"][0].get("index").is_none());
        assert_eq!(whole["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn text_pieces_respect_characters() {
        assert_eq!(text_pieces("héllo!", 2), vec!["hé", "ll", "o!"]);
        assert!(text_pieces("", 3).is_empty());
    }
}
