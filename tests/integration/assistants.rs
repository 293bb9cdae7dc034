//! `/assistant/*` as the Assistant Management document specifies, plus the settings beyond it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::on_both_backends;

const VOICE: &str = "a167e0f3-df7e-4277-976b-be2f952fa275";

fn cartesia() -> Value {
    json!({
        "assistant_name": "Support Bot",
        "assistant_description": "First line of support",
        "assistant_prompt": "You are a helpful customer support agent.",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": VOICE, "api_key": "sk_cartesia_custom_key_9876"}
    })
}

fn sarvam() -> Value {
    json!({
        "assistant_name": "Hindi Support",
        "assistant_description": "Hindi speaking support agent",
        "assistant_prompt": "You are a helpful assistant who speaks Hindi.",
        "assistant_tts_model": "sarvam",
        "assistant_tts_config": {"speaker": "meera", "target_language_code": "hi-IN"}
    })
}

fn with(mut base: Value, field: &str, value: Value) -> Value {
    if value.is_null() {
        base.as_object_mut().unwrap().remove(field);
    } else {
        base[field] = value;
    }
    base
}

async fn create(s: &TestServer, body: Value) -> String {
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["assistant_id"].as_str().unwrap().to_owned()
}

/// Asserts a 400 in the envelope whose errors name `field`.
fn assert_field_error(status: StatusCode, reply: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
    let errors = reply["data"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {reply}"));
    assert!(
        errors
            .iter()
            .any(|e| e["field"] == field && !e["message"].as_str().unwrap().is_empty()),
        "no error for {field}: {reply}"
    );
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("Invalid request"),
        "{reply}"
    );
}

on_both_backends!(
    create_list_details_as_documented,
    sarvam_language_defaults_to_bengali,
    every_create_rule_is_enforced,
    malformed_bodies_are_clear_400s,
    oversized_and_non_json_bodies,
    update_changes_only_what_is_sent,
    update_validates_the_voice_against_the_stored_half,
    delete_is_soft_and_final,
    owners_are_isolated,
    secrets_are_never_echoed,
    call_settings_have_defaults_and_rules,
    the_voicemail_message_is_a_checked_setting,
    the_llm_fallback_and_apology_are_checked_settings,
    the_fallback_voice_is_a_checked_setting,
);

async fn create_list_details_as_documented(s: &TestServer) {
    let body = with(
        cartesia(),
        "assistant_start_instruction",
        json!("Hello! I'm calling from Acme Corp. How are you today?"),
    );
    let body = with(
        body,
        "assistant_end_call_url",
        json!("https://api.example.com/call-ended"),
    );
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["success"], true);
    assert_eq!(reply["message"], "Assistant created successfully");
    assert_eq!(reply["data"]["assistant_name"], "Support Bot");
    let id = reply["data"]["assistant_id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");

    let (status, list) = s.get("/assistant/list").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["message"], "Assistants retrieved successfully");
    let items = list["data"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item["assistant_id"], id);
    assert_eq!(item["assistant_name"], "Support Bot");
    assert_eq!(item["assistant_tts_model"], "cartesia");
    assert_eq!(item["assistant_created_by_email"], "owner@example.com");
    let created_at = item["assistant_created_at"].as_str().unwrap();
    assert_eq!(
        created_at.len(),
        "2024-01-15T10:00:00.000000".len(),
        "{created_at}"
    );
    assert_eq!(
        item.as_object().unwrap().len(),
        5,
        "exactly the documented fields: {item}"
    );

    let (status, details) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        details["message"],
        "Assistant details retrieved successfully"
    );
    let d = &details["data"];
    assert_eq!(d["assistant_id"], id);
    assert_eq!(d["assistant_description"], "First line of support");
    assert_eq!(
        d["assistant_prompt"],
        "You are a helpful customer support agent."
    );
    assert_eq!(d["assistant_tts_model"], "cartesia");
    assert_eq!(d["assistant_tts_config"]["voice_id"], VOICE);
    assert_eq!(
        d["assistant_start_instruction"],
        "Hello! I'm calling from Acme Corp. How are you today?"
    );
    assert_eq!(
        d["assistant_end_call_url"],
        "https://api.example.com/call-ended"
    );
    assert_eq!(d["tool_ids"], json!([]));
    assert_eq!(d["assistant_created_at"], created_at);
    assert_eq!(d["assistant_updated_at"], created_at);

    // Without the optional fields, details shows them as null.
    let id2 = create(s, sarvam()).await;
    let (_, details) = s.get(&format!("/assistant/details/{id2}")).await;
    assert_eq!(details["data"]["assistant_start_instruction"], Value::Null);
    assert_eq!(details["data"]["assistant_end_call_url"], Value::Null);
    let (_, list) = s.get("/assistant/list").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        list["data"][0]["assistant_id"],
        id2.as_str(),
        "newest first"
    );
}

async fn sarvam_language_defaults_to_bengali(s: &TestServer) {
    let body = with(
        sarvam(),
        "assistant_tts_config",
        json!({"speaker": "arvind"}),
    );
    let id = create(s, body).await;
    let (_, details) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(
        details["data"]["assistant_tts_config"],
        json!({"speaker": "arvind", "target_language_code": "bn-IN"})
    );
}

async fn every_create_rule_is_enforced(s: &TestServer) {
    let long_name: String = "n".repeat(101);
    let unicode_name: String = "ন".repeat(100);
    // The boundaries that must pass.
    create(s, with(cartesia(), "assistant_name", json!(unicode_name))).await;
    create(
        s,
        with(
            cartesia(),
            "assistant_start_instruction",
            json!("s".repeat(200)),
        ),
    )
    .await;
    create(
        s,
        with(
            cartesia(),
            "assistant_end_call_url",
            json!("http://hooks.example.com:8080/x?y=1"),
        ),
    )
    .await;

    let cases: Vec<(Value, &str)> = vec![
        (
            with(cartesia(), "assistant_name", Value::Null),
            "assistant_name",
        ),
        (
            with(cartesia(), "assistant_name", json!("")),
            "assistant_name",
        ),
        (
            with(cartesia(), "assistant_name", json!("   ")),
            "assistant_name",
        ),
        (
            with(cartesia(), "assistant_name", json!(long_name)),
            "assistant_name",
        ),
        (
            with(cartesia(), "assistant_description", Value::Null),
            "assistant_description",
        ),
        (
            with(cartesia(), "assistant_description", json!("")),
            "assistant_description",
        ),
        (
            with(cartesia(), "assistant_prompt", Value::Null),
            "assistant_prompt",
        ),
        (
            with(cartesia(), "assistant_prompt", json!(" \n ")),
            "assistant_prompt",
        ),
        (
            with(cartesia(), "assistant_tts_model", Value::Null),
            "assistant_tts_model",
        ),
        (
            with(cartesia(), "assistant_tts_model", json!("elevenlabs")),
            "assistant_tts_model",
        ),
        (
            with(cartesia(), "assistant_tts_model", json!("Cartesia")),
            "assistant_tts_model",
        ),
        (
            with(cartesia(), "assistant_tts_config", Value::Null),
            "assistant_tts_config",
        ),
        (
            with(cartesia(), "assistant_tts_config", json!("voice")),
            "assistant_tts_config",
        ),
        (
            with(cartesia(), "assistant_tts_config", json!({})),
            "assistant_tts_config.voice_id",
        ),
        (
            with(
                cartesia(),
                "assistant_tts_config",
                json!({"voice_id": "voice-1"}),
            ),
            "assistant_tts_config.voice_id",
        ),
        (
            with(cartesia(), "assistant_tts_config", json!({"voice_id": 7})),
            "assistant_tts_config.voice_id",
        ),
        (
            with(
                cartesia(),
                "assistant_tts_config",
                json!({"speaker": "meera"}),
            ),
            "assistant_tts_config.voice_id",
        ),
        (
            with(
                cartesia(),
                "assistant_tts_config",
                json!({"voice_id": VOICE, "pitch": 1}),
            ),
            "assistant_tts_config.pitch",
        ),
        (
            with(sarvam(), "assistant_tts_config", json!({"voice_id": VOICE})),
            "assistant_tts_config.speaker",
        ),
        (
            with(sarvam(), "assistant_tts_config", json!({"speaker": ""})),
            "assistant_tts_config.speaker",
        ),
        (
            with(
                sarvam(),
                "assistant_tts_config",
                json!({"speaker": "meera", "target_language_code": "hindi"}),
            ),
            "assistant_tts_config.target_language_code",
        ),
        (
            with(
                sarvam(),
                "assistant_tts_config",
                json!({"speaker": "meera", "target_language_code": "hi_IN"}),
            ),
            "assistant_tts_config.target_language_code",
        ),
        (
            with(
                cartesia(),
                "assistant_start_instruction",
                json!("s".repeat(201)),
            ),
            "assistant_start_instruction",
        ),
        (
            with(cartesia(), "assistant_end_call_url", json!("/call-ended")),
            "assistant_end_call_url",
        ),
        (
            with(
                cartesia(),
                "assistant_end_call_url",
                json!("ftp://example.com/x"),
            ),
            "assistant_end_call_url",
        ),
        (
            with(cartesia(), "assistant_end_call_url", json!("not a url")),
            "assistant_end_call_url",
        ),
        (
            with(cartesia(), "assistant_colour", json!("blue")),
            "assistant_colour",
        ),
        (
            with(cartesia(), "assistant_name", json!(42)),
            "assistant_name",
        ),
        (with(cartesia(), "tool_ids", json!("abc")), "tool_ids"),
        (
            with(
                cartesia(),
                "tool_ids",
                json!([uuid::Uuid::new_v4().to_string()]),
            ),
            "tool_ids[0]",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = s.post("/assistant/create", body).await;
        assert_field_error(status, &reply, field);
    }
    // Several broken rules are all reported in one answer.
    let (status, reply) = s
        .post("/assistant/create", json!({"assistant_name": "", "assistant_tts_model": "sarvam", "assistant_tts_config": {}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["data"]["errors"].as_array().unwrap().len() >= 4,
        "{reply}"
    );
    // Nothing was stored by the failures.
    let (_, list) = s.get("/assistant/list").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
}

async fn malformed_bodies_are_clear_400s(s: &TestServer) {
    for raw in [
        "{\"assistant_name\": ",
        "not json",
        "",
        "[1,2]",
        "{} {}",
        "null",
    ] {
        let (status, reply) = s
            .call_raw(Method::POST, "/assistant/create", "application/json", raw)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{raw:?}: {reply}");
        assert_eq!(reply["success"], false);
        assert_eq!(
            reply["data"]["errors"][0]["field"], "body",
            "{raw:?}: {reply}"
        );
    }
    let id = create(s, cartesia()).await;
    let (status, reply) = s
        .call_raw(
            Method::PATCH,
            &format!("/assistant/update/{id}"),
            "application/json",
            "{\"assistant_name\": [",
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_silence_timeout_secs": "ten"}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_silence_timeout_secs");
}

async fn oversized_and_non_json_bodies(s: &TestServer) {
    let huge = "p".repeat(2 * 1024 * 1024);
    let body = with(cartesia(), "assistant_prompt", json!(huge));
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert_eq!(reply["success"], false);
    let (status, reply) = s
        .call_raw(
            Method::POST,
            "/assistant/create",
            "text/plain",
            cartesia().to_string(),
        )
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{reply}");
    assert_eq!(reply["success"], false);
    // The server is unaffected.
    create(s, cartesia()).await;
}

async fn update_changes_only_what_is_sent(s: &TestServer) {
    let id = create(
        s,
        with(
            cartesia(),
            "assistant_start_instruction",
            json!("Hi {{name|there}}"),
        ),
    )
    .await;
    let (_, before) = s.get(&format!("/assistant/details/{id}")).await;
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_name": "Updated Support Bot"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["message"], "Assistant updated successfully");
    assert_eq!(reply["data"], json!({"assistant_id": id}));
    let (_, after) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(after["data"]["assistant_name"], "Updated Support Bot");
    for field in [
        "assistant_description",
        "assistant_prompt",
        "assistant_tts_config",
        "assistant_start_instruction",
        "assistant_created_at",
    ] {
        assert_eq!(
            after["data"][field], before["data"][field],
            "{field} changed"
        );
    }
    assert!(
        after["data"]["assistant_updated_at"].as_str()
            > before["data"]["assistant_updated_at"].as_str()
    );

    // A flag turns on, and null puts it back to its default.
    for (value, stored) in [(json!(true), true), (Value::Null, false)] {
        let (status, _) = s
            .patch(
                &format!("/assistant/update/{id}"),
                json!({"assistant_recording": value}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (_, after) = s.get(&format!("/assistant/details/{id}")).await;
        assert_eq!(after["data"]["assistant_recording"], stored);
    }

    // null clears an optional field; required ones cannot be cleared.
    let (status, _) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_start_instruction": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, after) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(after["data"]["assistant_start_instruction"], Value::Null);
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_prompt": null}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_prompt");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_name": ""}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_name");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_name": "n".repeat(101)}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_name");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_start_instruction": "s".repeat(201)}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_start_instruction");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_end_call_url": "mailto:a@b.c"}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_end_call_url");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_nmae": "typo"}),
        )
        .await;
    assert_field_error(status, &reply, "assistant_nmae");
    // A failed update changed nothing.
    let (_, unchanged) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(unchanged["data"]["assistant_name"], "Updated Support Bot");

    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{}", uuid::Uuid::new_v4()),
            json!({"assistant_name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(reply["success"], false);
    let (status, _) = s
        .patch(
            "/assistant/update/not-a-uuid",
            json!({"assistant_name": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn update_validates_the_voice_against_the_stored_half(s: &TestServer) {
    let id = create(s, cartesia()).await;
    let path = format!("/assistant/update/{id}");
    // Model alone, changed: the stored cartesia config cannot serve sarvam.
    let (status, reply) = s
        .patch(&path, json!({"assistant_tts_model": "sarvam"}))
        .await;
    assert_field_error(status, &reply, "assistant_tts_config");
    // Config alone, of the other model: checked against the stored model.
    let (status, reply) = s
        .patch(&path, json!({"assistant_tts_config": {"speaker": "meera"}}))
        .await;
    assert_field_error(status, &reply, "assistant_tts_config.speaker");
    assert!(
        reply
            .to_string()
            .contains("belongs to a sarvam configuration"),
        "{reply}"
    );
    // Config alone, valid for the stored model.
    let other_voice = "0e6a2b71-7f3c-4a8e-9b1d-2c5f8e9a1b3c";
    let (status, reply) = s
        .patch(
            &path,
            json!({"assistant_tts_config": {"voice_id": other_voice}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_tts_config"]["voice_id"], other_voice);
    assert_eq!(
        d["data"]["assistant_tts_config"]["api_key"], "****9876",
        "the stored key is kept: {d}"
    );
    let (status, reply) = s
        .patch(&path, json!({"assistant_tts_config": {"voice_id": "nope"}}))
        .await;
    assert_field_error(status, &reply, "assistant_tts_config.voice_id");
    // Both together, as the document recommends.
    let (status, reply) = s
        .patch(
            &path,
            json!({"assistant_name": "Updated Support Bot", "assistant_tts_model": "sarvam",
            "assistant_tts_config": {"speaker": "meera", "target_language_code": "hi-IN"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_tts_model"], "sarvam");
    assert_eq!(
        d["data"]["assistant_tts_config"],
        json!({"speaker": "meera", "target_language_code": "hi-IN"})
    );
    let (_, list) = s.get("/assistant/list").await;
    assert_eq!(list["data"][0]["assistant_tts_model"], "sarvam");
    // A model that is not cartesia or sarvam.
    let (status, reply) = s
        .patch(&path, json!({"assistant_tts_model": "polly"}))
        .await;
    assert_field_error(status, &reply, "assistant_tts_model");
}

async fn delete_is_soft_and_final(s: &TestServer) {
    let id = create(s, cartesia()).await;
    let keep = create(s, sarvam()).await;
    let (status, reply) = s.delete(&format!("/assistant/delete/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["message"], "Assistant deleted successfully");
    assert_eq!(reply["data"], json!({"assistant_id": id}));
    let (status, reply) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(reply["success"], false);
    let (status, _) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_name": "back"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.delete(&format!("/assistant/delete/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = s.get("/assistant/list").await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["assistant_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [keep.as_str()]);
    let (status, _) = s
        .delete(&format!("/assistant/delete/{}", uuid::Uuid::new_v4()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn owners_are_isolated(s: &TestServer) {
    let mine = create(s, cartesia()).await;
    let other = s.key_for("other@example.com").await;
    let (status, list) = s
        .call(Method::GET, "/assistant/list", Some(&other), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["data"], json!([]));
    for (method, path, body) in [
        (Method::GET, format!("/assistant/details/{mine}"), None),
        (
            Method::PATCH,
            format!("/assistant/update/{mine}"),
            Some(json!({"assistant_name": "stolen"})),
        ),
        (Method::DELETE, format!("/assistant/delete/{mine}"), None),
    ] {
        let (status, reply) = s.call(method, &path, Some(&other), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
    }
    let (_, d) = s.get(&format!("/assistant/details/{mine}")).await;
    assert_eq!(
        d["data"]["assistant_name"], "Support Bot",
        "untouched by the other owner"
    );
    // The other owner's own assistant shows their email.
    let (status, reply) = s
        .call(
            Method::POST,
            "/assistant/create",
            Some(&other),
            Some(sarvam()),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, list) = s
        .call(Method::GET, "/assistant/list", Some(&other), None)
        .await;
    assert_eq!(
        list["data"][0]["assistant_created_by_email"],
        "other@example.com"
    );
    let (_, list) = s.get("/assistant/list").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

async fn secrets_are_never_echoed(s: &TestServer) {
    let secret = "sk_cartesia_custom_key_9876";
    let llm_secret = "sk-llm-secret-abcdef123456";
    let body = with(
        cartesia(),
        "assistant_llm_config",
        json!({"api_key": llm_secret}),
    );
    let (_, created) = s.post("/assistant/create", body).await;
    let id = created["data"]["assistant_id"].as_str().unwrap().to_owned();
    let (_, details) = s.get(&format!("/assistant/details/{id}")).await;
    let (_, list) = s.get("/assistant/list").await;
    for reply in [&created, &details, &list] {
        let text = reply.to_string();
        assert!(
            !text.contains(secret) && !text.contains("custom_key"),
            "{text}"
        );
        assert!(
            !text.contains(llm_secret) && !text.contains("secret-abc"),
            "{text}"
        );
    }
    assert_eq!(
        details["data"]["assistant_tts_config"]["api_key"],
        "****9876"
    );
    // Sending the masked value back keeps the real key (checked through the store).
    let path = format!("/assistant/update/{id}");
    let shown = details["data"]["assistant_tts_config"].clone();
    let (status, _) = s.patch(&path, json!({"assistant_tts_config": shown})).await;
    assert_eq!(status, StatusCode::OK);
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    let stored = s
        .store
        .get_assistant(&owner.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tts.api_key(), Some(secret));
    assert_eq!(stored.settings.llm.api_key.as_deref(), Some(llm_secret));
    // Explicit null removes the key.
    let (status, _) = s
        .patch(&path, json!({"assistant_tts_config": {"api_key": null}}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let stored = s
        .store
        .get_assistant(&owner.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.tts.api_key(), None);
}

async fn call_settings_have_defaults_and_rules(s: &TestServer) {
    let id = create(s, cartesia()).await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    let d = &d["data"];
    assert_eq!(
        d["assistant_stt_config"],
        json!({"provider": "deepgram", "model": "nova-3", "language": "en"})
    );
    assert_eq!(d["assistant_llm_config"]["temperature"], 0.7);
    assert_eq!(d["assistant_llm_config"]["max_tokens"], 300);
    assert_eq!(d["assistant_llm_config"]["base_url"], Value::Null);
    assert_eq!(d["assistant_first_message_mode"], "assistant_speaks_first");
    assert_eq!(d["assistant_silence_timeout_secs"], 30);
    assert_eq!(d["assistant_max_call_duration_secs"], 1800);
    assert_eq!(
        d["assistant_turn_config"],
        json!({"end_of_turn_silence_ms": 200, "continuation_grace_ms": 1000})
    );
    assert_eq!(
        d["assistant_dtmf_config"],
        json!({"mode": "input", "terminator": "#", "timeout_ms": 2000, "max_digits": 16})
    );
    assert_eq!(d["assistant_recording"], false);

    let body = with(
        cartesia(),
        "assistant_stt_config",
        json!({"provider": "sarvam", "language": "hi-IN"}),
    );
    let body = with(
        body,
        "assistant_llm_config",
        json!({"base_url": "https://llm.example.com/v1", "api_key": "sk-own-llm-key", "model": "llama3.1", "temperature": 0.2, "max_tokens": 150}),
    );
    let body = with(
        body,
        "assistant_first_message_mode",
        json!("wait_for_caller"),
    );
    let body = with(body, "assistant_silence_timeout_secs", json!(12));
    let body = with(body, "assistant_max_call_duration_secs", json!(600));
    let id = create(s, body).await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    let d = &d["data"];
    assert_eq!(
        d["assistant_stt_config"],
        json!({"provider": "sarvam", "model": "saaras:v3", "language": "hi-IN"})
    );
    assert_eq!(d["assistant_llm_config"]["model"], "llama3.1");
    assert_eq!(d["assistant_first_message_mode"], "wait_for_caller");
    assert_eq!(d["assistant_silence_timeout_secs"], 12);

    // A partial nested update merges with what is stored.
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_llm_config": {"temperature": 1.1}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_llm_config"]["model"], "llama3.1");
    assert_eq!(d["data"]["assistant_llm_config"]["temperature"], 1.1);
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_turn_config": {"continuation_grace_ms": 0}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(
        d["data"]["assistant_turn_config"],
        json!({"end_of_turn_silence_ms": 200, "continuation_grace_ms": 0})
    );

    let cases: Vec<(Value, &str)> = vec![
        (
            with(
                cartesia(),
                "assistant_stt_config",
                json!({"provider": "whisper"}),
            ),
            "assistant_stt_config.provider",
        ),
        (
            with(
                cartesia(),
                "assistant_stt_config",
                json!({"language": "english"}),
            ),
            "assistant_stt_config.language",
        ),
        (
            with(cartesia(), "assistant_stt_config", json!({"modle": "x"})),
            "assistant_stt_config.modle",
        ),
        (
            with(
                cartesia(),
                "assistant_llm_config",
                json!({"base_url": "localhost:11434"}),
            ),
            "assistant_llm_config.base_url",
        ),
        (
            with(
                cartesia(),
                "assistant_llm_config",
                json!({"temperature": 3}),
            ),
            "assistant_llm_config.temperature",
        ),
        (
            with(cartesia(), "assistant_llm_config", json!({"max_tokens": 0})),
            "assistant_llm_config.max_tokens",
        ),
        (
            with(
                cartesia(),
                "assistant_first_message_mode",
                json!("caller_first"),
            ),
            "assistant_first_message_mode",
        ),
        (
            with(cartesia(), "assistant_silence_timeout_secs", json!(1)),
            "assistant_silence_timeout_secs",
        ),
        (
            with(cartesia(), "assistant_silence_timeout_secs", json!(-5)),
            "assistant_silence_timeout_secs",
        ),
        (
            with(
                cartesia(),
                "assistant_max_call_duration_secs",
                json!(100_000),
            ),
            "assistant_max_call_duration_secs",
        ),
        (
            with(
                cartesia(),
                "assistant_turn_config",
                json!({"end_of_turn_silence_ms": 10}),
            ),
            "assistant_turn_config.end_of_turn_silence_ms",
        ),
        (
            with(
                cartesia(),
                "assistant_turn_config",
                json!({"continuation_grace_ms": 6000}),
            ),
            "assistant_turn_config.continuation_grace_ms",
        ),
        (
            with(cartesia(), "assistant_turn_config", json!({"silence": 300})),
            "assistant_turn_config.silence",
        ),
        (
            with(
                cartesia(),
                "assistant_dtmf_config",
                json!({"terminator": "x"}),
            ),
            "assistant_dtmf_config.terminator",
        ),
        (
            with(
                cartesia(),
                "assistant_dtmf_config",
                json!({"mode": "collect"}),
            ),
            "assistant_dtmf_config.mode",
        ),
        (
            with(cartesia(), "assistant_recording", json!("yes")),
            "assistant_recording",
        ),
        (
            with(cartesia(), "assistant_vad_config", json!({"onset_ms": 5})),
            "assistant_vad_config.onset_ms",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = s.post("/assistant/create", body).await;
        assert_field_error(status, &reply, field);
    }
}

async fn the_voicemail_message_is_a_checked_setting(s: &TestServer) {
    let id = create(s, cartesia()).await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_voicemail_message"], Value::Null);

    let message = "Hi {{name}}, this is Acme. Please call us back.";
    let id = create(
        s,
        with(cartesia(), "assistant_voicemail_message", json!(message)),
    )
    .await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_voicemail_message"], message);

    // PATCH changes it, leaves it alone when absent, and null (or blank) clears it.
    let path = format!("/assistant/update/{id}");
    let (status, reply) = s
        .patch(
            &path,
            json!({"assistant_voicemail_message": "Call us back."}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, reply) = s.patch(&path, json!({"assistant_name": "Renamed"})).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_voicemail_message"], "Call us back.");
    let (status, reply) = s
        .patch(&path, json!({"assistant_voicemail_message": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_voicemail_message"], Value::Null);
    let (status, _) = s
        .patch(&path, json!({"assistant_voicemail_message": "  "}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_voicemail_message"], Value::Null);

    for bad in [json!(5), json!(["Call us back."]), json!({"text": "hi"})] {
        let body = with(cartesia(), "assistant_voicemail_message", bad.clone());
        let (status, reply) = s.post("/assistant/create", body).await;
        assert_field_error(status, &reply, "assistant_voicemail_message");
        let (status, reply) = s
            .patch(&path, json!({"assistant_voicemail_message": bad}))
            .await;
        assert_field_error(status, &reply, "assistant_voicemail_message");
    }
    let long = "a".repeat(1001);
    let body = with(cartesia(), "assistant_voicemail_message", json!(long));
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_field_error(status, &reply, "assistant_voicemail_message");
    let (status, reply) = s
        .patch(&path, json!({"assistant_voicemail_message": long}))
        .await;
    assert_field_error(status, &reply, "assistant_voicemail_message");
    let (status, reply) = s
        .patch(
            &path,
            json!({"assistant_voicemail_message": "a".repeat(1000)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

/// `assistant_llm_config`'s resilience settings: a first-token timeout, a fallback model that
/// passes the same endpoint rules as the assistant's own, and the apology.
async fn the_llm_fallback_and_apology_are_checked_settings(s: &TestServer) {
    let plain = create(s, cartesia()).await;
    let (_, d) = s.get(&format!("/assistant/details/{plain}")).await;
    let llm = &d["data"]["assistant_llm_config"];
    assert_eq!(llm["first_token_timeout_ms"], 5000, "{llm}");
    assert_eq!(llm["fallback"], Value::Null, "{llm}");
    assert_eq!(llm["apology"], Value::Null, "{llm}");

    let fallback_key = "sk-fallback-secret-7777";
    let body = with(
        cartesia(),
        "assistant_llm_config",
        json!({
            "first_token_timeout_ms": 3000,
            "fallback": {"model": "gpt-4o-mini", "base_url": "https://llm.example.com/v1", "api_key": fallback_key},
            "apology": "Sorry, give me a second and say that again?",
        }),
    );
    let id = create(s, body).await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    let llm = &d["data"]["assistant_llm_config"];
    assert_eq!(llm["first_token_timeout_ms"], 3000, "{llm}");
    assert_eq!(llm["fallback"]["model"], "gpt-4o-mini", "{llm}");
    assert_eq!(
        llm["fallback"]["api_key"], "****7777",
        "the key is masked: {llm}"
    );
    assert_eq!(
        llm["apology"],
        "Sorry, give me a second and say that again?"
    );
    // A partial update keeps the fallback's key.
    let path = format!("/assistant/update/{id}");
    let (status, reply) = s
        .patch(&path, json!({"assistant_llm_config": {"temperature": 0.3}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    let stored = s
        .store
        .get_assistant(&owner.id, &id)
        .await
        .unwrap()
        .unwrap();
    let fallback = stored.settings.llm.fallback.expect("kept");
    assert_eq!(fallback.api_key.as_deref(), Some(fallback_key));

    let cases = [
        (
            json!({"first_token_timeout_ms": 100}),
            "assistant_llm_config.first_token_timeout_ms",
        ),
        (
            json!({"fallback": {"model": " "}}),
            "assistant_llm_config.fallback.model",
        ),
        (
            json!({"fallback": {"base_url": "https://llm.example.com/v1"}}),
            "assistant_llm_config.fallback.model",
        ),
        // Elsewhere than the server's endpoint, the server's key is not sent: bring one.
        (
            json!({"fallback": {"model": "m", "base_url": "https://llm.example.com/v1"}}),
            "assistant_llm_config.fallback.api_key",
        ),
        // The same egress policy as the assistant's own base URL.
        (
            json!({"fallback": {"model": "m", "base_url": "http://127.0.0.1:11434/v1", "api_key": "k"}}),
            "assistant_llm_config.fallback.base_url",
        ),
        (
            json!({"fallback": {"model": "m", "base_url": "localhost:11434"}}),
            "assistant_llm_config.fallback.base_url",
        ),
        (
            json!({"fallback": {"model": "m", "modle": "x"}}),
            "assistant_llm_config.fallback.modle",
        ),
        (json!({"apology": ""}), "assistant_llm_config.apology"),
        (
            json!({"apology": "a".repeat(301)}),
            "assistant_llm_config.apology",
        ),
    ];
    for (llm, field) in cases {
        let body = with(cartesia(), "assistant_llm_config", llm.clone());
        let (status, reply) = s.post("/assistant/create", body).await;
        assert_field_error(status, &reply, field);
        // Patched onto an assistant without a fallback, so nothing stored completes it.
        let (status, reply) = s
            .patch(
                &format!("/assistant/update/{plain}"),
                json!({"assistant_llm_config": llm}),
            )
            .await;
        assert_field_error(status, &reply, field);
    }
}

async fn the_fallback_voice_is_a_checked_setting(s: &TestServer) {
    let plain = create(s, cartesia()).await;
    let (_, d) = s.get(&format!("/assistant/details/{plain}")).await;
    assert_eq!(d["data"]["assistant_tts_fallback"], Value::Null);

    let body = with(
        cartesia(),
        "assistant_tts_fallback",
        json!({"model": "sarvam", "config": {"speaker": "meera", "api_key": "sarvam-fallback-key-4242"}}),
    );
    let id = create(s, body).await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    let fallback = &d["data"]["assistant_tts_fallback"];
    assert_eq!(fallback["model"], "sarvam", "{fallback}");
    assert_eq!(fallback["config"]["speaker"], "meera", "{fallback}");
    assert_eq!(
        fallback["config"]["api_key"], "****4242",
        "masked: {fallback}"
    );

    // Sent back as shown, the masked key keeps the stored one.
    let path = format!("/assistant/update/{id}");
    let (status, reply) = s
        .patch(&path, json!({"assistant_tts_fallback": fallback.clone()}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    let stored = s
        .store
        .get_assistant(&owner.id, &id)
        .await
        .unwrap()
        .unwrap();
    let kept = stored.settings.tts_fallback.expect("still a fallback");
    assert_eq!(kept.0.api_key(), Some("sarvam-fallback-key-4242"));

    // Null removes it.
    let (status, reply) = s
        .patch(&path, json!({"assistant_tts_fallback": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["assistant_tts_fallback"], Value::Null);

    // Each broken rule names its field.
    for (fallback, field) in [
        (json!("sarvam"), "assistant_tts_fallback"),
        (
            json!({"config": {"speaker": "meera"}}),
            "assistant_tts_fallback.model",
        ),
        (
            json!({"model": "polly", "config": {}}),
            "assistant_tts_fallback.model",
        ),
        (
            json!({"model": "cartesia", "config": {}}),
            "assistant_tts_fallback.config.voice_id",
        ),
        (
            json!({"model": "sarvam", "config": {"speaker": "meera"}, "colour": 1}),
            "assistant_tts_fallback.colour",
        ),
    ] {
        let (status, reply) = s
            .post(
                "/assistant/create",
                with(cartesia(), "assistant_tts_fallback", fallback),
            )
            .await;
        assert_field_error(status, &reply, field);
    }
}
