//! `/trunk/*`: Twilio accounts of an owner, with the auth token write-only.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::on_both_backends;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "fedcba9876543210fedcba9876543210";

pub fn twilio_trunk() -> Value {
    json!({
        "trunk_name": "Main Twilio",
        "trunk_provider": "twilio",
        "trunk_account_sid": SID,
        "trunk_auth_token": TOKEN,
        "trunk_default_caller_number": "+14155550100"
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

pub async fn create_trunk(s: &TestServer, key: &str, body: Value) -> String {
    let (status, reply) = s
        .call(Method::POST, "/trunk/create", Some(key), Some(body))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["trunk_id"].as_str().unwrap().to_owned()
}

fn assert_field_error(status: StatusCode, reply: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["success"], false);
    let errors = reply["data"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {reply}"));
    assert!(
        errors.iter().any(|e| e["field"] == field),
        "no error for {field}: {reply}"
    );
}

on_both_backends!(
    trunk_crud,
    trunk_rules,
    trunk_update_rules,
    trunk_secrets_are_never_returned,
    trunks_are_isolated_by_owner,
);

async fn trunk_crud(s: &TestServer) {
    let (status, reply) = s.post("/trunk/create", twilio_trunk()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["success"], true);
    assert_eq!(reply["message"], "Trunk created successfully");
    assert_eq!(reply["data"]["trunk_name"], "Main Twilio");
    let id = reply["data"]["trunk_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("ST_") && id.len() == 35, "{id}");
    assert!(
        id[3..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );

    let (status, d) = s.get(&format!("/trunk/details/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(
        d["data"],
        json!({
            "trunk_id": id,
            "trunk_name": "Main Twilio",
            "trunk_provider": "twilio",
            "trunk_options": {},
            "trunk_account_sid": SID,
            "trunk_default_caller_number": "+14155550100",
            "trunk_created_at": d["data"]["trunk_created_at"],
            "trunk_updated_at": d["data"]["trunk_updated_at"],
        })
    );

    let second = create_trunk(
        s,
        &s.key,
        with(twilio_trunk(), "trunk_name", json!("Backup")),
    )
    .await;
    let (status, list) = s.get("/trunk/list").await;
    assert_eq!(status, StatusCode::OK);
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trunk_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Backup", "Main Twilio"], "newest first");

    let (status, reply) = s
        .patch(
            &format!("/trunk/update/{id}"),
            json!({"trunk_name": "Renamed", "trunk_default_caller_number": "+14155550199"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"], json!({"trunk_id": id}));
    let (_, d) = s.get(&format!("/trunk/details/{id}")).await;
    assert_eq!(d["data"]["trunk_name"], "Renamed");
    assert_eq!(d["data"]["trunk_default_caller_number"], "+14155550199");
    assert_eq!(d["data"]["trunk_account_sid"], SID, "untouched fields stay");

    let (status, reply) = s.delete(&format!("/trunk/delete/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"], json!({"trunk_id": id}));
    for (method, path) in [
        (Method::GET, format!("/trunk/details/{id}")),
        (Method::DELETE, format!("/trunk/delete/{id}")),
    ] {
        let (status, reply) = s.call(method, &path, Some(&s.key), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
        assert_eq!(reply["success"], false);
    }
    let (status, _) = s
        .patch(&format!("/trunk/update/{id}"), json!({"trunk_name": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = s.get("/trunk/list").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["trunk_id"], second.as_str());

    let (status, _) = s.call(Method::GET, "/trunk/list", None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn trunk_rules(s: &TestServer) {
    let cases: Vec<(Value, &str)> = vec![
        (
            with(twilio_trunk(), "trunk_name", Value::Null),
            "trunk_name",
        ),
        (
            with(twilio_trunk(), "trunk_name", json!("  ")),
            "trunk_name",
        ),
        (
            with(twilio_trunk(), "trunk_name", json!("x".repeat(101))),
            "trunk_name",
        ),
        (
            with(twilio_trunk(), "trunk_provider", Value::Null),
            "trunk_provider",
        ),
        (
            with(twilio_trunk(), "trunk_provider", json!("bandwidth")),
            "trunk_provider",
        ),
        (
            with(twilio_trunk(), "trunk_provider", json!("nexmo")),
            "trunk_provider",
        ),
        (
            with(twilio_trunk(), "trunk_provider", json!("Twilio")),
            "trunk_provider",
        ),
        (
            with(twilio_trunk(), "trunk_provider", json!(1)),
            "trunk_provider",
        ),
        (
            with(twilio_trunk(), "trunk_account_sid", Value::Null),
            "trunk_account_sid",
        ),
        (
            with(
                twilio_trunk(),
                "trunk_account_sid",
                json!("SK0123456789abcdef0123456789abcdef"),
            ),
            "trunk_account_sid",
        ),
        (
            with(twilio_trunk(), "trunk_account_sid", json!("AC0123")),
            "trunk_account_sid",
        ),
        (
            with(twilio_trunk(), "trunk_auth_token", Value::Null),
            "trunk_auth_token",
        ),
        (
            with(twilio_trunk(), "trunk_auth_token", json!("short")),
            "trunk_auth_token",
        ),
        (
            with(twilio_trunk(), "trunk_default_caller_number", Value::Null),
            "trunk_default_caller_number",
        ),
        (
            with(
                twilio_trunk(),
                "trunk_default_caller_number",
                json!("4155550100"),
            ),
            "trunk_default_caller_number",
        ),
        (
            with(
                twilio_trunk(),
                "trunk_default_caller_number",
                json!("+1 415 555 0100"),
            ),
            "trunk_default_caller_number",
        ),
        (
            with(twilio_trunk(), "trunk_color", json!("blue")),
            "trunk_color",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = s.post("/trunk/create", body).await;
        assert_field_error(status, &reply, field);
    }
    // Every broken rule is listed at once.
    let (status, reply) = s
        .post(
            "/trunk/create",
            json!({"trunk_provider": "sip", "trunk_account_sid": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for field in [
        "trunk_name",
        "trunk_provider",
        "trunk_auth_token",
        "trunk_default_caller_number",
    ] {
        assert_field_error(status, &reply, field);
    }
    let message = reply["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["field"] == "trunk_provider")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.starts_with("must be one of: twilio"), "{message}");
    let (_, list) = s.get("/trunk/list").await;
    assert_eq!(list["data"], json!([]), "nothing invalid was stored");
}

async fn trunk_update_rules(s: &TestServer) {
    let id = create_trunk(s, &s.key, twilio_trunk()).await;
    for (body, field) in [
        (json!({"trunk_name": null}), "trunk_name"),
        (json!({"trunk_name": ""}), "trunk_name"),
        (json!({"trunk_provider": "bandwidth"}), "trunk_provider"),
        (json!({"trunk_provider": null}), "trunk_provider"),
        (json!({"trunk_account_sid": "AC12"}), "trunk_account_sid"),
        (json!({"trunk_auth_token": null}), "trunk_auth_token"),
        (
            json!({"trunk_auth_token": "not-hex-not-hex-not-hex-not-hex!"}),
            "trunk_auth_token",
        ),
        (
            json!({"trunk_default_caller_number": "+0123456789"}),
            "trunk_default_caller_number",
        ),
        (json!({"trunk_id": "ST_x"}), "trunk_id"),
    ] {
        let (status, reply) = s.patch(&format!("/trunk/update/{id}"), body).await;
        assert_field_error(status, &reply, field);
    }
    let (_, d) = s.get(&format!("/trunk/details/{id}")).await;
    assert_eq!(
        d["data"]["trunk_name"], "Main Twilio",
        "refused updates change nothing"
    );

    // A new token replaces the stored one, and the store hands it to the call layer.
    let new_token = "00000000000000000000000000000abc";
    let (status, reply) = s
        .patch(
            &format!("/trunk/update/{id}"),
            json!({"trunk_auth_token": new_token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    let trunk = s
        .store
        .get_trunk_for_owner(&owner.id, &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(trunk.auth_token, new_token);
    assert_eq!(trunk.account_sid, SID);
    let (_, d) = s.get(&format!("/trunk/details/{id}")).await;
    assert!(
        d["data"]["trunk_updated_at"].as_str().unwrap()
            > d["data"]["trunk_created_at"].as_str().unwrap()
    );
}

async fn trunk_secrets_are_never_returned(s: &TestServer) {
    let (_, created) = s.post("/trunk/create", twilio_trunk()).await;
    let id = created["data"]["trunk_id"].as_str().unwrap().to_owned();
    let (_, details) = s.get(&format!("/trunk/details/{id}")).await;
    let (_, list) = s.get("/trunk/list").await;
    let (_, updated) = s
        .patch(&format!("/trunk/update/{id}"), json!({"trunk_name": "n"}))
        .await;
    let (_, deleted) = s.delete(&format!("/trunk/delete/{id}")).await;
    let (_, openapi) = s.call(Method::GET, "/openapi.json", None, None).await;
    for reply in [&created, &details, &list, &updated, &deleted] {
        let text = reply.to_string();
        assert!(!text.contains(TOKEN), "{text}");
        assert!(!text.contains("trunk_auth_token"), "{text}");
    }
    let details_schema = &openapi["components"]["schemas"]["TrunkDetails"]["properties"];
    assert!(
        details_schema.get("trunk_account_sid").is_some(),
        "{details_schema}"
    );
    assert!(details_schema.get("trunk_auth_token").is_none());
    for path in [
        "/trunk/create",
        "/trunk/list",
        "/trunk/details/{trunk_id}",
        "/trunk/update/{trunk_id}",
        "/trunk/delete/{trunk_id}",
    ] {
        assert!(openapi["paths"].get(path).is_some(), "{path} documented");
    }
}

async fn trunks_are_isolated_by_owner(s: &TestServer) {
    let mine = create_trunk(s, &s.key, twilio_trunk()).await;
    let other = s.key_for("other@example.com").await;
    let theirs = create_trunk(
        s,
        &other,
        with(twilio_trunk(), "trunk_name", json!("Theirs")),
    )
    .await;

    for (method, path, body) in [
        (Method::GET, format!("/trunk/details/{mine}"), None),
        (
            Method::PATCH,
            format!("/trunk/update/{mine}"),
            Some(json!({"trunk_name": "stolen"})),
        ),
        (Method::DELETE, format!("/trunk/delete/{mine}"), None),
    ] {
        let (status, reply) = s.call(method, &path, Some(&other), body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
    }
    let (_, list) = s.call(Method::GET, "/trunk/list", Some(&other), None).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trunk_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [theirs.as_str()]);
    let (_, d) = s.get(&format!("/trunk/details/{mine}")).await;
    assert_eq!(d["data"]["trunk_name"], "Main Twilio");
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    assert!(
        s.store
            .get_trunk_for_owner(&owner.id, &theirs)
            .await
            .unwrap()
            .is_none()
    );
}
