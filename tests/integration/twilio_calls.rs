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
        .map(|t| (t["role"].as_str().unwrap().to_owned(), t["text"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_turn_call_greets_first_and_ends_after_the_goodbye() {
    let lab = CallLab::start(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script).say(clip("thank_you_goodbye")).wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    // The greeting came before the caller said anything.
    let sim = lab.twilio.call(&sid).unwrap();
    let report = &sim.caller_reports[0];
    let first_audio = report.first_agent_audio_at().expect("the agent spoke");
    let first_speech = report.first_speech_at().expect("the caller spoke");
    assert!(first_audio < first_speech, "greeting at {first_audio:?}, caller at {first_speech:?}");
    assert!(report.protocol_errors.is_empty(), "{:?}", report.protocol_errors);

    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    assert_eq!(call["direction"], "inbound");
    let turns = transcript(&call);
    let users: Vec<&str> = turns.iter().filter(|(r, _)| r == "user").map(|(_, t)| t.as_str()).collect();
    assert_eq!(users, ["Hi, I'd like to book a table for two.", "Yes, tomorrow at seven please.", "Thank you, goodbye."]);
    assert_eq!(turns[0], ("assistant".to_owned(), GREETING.to_owned()));
    let assistants: Vec<&str> = turns.iter().filter(|(r, _)| r == "assistant").map(|(_, t)| t.as_str()).collect();
    assert_eq!(assistants.len(), 4, "{turns:?}");
    assert!(assistants[3].to_lowercase().contains("goodbye"), "{turns:?}");
    assert!(turns.iter().any(|(r, t)| r == "tool" && t.starts_with("end_call")), "{turns:?}");

    // The hang-up waited for the goodbye to be heard: its end mark came back before the close.
    let end_marks: Vec<_> = report.marks.iter().filter(|m| m.name.ends_with(".end")).collect();
    let last = end_marks.last().expect("end marks");
    let echoed = last.echoed_at.expect("the goodbye's end mark was echoed");
    assert!(echoed <= report.ended_at, "echo {echoed:?} after the call ended {:?}", report.ended_at);
    lab.stop().await;
}
