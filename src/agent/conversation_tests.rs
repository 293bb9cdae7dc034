//! The conversation alone, with a scripted model and, for HTTP tools, a local endpoint.

use std::sync::Arc;

use super::*;
use crate::assistant::{HttpTool, ToolMethod};
use crate::egress::AddressPolicy;
use crate::llm::LlmError;
use crate::llm::scripted::{ScriptedLlm, text_reply, tool_reply};

fn egress() -> EgressClient {
    EgressClient::new(AddressPolicy {
        allow_loopback: true,
        allow_private: false,
    })
    .unwrap()
}

fn conversation(llm: Arc<ScriptedLlm>, tools: Vec<HttpTool>, can_transfer: bool) -> Conversation {
    Conversation::new(
        ConversationSetup {
            system_prompt: "Be brief.".into(),
            toolbox: Toolbox::new(tools, can_transfer),
            temperature: 0.5,
            max_tokens: 100,
        },
        llm,
        egress(),
    )
}

/// Every event of the reply until it is done or failed.
async fn run(c: &mut Conversation) -> Vec<ReplyEvent> {
    let mut events = Vec::new();
    loop {
        let (_, event) = c.next().await;
        let last = matches!(event, ReplyEvent::Done | ReplyEvent::Failed(_));
        if !matches!(event, ReplyEvent::FirstToken { .. }) {
            events.push(event);
        }
        if last {
            return events;
        }
    }
}

fn texts(events: &[ReplyEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            ReplyEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

async fn weather_endpoint() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/weather", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/weather",
            axum::routing::post(|| async { r#"{"forecast":"sunny"}"# }),
        );
        axum::serve(listener, app).await.unwrap();
    });
    (url, task)
}

fn weather_tool(url: &str) -> HttpTool {
    HttpTool {
        id: "t1".into(),
        owner_id: "o".into(),
        name: "get_weather".into(),
        description: "Weather".into(),
        parameters: serde_json::json!({"type": "object"}),
        url: url.into(),
        method: ToolMethod::Post,
        headers: Default::default(),
        timeout_ms: 2_000,
        created_at: String::new(),
        updated_at: String::new(),
    }
}

#[tokio::test]
async fn a_reply_streams_its_text_and_joins_the_history() {
    let llm = ScriptedLlm::new(vec![text_reply("Hello there.")]);
    let mut c = conversation(llm.clone(), vec![], false);
    c.push_user("Hi");
    c.start_reply();
    let events = run(&mut c).await;
    assert_eq!(texts(&events), "Hello there.");
    assert_eq!(events.last(), Some(&ReplyEvent::Done));
    assert!(!c.replying());
    assert_eq!(
        c.history().last(),
        Some(&ChatMessage::Assistant {
            content: Some("Hello there.".into()),
            tool_calls: vec![]
        })
    );
    assert_eq!(llm.requests()[0].messages.len(), 2, "system and user");
}

#[tokio::test]
async fn an_http_tool_runs_and_the_model_is_asked_again_with_its_result() {
    let (url, _server) = weather_endpoint().await;
    let llm = ScriptedLlm::new(vec![
        tool_reply("Let me check.", "get_weather", r#"{"city":"Paris"}"#),
        text_reply("It is sunny."),
    ]);
    let mut c = conversation(llm.clone(), vec![weather_tool(&url)], false);
    c.push_user("Weather in Paris?");
    c.start_reply();
    let events = run(&mut c).await;
    assert_eq!(texts(&events), "Let me check.It is sunny.");
    assert!(events.contains(&ReplyEvent::ToolsCalled));
    assert_eq!(c.retract(), None, "what a tool did is not taken back");
    assert!(events.iter().any(|e| matches!(e,
        ReplyEvent::ToolResult { name, result, .. } if name == "get_weather" && result.contains("sunny"))));
    let second = &llm.requests()[1].messages;
    assert!(
        matches!(second.last(), Some(ChatMessage::Tool { content, .. }) if content.contains("sunny")),
        "{second:?}"
    );
}

#[tokio::test]
async fn end_call_closes_the_reply_without_another_round() {
    let llm = ScriptedLlm::new(vec![tool_reply("Goodbye!", "end_call", "{}")]);
    let mut c = conversation(llm.clone(), vec![], false);
    c.push_user("Bye");
    c.start_reply();
    let events = run(&mut c).await;
    assert!(events.contains(&ReplyEvent::Action(Action::End {
        reason: "assistant ended the call".into()
    })));
    assert_eq!(events.last(), Some(&ReplyEvent::Done));
    assert_eq!(llm.requests().len(), 1);
    assert!(
        !llm.requests()[0]
            .tools
            .contains(&"transfer_call".to_owned())
    );
}

#[tokio::test]
async fn a_failure_is_an_event_and_ends_the_reply() {
    let llm = ScriptedLlm::answering(vec![Err(LlmError::RateLimited {
        message: "slow down".into(),
    })]);
    let mut c = conversation(llm, vec![], false);
    c.push_user("Hi");
    c.start_reply();
    let events = run(&mut c).await;
    assert!(matches!(
        events.as_slice(),
        [ReplyEvent::Failed(LlmError::RateLimited { .. })]
    ));
    assert!(!c.replying());
}

#[tokio::test]
async fn an_interrupted_reply_keeps_only_what_was_heard() {
    let llm = ScriptedLlm::new(vec![text_reply("One two three four five.")]);
    let mut c = conversation(llm, vec![], false);
    c.push_user("Count");
    c.start_reply();
    run(&mut c).await;
    // Produced whole but heard only in part (a voice reply still playing): cut it.
    c.interrupt("One two");
    assert_eq!(
        c.history().last(),
        Some(&ChatMessage::Assistant {
            content: Some("One two".into()),
            tool_calls: vec![]
        })
    );
}

#[tokio::test]
async fn words_heard_from_a_completion_still_streaming_are_kept() {
    // The model never finishes: its words are not committed when the cut comes.
    let llm = ScriptedLlm::new(vec![vec![crate::llm::LlmEvent::Delta {
        generation: Generation(0),
        text: "Sure, the table is".into(),
    }]]);
    let mut c = conversation(llm, vec![], false);
    c.push_user("Book");
    c.start_reply();
    let (_, first) = c.next().await;
    assert!(matches!(first, ReplyEvent::FirstToken { .. }));
    let (_, text) = c.next().await;
    assert_eq!(text, ReplyEvent::Text("Sure, the table is".into()));
    c.interrupt("Sure, the");
    assert_eq!(
        c.history().last(),
        Some(&ChatMessage::Assistant {
            content: Some("Sure, the".into()),
            tool_calls: vec![]
        })
    );
    assert!(!c.replying());
}

#[tokio::test]
async fn a_tool_result_lands_in_the_history_even_after_an_interruption() {
    let (url, _server) = weather_endpoint().await;
    let llm = ScriptedLlm::new(vec![
        tool_reply("Let me check.", "get_weather", "{}"),
        text_reply("unused"),
    ]);
    let mut c = conversation(llm.clone(), vec![weather_tool(&url)], false);
    c.push_user("Weather?");
    c.start_reply();
    loop {
        if let (_, ReplyEvent::ToolsCalled) = c.next().await {
            break;
        }
    }
    c.interrupt("Let me check.");
    // A new turn starts; the old tool's answer still arrives.
    c.push_user("Never mind");
    let llm_requests_before = llm.requests().len();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let has_result = c.history().iter().any(
                |m| matches!(m, ChatMessage::Tool { content, .. } if content.contains("sunny")),
            );
            if has_result {
                break;
            }
            // Drive the inbox: no event of the abandoned reply comes out.
            let next = tokio::time::timeout(Duration::from_millis(50), c.next()).await;
            assert!(next.is_err(), "no event of an abandoned reply: {next:?}");
        }
    })
    .await
    .expect("the tool's result arrived");
    assert_eq!(llm.requests().len(), llm_requests_before, "no new round");
}

#[tokio::test]
async fn a_scripted_line_is_cut_like_a_reply() {
    let llm = ScriptedLlm::new(vec![]);
    let mut c = conversation(llm, vec![], false);
    c.say("Hello! Thanks for calling Acme. How can I help?");
    assert!(!c.replying());
    c.interrupt("Hello! Thanks for");
    assert_eq!(
        c.history().last(),
        Some(&ChatMessage::Assistant {
            content: Some("Hello! Thanks for".into()),
            tool_calls: vec![]
        })
    );
}

#[tokio::test]
async fn a_finished_reply_nobody_heard_is_taken_back_with_its_question() {
    let llm = ScriptedLlm::new(vec![text_reply("Sure.")]);
    let mut c = conversation(llm, vec![], false);
    c.push_user("Table please");
    c.start_reply();
    run(&mut c).await;
    assert_eq!(c.history().len(), 3);
    assert_eq!(c.retract().as_deref(), Some("Table please"));
    assert_eq!(c.history().len(), 1, "only the system prompt is left");
    assert_eq!(c.retract(), None, "taken back once");
}

#[tokio::test]
async fn a_scripted_line_is_not_taken_back() {
    let llm = ScriptedLlm::new(vec![]);
    let mut c = conversation(llm, vec![], false);
    c.say("Hello! How can I help?");
    assert_eq!(c.retract(), None);
    assert_eq!(c.history().len(), 2);
}

#[tokio::test]
async fn a_reply_nobody_received_is_taken_back_with_its_question() {
    let llm = ScriptedLlm::new(vec![vec![]]);
    let mut c = conversation(llm, vec![], false);
    c.push_user("I want a table");
    c.start_reply();
    assert_eq!(c.retract().as_deref(), Some("I want a table"));
    assert_eq!(c.history().len(), 1, "only the system prompt is left");
}

/// Each answer's events come with its pause before every event, as over a slow network.
struct SlowLlm {
    replies: std::sync::Mutex<std::collections::VecDeque<(u64, Vec<LlmEvent>)>>,
}

impl ChatModel for SlowLlm {
    fn stream(
        &self,
        _request: ChatRequest<'_>,
    ) -> futures_util::future::BoxFuture<'static, Result<crate::llm::LlmStream, LlmError>> {
        let (pause_ms, events) = self.replies.lock().unwrap().pop_front().unwrap_or_default();
        Box::pin(async move {
            let stream = futures_util::stream::iter(events).then(move |event| async move {
                tokio::time::sleep(std::time::Duration::from_millis(pause_ms)).await;
                Ok(event)
            });
            Ok(Box::pin(stream) as crate::llm::LlmStream)
        })
    }
}

/// A tool answered at once starts the next round before the last one's stream has ended: the
/// old round's late `Finished` must not end the reply before the new round has spoken.
#[tokio::test]
async fn a_late_end_of_the_tool_round_does_not_end_the_next_round() {
    // The tool round ends 40 ms in; the next round speaks at 120 ms.
    let llm = Arc::new(SlowLlm {
        replies: std::sync::Mutex::new(
            vec![
                (20, tool_reply("", "no_such_tool", "{}")),
                (100, text_reply("Here is what I found.")),
            ]
            .into(),
        ),
    });
    let mut c = Conversation::new(
        ConversationSetup {
            system_prompt: "Be brief.".into(),
            toolbox: Toolbox::new(Vec::new(), false),
            temperature: 0.5,
            max_tokens: 100,
        },
        llm,
        egress(),
    );
    c.push_user("find me something");
    c.start_reply();
    let events = run(&mut c).await;
    assert_eq!(texts(&events), "Here is what I found.", "{events:?}");
}
