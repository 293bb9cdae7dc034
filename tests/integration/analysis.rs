//! Post-call analysis: the assistant's `assistant_analysis` is checked when saved, and a finished
//! call is analysed through the fake LLM (structured outputs), stored, shown in the call's
//! details and sent in its webhook, waiting for it at most `analysis_timeout_secs`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::openai::Fault;

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip};
use crate::common::TestServer;
use crate::on_both_backends;

fn booking_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "party_size": {"type": ["integer", "null"], "minimum": 1},
            "wants_table": {"type": "boolean"}
        },
        "required": ["party_size", "wants_table"]
    })
}

fn assistant(analysis: Value) -> Value {
    json!({
        "assistant_name": "Analysed",
        "assistant_description": "d",
        "assistant_prompt": "p",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
        "assistant_analysis": analysis,
    })
}

async fn analysis_settings_are_checked_and_kept(s: &TestServer) {
    let settings = json!({"summary": true, "structured_data_schema": booking_schema(),
                          "success_criteria": "A table was booked."});
    let (status, reply) = s
        .post("/assistant/create", assistant(settings.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["assistant_id"].as_str().unwrap().to_owned();
    let (_, details) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(details["data"]["assistant_analysis"], settings);

    // A new schema replaces the stored one whole; the other parts merge.
    let smaller = json!({"type": "object", "properties": {"city": {"type": "string"}}});
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_analysis": {"structured_data_schema": smaller, "summary": false}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, details) = s.get(&format!("/assistant/details/{id}")).await;
    let kept = &details["data"]["assistant_analysis"];
    assert_eq!(kept["structured_data_schema"], smaller);
    assert_eq!(kept["summary"], false);
    assert_eq!(kept["success_criteria"], "A table was booked.");

    for (bad, field) in [
        (
            json!({"structured_data_schema": {"type": "array"}}),
            "assistant_analysis.structured_data_schema",
        ),
        (
            json!({"structured_data_schema": {"type": "object", "properties": {"x": {"type": "strnig"}}}}),
            "assistant_analysis.structured_data_schema",
        ),
        (
            json!({"structured_data_schema": {"type": "object", "$ref": "https://example.com/s.json"}}),
            "assistant_analysis.structured_data_schema",
        ),
        (
            json!({"success_criteria": ""}),
            "assistant_analysis.success_criteria",
        ),
        (json!({"summary": "yes"}), "assistant_analysis.summary"),
        (json!({"summry": true}), "assistant_analysis"),
    ] {
        let (status, reply) = s.post("/assistant/create", assistant(bad.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {reply}");
        let fields: Vec<&str> = reply["data"]["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{bad}: {fields:?}"
        );
    }
}

on_both_backends!(analysis_settings_are_checked_and_kept);

fn lab_options(timeout_secs: u64) -> LabOptions {
    let mut options = LabOptions {
        configure: Box::new(move |config| config.analysis_timeout_secs = timeout_secs),
        ..LabOptions::default()
    };
    options.assistant["assistant_analysis"] = json!({
        "summary": true,
        "structured_data_schema": booking_schema(),
        "success_criteria": "The caller asked for a table.",
    });
    options
}

/// The webhook's report, once one has arrived.
async fn report(lab: &CallLab) -> Value {
    for _ in 0..300 {
        if let Some((_, body)) = lab.webhooks.received.lock().unwrap().first() {
            return serde_json::from_str(body).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no report arrived");
}

async fn analysis_of(lab: &CallLab, call_id: &str, status: &str) -> Value {
    for _ in 0..300 {
        let (_, details) = lab.server.get(&format!("/call/details/{call_id}")).await;
        if details["data"]["analysis_status"] == status {
            return details["data"]["analysis"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the analysis never became {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_call_is_analysed_and_reported_with_its_analysis() {
    let lab = CallLab::start(lab_options(30)).await;
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait(Duration::from_secs(3))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let call_id = call["call_id"].as_str().unwrap();

    let analysis = analysis_of(&lab, call_id, "completed").await;
    let schema = booking_schema();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    assert!(
        validator.is_valid(&analysis["structured_data"]),
        "{analysis}"
    );
    assert!(analysis["summary"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(analysis["success"].is_boolean(), "{analysis}");

    let report = report(&lab).await;
    assert_eq!(report["analysis_status"], "completed", "{report}");
    assert_eq!(
        report["analysis"]["structured_data"],
        analysis["structured_data"]
    );
    assert_eq!(report["analysis"]["summary"], analysis["summary"]);

    // The request carried the transcript and asked for the schema.
    let request = lab
        .openai
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.body.get("response_format").is_some())
        .expect("an analysis request");
    let format = &request.body["response_format"];
    assert_eq!(format["type"], "json_schema");
    assert_eq!(
        format["json_schema"]["schema"]["properties"]["structured_data"],
        booking_schema()
    );
    let transcript = request.body["messages"][1]["content"].as_str().unwrap();
    assert!(transcript.contains(GREETING), "{transcript}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_analysis_does_not_hold_the_report_past_its_timeout() {
    let lab = CallLab::start(lab_options(1)).await;
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait_for_agent_silence(Duration::from_millis(800), Duration::from_secs(30))
        .wait(Duration::from_secs(3))
        .hang_up();
    let requests_before = lab.openai.requests().len();
    let sid = lab.call_in(script);
    // Once the reply to the caller was asked for, the next request is the analysis: stall it.
    for _ in 0..300 {
        if lab.openai.requests().len() > requests_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    lab.openai.push_fault(Fault::Stall {
        after_chunks: 0,
        duration: Duration::from_secs(4),
    });
    let call = lab.finished_call(&sid).await;
    let call_id = call["call_id"].as_str().unwrap();
    let report = report(&lab).await;
    assert_eq!(report["analysis_status"], "timeout", "{report}");
    assert_eq!(report["analysis"], Value::Null);
    // Nothing is lost: the analysis lands in the details when it finishes.
    let analysis = analysis_of(&lab, call_id, "completed").await;
    assert!(analysis["structured_data"].is_object(), "{analysis}");
    assert_eq!(lab.webhooks.count(), 1, "the report went out once");
    lab.stop().await;
}
