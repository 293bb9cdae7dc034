//! A model for unit tests: each request is answered with the next scripted list of events, and
//! every request is kept so a test can check what the model was asked.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use futures_util::stream;

use super::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, FunctionCall, LlmError, LlmEvent, LlmStream,
    ToolCall,
};
use crate::generation::Generation;

/// What the scripted model was asked.
#[derive(Debug, Clone)]
pub struct Asked {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<String>,
}

/// One scripted answer: events, or an error instead of a stream.
pub type Answer = Result<Vec<LlmEvent>, LlmError>;

pub struct ScriptedLlm {
    replies: Mutex<VecDeque<Answer>>,
    requests: Mutex<Vec<Asked>>,
}

impl ScriptedLlm {
    pub fn new(replies: Vec<Vec<LlmEvent>>) -> Arc<Self> {
        Self::answering(replies.into_iter().map(Ok).collect())
    }

    pub fn answering(replies: Vec<Answer>) -> Arc<Self> {
        Arc::new(Self {
            replies: Mutex::new(replies.into()),
            requests: Mutex::new(Vec::new()),
        })
    }

    pub fn requests(&self) -> Vec<Asked> {
        self.requests.lock().unwrap().clone()
    }
}

impl ChatModel for ScriptedLlm {
    fn stream(&self, request: ChatRequest<'_>) -> BoxFuture<'static, Result<LlmStream, LlmError>> {
        let generation = request.generation;
        self.requests.lock().unwrap().push(Asked {
            messages: request.messages.to_vec(),
            tools: request.tools.iter().map(|t| t.name.clone()).collect(),
        });
        let answer = self
            .replies
            .lock()
            .unwrap()
            .pop_front()
            .unwrap_or(Ok(Vec::new()));
        Box::pin(async move {
            let events: Vec<Result<LlmEvent, LlmError>> = answer?
                .into_iter()
                .map(|e| Ok(restamp(e, generation)))
                .collect();
            Ok(Box::pin(stream::iter(events)) as LlmStream)
        })
    }
}

fn restamp(event: LlmEvent, generation: Generation) -> LlmEvent {
    match event {
        LlmEvent::Delta { text, .. } => LlmEvent::Delta { generation, text },
        LlmEvent::ToolCalls { calls, .. } => LlmEvent::ToolCalls { generation, calls },
        LlmEvent::Finished { reason, usage, .. } => LlmEvent::Finished {
            generation,
            reason,
            usage,
        },
    }
}

/// A reply of `text`, then the end.
pub fn text_reply(text: &str) -> Vec<LlmEvent> {
    let g = Generation(0);
    vec![
        LlmEvent::Delta {
            generation: g,
            text: text.to_owned(),
        },
        LlmEvent::Finished {
            generation: g,
            reason: FinishReason::Stop,
            usage: None,
        },
    ]
}

/// A reply of `preface` (if any) and one call of tool `name`.
pub fn tool_reply(preface: &str, name: &str, arguments: &str) -> Vec<LlmEvent> {
    let g = Generation(0);
    let mut events = Vec::new();
    if !preface.is_empty() {
        events.push(LlmEvent::Delta {
            generation: g,
            text: preface.to_owned(),
        });
    }
    events.push(LlmEvent::ToolCalls {
        generation: g,
        calls: vec![ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }],
    });
    events.push(LlmEvent::Finished {
        generation: g,
        reason: FinishReason::ToolCalls,
        usage: None,
    });
    events
}
