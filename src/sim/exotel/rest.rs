//! The fake Exotel's Connect API (Voice AI form), checked as Exotel checks it.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::json;

use super::{ExotelSim, RecordedRequest, SimCall, call};

pub(super) fn routes() -> Router<ExotelSim> {
    Router::new().route("/v1/accounts/{sid}/calls/connect", post(connect))
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"RestException": {"Status": status.as_u16(), "Code": code, "Message": message}})
            .to_string(),
    )
        .into_response()
}

fn is_number(value: &str) -> bool {
    let digits = value.strip_prefix('+').unwrap_or(value);
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

async fn connect(
    State(sim): State<ExotelSim>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = format!("/v1/accounts/{sid}/calls/connect");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let authenticated = sim.credentials(&sid).is_some_and(|(key, token)| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Basic "))
            .and_then(|b| BASE64.decode(b.trim()).ok())
            .is_some_and(|b| b == format!("{key}:{token}").as_bytes())
    });
    let record = |status: u16| {
        sim.state().requests.push(RecordedRequest {
            method: "POST".into(),
            path: path.clone(),
            form: form.clone(),
            authenticated,
            status,
        });
        sim.notify();
    };
    if !authenticated {
        record(401);
        return error(StatusCode::UNAUTHORIZED, 401, "Authentication is required");
    }
    let value = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let events: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "statuscallbackevents[]")
        .map(|(_, v)| v.clone())
        .collect();
    let stream_url = value("streamurl").unwrap_or_default();
    let problem = if !value("from").is_some_and(|f| is_number(&f)) {
        Some((34001, "from is required: the number to dial"))
    } else if !value("callerid").is_some_and(|c| is_number(&c)) {
        Some((34002, "callerid is required: your ExoPhone"))
    } else if !(stream_url.starts_with("wss://") || stream_url.starts_with("ws://"))
        || stream_url.len() > 600
    {
        Some((
            34003,
            "streamurl is required: a ws:// or wss:// URL of at most 600 characters",
        ))
    } else if value("streamtype").as_deref() != Some("bidirectional") {
        Some((34004, "streamtype must be bidirectional"))
    } else if events
        .iter()
        .any(|e| !matches!(e.as_str(), "answered" | "terminal" | "ringing"))
    {
        Some((
            34005,
            "statuscallbackevents[] takes answered, terminal, ringing",
        ))
    } else if value("timelimit")
        .is_some_and(|t| !t.parse::<u32>().is_ok_and(|t| (1..=14_400).contains(&t)))
    {
        Some((34006, "timelimit must be 1 to 14400 seconds"))
    } else if value("customfield").is_some_and(|c| c.len() > 128) {
        Some((34007, "customfield is at most 128 characters"))
    } else {
        None
    };
    if let Some((code, message)) = problem {
        record(400);
        return error(StatusCode::BAD_REQUEST, code, message);
    }
    let number = value("from").unwrap_or_default();
    let to = if number.starts_with('+') {
        number.clone()
    } else {
        format!("+{number}")
    };
    let call = SimCall {
        sid: uuid::Uuid::new_v4().simple().to_string(),
        account_sid: sid.clone(),
        from: to.clone(),
        to: value("callerid").unwrap_or_default(),
        status: "queued".into(),
        stream_url,
        status_callback: value("statuscallback"),
        status_callback_events: events,
        time_limit_secs: value("timelimit").and_then(|t| t.parse().ok()),
        custom_field: value("customfield"),
        ..SimCall::default()
    };
    let script = sim.script_for(&to);
    sim.state().calls.push(call.clone());
    record(200);
    tokio::spawn(call::run(sim.clone(), call.clone(), script));
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"call": {
            "sid": call.sid,
            "status": "in-progress",
            "from": call.from,
            "phonenumbersid": call.to,
            "direction": "outbound-api",
            "recordingurl": null,
        }})
        .to_string(),
    )
        .into_response()
}
