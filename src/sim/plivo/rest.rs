//! The fake Plivo's Call API: place, hang up a call, hang up a queued request; each checked as
//! Plivo checks it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{PlivoSim, RecordedRequest, SimCall, call};

pub(super) fn routes() -> Router<PlivoSim> {
    Router::new()
        .route("/v1/Account/{auth_id}/Call/", post(create_call))
        .route(
            "/v1/Account/{auth_id}/Call/{call_uuid}/",
            delete(hang_up_call),
        )
        .route(
            "/v1/Account/{auth_id}/Request/{request_uuid}/",
            delete(hang_up_request),
        )
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"api_id": uuid::Uuid::new_v4().to_string(), "error": message}).to_string(),
    )
        .into_response()
}

/// Whether Basic auth names `auth_id` with its token.
fn authenticated(sim: &PlivoSim, auth_id: &str, headers: &HeaderMap) -> bool {
    let Some(token) = sim.token(auth_id) else {
        return false;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| BASE64.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    given.as_deref() == Some(&format!("{auth_id}:{token}"))
}

fn record(
    sim: &PlivoSim,
    method: &str,
    path: String,
    body: Value,
    authenticated: bool,
    status: u16,
) {
    sim.state().requests.push(RecordedRequest {
        method: method.to_owned(),
        path,
        body,
        authenticated,
        status,
    });
    sim.notify();
}

/// A Plivo number: digits with the country code (a leading `+` is tolerated), or a SIP URI.
fn is_number(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or(value);
    value.starts_with("sip:")
        || ((7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn is_http_url(value: &str) -> bool {
    url::Url::parse(value).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

fn e164(number: &str) -> String {
    if number.starts_with('+') || number.starts_with("sip:") {
        number.to_owned()
    } else {
        format!("+{number}")
    }
}

async fn create_call(
    State(sim): State<PlivoSim>,
    Path(auth_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/Account/{auth_id}/Call/");
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let ok = authenticated(&sim, &auth_id, &headers);
    if !ok {
        record(&sim, "POST", path, json, false, 401);
        return error(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials invalid.",
        );
    }
    let text = |name: &str| json.get(name).and_then(Value::as_str).map(str::to_owned);
    let number = |name: &str| json.get(name).and_then(|v| v.as_u64());
    let problem = if !json.is_object() {
        Some("the body must be a JSON object".to_owned())
    } else if !text("from").is_some_and(|f| is_number(&f)) {
        Some("from is required: a phone number with its country code".to_owned())
    } else if !text("to").is_some_and(|t| t.split('<').all(is_number)) {
        Some("to is required: phone numbers or SIP URIs separated by '<'".to_owned())
    } else if !text("answer_url").is_some_and(|u| is_http_url(&u)) {
        Some("answer_url is required: an http(s) URL".to_owned())
    } else if text("answer_method").is_some_and(|m| m != "GET" && m != "POST") {
        Some("answer_method must be GET or POST".to_owned())
    } else if ["hangup_url", "ring_url"]
        .iter()
        .any(|k| json.get(*k).is_some() && !text(k).is_some_and(|u| is_http_url(&u)))
    {
        Some("hangup_url and ring_url must be http(s) URLs".to_owned())
    } else if json.get("time_limit").is_some() && number("time_limit").is_none_or(|n| n == 0) {
        Some("time_limit must be a positive integer".to_owned())
    } else if text("from") == text("to") {
        Some("src and destination cannot overlap".to_owned())
    } else {
        None
    };
    if let Some(problem) = problem {
        record(&sim, "POST", path, json, true, 400);
        return error(StatusCode::BAD_REQUEST, &problem);
    }
    let request_uuid = uuid::Uuid::new_v4().to_string();
    let call = SimCall {
        call_uuid: uuid::Uuid::new_v4().to_string(),
        request_uuid: request_uuid.clone(),
        auth_id: auth_id.clone(),
        from: e164(&text("from").unwrap_or_default()),
        to: e164(&text("to").unwrap_or_default()),
        status: "queued".into(),
        answer_url: text("answer_url").unwrap_or_default(),
        hangup_url: text("hangup_url"),
        ring_url: text("ring_url"),
        time_limit_secs: number("time_limit").map(|n| n.min(u64::from(u32::MAX)) as u32),
        ..SimCall::default()
    };
    let script = sim.script_for(&call.to);
    let (cancel, cancelled) = watch::channel(false);
    {
        let mut state = sim.state();
        state.cancels.insert(request_uuid.clone(), cancel);
        state.calls.push(call.clone());
    }
    record(&sim, "POST", path, json, true, 201);
    tokio::spawn(call::run(sim.clone(), call, script, Some(cancelled)));
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"api_id": uuid::Uuid::new_v4().to_string(), "message": "call fired", "request_uuid": request_uuid})
            .to_string(),
    )
        .into_response()
}

async fn hang_up_call(
    State(sim): State<PlivoSim>,
    Path((auth_id, call_uuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/Account/{auth_id}/Call/{call_uuid}/");
    if !authenticated(&sim, &auth_id, &headers) {
        record(&sim, "DELETE", path, Value::Null, false, 401);
        return error(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials invalid.",
        );
    }
    // A live call's caller hangs up; a call still ringing stops ringing (Plivo knows a call
    // by its CallUUID from the first ring).
    let (control, cancel) = {
        let mut state = sim.state();
        let control = state.controls.get(&call_uuid).cloned();
        let request = state
            .calls
            .iter()
            .find(|c| c.call_uuid == call_uuid && !c.finished)
            .map(|c| c.request_uuid.clone());
        let cancel = request.and_then(|r| state.cancels.remove(&r));
        (control, cancel)
    };
    match (control, cancel) {
        (Some(control), _) => {
            sim.update_call(&call_uuid, |c| c.hung_up_by_api = true);
            control.hang_up();
            record(&sim, "DELETE", path, Value::Null, true, 204);
            StatusCode::NO_CONTENT.into_response()
        }
        (None, Some(cancel)) => {
            sim.update_call(&call_uuid, |c| c.hung_up_by_api = true);
            let _ = cancel.send(true);
            record(&sim, "DELETE", path, Value::Null, true, 204);
            StatusCode::NO_CONTENT.into_response()
        }
        (None, None) => {
            record(&sim, "DELETE", path, Value::Null, true, 404);
            error(StatusCode::NOT_FOUND, "not found")
        }
    }
}

async fn hang_up_request(
    State(sim): State<PlivoSim>,
    Path((auth_id, request_uuid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/Account/{auth_id}/Request/{request_uuid}/");
    if !authenticated(&sim, &auth_id, &headers) {
        record(&sim, "DELETE", path, Value::Null, false, 401);
        return error(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials invalid.",
        );
    }
    let cancel = sim.state().cancels.remove(&request_uuid);
    match cancel {
        Some(cancel) => {
            let _ = cancel.send(true);
            record(&sim, "DELETE", path, Value::Null, true, 204);
            StatusCode::NO_CONTENT.into_response()
        }
        None => {
            record(&sim, "DELETE", path, Value::Null, true, 404);
            error(StatusCode::NOT_FOUND, "not found")
        }
    }
}
