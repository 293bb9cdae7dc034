//! The OpenAI-compatible streaming client against the fake OpenAI server, over real HTTP on a
//! loopback port: replies, tool round trips, server differences, failures, retries, timeouts and
//! cancellation. Also the fake's own refusals and its structured outputs, seen by a plain HTTP
//! client.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use voxbridge::generation::Generation;
use voxbridge::llm::{
    ChatMessage, ChatModel, ChatRequest, FinishReason, LlmEndpoint, LlmError, LlmEvent,
    LlmTimeouts, OpenAiChat, RetryPolicy, ToolCall, ToolSpec, Usage,
};
use voxbridge::sim::Latency;
use voxbridge::sim::openai::{
    Fault, Fragments, OpenAiFake, OpenAiFakeHandle, Quirks, Script, UsageMode,
};

const KEY: &str = "sk-test-llm-0123456789";
const GENERATION: Generation = Generation(7);

struct Fake {
    base_url: String,
    handle: OpenAiFakeHandle,
}

async fn start(fake: OpenAiFake) -> Fake {
    let (router, handle) = fake.api_key(KEY).build();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Fake {
        base_url: format!("http://{address}/v1"),
        handle,
    }
}

fn client_with(fake: &Fake, key: &str, timeouts: LlmTimeouts) -> OpenAiChat {
    let endpoint = LlmEndpoint {
        base_url: fake.base_url.clone(),
        api_key: key.to_owned(),
        model: "gpt-4o-mini".to_owned(),
        owner_chosen: false,
    };
    OpenAiChat::new(reqwest::Client::new(), endpoint, timeouts)
        .unwrap()
        .with_retry_policy(RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
        })
}

fn client(fake: &Fake) -> OpenAiChat {
    client_with(
        fake,
        KEY,
        LlmTimeouts {
            first_token: Duration::from_secs(10),
            total: Duration::from_secs(30),
        },
    )
}

fn user(text: &str) -> ChatMessage {
    ChatMessage::User {
        content: text.to_owned(),
    }
}

fn system() -> ChatMessage {
    ChatMessage::System {
        content: "You are a friendly receptionist. Keep answers short.".to_owned(),
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "end_call".into(),
            description: "Hang up when the caller is done".into(),
            parameters: json!({"type": "object", "properties": {}}),
        },
        ToolSpec {
            name: "get_weather".into(),
            description: "Current weather of a city".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
        },
    ]
}

fn request<'a>(messages: &'a [ChatMessage], tools: &'a [ToolSpec]) -> ChatRequest<'a> {
    ChatRequest {
        generation: GENERATION,
        messages,
        tools,
        temperature: 0.7,
        max_tokens: 300,
        response_format: None,
    }
}

/// Everything one completion produced.
#[derive(Debug, Default)]
struct Outcome {
    deltas: Vec<String>,
    calls: Vec<ToolCall>,
    finished: Option<(FinishReason, Option<Usage>)>,
    error: Option<LlmError>,
}

impl Outcome {
    fn text(&self) -> String {
        self.deltas.concat()
    }
}

async fn run(
    chat: &OpenAiChat,
    messages: &[ChatMessage],
    tools: &[ToolSpec],
) -> Result<Outcome, LlmError> {
    let mut stream = chat.stream(request(messages, tools)).await?;
    let mut outcome = Outcome::default();
    while let Some(item) = stream.next().await {
        match item {
            Ok(event) => {
                assert_eq!(event.generation(), GENERATION);
                assert!(outcome.finished.is_none(), "nothing after Finished");
                match event {
                    LlmEvent::Delta { text, .. } => {
                        assert!(!text.is_empty());
                        assert!(outcome.calls.is_empty(), "text comes before tool calls");
                        outcome.deltas.push(text);
                    }
                    LlmEvent::ToolCalls { calls, .. } => outcome.calls = calls,
                    LlmEvent::Finished { reason, usage, .. } => {
                        outcome.finished = Some((reason, usage));
                    }
                }
            }
            Err(error) => {
                outcome.error = Some(error);
                assert!(stream.next().await.is_none(), "an error ends the stream");
                break;
            }
        }
    }
    Ok(outcome)
}

fn scripted(text: &str) -> Script {
    Script::from_json(&json!({"rules": [{"reply": {"text": text}}]}).to_string()).unwrap()
}

const LONG_TEXT: &str = "Thanks for calling the clinic. We are open from eight in the morning until six in the evening on weekdays, and from nine until noon on Saturdays. Is there anything else I can help you with today?";

#[tokio::test]
async fn a_text_reply_streams_in_pieces_and_ends_with_usage() {
    let fake = start(OpenAiFake::new().text_chunk_chars(5)).await;
    let chat = client(&fake);
    let messages = [system(), user("I need to move my appointment")];
    let outcome = run(&chat, &messages, &tools()).await.unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        outcome.text(),
        "Sure. You said: I need to move my appointment. How else can I help?"
    );
    assert!(outcome.deltas.len() > 5);
    assert!(outcome.calls.is_empty());
    let (reason, usage) = outcome.finished.unwrap();
    assert_eq!(reason, FinishReason::Stop);
    assert!(usage.unwrap().completion_tokens > 0);

    let received = fake.handle.requests();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].authorization.as_deref(),
        Some(&*format!("Bearer {KEY}"))
    );
    assert_eq!(received[0].status, 200);
    let body = &received[0].body;
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["tools"][1]["type"], "function");
    assert_eq!(fake.handle.completed_streams(), 1);
}

#[tokio::test]
async fn the_greeting_needs_no_user_message() {
    let fake = start(OpenAiFake::new()).await;
    let outcome = run(&client(&fake), &[system()], &tools()).await.unwrap();
    assert_eq!(
        outcome.text(),
        "Hello! Thanks for calling. How can I help you today?"
    );
}

#[tokio::test]
async fn a_weather_question_makes_a_tool_round_trip() {
    let fake = start(OpenAiFake::new()).await;
    let chat = client(&fake);
    let tools = tools();
    let mut history = vec![system(), user("What's the weather in Paris today?")];

    let first = run(&chat, &history, &tools).await.unwrap();
    assert!(first.error.is_none(), "{:?}", first.error);
    assert_eq!(first.text(), "Let me check the weather in Paris.");
    assert_eq!(first.calls.len(), 1);
    let call = &first.calls[0];
    assert_eq!(call.function.name, "get_weather");
    assert_eq!(call.kind, "function");
    assert!(call.id.starts_with("call_"));
    let arguments: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(arguments, json!({"city": "Paris"}));
    assert_eq!(first.finished.as_ref().unwrap().0, FinishReason::ToolCalls);

    history.push(ChatMessage::Assistant {
        content: Some(first.text()),
        tool_calls: first.calls.clone(),
    });
    history.push(ChatMessage::Tool {
        tool_call_id: call.id.clone(),
        content: json!({"summary": "sunny and 21 degrees"}).to_string(),
    });
    let second = run(&chat, &history, &tools).await.unwrap();
    assert!(second.error.is_none(), "{:?}", second.error);
    assert!(second.calls.is_empty());
    assert_eq!(
        second.text(),
        "Thanks for waiting. In Paris it's sunny and 21 degrees right now. Anything else I can help with?"
    );

    // The follow-up carried the call back as the real API wants it.
    let sent = &fake.handle.requests()[1].body;
    assert_eq!(sent["messages"][2]["role"], "assistant");
    assert!(sent["messages"][2]["tool_calls"][0]["function"]["arguments"].is_string());
    assert_eq!(sent["messages"][3]["tool_call_id"], json!(call.id));
}

#[tokio::test]
async fn goodbye_ends_the_call() {
    let fake = start(OpenAiFake::new()).await;
    let outcome = run(&client(&fake), &[system(), user("Thanks, bye!")], &tools())
        .await
        .unwrap();
    assert_eq!(outcome.text(), "Thanks for calling. Goodbye!");
    assert_eq!(outcome.calls.len(), 1);
    assert_eq!(outcome.calls[0].function.name, "end_call");
    assert_eq!(outcome.calls[0].function.arguments, "{}");
}

#[tokio::test]
async fn arguments_fragmented_inside_escapes_are_reassembled() {
    // The arguments' JSON text holds `\"` and `\u00e9` escapes and a raw non-ASCII character;
    // cutting every 1, 2 or 3 bytes splits each escape somewhere.
    let raw = r#"{"name":"Ren\u00e9 \"Bob\" Crème","note":"a\\b"}"#;
    let script = Script::from_json(
        &json!({"rules": [{"reply": {"tool_calls": [{"name": "get_weather", "arguments": raw}]}}]})
            .to_string(),
    )
    .unwrap();
    for every in [1, 2, 3, 5] {
        let fake = start(
            OpenAiFake::new()
                .script(script.clone())
                .argument_fragments(Fragments::Every(every)),
        )
        .await;
        let outcome = run(&client(&fake), &[user("hi")], &tools()).await.unwrap();
        assert!(outcome.error.is_none(), "{:?}", outcome.error);
        assert_eq!(outcome.calls[0].function.arguments, raw);
        let value: Value = serde_json::from_str(&outcome.calls[0].function.arguments).unwrap();
        assert_eq!(value, json!({"name": "René \"Bob\" Crème", "note": "a\\b"}));
    }
}

fn two_calls_script() -> Script {
    Script::from_json(
        &json!({"rules": [
            {"when": {"tool_result": "*"}, "reply": {"text": "Both done."}},
            {"reply": {"tool_calls": [
                {"name": "get_weather", "arguments": {"city": "Paris"}},
                {"name": "get_weather", "arguments": {"city": "Oslo"}}
            ]}}
        ]})
        .to_string(),
    )
    .unwrap()
}

async fn answer_every_call(chat: &OpenAiChat, calls: Vec<ToolCall>) -> Outcome {
    let mut history = vec![
        user("weather in Paris and Oslo"),
        ChatMessage::Assistant {
            content: None,
            tool_calls: calls.clone(),
        },
    ];
    for call in &calls {
        history.push(ChatMessage::Tool {
            tool_call_id: call.id.clone(),
            content: "{\"summary\":\"cold\"}".into(),
        });
    }
    run(chat, &history, &tools()).await.unwrap()
}

#[tokio::test]
async fn parallel_tool_calls_are_kept_apart_by_index() {
    let fake = start(
        OpenAiFake::new()
            .script(two_calls_script())
            .argument_fragments(Fragments::Every(2)),
    )
    .await;
    let chat = client(&fake);
    let outcome = run(&chat, &[user("weather in Paris and Oslo")], &tools())
        .await
        .unwrap();
    assert_eq!(outcome.calls.len(), 2);
    assert_eq!(outcome.calls[0].function.arguments, "{\"city\":\"Paris\"}");
    assert_eq!(outcome.calls[1].function.arguments, "{\"city\":\"Oslo\"}");
    assert_ne!(outcome.calls[0].id, outcome.calls[1].id);
    let follow_up = answer_every_call(&chat, outcome.calls).await;
    assert_eq!(follow_up.text(), "Both done.");
}

#[tokio::test]
async fn ollama_style_whole_calls_without_ids_and_with_stop_work() {
    let fake = start(OpenAiFake::new().script(two_calls_script()).quirks(Quirks {
        whole_tool_calls: true,
        omit_tool_call_ids: true,
        stop_with_tool_calls: true,
        ..Quirks::default()
    }))
    .await;
    let chat = client(&fake);
    let outcome = run(&chat, &[user("weather in Paris and Oslo")], &tools())
        .await
        .unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(outcome.calls.len(), 2);
    assert_eq!(outcome.calls[0].id, "call_0");
    assert_eq!(outcome.calls[1].id, "call_1");
    assert_eq!(outcome.calls[1].function.arguments, "{\"city\":\"Oslo\"}");
    // Executed even though the server said `stop`.
    assert_eq!(outcome.finished.unwrap().0, FinishReason::ToolCalls);
    // The synthesised ids answer the calls in a way the API accepts.
    let follow_up = answer_every_call(&chat, outcome.calls).await;
    assert!(follow_up.error.is_none(), "{:?}", follow_up.error);
    assert_eq!(follow_up.text(), "Both done.");
}

#[tokio::test]
async fn framing_variants_give_the_same_reply() {
    let variants = [
        Quirks {
            keep_alive_comments: true,
            ..Quirks::default()
        },
        Quirks {
            crlf: true,
            ..Quirks::default()
        },
        Quirks {
            multiline_data: true,
            dribble_bytes: Some(3),
            ..Quirks::default()
        },
        Quirks {
            crlf: true,
            keep_alive_comments: true,
            dribble_bytes: Some(1),
            usage: UsageMode::InFinalChunk,
            ..Quirks::default()
        },
    ];
    for quirks in variants {
        let fake = start(OpenAiFake::new().quirks(quirks.clone())).await;
        let outcome = run(
            &client(&fake),
            &[user("What's the weather in Rome?")],
            &tools(),
        )
        .await
        .unwrap();
        assert!(outcome.error.is_none(), "{quirks:?}: {:?}", outcome.error);
        assert_eq!(
            outcome.text(),
            "Let me check the weather in Rome.",
            "{quirks:?}"
        );
        assert_eq!(outcome.calls[0].function.arguments, "{\"city\":\"Rome\"}");
        assert!(outcome.finished.unwrap().1.is_some(), "{quirks:?}: usage");
    }
}

#[tokio::test]
async fn usage_may_be_missing() {
    let fake = start(OpenAiFake::new().quirks(Quirks {
        usage: UsageMode::Never,
        ..Quirks::default()
    }))
    .await;
    let outcome = run(&client(&fake), &[user("hello")], &[]).await.unwrap();
    assert_eq!(outcome.finished.unwrap(), (FinishReason::Stop, None));
}

#[tokio::test]
async fn reasoning_is_never_spoken() {
    let fake = start(OpenAiFake::new().quirks(Quirks {
        reasoning: true,
        ..Quirks::default()
    }))
    .await;
    let outcome = run(&client(&fake), &[user("hello")], &[]).await.unwrap();
    assert_eq!(
        outcome.text(),
        "Sure. You said: hello. How else can I help?"
    );
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_unauthorized_and_not_retried() {
    let fake = start(OpenAiFake::new()).await;
    let timeouts = LlmTimeouts::default();
    let wrong = client_with(&fake, "sk-wrong-0000000000", timeouts)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    match wrong {
        LlmError::Unauthorized { status, message } => {
            assert_eq!(status, 401);
            assert!(
                message.starts_with("Incorrect API key provided"),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
    let missing = client_with(&fake, "", timeouts)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(
        missing,
        LlmError::Unauthorized { status: 401, .. }
    ));
    let received = fake.handle.requests();
    assert_eq!(received.len(), 2, "no retries");
    assert_eq!(received[1].authorization, None);
}

#[tokio::test]
async fn forbidden_is_unauthorized() {
    let fake = start(OpenAiFake::new()).await;
    fake.handle.push_fault(Fault::forbidden());
    let error = client(&fake)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, LlmError::Unauthorized { status: 403, .. }),
        "{error:?}"
    );
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn rate_limits_are_retried_then_succeed() {
    let fake = start(OpenAiFake::new()).await;
    fake.handle
        .push_fault(Fault::rate_limited(Duration::from_millis(20)));
    fake.handle
        .push_fault(Fault::rate_limited(Duration::from_millis(20)));
    let outcome = run(&client(&fake), &[user("hello")], &[]).await.unwrap();
    assert!(outcome.error.is_none());
    assert_eq!(
        outcome.text(),
        "Sure. You said: hello. How else can I help?"
    );
    let statuses: Vec<u16> = fake.handle.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn retries_stop_after_two() {
    let fake = start(OpenAiFake::new()).await;
    for _ in 0..3 {
        fake.handle
            .push_fault(Fault::rate_limited(Duration::from_millis(5)));
    }
    let error = client(&fake)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, LlmError::RateLimited { .. }), "{error:?}");
    assert_eq!(fake.handle.requests().len(), 3);
}

#[tokio::test]
async fn a_wait_longer_than_the_first_token_budget_is_not_attempted() {
    let fake = start(OpenAiFake::new()).await;
    fake.handle
        .push_fault(Fault::rate_limited(Duration::from_secs(30)));
    let chat = client_with(
        &fake,
        KEY,
        LlmTimeouts {
            first_token: Duration::from_secs(2),
            total: Duration::from_secs(30),
        },
    );
    let error = chat
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, LlmError::RateLimited { .. }), "{error:?}");
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn out_of_quota_is_not_retried() {
    let fake = start(OpenAiFake::new()).await;
    fake.handle.push_fault(Fault::insufficient_quota());
    let error = client(&fake)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, LlmError::Rejected { status: 429, .. }),
        "{error:?}"
    );
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn server_errors_are_retried_and_reported() {
    let fake = start(OpenAiFake::new()).await;
    fake.handle.push_fault(Fault::server_error());
    let outcome = run(&client(&fake), &[user("hello")], &[]).await.unwrap();
    assert!(outcome.error.is_none());
    assert_eq!(fake.handle.requests().len(), 2);

    for _ in 0..3 {
        fake.handle.push_fault(Fault::overloaded());
    }
    let error = client(&fake)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    match error {
        LlmError::Unavailable { status, message } => {
            assert_eq!(status, Some(503));
            assert!(message.contains("overloaded"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn x_should_retry_false_is_obeyed() {
    let fake = start(OpenAiFake::new()).await;
    let Fault::Http(mut fault) = Fault::server_error() else {
        unreachable!()
    };
    fault.should_retry = Some(false);
    fake.handle.push_fault(Fault::Http(fault));
    let error = client(&fake)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert!(matches!(
        error,
        LlmError::Unavailable {
            status: Some(500),
            ..
        }
    ));
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn an_unknown_model_is_rejected() {
    let fake = start(OpenAiFake::new().models(&["gpt-4.1"])).await;
    let error = client(&fake)
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    match error {
        LlmError::Rejected { status, message } => {
            assert_eq!(status, 404);
            assert!(message.contains("does not exist"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_invalid_history_is_rejected_with_the_api_message() {
    let fake = start(OpenAiFake::new()).await;
    let history = [
        user("weather?"),
        ChatMessage::Assistant {
            content: None,
            tool_calls: vec![ToolCall {
                id: "call_1".into(),
                kind: "function".into(),
                function: voxbridge::llm::FunctionCall {
                    name: "get_weather".into(),
                    arguments: "{}".into(),
                },
            }],
        },
        user("hello?"),
    ];
    let error = client(&fake)
        .stream(request(&history, &tools()))
        .await
        .err()
        .unwrap();
    match error {
        LlmError::Rejected { status, message } => {
            assert_eq!(status, 400);
            assert!(message.contains("call_1"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.handle.requests().len(), 1, "400 is not retried");
}

#[tokio::test]
async fn a_mid_stream_error_after_the_first_token_is_reported_not_retried() {
    let fake = start(OpenAiFake::new().script(scripted(LONG_TEXT))).await;
    fake.handle
        .push_fault(Fault::MidStreamError { after_chunks: 4 });
    let outcome = run(&client(&fake), &[user("hours?")], &[]).await.unwrap();
    assert_eq!(outcome.deltas.len(), 3);
    match outcome.error {
        Some(LlmError::MidStream { message }) => assert!(message.contains("server had an error")),
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn a_failure_before_the_first_token_is_retried() {
    let fake = start(OpenAiFake::new()).await;
    // After the role chunk only: nothing was said yet.
    fake.handle
        .push_fault(Fault::MidStreamError { after_chunks: 1 });
    fake.handle
        .push_fault(Fault::EndWithoutDone { after_chunks: 1 });
    let outcome = run(&client(&fake), &[user("hello")], &[]).await.unwrap();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    assert_eq!(
        outcome.text(),
        "Sure. You said: hello. How else can I help?"
    );
    assert_eq!(fake.handle.requests().len(), 3);
}

#[tokio::test]
async fn a_stream_ending_without_done_is_truncated() {
    let fake = start(OpenAiFake::new().script(scripted(LONG_TEXT))).await;
    fake.handle
        .push_fault(Fault::EndWithoutDone { after_chunks: 3 });
    let outcome = run(&client(&fake), &[user("hours?")], &[]).await.unwrap();
    assert_eq!(outcome.deltas.len(), 2);
    assert_eq!(outcome.error, Some(LlmError::Truncated));
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn a_cut_connection_is_a_stream_error() {
    let fake = start(OpenAiFake::new().script(scripted(LONG_TEXT))).await;
    fake.handle
        .push_fault(Fault::Disconnect { after_chunks: 3 });
    let outcome = run(&client(&fake), &[user("hours?")], &[]).await.unwrap();
    assert_eq!(outcome.deltas.len(), 2);
    assert!(
        matches!(
            outcome.error,
            Some(LlmError::Stream(_) | LlmError::Truncated)
        ),
        "{:?}",
        outcome.error
    );
    assert_eq!(fake.handle.requests().len(), 1);
}

#[tokio::test]
async fn a_malformed_chunk_is_a_protocol_error() {
    for after_chunks in [1, 3] {
        let fake = start(OpenAiFake::new().script(scripted(LONG_TEXT))).await;
        fake.handle
            .push_fault(Fault::MalformedChunk { after_chunks });
        let outcome = run(&client(&fake), &[user("hours?")], &[]).await.unwrap();
        assert!(
            matches!(outcome.error, Some(LlmError::Protocol(_))),
            "{:?}",
            outcome.error
        );
        assert_eq!(
            fake.handle.requests().len(),
            1,
            "a protocol error is not retried"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn no_response_within_the_first_token_budget_times_out() {
    let fake = start(OpenAiFake::new().latency(Latency::from_millis(60_000, 0))).await;
    let chat = client_with(
        &fake,
        KEY,
        LlmTimeouts {
            first_token: Duration::from_secs(2),
            total: Duration::from_secs(30),
        },
    );
    let error = chat
        .stream(request(&[user("hi")], &[]))
        .await
        .err()
        .unwrap();
    assert_eq!(error, LlmError::FirstTokenTimeout(2000));
}

#[tokio::test(start_paused = true)]
async fn a_stream_that_never_gets_past_its_role_chunk_times_out() {
    let fake = start(OpenAiFake::new()).await;
    fake.handle.push_fault(Fault::Stall {
        after_chunks: 1,
        duration: Duration::from_secs(600),
    });
    let chat = client_with(
        &fake,
        KEY,
        LlmTimeouts {
            first_token: Duration::from_secs(2),
            total: Duration::from_secs(30),
        },
    );
    let outcome = run(&chat, &[user("hi")], &[]).await.unwrap();
    assert!(outcome.deltas.is_empty());
    assert_eq!(outcome.error, Some(LlmError::FirstTokenTimeout(2000)));
}

#[tokio::test(start_paused = true)]
async fn a_reply_slower_than_the_total_budget_times_out() {
    let fake = start(
        OpenAiFake::new()
            .script(scripted(LONG_TEXT))
            .latency(Latency::from_millis(0, 10_000)),
    )
    .await;
    let chat = client_with(
        &fake,
        KEY,
        LlmTimeouts {
            first_token: Duration::from_secs(60),
            total: Duration::from_secs(25),
        },
    );
    let outcome = run(&chat, &[user("hours?")], &[]).await.unwrap();
    assert_eq!(outcome.deltas.len(), 3, "at 0, 10 and 20 s");
    assert_eq!(outcome.error, Some(LlmError::TotalTimeout(25_000)));
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let fake = start(
        OpenAiFake::new()
            .script(scripted(LONG_TEXT))
            .text_chunk_chars(1)
            .latency(Latency::from_millis(0, 5)),
    )
    .await;
    let chat = client(&fake);
    let messages = [user("hours?")];
    let mut stream = chat.stream(request(&messages, &[])).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(
            stream.next().await,
            Some(Ok(LlmEvent::Delta { .. }))
        ));
    }
    drop(stream);
    tokio::time::timeout(
        Duration::from_secs(10),
        fake.handle.wait_for_client_disconnects(1),
    )
    .await
    .expect("the fake sees the client hang up");
    assert_eq!(fake.handle.completed_streams(), 0);
}

#[tokio::test]
async fn consecutive_turns_reuse_the_connection() {
    let fake = start(OpenAiFake::new()).await;
    let chat = client(&fake);
    for said in ["hello", "what's the weather in Lima", "bye"] {
        let outcome = run(&chat, &[user(said)], &tools()).await.unwrap();
        assert!(outcome.error.is_none());
    }
    let peers: Vec<_> = fake.handle.requests().iter().map(|r| r.peer).collect();
    assert!(peers[0].is_some());
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
}

// The fake's refusals, seen by a plain HTTP client.

async fn post(fake: &Fake, authorization: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url))
        .json(&body);
    if let Some(authorization) = authorization {
        request = request.header("authorization", authorization);
    }
    let response = request.send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn the_fake_refuses_what_openai_refuses() {
    let fake = start(OpenAiFake::new()).await;
    let bearer = format!("Bearer {KEY}");
    let hello = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});

    let (status, body) = post(&fake, None, hello.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You didn't provide an API key")
    );

    let (status, body) = post(&fake, Some("Bearer sk-nope-123456789"), hello.clone()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "invalid_api_key");

    let (status, body) = post(
        &fake,
        Some(&bearer),
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"}
        ]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_type");
    assert_eq!(
        body["error"]["param"],
        "messages[1].tool_calls[0].function.arguments"
    );

    let (status, body) = post(
        &fake,
        Some(&bearer),
        json!({"model": "gpt-4o-mini", "messages": [
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_2", "content": "sunny"}
        ]}),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("role 'tool' must be a response")
    );

    let (status, body) = post(
        &fake,
        Some(&bearer),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
               "tools": [{"function": {"name": "get_weather"}}]}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "tools[0].type");

    let (status, body) = post(
        &fake,
        Some(&bearer),
        json!({"model": "gpt-4o-mini", "messages": []}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "empty_array");
}

#[tokio::test]
async fn the_fake_answers_without_streaming_when_asked() {
    let fake = start(OpenAiFake::new()).await;
    let (status, body) = post(
        &fake,
        Some(&format!("Bearer {KEY}")),
        json!({"model": "gpt-4o-mini", "stream": false,
               "messages": [{"role": "user", "content": "weather in Oslo?"}],
               "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "chat.completion");
    let message = &body["choices"][0]["message"];
    assert_eq!(message["content"], "Let me check the weather in Oslo.");
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        "{\"city\":\"Oslo\"}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
}

/// The content deltas of a streamed answer, read as plain SSE.
async fn streamed_content(fake: &Fake, body: Value) -> (Vec<String>, Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/chat/completions", fake.base_url))
        .header("authorization", format!("Bearer {KEY}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events: Vec<Value> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let deltas = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    let finish = events
        .iter()
        .rev()
        .find_map(|e| e["choices"][0]["finish_reason"].as_str())
        .map_or(Value::Null, |f| json!(f));
    (deltas, finish)
}

#[tokio::test]
async fn a_structured_output_streams_json_valid_against_the_schema() {
    let fake = start(OpenAiFake::new().text_chunk_chars(9)).await;
    let schema = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "summary": {"type": "string"},
            "structured_data": {
                "type": "object", "additionalProperties": false,
                "properties": {
                    "order_number": {"type": ["string", "null"]},
                    "problem_category": {"type": ["string", "null"],
                        "enum": ["delivery", "billing", "product", "account", "other", null]},
                    "urgency_level": {"type": ["string", "null"], "enum": ["low", "medium", "high", null]}
                },
                "required": ["order_number", "problem_category", "urgency_level"]
            },
            "success": {"type": "boolean"}
        },
        "required": ["summary", "structured_data", "success"]
    });
    let body = json!({
        "model": "gpt-4o-mini", "stream": true, "temperature": 0,
        "messages": [
            {"role": "system", "content": "Analyse the call."},
            {"role": "user", "content": "assistant: Hello, how can I help?\nuser: I was charged twice for order 884211.\nassistant: I'll refund one charge."}
        ],
        "tools": [{"type": "function", "function": {"name": "end_call", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_schema",
            "json_schema": {"name": "call_analysis", "strict": true, "schema": schema}}
    });
    let (deltas, finish) = streamed_content(&fake, body).await;
    assert!(deltas.len() > 3, "streamed in pieces: {deltas:?}");
    assert!(deltas.iter().all(|d| d.chars().count() <= 9));
    assert_eq!(finish, "stop", "no tool calls mixed in");
    let answer: Value = serde_json::from_str(&deltas.concat()).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    assert!(validator.is_valid(&answer), "{answer}");
    assert_eq!(
        answer["structured_data"],
        json!({"order_number": "884211", "problem_category": "billing", "urgency_level": null})
    );
    assert_eq!(answer["success"], true);
}

#[tokio::test]
async fn the_fake_refuses_response_formats_openai_refuses() {
    let fake = start(OpenAiFake::new()).await;
    let bearer = format!("Bearer {KEY}");
    let with = |format: Value| {
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}],
               "response_format": format})
    };

    let (status, body) = post(&fake, Some(&bearer), with(json!({"type": "json_object"}))).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "messages");

    let (status, body) = post(
        &fake,
        Some(&bearer),
        with(json!({"type": "json_schema", "json_schema": {"name": "call analysis", "schema": {"type": "object"}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["param"], "response_format.json_schema.name");

    let (status, body) = post(
        &fake,
        Some(&bearer),
        with(json!({"type": "json_schema", "json_schema": {"name": "call_analysis", "strict": true,
            "schema": {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        body["error"],
        json!({"message": "Invalid schema for response_format 'call_analysis': In context=(), 'additionalProperties' is required to be supplied and to be false.",
               "type": "invalid_request_error", "param": "response_format", "code": null})
    );
    assert!(
        fake.handle.requests().iter().all(|r| r.status == 400),
        "every refusal recorded"
    );
}
