//! `/call/list` and `/call/details`: pagination, filters, isolation, transcripts.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxbridge::store::{CallStatus, Direction, NewCall, TurnRecord};

use crate::common::TestServer;
use crate::on_both_backends;

async fn assistant(s: &TestServer, key: &str) -> String {
    let body = json!({
        "assistant_name": "Caller", "assistant_description": "d", "assistant_prompt": "p",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"}
    });
    let (status, reply) = s
        .call(Method::POST, "/assistant/create", Some(key), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["assistant_id"].as_str().unwrap().to_owned()
}

async fn insert_call(s: &TestServer, key: &str, assistant_id: &str, status: CallStatus) -> String {
    let owner = s.store.owner_by_key(key).await.unwrap().unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    s.store
        .insert_call(&NewCall {
            id: id.clone(),
            owner_id: owner.id,
            assistant_id: assistant_id.to_owned(),
            trunk_id: None,
            direction: Direction::Outbound,
            from_number: Some("+15550100000".into()),
            to_number: Some("+15550200000".into()),
            status,
            provider_call_sid: None,
            metadata: json!({"name": "John"}),
            rendered_prompt: "Hello John".into(),
            rendered_start_instruction: Some("Hi John".into()),
            rendered_voicemail_message: None,
            missing_variables: vec!["company".into()],
            stream_token_hash: Some("secret-token-hash".into()),
            stream_token_expires_at: None,
        })
        .await
        .unwrap();
    id
}

on_both_backends!(
    calls_are_listed_filtered_and_paginated,
    call_details_show_transcript_and_texts
);

async fn calls_are_listed_filtered_and_paginated(s: &TestServer) {
    let a = assistant(s, &s.key).await;
    let b = assistant(s, &s.key).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let status = if i % 2 == 0 {
            CallStatus::Completed
        } else {
            CallStatus::Failed
        };
        ids.push(insert_call(s, &s.key, if i < 3 { &a } else { &b }, status).await);
    }
    let (status, reply) = s.get("/call/list").await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["total"], 5);
    let listed: Vec<&str> = reply["data"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["call_id"].as_str().unwrap())
        .collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(
        listed,
        newest_first.iter().map(String::as_str).collect::<Vec<_>>()
    );

    let (_, page2) = s.get("/call/list?page=2&page_size=2").await;
    assert_eq!(page2["data"]["calls"].as_array().unwrap().len(), 2);
    assert_eq!(page2["data"]["calls"][0]["call_id"], ids[2].as_str());
    assert_eq!(page2["data"]["page"], 2);
    let (_, page3) = s.get("/call/list?page=3&page_size=2").await;
    assert_eq!(page3["data"]["calls"].as_array().unwrap().len(), 1);

    let (_, by_assistant) = s.get(&format!("/call/list?assistant_id={b}")).await;
    assert_eq!(by_assistant["data"]["total"], 2);
    let (_, by_status) = s.get("/call/list?status=failed").await;
    assert_eq!(by_status["data"]["total"], 2);
    assert!(
        by_status["data"]["calls"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "failed")
    );
    let (_, both) = s
        .get(&format!("/call/list?status=completed&assistant_id={a}"))
        .await;
    assert_eq!(both["data"]["total"], 2);

    for bad in [
        "page=0",
        "page_size=0",
        "page_size=101",
        "status=done",
        "status=initiated",
        "page=x",
        "sort=asc",
    ] {
        let (status, reply) = s.get(&format!("/call/list?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {reply}");
        assert_eq!(reply["success"], false);
    }

    let other = s.key_for("other@example.com").await;
    let (_, theirs) = s.call(Method::GET, "/call/list", Some(&other), None).await;
    assert_eq!(theirs["data"]["total"], 0);
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/call/details/{}", ids[0]),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn call_details_show_transcript_and_texts(s: &TestServer) {
    let a = assistant(s, &s.key).await;
    let id = insert_call(s, &s.key, &a, CallStatus::InProgress).await;
    for (seq, role, text, interrupted) in [
        (1, "assistant", "Hi John", false),
        (2, "user", "Hello", false),
        (3, "assistant", "Our hours", true),
    ] {
        s.store
            .append_turn(
                &id,
                &TurnRecord {
                    seq,
                    role: role.into(),
                    text: text.into(),
                    offset_ms: seq * 1000,
                    interrupted,
                },
            )
            .await
            .unwrap();
    }
    // A turn stored again under its seq replaces it (a caller's turn merged after a pause).
    s.store
        .append_turn(
            &id,
            &TurnRecord {
                seq: 2,
                role: "user".into(),
                text: "Hello there".into(),
                offset_ms: 2000,
                interrupted: false,
            },
        )
        .await
        .unwrap();
    assert!(
        s.store
            .advance_call_status(&id, CallStatus::Completed, Some("caller_hung_up"))
            .await
            .unwrap()
    );
    assert!(
        !s.store
            .advance_call_status(&id, CallStatus::Ringing, None)
            .await
            .unwrap(),
        "never backwards"
    );
    let (status, reply) = s.get(&format!("/call/details/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let d = &reply["data"];
    assert_eq!(d["call_id"], id.as_str());
    assert_eq!(d["status"], "completed");
    assert_eq!(d["end_reason"], "caller_hung_up");
    assert_eq!(d["rendered_prompt"], "Hello John");
    assert_eq!(d["rendered_start_instruction"], "Hi John");
    assert_eq!(d["missing_variables"], json!(["company"]));
    assert_eq!(d["metadata"], json!({"name": "John"}));
    assert_eq!(d["transcript"].as_array().unwrap().len(), 3);
    assert_eq!(d["transcript"][1]["text"], "Hello there");
    assert_eq!(
        d["transcript"][2],
        json!({"role": "assistant", "text": "Our hours", "offset_ms": 3000, "interrupted": true})
    );
    assert!(d["ended_at"].is_string());
    assert!(
        !reply.to_string().contains("secret-token-hash"),
        "the stream token never shows"
    );
    let (status, _) = s.get("/call/details/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let _: Value = d.clone();
}
