//! Outbound calls (issue 6): the request, the exact form Twilio receives, the rendered greeting
//! reaching the TTS, the call's life through status callbacks, and the errors.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::twilio::DEFAULT_ACCOUNT_SID;

use crate::call_lab::{CallLab, LabOptions, OUR_NUMBER, after_agent, clip};

const CALLEE: &str = "+15550200000";

fn placeholder_options() -> LabOptions {
    let mut options = LabOptions {
        utterances: vec!["Thank you, goodbye."],
        ..LabOptions::default()
    };
    options.assistant["assistant_prompt"] = json!(
        "Hello {{name}}, you are calling from {{ company }}. Be brief. Tier: {{tier|standard}}."
    );
    options.assistant["assistant_start_instruction"] =
        json!("Hi {{name}}, this is {{agent_name}} from {{company}}.");
    options
}

fn outbound_body(lab: &CallLab, metadata: Value) -> Value {
    json!({
        "assistant_id": lab.assistant_id,
        "trunk_id": lab.trunk_id,
        "to_number": CALLEE,
        "call_service": "twilio",
        "metadata": metadata,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outbound_call_renders_dials_talks_and_completes() {
    let lab = CallLab::start(placeholder_options()).await;
    lab.twilio.set_caller_script(
        CALLEE,
        after_agent(CallerScript::new())
            .say(clip("thank_you_goodbye"))
            .wait(Duration::from_secs(20)),
    );
    let metadata =
        json!({"name": "John Doe", "company": "Acme Corp", "agent_name": "Sarah", "unused": 1});
    let (status, reply) = lab
        .server
        .post("/call/outbound", outbound_body(&lab, metadata.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["success"], true);
    let data = &reply["data"];
    let call_id = data["call_id"].as_str().unwrap().to_owned();
    assert_eq!(data["status"], "queued");
    assert_eq!(data["from_number"], OUR_NUMBER);
    assert_eq!(data["missing_variables"], json!([]));
    let sid = data["provider_call_sid"].as_str().unwrap().to_owned();
    assert!(sid.starts_with("CA"));

    // Twilio received exactly the expected form.
    let create = lab
        .twilio
        .requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path.ends_with("/Calls.json"))
        .unwrap();
    assert_eq!(
        create.path,
        format!("/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls.json")
    );
    assert!(create.authenticated);
    let values = |key: &str| {
        create
            .form
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(values("To"), [CALLEE]);
    assert_eq!(values("From"), [OUR_NUMBER]);
    assert_eq!(
        values("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(values("StatusCallbackMethod"), ["POST"]);
    assert_eq!(
        values("StatusCallback"),
        [format!("{}/twilio/status?call_id={call_id}", lab.server.base).as_str()]
    );
    let twiml = values("Twiml")[0];
    assert!(twiml.contains("<Connect><Stream url=\"ws://"), "{twiml}");
    assert!(
        twiml.contains(&format!(
            "<Parameter name=\"call_id\" value=\"{call_id}\"/>"
        )),
        "{twiml}"
    );
    assert!(
        twiml.contains("<Parameter name=\"token\" value=\"vst_"),
        "{twiml}"
    );
    let keys: Vec<&str> = create.form.iter().map(|(k, _)| k.as_str()).collect();
    for key in &keys {
        assert!(
            [
                "To",
                "From",
                "Twiml",
                "StatusCallback",
                "StatusCallbackMethod",
                "StatusCallbackEvent",
                "Timeout",
                "TimeLimit"
            ]
            .contains(key),
            "unexpected form field {key}"
        );
    }

    let sim = lab
        .twilio
        .wait_for_call_end(&sid, Duration::from_secs(90))
        .await
        .expect("call ends");
    // The simulated caller connected with the stream parameters of the TwiML.
    assert_eq!(sim.streams.len(), 1);
    // The TTS received the rendered greeting.
    let cartesia = lab.cartesia.received();
    let greeting = cartesia.transcript_of(&cartesia.context_ids[0]);
    assert_eq!(
        greeting.trim(),
        "Hi John Doe, this is Sarah from Acme Corp."
    );

    // Status callbacks arrived in order and were all accepted.
    let callbacks = lab.twilio.status_callbacks(&sid);
    let statuses: Vec<String> = callbacks
        .iter()
        .map(|c| {
            c.params
                .iter()
                .find(|(k, _)| k == "CallStatus")
                .unwrap()
                .1
                .clone()
        })
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    assert!(
        callbacks
            .iter()
            .all(|c| c.status.is_some_and(|s| (200..300).contains(&s))),
        "{callbacks:?}"
    );

    let mut details = Value::Null;
    for _ in 0..100 {
        let (_, reply) = lab.server.get(&format!("/call/details/{call_id}")).await;
        details = reply["data"].clone();
        if details["status"] == "completed" && details["ended_at"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(details["status"], "completed", "{details}");
    assert_eq!(details["direction"], "outbound");
    assert_eq!(
        details["provider_call_sid"],
        Value::Null,
        "not part of the documented details: {details}"
    );
    assert_eq!(
        details["rendered_start_instruction"],
        "Hi John Doe, this is Sarah from Acme Corp."
    );
    assert_eq!(
        details["rendered_prompt"],
        "Hello John Doe, you are calling from Acme Corp. Be brief. Tier: standard."
    );
    assert_eq!(details["metadata"], metadata);
    assert_eq!(
        details["transcript"][0]["text"],
        "Hi John Doe, this is Sarah from Acme Corp."
    );
    assert!(
        details["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["role"] == "user" && t["text"] == "Thank you, goodbye.")
    );
    // The LLM was asked with the rendered prompt.
    let request = &lab.openai.requests()[0];
    assert_eq!(
        request.body["messages"][0]["content"],
        "Hello John Doe, you are calling from Acme Corp. Be brief. Tier: standard."
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_values_are_listed_and_bad_requests_refused() {
    let lab = CallLab::start(placeholder_options()).await;
    lab.twilio
        .set_caller_script(CALLEE, CallerScript::new().hang_up());
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            outbound_body(&lab, json!({"name": "Asha"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["data"]["missing_variables"],
        json!(["company", "agent_name"])
    );

    let cases = [
        (json!({"to_number": "5550200000"}), "to_number"),
        (json!({"to_number": null}), "to_number"),
        (json!({"call_service": "plivo"}), "call_service"),
        (json!({"call_service": null}), "call_service"),
        (json!({"assistant_id": "nope"}), "assistant_id"),
        (
            json!({"trunk_id": "ST_00000000000000000000000000000000"}),
            "trunk_id",
        ),
        (json!({"metadata": [1, 2]}), "metadata"),
        (json!({"priority": "high"}), "priority"),
    ];
    for (patch, field) in cases {
        let mut body = outbound_body(&lab, json!({}));
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body.as_object_mut().unwrap().remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        let (status, reply) = lab.server.post("/call/outbound", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{field}: {reply}");
        assert!(
            reply["data"]["errors"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["field"] == field),
            "{field}: {reply}"
        );
    }
    // Another owner's assistant and trunk are not reachable.
    let other = lab.server.key_for("other@example.com").await;
    let (status, _) = lab
        .server
        .call(
            reqwest::Method::POST,
            "/call/outbound",
            Some(&other),
            Some(outbound_body(&lab, json!({}))),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_refusal_is_a_clear_error_and_a_failed_call() {
    let lab = CallLab::start(placeholder_options()).await;
    // A caller ID the Twilio account does not own: Twilio refuses the call.
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Stranger", "trunk_provider": "twilio", "trunk_account_sid": DEFAULT_ACCOUNT_SID,
                   "trunk_auth_token": voxbridge::sim::twilio::DEFAULT_AUTH_TOKEN, "trunk_default_caller_number": "+15557770000"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let mut body = outbound_body(&lab, json!({}));
    body["trunk_id"] = reply["data"]["trunk_id"].clone();
    let (status, reply) = lab.server.post("/call/outbound", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.starts_with("Twilio refused the call (21210)"),
        "{message}"
    );
    let (_, list) = lab.server.get("/call/list").await;
    let call = &list["data"]["calls"][0];
    assert_eq!(call["status"], "failed", "{list}");
    assert_eq!(call["end_reason"], "provider_rejected: 21210");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_up_ends_a_live_call_and_limits_apply() {
    let mut options = placeholder_options();
    options.max_concurrent_calls = 1;
    let lab = CallLab::start(options).await;
    lab.twilio
        .set_caller_script(CALLEE, CallerScript::new().wait(Duration::from_secs(60)));
    let (status, reply) = lab
        .server
        .post("/call/outbound", outbound_body(&lab, json!({})))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let sid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    // The owner's limit is one call at a time.
    let (status, reply) = lab
        .server
        .post("/call/outbound", outbound_body(&lab, json!({})))
        .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("1 calls"),
        "{reply}"
    );
    // Wait until the call is talking, then hang up through the API.
    lab.twilio
        .wait_for(Duration::from_secs(20), |s| {
            s.call(&sid)
                .is_some_and(|c| !c.streams.is_empty())
                .then_some(())
        })
        .await
        .expect("the call connects");
    let (status, reply) = lab
        .server
        .post(&format!("/call/hangup/{call_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    lab.twilio
        .wait_for_call_end(&sid, Duration::from_secs(20))
        .await
        .expect("the call ends");
    let mut details = Value::Null;
    for _ in 0..100 {
        details = lab.server.get(&format!("/call/details/{call_id}")).await.1["data"].clone();
        if details["status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(details["status"], "completed", "{details}");
    assert_eq!(details["end_reason"], "hung_up_by_api");
    let (status, _) = lab
        .server
        .post(&format!("/call/hangup/{call_id}"), json!({}))
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an ended call cannot be hung up again"
    );
    let (status, _) = lab.server.post("/call/hangup/nope", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_line_ends_the_call_busy_and_still_reports() {
    let lab = CallLab::start(placeholder_options()).await;
    lab.twilio.set_outcome(
        CALLEE,
        voxbridge::sim::twilio::CallOutcome::Busy {
            after: Duration::from_millis(100),
        },
    );
    let (status, reply) = lab
        .server
        .post("/call/outbound", outbound_body(&lab, json!({"name": "Bo"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let mut details = Value::Null;
    for _ in 0..100 {
        details = lab.server.get(&format!("/call/details/{call_id}")).await.1["data"].clone();
        if details["webhook_deliveries"]
            .as_array()
            .is_some_and(|d| d.first().is_some_and(|d| d["status"] == "delivered"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(details["status"], "busy", "{details}");
    assert_eq!(details["end_reason"], "busy");
    assert_eq!(
        details["webhook_deliveries"][0]["status"], "delivered",
        "{details}"
    );
    let received = lab.webhooks.received.lock().unwrap().clone();
    let report: Value = serde_json::from_str(&received[0].1).unwrap();
    assert_eq!(report["status"], "busy");
    assert_eq!(report["transcript"], json!([]));
    lab.stop().await;
}
