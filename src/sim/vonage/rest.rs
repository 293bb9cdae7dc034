//! The fake's Voice API endpoints: `POST /v1/calls` and `PUT /v1/calls/{uuid}`, each under an
//! application JWT checked as Vonage checks it (RS256 with the application's key, a known
//! `application_id`, unexpired), the body checked field by field, refusals answered as RFC 7807
//! problems (`{"type", "title", "detail", "invalid_parameters"}`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{
    Direction, Interrupt, RecordedRequest, VonageCall, VonageSim, WebsocketEndpoint, call,
};
use crate::telephony::vonage::jwt;

fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> (StatusCode, Value) {
    (
        status,
        json!({
            "type": format!("https://developer.nexmo.com/api-errors#{kind}"),
            "title": title,
            "detail": detail,
            "instance": uuid::Uuid::new_v4().to_string(),
        }),
    )
}

fn invalid(detail: &str) -> (StatusCode, Value) {
    problem(StatusCode::BAD_REQUEST, "validation", "Bad Request", detail)
}

/// The application a request's token proves, if it proves one.
fn application(sim: &VonageSim, headers: &HeaderMap) -> Option<String> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?;
    let unverified = jwt::parse(token)?;
    let id = unverified
        .claims
        .get("application_id")?
        .as_str()?
        .to_owned();
    let key = sim.state().applications.get(&id)?.clone();
    let claims = jwt::verify_rs256(token, &key)?;
    let now = crate::telephony::vonage::now_unix();
    let iat = claims.get("iat")?.as_i64()?;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .unwrap_or(iat + 900);
    claims.get("jti")?.as_str()?;
    (iat <= now + 60 && now < exp).then_some(id)
}

fn answer(
    sim: &VonageSim,
    method: &str,
    path: String,
    body: Value,
    authenticated: bool,
    (status, reply): (StatusCode, Value),
) -> Response {
    sim.record_request(RecordedRequest {
        method: method.to_owned(),
        path,
        body,
        authenticated,
        status: status.as_u16(),
    });
    if status == StatusCode::NO_CONTENT {
        return status.into_response();
    }
    (status, Json(reply)).into_response()
}

fn unauthorized() -> (StatusCode, Value) {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        "You did not provide correct credentials.",
    )
}

/// A phone endpoint's number: digits only (Vonage writes no `+`).
fn phone_number(endpoint: &Value) -> Option<&str> {
    (endpoint.get("type")?.as_str()? == "phone")
        .then(|| endpoint.get("number")?.as_str())
        .flatten()
        .filter(|n| (7..=15).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The websocket endpoint of an NCCO, checked as Vonage checks it.
pub(super) fn websocket_endpoint(ncco: &Value) -> Result<Option<WebsocketEndpoint>, String> {
    let Some(actions) = ncco.as_array() else {
        return Err("ncco must be an array of actions".to_owned());
    };
    for action in actions {
        match action.get("action").and_then(Value::as_str) {
            Some("connect") => {}
            Some("talk" | "stream" | "input" | "record" | "conversation" | "notify" | "wait") => {
                continue;
            }
            other => return Err(format!("unknown NCCO action {other:?}")),
        }
        let Some(endpoint) = action
            .get("endpoint")
            .and_then(Value::as_array)
            .and_then(|e| e.first())
        else {
            return Err("connect needs an endpoint".to_owned());
        };
        if endpoint.get("type").and_then(Value::as_str) != Some("websocket") {
            continue;
        }
        let uri = endpoint
            .get("uri")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !(uri.starts_with("wss://") || uri.starts_with("ws://")) {
            return Err("a websocket endpoint's uri must be ws:// or wss://".to_owned());
        }
        let content_type = endpoint
            .get("content-type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !matches!(
            content_type,
            "audio/l16;rate=8000" | "audio/l16;rate=16000" | "audio/l16;rate=24000"
        ) {
            return Err(format!("unsupported content-type {content_type:?}"));
        }
        let headers = endpoint.get("headers").cloned().unwrap_or(json!({}));
        let Some(object) = headers.as_object() else {
            return Err("headers must be an object".to_owned());
        };
        if headers.to_string().len() > 512 {
            return Err("headers are limited to 512 bytes".to_owned());
        }
        let headers = object
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| v.to_string()),
                )
            })
            .collect();
        return Ok(Some((uri.to_owned(), content_type.to_owned(), headers)));
    }
    Ok(None)
}

/// `POST /v1/calls`.
pub(super) async fn create(
    State(sim): State<VonageSim>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let path = "/v1/calls".to_owned();
    let Some(application_id) = application(&sim, &headers) else {
        return answer(&sim, "POST", path, body, false, unauthorized());
    };
    let to = body
        .get("to")
        .and_then(Value::as_array)
        .filter(|t| t.len() == 1)
        .and_then(|t| phone_number(&t[0]));
    let Some(to) = to.map(str::to_owned) else {
        return answer(
            &sim,
            "POST",
            path,
            body,
            true,
            invalid("to must hold one phone endpoint with a number in E.164 without +"),
        );
    };
    let Some(from) = body.get("from").and_then(phone_number).map(str::to_owned) else {
        return answer(
            &sim,
            "POST",
            path,
            body,
            true,
            invalid("from must be a phone endpoint with a number in E.164 without +"),
        );
    };
    let ncco = body.get("ncco").cloned();
    if ncco.is_some() == body.get("answer_url").is_some() {
        return answer(
            &sim,
            "POST",
            path,
            body,
            true,
            invalid("exactly one of ncco and answer_url is required"),
        );
    }
    let websocket = match ncco.as_ref().map(websocket_endpoint).transpose() {
        Ok(ws) => ws.flatten(),
        Err(e) => return answer(&sim, "POST", path, body, true, invalid(&e)),
    };
    let event_url = match body.get("event_url") {
        None => None,
        Some(v) => match v
            .as_array()
            .filter(|a| a.len() == 1)
            .and_then(|a| a[0].as_str())
        {
            Some(url) if url.starts_with("http") => Some(url.to_owned()),
            _ => {
                return answer(
                    &sim,
                    "POST",
                    path,
                    body,
                    true,
                    invalid("event_url must be an array of one URL"),
                );
            }
        },
    };
    if let Some(timer) = body.get("ringing_timer")
        && !timer.as_u64().is_some_and(|t| (1..=120).contains(&t))
    {
        return answer(
            &sim,
            "POST",
            path,
            body,
            true,
            invalid("ringing_timer must be between 1 and 120"),
        );
    }
    if let Some(timer) = body.get("length_timer")
        && !timer.as_u64().is_some_and(|t| (1..=7200).contains(&t))
    {
        return answer(
            &sim,
            "POST",
            path,
            body,
            true,
            invalid("length_timer must be between 1 and 7200"),
        );
    }
    let uuid = uuid::Uuid::new_v4().to_string();
    let mut call = VonageCall::new(&uuid, Direction::Outbound, &to, &from);
    call.application_id = application_id;
    call.ncco = ncco;
    call.event_url = event_url;
    call.ringing_timer = body.get("ringing_timer").and_then(Value::as_u64);
    call.websocket = websocket;
    let outcome = sim.state().outcomes.get(&to).copied().unwrap_or_default();
    let script = sim.script_for(&to);
    let interrupts = sim.insert(call);
    tokio::spawn(call::run_outbound(
        sim.clone(),
        uuid.clone(),
        outcome,
        script,
        interrupts,
    ));
    let reply = json!({
        "uuid": uuid,
        "status": "started",
        "direction": "outbound",
        "conversation_uuid": format!("CON-{}", uuid::Uuid::new_v4()),
    });
    answer(&sim, "POST", path, body, true, (StatusCode::CREATED, reply))
}

/// `PUT /v1/calls/{uuid}`.
pub(super) async fn modify(
    State(sim): State<VonageSim>,
    Path(uuid): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let path = format!("/v1/calls/{uuid}");
    if application(&sim, &headers).is_none() {
        return answer(&sim, "PUT", path, body, false, unauthorized());
    }
    let not_found = || {
        problem(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not Found",
            "The call was not found or has already ended.",
        )
    };
    match sim.call(&uuid) {
        Some(call) if !call.ended => {}
        _ => return answer(&sim, "PUT", path, body, true, not_found()),
    }
    let interrupt = match body.get("action").and_then(Value::as_str) {
        Some("hangup") => Interrupt::HangUp,
        Some("transfer") => {
            let destination = body.get("destination").cloned().unwrap_or(Value::Null);
            let ok = destination.get("type").and_then(Value::as_str) == Some("ncco")
                && destination
                    .get("ncco")
                    .is_some_and(|n| websocket_endpoint(n).is_ok())
                || destination.get("type").and_then(Value::as_str) == Some("ncco")
                    && destination.get("url").is_some();
            if !ok {
                return answer(
                    &sim,
                    "PUT",
                    path,
                    body,
                    true,
                    invalid("destination must be {type: ncco, ncco | url}"),
                );
            }
            Interrupt::Transfer(destination)
        }
        _ => {
            return answer(
                &sim,
                "PUT",
                path,
                body,
                true,
                invalid("action must be one of hangup, mute, unmute, earmuff, unearmuff, transfer"),
            );
        }
    };
    if matches!(interrupt, Interrupt::HangUp) {
        sim.update(&uuid, |c| {
            c.ended = true;
            c.hung_up_by_api = true;
        });
    }
    let control = sim.state().controls.get(&uuid).cloned();
    if let Some(control) = control {
        let _ = control.send(interrupt).await;
    }
    answer(
        &sim,
        "PUT",
        path,
        body,
        true,
        (StatusCode::NO_CONTENT, Value::Null),
    )
}
