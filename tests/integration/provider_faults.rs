//! Providers failing in the middle of whole calls (issue 23), through the sim fakes' fault
//! menus: an STT socket dropped mid-utterance is reconnected and loses no words (the transcript
//! is the one a call without the drop has), and
//! an STT or TTS that stays down ends the call politely as a `provider_error`, reported like any
//! other end.

use std::time::Duration;

use serde_json::Value;
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::cartesia::ContextFault;
use voxbridge::sim::stream_log::StreamFault;

use crate::call_lab::{CallLab, LabOptions, after_agent, clip};

/// The caller's three turns of the lab's standard call.
fn three_turns() -> CallerScript {
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20))
}

/// What the caller said, as the call's transcript has it.
fn caller_lines(call: &Value) -> Vec<String> {
    call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["text"].as_str().unwrap().to_owned())
        .collect()
}

/// Deepgram drops the socket (1011) in the middle of the caller's first sentence: the STT
/// session reconnects, sends again what the lost stream had not settled (from just before the
/// sentence began) and then the audio that arrived meanwhile, and the call's transcript is the
/// one a call without the drop has. The fake hears only what it is sent (a stream that begins
/// inside speech gets only the sentence's tail), so a lost word would show here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_stt_drop_mid_utterance_keeps_the_call_and_its_turns() {
    let lab = CallLab::start(LabOptions::default()).await;
    let calm = lab.call_in(three_turns());
    let without_drop = caller_lines(&lab.finished_call(&calm).await);
    lab.stop().await;

    let lab = CallLab::start(LabOptions::default()).await;
    // The greeting takes about 3 s and the caller starts 0.8 s after it: 4.5 s of the stream's
    // audio is inside "Hi, I'd like to book a table for two."
    lab.deepgram.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 4_500,
        code: 1011,
        reason: "internal error".to_owned(),
    });
    let dropped = lab.call_in(three_turns());
    let call = lab.finished_call(&dropped).await;
    let streams = lab.deepgram.streams();
    assert!(
        streams.len() >= 2,
        "the STT reconnected: {} streams",
        streams.len()
    );
    assert_eq!(caller_lines(&call), without_drop, "{call:#}");
    assert_eq!(
        without_drop,
        [
            "Hi, I'd like to book a table for two.",
            "Yes, tomorrow at seven please.",
            "Thank you, goodbye."
        ]
    );
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call:#}");
    lab.stop().await;
}

/// Deepgram drops the socket and then refuses every reconnection: the agent says it has
/// technical trouble and ends the call as `provider_error`; the call is stored and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_stt_that_stays_down_ends_the_call_as_a_provider_error() {
    let lab = CallLab::start(LabOptions::default()).await;
    lab.deepgram.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 4_500,
        code: 1011,
        reason: "internal error".to_owned(),
    });
    let sid = lab.call_in(three_turns());
    // Every reconnection is refused, once the call's first stream is up.
    for _ in 0..200 {
        if !lab.deepgram.streams().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for _ in 0..20 {
        lab.deepgram.refuse_next_handshake(503);
    }
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "provider_error", "{call:#}");
    assert_eq!(call["status"], "completed", "{call:#}");
    let last = call["transcript"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant", "{call:#}");
    assert!(
        last["text"].as_str().unwrap().contains("technical trouble"),
        "{call:#}"
    );
    assert!(!lab.deepgram.refused().is_empty());
    // Reported like any other end.
    for _ in 0..100 {
        if lab.webhooks.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reports = lab.webhooks.received.lock().unwrap().clone();
    assert_eq!(reports.len(), 1);
    let report: Value = serde_json::from_str(&reports[0].1).unwrap();
    assert_eq!(report["end_reason"], "provider_error");
    lab.stop().await;
}

/// Cartesia answers every context with an error: the greeting is retried once, the next line
/// fails too, and the call ends as `provider_error` rather than going on in silence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tts_that_stays_down_ends_the_call_as_a_provider_error() {
    let lab = CallLab::start(LabOptions::default()).await;
    for _ in 0..10 {
        lab.cartesia.inject(ContextFault::Error { status: 500 });
    }
    let sid = lab.call_in(three_turns());
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "provider_error", "{call:#}");
    assert_eq!(call["status"], "completed", "{call:#}");
    // Nothing was heard, so nothing the agent said is in the transcript.
    assert!(
        call["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["role"] != "assistant"),
        "{call:#}"
    );
    let contexts = lab.cartesia.received().context_ids;
    assert!(contexts.len() >= 3, "{contexts:?}");
    lab.stop().await;
}

/// Cartesia answers every context with an error, and the assistant has a Sarvam voice as its
/// fallback: the greeting fails, its retry fails, and the fallback voice says it — the caller
/// hears the whole call in the other voice, the call ends as it would have, and its details show
/// the switch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_voice_says_what_the_failed_voice_could_not() {
    let mut options = LabOptions::default();
    options.assistant["assistant_tts_fallback"] = serde_json::json!({
        "model": "sarvam",
        "config": {"speaker": "anushka", "target_language_code": "en-IN"}
    });
    let lab = CallLab::start(options).await;
    for _ in 0..10 {
        lab.cartesia.inject(ContextFault::Error { status: 500 });
    }
    let sid = lab.call_in(three_turns());
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call:#}");
    let lines = crate::call_lab::transcript(&call);
    assert_eq!(
        lines.first(),
        Some(&("assistant".to_owned(), crate::call_lab::GREETING.to_owned())),
        "the greeting, said whole by the fallback voice: {lines:?}"
    );
    assert_eq!(
        caller_lines(&call),
        [
            "Hi, I'd like to book a table for two.",
            "Yes, tomorrow at seven please.",
            "Thank you, goodbye."
        ]
    );
    let events = call["provider_events"].as_array().unwrap();
    assert!(
        events.iter().any(|e| e["provider"] == "tts"
            && e["kind"] == "fallback_voice"
            && e["detail"] == "sarvam"),
        "{events:?}"
    );
    // Cartesia was asked twice (the greeting and its retry), then never again.
    assert_eq!(lab.cartesia.received().context_ids.len(), 2);
    lab.stop().await;
}
