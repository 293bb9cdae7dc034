//! Whole phone calls whose model fails, through the OpenAI fake's fault menu: asked again once,
//! then the assistant's fallback model; an apology when both fail, and the call goes on; a
//! polite goodbye and `provider_error` when the model stays down. Each is counted in `/metrics`
//! and shown in the call's `provider_events`.

use std::time::Duration;

use serde_json::{Value, json};
use voxbridge::call::session::{FAILURE_GOODBYE, LLM_FAILED};
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::openai::Fault;

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip, transcript};

const FALLBACK_MODEL: &str = "sim-fallback-model";
const APOLOGY: &str = "Sorry, my notes went blank for a moment. Could you say that again?";

/// The agent's lines, in order.
fn said(call: &Value) -> Vec<String> {
    transcript(call)
        .into_iter()
        .filter(|(role, _)| role == "assistant")
        .map(|(_, text)| text)
        .collect()
}

/// The kinds of the call's provider events, in order.
fn event_kinds(call: &Value) -> Vec<String> {
    call["provider_events"]
        .as_array()
        .unwrap_or_else(|| panic!("no provider_events: {call:#}"))
        .iter()
        .map(|e| {
            assert_eq!(e["provider"], "llm", "{e}");
            assert!(e["at_ms"].as_i64().is_some(), "{e}");
            e["kind"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The sum of a counter's series whose labels contain `label` ("" for all).
async fn counter(lab: &CallLab, name: &str, label: &str) -> f64 {
    let text = reqwest::get(format!("{}/metrics", lab.server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The models the fake was asked, with the status it answered, in order.
fn asked(lab: &CallLab) -> Vec<(String, u16)> {
    lab.openai
        .requests()
        .iter()
        .map(|r| (r.body["model"].as_str().unwrap_or("").to_owned(), r.status))
        .collect()
}

fn with_llm(llm: Value) -> LabOptions {
    let mut options = LabOptions::default();
    options.assistant["assistant_llm_config"] = llm;
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_fails_twice_hands_the_reply_to_the_fallback() {
    let lab = CallLab::start(with_llm(json!({"fallback": {"model": FALLBACK_MODEL}}))).await;
    lab.openai.push_fault(Fault::overloaded());
    lab.openai.push_fault(Fault::overloaded());
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    assert_eq!(call["end_reason"], "caller_hung_up", "{call:#}");
    let asked = asked(&lab);
    assert!(asked.len() >= 3, "{asked:?}");
    let primary = &asked[0].0;
    assert_ne!(primary, FALLBACK_MODEL);
    assert_eq!(
        asked[..3],
        [
            (primary.clone(), 503),
            (primary.clone(), 503),
            (FALLBACK_MODEL.to_owned(), 200)
        ],
        "asked once, again once, then the fallback"
    );
    // The fallback's answer was heard, not an apology.
    let said = said(&call);
    assert_eq!(said.len(), 2, "{said:?}");
    assert_eq!(said[0], GREETING);
    assert!(
        !said[1].is_empty() && said[1] != LLM_FAILED,
        "the reply: {said:?}"
    );
    assert_eq!(event_kinds(&call), ["retry", "fallback"], "{call:#}");
    let fallback = &call["provider_events"][1];
    assert!(
        fallback["detail"]
            .as_str()
            .is_some_and(|d| d.contains(FALLBACK_MODEL)),
        "{fallback}"
    );
    assert!(counter(&lab, "voxbridge_llm_retries_total", r#"kind="unavailable""#).await >= 1.0);
    assert!(
        counter(
            &lab,
            "voxbridge_llm_fallbacks_total",
            r#"kind="unavailable""#
        )
        .await
            >= 1.0
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_both_models_fail_the_caller_hears_the_apology_and_the_call_goes_on() {
    let mut options = with_llm(json!({"fallback": {"model": FALLBACK_MODEL}, "apology": APOLOGY}));
    options.utterances = vec![
        "Hi, I'd like to book a table for two.",
        "Thank you, goodbye.",
    ];
    let lab = CallLab::start(options).await;
    for _ in 0..3 {
        lab.openai.push_fault(Fault::overloaded());
    }
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(30));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    // The next turn is answered by the model again: it ends the call as asked.
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call:#}");
    let turns: Vec<(String, String)> = transcript(&call)
        .into_iter()
        .filter(|(role, _)| role != "tool")
        .collect();
    let expected = [
        ("assistant", GREETING),
        ("user", "Hi, I'd like to book a table for two."),
        ("assistant", APOLOGY),
        ("user", "Thank you, goodbye."),
        ("assistant", "Thanks for calling. Goodbye!"),
    ]
    .map(|(role, text)| (role.to_owned(), text.to_owned()));
    assert_eq!(
        turns, expected,
        "the apology instead of silence, then the next turn"
    );
    assert_eq!(
        event_kinds(&call),
        ["retry", "fallback", "failed", "apology"],
        "{call:#}"
    );
    assert!(
        counter(
            &lab,
            "voxbridge_llm_failures_total",
            r#"kind="unavailable""#
        )
        .await
            >= 1.0
    );
    assert!(counter(&lab, "voxbridge_llm_apologies_total", "").await >= 1.0);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_stays_down_ends_the_call_politely_as_a_provider_error() {
    let lab = CallLab::start(LabOptions::default()).await;
    for _ in 0..10 {
        lab.openai.push_fault(Fault::overloaded());
    }
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(40));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    assert_eq!(call["end_reason"], "provider_error", "{call:#}");
    assert_eq!(call["status"], "completed", "{call:#}");
    // The first failed reply is apologised for; the second in a row ends the call, and the
    // goodbye is heard.
    assert_eq!(
        said(&call),
        [GREETING, LLM_FAILED, FAILURE_GOODBYE],
        "{call:#}"
    );
    // Each failed reply was asked again first (a reply taken back because the caller went on
    // speaking may add a retry of its own before it was abandoned).
    let kinds = event_kinds(&call);
    assert_eq!(kinds[..3], ["retry", "failed", "apology"], "{call:#}");
    assert_eq!(kinds.last().map(String::as_str), Some("failed"), "{call:#}");
    assert_eq!(
        kinds.iter().filter(|k| *k == "failed").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| *k == "apology").count(),
        1,
        "{kinds:?}"
    );
    assert!(
        kinds
            .iter()
            .all(|k| k == "retry" || k == "failed" || k == "apology"),
        "{kinds:?}"
    );
    let sim = lab.twilio.call(&sid).unwrap();
    assert!(sim.caller_reports[0].first_agent_audio_at().is_some());

    // The end-of-call report says so too.
    for _ in 0..100 {
        if lab.webhooks.count() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = lab.webhooks.received.lock().unwrap().clone();
    let (_, body) = received.first().expect("the report was delivered");
    let report: Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["end_reason"], "provider_error", "{report:#}");
    assert!(
        counter(
            &lab,
            "voxbridge_calls_ended_total",
            r#"reason="provider_error""#
        )
        .await
            >= 1.0
    );
    lab.stop().await;
}

/// A model that answers its headers and then says nothing is a failure once the first-token
/// timeout passes: it is asked again at once, and the second answer is heard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_model_times_out_and_is_asked_again() {
    let lab = CallLab::start(with_llm(json!({"first_token_timeout_ms": 1000}))).await;
    lab.openai.push_fault(Fault::Stall {
        after_chunks: 0,
        duration: Duration::from_secs(20),
    });
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    assert_eq!(event_kinds(&call), ["retry"], "{call:#}");
    let retry = &call["provider_events"][0];
    assert!(
        retry["detail"]
            .as_str()
            .is_some_and(|d| d.contains("no token within 1000 ms")),
        "{retry}"
    );
    let said = said(&call);
    assert_eq!(said.len(), 2, "{said:?}");
    assert_ne!(said[1], LLM_FAILED, "{said:?}");
    assert!(
        counter(
            &lab,
            "voxbridge_llm_retries_total",
            r#"kind="first_token_timeout""#
        )
        .await
            >= 1.0
    );
    lab.stop().await;
}
