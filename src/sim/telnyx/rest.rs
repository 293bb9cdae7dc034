//! The fake's Call Control endpoints: `POST /v2/calls` (dial) and `POST
//! /v2/calls/{id}/actions/{hangup|transfer}`, checked as Telnyx checks them and answered in its
//! shapes. A refused request answers `{"errors": [{"code", "title", "detail"}]}` with Telnyx's
//! status (401 authentication, 422 validation or a call that has ended).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{
    Direction, Interrupt, RecordedRequest, TelnyxCall, TelnyxSim, call, new_call_control_id,
};
use crate::validation::is_e164;

fn error(status: StatusCode, code: &str, title: &str, detail: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"errors": [{"code": code, "title": title, "detail": detail}]}),
    )
}

fn authenticated(sim: &TelnyxSim, headers: &HeaderMap) -> bool {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    key.is_some_and(|k| sim.state().api_keys.iter().any(|known| known == k))
}

fn answer(
    sim: &TelnyxSim,
    path: String,
    body: Value,
    authenticated: bool,
    (status, reply): (StatusCode, Value),
) -> Response {
    sim.record_request(RecordedRequest {
        method: "POST".to_owned(),
        path,
        body,
        authenticated,
        status: status.as_u16(),
    });
    (status, Json(reply)).into_response()
}

fn text<'a>(body: &'a Value, name: &str) -> Option<&'a str> {
    body.get(name).and_then(Value::as_str)
}

/// Everything Telnyx would refuse in a dial, as its error.
fn check_dial(sim: &TelnyxSim, body: &Value) -> Result<(), (StatusCode, Value)> {
    let invalid = |code: &str, detail: &str| {
        Err(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            code,
            "Invalid parameter",
            detail,
        ))
    };
    match text(body, "connection_id") {
        Some(id) if sim.state().connections.iter().any(|c| c == id) => {}
        Some(_) => {
            return invalid(
                "10015",
                "connection_id does not name a Call Control Application",
            );
        }
        None => return invalid("10015", "connection_id is required"),
    }
    if !text(body, "to").is_some_and(is_e164) {
        return invalid("10016", "to must be a +E164 number or a SIP URI");
    }
    if !text(body, "from").is_some_and(is_e164) {
        return invalid("10016", "from must be a +E164 number");
    }
    if let Some(url) = text(body, "stream_url")
        && !(url.starts_with("wss://") || url.starts_with("ws://"))
    {
        return invalid("10015", "stream_url must be a WebSocket URL");
    }
    if let Some(mode) = text(body, "stream_bidirectional_mode")
        && !matches!(mode, "rtp" | "mp3")
    {
        return invalid(
            "10015",
            "stream_bidirectional_mode must be one of: mp3, rtp",
        );
    }
    // Case sensitive, as Telnyx documents it.
    if let Some(codec) = text(body, "stream_bidirectional_codec")
        && !matches!(codec, "PCMU" | "PCMA" | "G722" | "OPUS" | "AMR-WB" | "L16")
    {
        return invalid(
            "10015",
            "stream_bidirectional_codec is not a supported codec",
        );
    }
    if let Some(track) = text(body, "stream_track")
        && !matches!(track, "inbound_track" | "outbound_track" | "both_tracks")
    {
        return invalid(
            "10015",
            "stream_track must be inbound_track, outbound_track or both_tracks",
        );
    }
    if let Some(state) = text(body, "client_state")
        && base64::engine::general_purpose::STANDARD
            .decode(state)
            .is_err()
    {
        return invalid(
            "10015",
            "client_state must be a valid Base-64 encoded string",
        );
    }
    if let Some(secs) = body.get("timeout_secs")
        && !secs.as_u64().is_some_and(|s| (5..=600).contains(&s))
    {
        return invalid("10015", "timeout_secs must be between 5 and 600");
    }
    if let Some(secs) = body.get("time_limit_secs")
        && !secs.as_u64().is_some_and(|s| (30..=14_400).contains(&s))
    {
        return invalid("10015", "time_limit_secs must be between 30 and 14400");
    }
    Ok(())
}

/// `POST /v2/calls`.
pub(super) async fn dial(
    State(sim): State<TelnyxSim>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let path = "/v2/calls".to_owned();
    if !authenticated(&sim, &headers) {
        let reply = error(
            StatusCode::UNAUTHORIZED,
            "10009",
            "Authentication failed",
            "The API key is missing or invalid.",
        );
        return answer(&sim, path, body, false, reply);
    }
    if let Err(reply) = check_dial(&sim, &body) {
        return answer(&sim, path, body, true, reply);
    }
    let id = new_call_control_id();
    let to = text(&body, "to").unwrap_or_default();
    let from = text(&body, "from").unwrap_or_default();
    let mut call = TelnyxCall::new(&id, Direction::Outbound, to, from);
    call.connection_id = text(&body, "connection_id").unwrap_or_default().to_owned();
    call.stream_url = text(&body, "stream_url").map(str::to_owned);
    call.stream_track = text(&body, "stream_track").map(str::to_owned);
    call.bidirectional_mode = text(&body, "stream_bidirectional_mode").map(str::to_owned);
    call.bidirectional_codec = text(&body, "stream_bidirectional_codec").map(str::to_owned);
    call.client_state = text(&body, "client_state").map(str::to_owned);
    call.webhook_url = text(&body, "webhook_url").map(str::to_owned);
    call.timeout_secs = body.get("timeout_secs").and_then(Value::as_u64);
    call.answering_machine_detection =
        text(&body, "answering_machine_detection").map(str::to_owned);
    let outcome = sim.state().outcomes.get(to).copied().unwrap_or_default();
    let script = sim.script_for(to);
    let interrupts = sim.insert(call);
    tokio::spawn(call::run_outbound(
        sim.clone(),
        id.clone(),
        outcome,
        script,
        interrupts,
    ));
    let reply = json!({"data": {
        "call_control_id": id,
        "call_leg_id": uuid::Uuid::new_v4().to_string(),
        "call_session_id": uuid::Uuid::new_v4().to_string(),
        "is_alive": false,
        "record_type": "call",
    }});
    answer(&sim, path, body, true, (StatusCode::OK, reply))
}

/// `POST /v2/calls/{id}/actions/{action}`.
pub(super) async fn action(
    State(sim): State<TelnyxSim>,
    Path((id, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let path = format!("/v2/calls/{id}/actions/{action}");
    if !authenticated(&sim, &headers) {
        let reply = error(
            StatusCode::UNAUTHORIZED,
            "10009",
            "Authentication failed",
            "The API key is missing or invalid.",
        );
        return answer(&sim, path, body, false, reply);
    }
    let Some(call) = sim.call(&id) else {
        let reply = error(
            StatusCode::NOT_FOUND,
            "10005",
            "Resource not found",
            "The call control id is unknown.",
        );
        return answer(&sim, path, body, true, reply);
    };
    if call.ended {
        let reply = error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "90018",
            "Call has already ended",
            "This call is no longer active and can't receive commands.",
        );
        return answer(&sim, path, body, true, reply);
    }
    let interrupt = match action.as_str() {
        "hangup" => Interrupt::HangUp,
        "transfer" => match text(&body, "to") {
            Some(to) if is_e164(to) || to.starts_with("sip:") => Interrupt::Transfer(to.to_owned()),
            _ => {
                let reply = error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "10016",
                    "Invalid parameter",
                    "to must be a +E164 number or a SIP URI",
                );
                return answer(&sim, path, body, true, reply);
            }
        },
        _ => {
            let reply = error(
                StatusCode::NOT_FOUND,
                "10005",
                "Resource not found",
                "Unknown command.",
            );
            return answer(&sim, path, body, true, reply);
        }
    };
    if matches!(interrupt, Interrupt::HangUp) {
        // Later commands see the call as ended at once, as on the real API.
        sim.update(&id, |c| {
            c.ended = true;
            c.hung_up_by_api = true;
        });
    }
    let control = sim.state().controls.get(&id).cloned();
    if let Some(control) = control {
        let _ = control.send(interrupt).await;
    }
    answer(
        &sim,
        path,
        body,
        true,
        (StatusCode::OK, json!({"data": {"result": "ok"}})),
    )
}
