//! Whole phone calls over Twilio Media Streams, through the fake providers, with a simulated
//! caller streaming committed speech in real time.

use std::time::Duration;

use serde_json::Value;
use voxbridge::sim::twilio_caller::CallerScript;

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip};

fn transcript(call: &Value) -> Vec<(String, String)> {
    call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["role"].as_str().unwrap().to_owned(),
                t["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_turn_call_greets_first_and_ends_after_the_goodbye() {
    let lab = CallLab::start(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    // The greeting came before the caller said anything.
    let sim = lab.twilio.call(&sid).unwrap();
    let report = &sim.caller_reports[0];
    let first_audio = report.first_agent_audio_at().expect("the agent spoke");
    let first_speech = report.first_speech_at().expect("the caller spoke");
    assert!(
        first_audio < first_speech,
        "greeting at {first_audio:?}, caller at {first_speech:?}"
    );
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );

    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    assert_eq!(call["direction"], "inbound");
    let turns = transcript(&call);
    let users: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        users,
        [
            "Hi, I'd like to book a table for two.",
            "Yes, tomorrow at seven please.",
            "Thank you, goodbye."
        ]
    );
    assert_eq!(turns[0], ("assistant".to_owned(), GREETING.to_owned()));
    let assistants: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "assistant")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(assistants.len(), 4, "{turns:?}");
    assert!(
        assistants[3].to_lowercase().contains("goodbye"),
        "{turns:?}"
    );
    assert!(
        turns
            .iter()
            .any(|(r, t)| r == "tool" && t.starts_with("end_call")),
        "{turns:?}"
    );

    // The hang-up waited for the goodbye to be heard: its end mark came back before the close.
    let end_marks: Vec<_> = report
        .marks
        .iter()
        .filter(|m| m.name.ends_with(".end"))
        .collect();
    let last = end_marks.last().expect("end marks");
    let echoed = last.echoed_at.expect("the goodbye's end mark was echoed");
    assert!(
        echoed <= report.ended_at,
        "echo {echoed:?} after the call ended {:?}",
        report.ended_at
    );
    lab.stop().await;
}

/// A start instruction long enough (about 10 s of speech) to be talked over.
const LONG_GREETING: &str = "Hello and welcome to Acme, the friendliest restaurant in town. We are open every day from noon until eleven, and tonight our chef recommends the grilled fish. How can I help you?";

fn long_greeting() -> LabOptions {
    let mut options = LabOptions::default();
    options.assistant["assistant_start_instruction"] = serde_json::json!(LONG_GREETING);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_at_once_and_keeps_what_was_heard() {
    let mut options = long_greeting();
    options.utterances = vec!["Sorry, can I book a table for two?"];
    let lab = CallLab::start(options).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(3))
        .say(clip("book_table"))
        .wait(Duration::from_secs(6))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let sim = lab.twilio.call(&sid).unwrap();
    let report = &sim.caller_reports[0];
    let onset = report.first_speech_at().expect("the caller spoke");
    let clear = report
        .first_clear_after(onset)
        .expect("the agent was cleared");
    let reaction = clear.at - onset;
    // VAD onset (min_speech_ms 200) plus the STT's first words: well under a second.
    assert!(
        reaction < Duration::from_millis(1200),
        "clear {reaction:?} after the caller started"
    );
    // Nothing of the interrupted greeting was sent after the clear (later audio is the reply).
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["role"], "assistant");
    assert_eq!(greeting["interrupted"], true, "{call}");
    let heard = greeting["text"].as_str().unwrap();
    assert!(
        !heard.is_empty() && heard.len() < LONG_GREETING.len(),
        "heard {heard:?}"
    );
    assert!(
        LONG_GREETING.starts_with(heard.trim_end_matches(|c: char| !c.is_alphanumeric())),
        "{heard:?} is not a prefix"
    );
    let users: Vec<&str> = call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["Sorry, can I book a table for two?"]);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backchannel_does_not_interrupt() {
    let mut options = long_greeting();
    options.utterances = vec!["uh-huh"];
    let lab = CallLab::start(options).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(2))
        .say(clip("backchannel_uh_huh"))
        .wait_for_agent_silence(Duration::from_millis(1500), Duration::from_secs(30))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let report = &lab.twilio.call(&sid).unwrap().caller_reports[0];
    assert!(
        report.clears.is_empty(),
        "an uh-huh cleared the agent: {:?}",
        report.clears
    );
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["text"], LONG_GREETING);
    assert_eq!(greeting["interrupted"], false);
    assert!(
        call["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["role"] != "user"),
        "{call}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_prompts_then_ends_the_call() {
    let mut options = LabOptions::default();
    options.assistant["assistant_silence_timeout_secs"] = serde_json::json!(5);
    let lab = CallLab::start(options).await;
    let sid = lab.call_in(CallerScript::new().wait(Duration::from_secs(40)));
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "silence_timeout", "{call}");
    let said: Vec<&str> = call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        [
            GREETING,
            voxbridge::call::session::SILENCE_PROMPT,
            voxbridge::call::session::SILENCE_GOODBYE
        ]
    );
    lab.stop().await;
}
