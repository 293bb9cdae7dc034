//! What the call inspector reads: each reply's timings in call details (`turns[]`), the
//! webhook's attempts (`/call/webhooks/{id}`), the list's direction and date filters, and the
//! report's latency summary; stored on both backends, and filled by a whole call through the
//! fakes. The page itself is driven in a browser by `browser.rs`.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxbridge::sim::caller::CallerScript;
use voxbridge::store::{
    AttemptRecord, CallStatus, Direction, NewCall, TurnInterruption, TurnStamps, TurnTiming,
    TurnTool,
};

use crate::call_lab::{CallLab, LabOptions, after_agent, clip};
use crate::common::TestServer;
use crate::on_both_backends;

on_both_backends!(turn_timings_and_webhook_attempts_are_served_to_their_owner);

async fn insert_call(s: &TestServer, direction: Direction) -> String {
    let body = json!({
        "assistant_name": "Caller", "assistant_description": "d", "assistant_prompt": "p",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"}
    });
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let assistant_id = reply["data"]["assistant_id"].as_str().unwrap().to_owned();
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    s.store
        .insert_call(&NewCall {
            id: id.clone(),
            owner_id: owner.id,
            assistant_id,
            trunk_id: None,
            direction,
            from_number: None,
            to_number: None,
            status: CallStatus::Completed,
            provider_call_sid: None,
            metadata: json!({}),
            rendered_prompt: "p".into(),
            rendered_start_instruction: None,
            rendered_voicemail_message: None,
            missing_variables: vec![],
            stream_token_hash: None,
            stream_token_expires_at: None,
        })
        .await
        .unwrap();
    id
}

fn timing(turn: i64) -> TurnTiming {
    let mut t = TurnTiming {
        turn,
        source: "model".into(),
        outcome: "interrupted".into(),
        started_ms: 1000 * turn,
        ended_ms: 1000 * turn + 900,
        stamps: TurnStamps {
            caller_stopped_ms: Some(1000 * turn),
            stt_final_ms: Some(1000 * turn + 120),
            llm_request_ms: Some(1000 * turn + 120),
            llm_first_token_ms: Some(1000 * turn + 420),
            first_phrase_ms: Some(1000 * turn + 450),
            tts_first_audio_ms: Some(1000 * turn + 600),
            first_frame_ms: Some(1000 * turn + 602),
            first_mark_ms: None,
        },
        interruptions: vec![TurnInterruption {
            onset_ms: 1000 * turn + 800,
            cleared_ms: Some(1000 * turn + 800),
            confirmed_ms: Some(1000 * turn + 900),
            resumed_ms: None,
            heard: Some("Sure, a täble".into()),
        }],
        tools: vec![TurnTool {
            name: "lookup".into(),
            arguments: r#"{"q":"x"}"#.into(),
            result_bytes: 12,
            result_preview: r#"{"ok":true}"#.into(),
            started_ms: 1000 * turn + 430,
            duration_ms: 15,
            error: None,
        }],
        ..TurnTiming::default()
    };
    t.derive_stages();
    t
}

async fn turn_timings_and_webhook_attempts_are_served_to_their_owner(s: &TestServer) {
    let id = insert_call(s, Direction::Inbound).await;
    // Stored out of order and one of them twice (a document written again replaces itself).
    for turn in [2, 1, 2] {
        s.store
            .append_turn_timing(&id, &timing(turn))
            .await
            .unwrap();
    }
    let (status, details) = s.get(&format!("/call/details/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    let turns = details["data"]["turns"].as_array().expect("turns[]");
    assert_eq!(turns.len(), 2, "{details}");
    assert_eq!(turns[0], serde_json::to_value(timing(1)).unwrap());
    assert_eq!(turns[1]["stages"]["llm_first_token_ms"], 300);
    assert_eq!(turns[1]["total_ms"], 602);
    assert_eq!(turns[1]["interruptions"][0]["heard"], "Sure, a täble");

    s.store
        .enqueue_webhook("d-1", &id, "http://127.0.0.1:9/hook", "{}")
        .await
        .unwrap();
    for (attempt, outcome, code) in [(1, "retry", Some(503)), (2, "delivered", Some(200))] {
        s.store
            .record_webhook_attempt(&AttemptRecord {
                delivery_id: "d-1".into(),
                attempt,
                started_at: format!("2026-01-01T10:00:0{attempt}.000000"),
                duration_ms: 40,
                status_code: code,
                outcome: outcome.into(),
                error: (outcome == "retry").then(|| "receiver answered HTTP 503".into()),
            })
            .await
            .unwrap();
    }
    let (status, hooks) = s.get(&format!("/call/webhooks/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{hooks}");
    assert_eq!(hooks["data"]["deliveries"][0]["delivery_id"], "d-1");
    let attempts = hooks["data"]["attempts"].as_array().unwrap();
    let seen: Vec<(i64, &str, Value)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["status_code"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [(1, "retry", json!(503)), (2, "delivered", json!(200))]
    );

    // Another owner sees neither.
    let other = s.key_for("other@example.com").await;
    for path in [
        format!("/call/details/{id}"),
        format!("/call/webhooks/{id}"),
    ] {
        let (status, reply) = s.call(Method::GET, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
        assert_eq!(reply["success"], false);
    }

    // The list filters by direction and creation date.
    let web = insert_call(s, Direction::Web).await;
    let listed = |reply: &Value| -> Vec<String> {
        reply["data"]["calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["call_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, inbound) = s.get("/call/list?direction=inbound").await;
    assert_eq!(listed(&inbound), [id.as_str()]);
    let (_, webs) = s.get("/call/list?direction=web").await;
    assert_eq!(listed(&webs), [web.as_str()]);
    let today = &voxbridge::store::now_timestamp()[..10];
    let (_, from_today) = s.get(&format!("/call/list?created_after={today}")).await;
    assert_eq!(from_today["data"]["total"], 2, "{from_today}");
    let (_, before_today) = s.get(&format!("/call/list?created_before={today}")).await;
    assert_eq!(before_today["data"]["total"], 0, "{before_today}");
    let (_, window) = s
        .get(&format!(
            "/call/list?created_after={today}T00:00&created_before=2999-01-01T00:00:00.5"
        ))
        .await;
    assert_eq!(window["data"]["total"], 2, "{window}");
    for bad in [
        "direction=chat",
        "direction=sideways",
        "created_after=yesterday",
        "created_before=2026-13-01",
        "created_after=2026-01-01T25:00",
        "created_after=2026-01-01%20OR%201=1",
    ] {
        let (status, reply) = s.get(&format!("/call/list?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {reply}");
    }
}

/// A whole call through the fakes: every answered reply carries all of its stages in order,
/// the greeting is a line, the goodbye's `end_call` is among its tools, the webhook's attempt
/// is on record and the report summarises the stages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_call_records_each_replys_stages_and_the_report_summarises_them() {
    let lab = CallLab::start(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let turns = call["turns"].as_array().expect("turns[]");
    assert!(turns.len() >= 4, "greeting + three answers: {turns:#?}");
    assert_eq!(turns[0]["source"], "line");
    assert_eq!(turns[0]["stamps"]["llm_request_ms"], Value::Null);
    for (i, turn) in turns.iter().enumerate() {
        assert_eq!(turn["turn"], i as i64 + 1);
        assert!(turn["total_ms"].as_i64().is_some(), "{turn:#}");
    }
    let stamp_order = [
        "caller_stopped_ms",
        "stt_final_ms",
        "llm_request_ms",
        "llm_first_token_ms",
        "first_phrase_ms",
        "tts_first_audio_ms",
        "first_frame_ms",
        "first_mark_ms",
    ];
    // Every answer heard to its end went through every stage, in order. (How many there are
    // depends on how the fakes' timing falls: the caller may talk over one.)
    let answers: Vec<&Value> = turns
        .iter()
        .filter(|t| t["source"] == "model" && t["outcome"] == "heard")
        .collect();
    assert!(answers.len() >= 2, "{turns:#?}");
    for turn in answers {
        let stamps: Vec<i64> = stamp_order
            .iter()
            .map(|name| {
                turn["stamps"][name]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{name} missing: {turn:#}"))
            })
            .collect();
        assert!(
            stamps.windows(2).all(|w| w[0] <= w[1]),
            "stamps out of order: {turn:#}"
        );
        let stages = turn["stages"].as_object().unwrap();
        assert!(
            stages
                .values()
                .all(|v| v.as_i64().is_some_and(|ms| ms >= 0)),
            "{turn:#}"
        );
        // The wait ends at the first frame sent; the mark's echo comes after it.
        assert_eq!(
            turn["total_ms"].as_i64().unwrap(),
            stamps[stamps.len() - 2] - stamps[0]
        );
        assert!(turn["ended_ms"].as_i64() >= turn["stamps"]["first_mark_ms"].as_i64());
    }
    // An interrupted reply says what was heard.
    for turn in turns.iter().filter(|t| t["outcome"] == "interrupted") {
        let last = turn["interruptions"].as_array().unwrap().last().unwrap();
        assert!(
            last["confirmed_ms"].is_i64() && last["heard"].is_string(),
            "{turn:#}"
        );
    }
    let tools: Vec<&str> = turns
        .iter()
        .flat_map(|t| t["tools"].as_array().unwrap())
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["end_call"], "{turns:#?}");

    // The report went out once, with the summary; its attempt is on record.
    let call_id = call["call_id"].as_str().unwrap();
    let mut report = None;
    for _ in 0..100 {
        if let Some((_, body)) = lab.webhooks.received.lock().unwrap().first() {
            report = Some(serde_json::from_str::<Value>(body).unwrap());
        }
        if report.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = report.expect("the report was delivered");
    let latency = &report["latency"];
    assert_eq!(latency["turns"], turns.len(), "{latency:#}");
    let llm = &latency["stages"]["llm_first_token"];
    let answered = turns.iter().filter(|t| t["source"] == "model").count();
    let counted = llm["count"].as_u64().unwrap() as usize;
    assert!((2..=answered).contains(&counted), "{latency:#}");
    assert!(llm["p50_ms"].as_i64().unwrap() <= llm["max_ms"].as_i64().unwrap());
    assert!(latency["stages"]["total"]["max_ms"].as_i64().is_some());
    let mut attempts = Value::Null;
    for _ in 0..100 {
        let (_, hooks) = lab.server.get(&format!("/call/webhooks/{call_id}")).await;
        attempts = hooks["data"]["attempts"].clone();
        if attempts.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(attempts[0]["outcome"], "delivered", "{attempts:#}");
    assert_eq!(attempts[0]["status_code"], 200);
    lab.stop().await;
}
