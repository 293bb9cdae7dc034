//! `/phone_number/*` and the inbound route lookup built on it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::on_both_backends;
use crate::trunks::{create_trunk, twilio_trunk};

async fn create_assistant(s: &TestServer, key: &str) -> String {
    let body = json!({
        "assistant_name": "Receptionist",
        "assistant_description": "Answers the main line",
        "assistant_prompt": "You answer calls.",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"}
    });
    let (status, reply) = s
        .call(Method::POST, "/assistant/create", Some(key), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["assistant_id"].as_str().unwrap().to_owned()
}

/// An assistant and a trunk of the owner of `key`.
async fn setup(s: &TestServer, key: &str) -> (String, String) {
    (
        create_assistant(s, key).await,
        create_trunk(s, key, twilio_trunk()).await,
    )
}

async fn create_number(
    s: &TestServer,
    key: &str,
    number: &str,
    assistant: &str,
    trunk: &str,
) -> (StatusCode, Value) {
    s.call(
        Method::POST,
        "/phone_number/create",
        Some(key),
        Some(json!({"phone_number": number, "assistant_id": assistant, "trunk_id": trunk})),
    )
    .await
}

fn assert_field_error(status: StatusCode, reply: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let errors = reply["data"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {reply}"));
    assert!(
        errors.iter().any(|e| e["field"] == field),
        "no error for {field}: {reply}"
    );
}

on_both_backends!(
    phone_number_crud,
    phone_number_rules,
    numbers_are_unique_across_owners,
    phone_numbers_are_isolated_by_owner,
    inbound_routes_need_everything_active,
);

async fn phone_number_crud(s: &TestServer) {
    let (assistant, trunk) = setup(s, &s.key).await;
    let (status, reply) = create_number(s, &s.key, "+14155550100", &assistant, &trunk).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["message"], "Phone number created successfully");
    assert_eq!(reply["data"]["phone_number"], "+14155550100");
    let id = reply["data"]["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, d) = s.get(&format!("/phone_number/details/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["data"]["phone_number_id"], id.as_str());
    assert_eq!(d["data"]["phone_number"], "+14155550100");
    assert_eq!(d["data"]["assistant_id"], assistant.as_str());
    assert_eq!(d["data"]["trunk_id"], trunk.as_str());
    assert!(d["data"]["phone_number_created_at"].is_string());

    let (_, list) = s.get("/phone_number/list").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["phone_number_id"], id.as_str());

    let other_assistant = create_assistant(s, &s.key).await;
    let (status, reply) = s
        .patch(
            &format!("/phone_number/update/{id}"),
            json!({"assistant_id": other_assistant, "phone_number": "+14155550101"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"], json!({"phone_number_id": id}));
    let (_, d) = s.get(&format!("/phone_number/details/{id}")).await;
    assert_eq!(d["data"]["assistant_id"], other_assistant.as_str());
    assert_eq!(d["data"]["phone_number"], "+14155550101");
    assert_eq!(d["data"]["trunk_id"], trunk.as_str());

    let (status, reply) = s.delete(&format!("/phone_number/delete/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"], json!({"phone_number_id": id}));
    let (status, _) = s.get(&format!("/phone_number/details/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.delete(&format!("/phone_number/delete/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .patch(
            &format!("/phone_number/update/{id}"),
            json!({"phone_number": "+14155550102"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = s.get("/phone_number/list").await;
    assert_eq!(list["data"], json!([]));
}

async fn phone_number_rules(s: &TestServer) {
    let (assistant, trunk) = setup(s, &s.key).await;
    for (number, field) in [
        ("4155550100", "phone_number"),
        ("+04155550100", "phone_number"),
        ("+1 415 555 0100", "phone_number"),
        ("", "phone_number"),
    ] {
        let (status, reply) = create_number(s, &s.key, number, &assistant, &trunk).await;
        assert_field_error(status, &reply, field);
    }
    let (status, reply) = s.post("/phone_number/create", json!({})).await;
    for field in ["phone_number", "assistant_id", "trunk_id"] {
        assert_field_error(status, &reply, field);
    }
    let (status, reply) =
        create_number(s, &s.key, "+14155550100", "no-such-assistant", "ST_nope").await;
    assert_field_error(status, &reply, "assistant_id");
    assert_field_error(status, &reply, "trunk_id");

    // Deleted references cannot be named.
    let dead_trunk = create_trunk(s, &s.key, twilio_trunk()).await;
    s.delete(&format!("/trunk/delete/{dead_trunk}")).await;
    let (status, reply) = create_number(s, &s.key, "+14155550100", &assistant, &dead_trunk).await;
    assert_field_error(status, &reply, "trunk_id");

    let (status, reply) = create_number(s, &s.key, "+14155550100", &assistant, &trunk).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["phone_number_id"].as_str().unwrap();
    for (body, field) in [
        (json!({"phone_number": null}), "phone_number"),
        (json!({"phone_number": "12345"}), "phone_number"),
        (json!({"assistant_id": null}), "assistant_id"),
        (json!({"assistant_id": "nope"}), "assistant_id"),
        (json!({"trunk_id": dead_trunk}), "trunk_id"),
        (json!({"extra": 1}), "extra"),
    ] {
        let (status, reply) = s.patch(&format!("/phone_number/update/{id}"), body).await;
        assert_field_error(status, &reply, field);
    }
}

async fn numbers_are_unique_across_owners(s: &TestServer) {
    let (assistant, trunk) = setup(s, &s.key).await;
    let (status, reply) = create_number(s, &s.key, "+14155550100", &assistant, &trunk).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let first = reply["data"]["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let (status, reply) = create_number(s, &s.key, "+14155550100", &assistant, &trunk).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["success"], false);

    let other = s.key_for("other@example.com").await;
    let (their_assistant, their_trunk) = setup(s, &other).await;
    let (status, reply) =
        create_number(s, &other, "+14155550100", &their_assistant, &their_trunk).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "another owner cannot take it: {reply}"
    );

    // Update into a taken number is a conflict too.
    let (status, reply) =
        create_number(s, &other, "+14155550199", &their_assistant, &their_trunk).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let theirs = reply["data"]["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, reply) = s
        .call(
            Method::PATCH,
            &format!("/phone_number/update/{theirs}"),
            Some(&other),
            Some(json!({"phone_number": "+14155550100"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");

    // Once deleted, the number is free for anyone.
    s.delete(&format!("/phone_number/delete/{first}")).await;
    let (status, reply) =
        create_number(s, &other, "+14155550100", &their_assistant, &their_trunk).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

async fn phone_numbers_are_isolated_by_owner(s: &TestServer) {
    let (assistant, trunk) = setup(s, &s.key).await;
    let (_, reply) = create_number(s, &s.key, "+14155550100", &assistant, &trunk).await;
    let mine = reply["data"]["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let other = s.key_for("other@example.com").await;
    let (their_assistant, their_trunk) = setup(s, &other).await;
    for (method, path, body) in [
        (Method::GET, format!("/phone_number/details/{mine}"), None),
        (
            Method::PATCH,
            format!("/phone_number/update/{mine}"),
            Some(json!({"assistant_id": their_assistant})),
        ),
        (Method::DELETE, format!("/phone_number/delete/{mine}"), None),
    ] {
        let (status, reply) = s.call(method, &path, Some(&other), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
    }
    let (_, list) = s
        .call(Method::GET, "/phone_number/list", Some(&other), None)
        .await;
    assert_eq!(list["data"], json!([]));

    // Another owner's assistant or trunk cannot be named.
    let (status, reply) = create_number(s, &other, "+14155550123", &assistant, &their_trunk).await;
    assert_field_error(status, &reply, "assistant_id");
    let (status, reply) = create_number(s, &other, "+14155550123", &their_assistant, &trunk).await;
    assert_field_error(status, &reply, "trunk_id");
    let (status, reply) = s
        .patch(
            &format!("/phone_number/update/{mine}"),
            json!({"trunk_id": their_trunk}),
        )
        .await;
    assert_field_error(status, &reply, "trunk_id");
}

async fn inbound_routes_need_everything_active(s: &TestServer) {
    let (assistant, trunk) = setup(s, &s.key).await;
    let (_, reply) = create_number(s, &s.key, "+14155550100", &assistant, &trunk).await;
    let number_id = reply["data"]["phone_number_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();

    let route = s
        .store
        .find_inbound_route("+14155550100")
        .await
        .unwrap()
        .expect("an active number routes");
    assert_eq!(route.phone_number_id, number_id);
    assert_eq!(route.phone_number, "+14155550100");
    assert_eq!(route.owner_id, owner.id);
    assert_eq!(route.assistant_id, assistant);
    assert_eq!(route.trunk.id, trunk);
    assert_eq!(
        route.trunk.auth_token, "fedcba9876543210fedcba9876543210",
        "secret included"
    );
    assert!(
        s.store
            .find_inbound_route("+14155550199")
            .await
            .unwrap()
            .is_none()
    );

    // Deleting the assistant keeps the number but stops routing.
    s.delete(&format!("/assistant/delete/{assistant}")).await;
    let (status, _) = s.get(&format!("/phone_number/details/{number_id}")).await;
    assert_eq!(status, StatusCode::OK, "numbers are not cascade-deleted");
    assert!(
        s.store
            .find_inbound_route("+14155550100")
            .await
            .unwrap()
            .is_none()
    );

    // Pointing the number at a live assistant routes again; deleting the trunk stops it.
    let fresh = create_assistant(s, &s.key).await;
    let (status, reply) = s
        .patch(
            &format!("/phone_number/update/{number_id}"),
            json!({"assistant_id": fresh}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert!(
        s.store
            .find_inbound_route("+14155550100")
            .await
            .unwrap()
            .is_some()
    );
    s.delete(&format!("/trunk/delete/{trunk}")).await;
    assert!(
        s.store
            .find_inbound_route("+14155550100")
            .await
            .unwrap()
            .is_none()
    );
    // Callbacks of calls already placed can still be verified with the deleted trunk.
    let kept = s
        .store
        .get_trunk_for_callbacks(&trunk)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.account_sid, "AC0123456789abcdef0123456789abcdef");

    // A deleted number does not route either.
    let trunk2 = create_trunk(s, &s.key, twilio_trunk()).await;
    s.patch(
        &format!("/phone_number/update/{number_id}"),
        json!({"trunk_id": trunk2}),
    )
    .await;
    assert!(
        s.store
            .find_inbound_route("+14155550100")
            .await
            .unwrap()
            .is_some()
    );
    s.delete(&format!("/phone_number/delete/{number_id}")).await;
    assert!(
        s.store
            .find_inbound_route("+14155550100")
            .await
            .unwrap()
            .is_none()
    );
}
