//! Post-call analysis: the assistant's `assistant_analysis` is checked when saved, and a finished
//! call is analysed through the fake LLM (structured outputs), stored, shown in the call's
//! details and sent in its webhook, waiting for it at most `analysis_timeout_secs`.

use reqwest::StatusCode;
use serde_json::{Value, json};

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
