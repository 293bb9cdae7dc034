//! The fake's Calls REST API: the paths, Basic auth, form fields, status codes, error codes and
//! JSON of Twilio's own, and the same refusals. Every request is recorded with its answer.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::amd::{self, MachineDetection};
use super::call::{self, CallSetup};
use super::{Direction, Interrupt, RecordedRequest, SimCall, SimError, TwilioSim, is_dialable};
use crate::telephony::twilio::signature::constant_time_eq;
use crate::telephony::{CallStatus, StatusCallbackEvent, is_sid, new_sid};
use crate::validation::check_http_url;

type Answer = (StatusCode, Value);

pub(super) fn routes() -> Router<TwilioSim> {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account_sid}/Calls.json",
            post(create_call),
        )
        .route(
            "/2010-04-01/Accounts/{account_sid}/Calls/{call_file}",
            get(fetch_call).post(update_call),
        )
}

/// Twilio's error JSON.
fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Answer {
    (
        status,
        json!({
            "code": code,
            "message": message.into(),
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status.as_u16(),
        }),
    )
}

fn not_found(path: &str) -> Answer {
    error(
        StatusCode::NOT_FOUND,
        20404,
        format!("The requested resource {path} was not found"),
    )
}

fn respond((status, body): Answer) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
    }
    response
}

/// The form of a request; a body that is not form-encoded carries no parameters for Twilio.
fn form_of(headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Vec::new();
    }
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn first<'f>(form: &'f [(String, String)], name: &str) -> Option<&'f str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Basic auth with the account's SID and token, for that account's own path; answers the token.
fn authenticate(sim: &TwilioSim, headers: &HeaderMap, account_sid: &str) -> Result<String, Answer> {
    let refuse = || error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    let credentials = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| BASE64.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(refuse)?;
    let (user, password) = credentials.split_once(':').ok_or_else(refuse)?;
    let token = sim.token_of(user).ok_or_else(refuse)?;
    if !constant_time_eq(token.as_bytes(), password.as_bytes()) || user != account_sid {
        return Err(refuse());
    }
    Ok(token)
}

async fn delay(sim: &TwilioSim) {
    let first_byte = sim.config().latency.first_byte;
    if !first_byte.is_zero() {
        tokio::time::sleep(first_byte).await;
    }
}

fn record(
    sim: &TwilioSim,
    method: &str,
    path: String,
    form: Vec<(String, String)>,
    authenticated: bool,
    answer: &Answer,
) {
    let request = RecordedRequest {
        method: method.to_owned(),
        path,
        form,
        authenticated,
        status: answer.0.as_u16(),
        response: answer.1.clone(),
    };
    sim.update(|s| s.requests.push(request));
}

async fn create_call(
    State(sim): State<TwilioSim>,
    Path(account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    delay(&sim).await;
    let path = format!("/2010-04-01/Accounts/{account_sid}/Calls.json");
    let form = form_of(&headers, &body);
    let (answer, authenticated) = match authenticate(&sim, &headers, &account_sid) {
        Err(answer) => (answer, false),
        Ok(token) => (create(&sim, &account_sid, token, &form), true),
    };
    record(&sim, "POST", path, form, authenticated, &answer);
    respond(answer)
}

/// Validates a create request the way Twilio does and starts the call.
fn create(sim: &TwilioSim, account_sid: &str, token: String, form: &[(String, String)]) -> Answer {
    let bad = |code, message: String| error(StatusCode::BAD_REQUEST, code, message);
    let to = match first(form, "To") {
        None | Some("") => return bad(21201, "No 'To' number is specified".into()),
        Some(to) if !is_dialable(to) => {
            return bad(
                21211,
                format!("The 'To' number {to} is not a valid phone number."),
            );
        }
        Some(to) => to,
    };
    let from = match first(form, "From") {
        None | Some("") => return bad(21213, "No 'From' number is specified".into()),
        Some(from) if !is_dialable(from) => {
            return bad(
                21212,
                format!(
                    "The 'From' number {from} is not a valid phone number, shortcode, or \
                     alphanumeric sender ID."
                ),
            );
        }
        Some(from) => from,
    };
    if !sim.owns_number(account_sid, from) {
        return bad(
            21210,
            format!(
                "The source phone number provided, {from}, is not yet verified for your account. \
                 You may only make calls from phone numbers that you've verified or purchased \
                 from Twilio."
            ),
        );
    }
    let url = first(form, "Url").filter(|v| !v.is_empty());
    let twiml = first(form, "Twiml").filter(|v| !v.is_empty());
    let application = first(form, "ApplicationSid").filter(|v| !v.is_empty());
    match [url, twiml, application].iter().flatten().count() {
        0 => {
            return bad(
                21205,
                "Url parameter is required: give exactly one of Url, Twiml or ApplicationSid"
                    .into(),
            );
        }
        1 => {}
        _ => {
            return bad(
                21205,
                "Only one of Url, Twiml or ApplicationSid may be given".into(),
            );
        }
    }
    if let Some(url) = url
        && let Err(why) = check_http_url(url)
    {
        return bad(21205, format!("Url {url:?} is not valid: it {why}"));
    }
    let method_get = match first(form, "Method") {
        None | Some("POST") => false,
        Some("GET") => true,
        Some(other) => return bad(21200, format!("Method must be GET or POST, not {other:?}")),
    };
    let status_callback = first(form, "StatusCallback").filter(|v| !v.is_empty());
    if let Some(callback) = status_callback
        && let Err(why) = check_http_url(callback)
    {
        return bad(
            21609,
            format!("Invalid StatusCallback {callback:?}: it {why}"),
        );
    }
    let callback_get = match first(form, "StatusCallbackMethod") {
        None | Some("POST") => false,
        Some("GET") => true,
        Some(other) => {
            return bad(
                21200,
                format!("StatusCallbackMethod must be GET or POST, not {other:?}"),
            );
        }
    };
    let mut events = Vec::new();
    for (key, value) in form {
        if key != "StatusCallbackEvent" {
            continue;
        }
        // One key per value: a comma-joined list is one unknown value to Twilio.
        match StatusCallbackEvent::parse(value) {
            Some(event) if !events.contains(&event) => events.push(event),
            Some(_) => {}
            None => {
                return bad(
                    21626,
                    format!(
                        "Invalid 'StatusCallbackEvent' {value:?}: one of initiated, ringing, \
                         answered, completed per StatusCallbackEvent parameter"
                    ),
                );
            }
        }
    }
    let timeout_secs = match first(form, "Timeout").map(str::parse::<u32>) {
        None => None,
        // Twilio caps the ring time at 600 seconds.
        Some(Ok(secs)) if secs > 0 => Some(secs.min(600)),
        Some(_) => return bad(21200, "Timeout must be a whole number of seconds".into()),
    };
    let time_limit_secs = match first(form, "TimeLimit").map(str::parse::<u32>) {
        None => None,
        Some(Ok(secs)) if secs > 0 => Some(secs),
        Some(_) => return bad(21200, "TimeLimit must be a whole number of seconds".into()),
    };
    let amd = match machine_detection(form) {
        Ok(amd) => amd,
        Err(message) => return bad(21234, message),
    };

    let sid = new_sid("CA");
    let mut call = SimCall::new(sid.clone(), account_sid, to, from, Direction::OutboundApi);
    call.twiml = twiml.map(str::to_owned);
    call.url = url.map(str::to_owned);
    call.status_callback = status_callback.map(str::to_owned);
    call.status_callback_events = events;
    call.timeout_secs = timeout_secs;
    call.time_limit_secs = time_limit_secs;
    call.machine_detection = amd.mode;
    call.async_amd = amd.mode.is_some() && amd.asynchronous;
    call.async_amd_callback = amd.callback.map(str::to_owned);
    call.machine_detection_timeout_secs = amd.timeout_secs;
    if call.async_amd && call.async_amd_callback.is_none() {
        // Twilio's warning: the verdict has nowhere to go but the Call resource.
        call.errors.push(SimError {
            code: 21262,
            message: "No AMD status callback URL provided".into(),
        });
    }
    let body = call_json(&call);
    let interrupts = sim.insert_call(call);
    let callee = sim.callee_for(to);
    let setup = CallSetup {
        sid,
        auth_token: token,
        script: callee.script(sim.script_for(to)),
        callee,
        outcome: sim.outcome_for(to),
        url_method_get: method_get,
        status_callback_get: callback_get,
        amd_callback_get: amd.callback_get,
    };
    tokio::spawn(call::run(sim.clone(), setup, interrupts));
    (StatusCode::CREATED, body)
}

/// The answering-machine detection a create request asks for.
struct AmdRequest<'f> {
    mode: Option<MachineDetection>,
    asynchronous: bool,
    callback: Option<&'f str>,
    callback_get: bool,
    timeout_secs: Option<u32>,
}

/// Reads the detection parameters as Twilio checks them; a value it would not take is its
/// 21234 ("Invalid Machine Detection configuration value").
fn machine_detection(form: &[(String, String)]) -> Result<AmdRequest<'_>, String> {
    let mode = match first(form, "MachineDetection") {
        None | Some("") => None,
        Some(value) => Some(MachineDetection::parse(value).ok_or_else(|| {
            format!("MachineDetection must be Enable or DetectMessageEnd, not {value:?}")
        })?),
    };
    let asynchronous = match first(form, "AsyncAmd") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(format!("AsyncAmd must be true or false, not {other:?}")),
    };
    let callback = first(form, "AsyncAmdStatusCallback").filter(|v| !v.is_empty());
    if let Some(url) = callback
        && let Err(why) = check_http_url(url)
    {
        return Err(format!(
            "AsyncAmdStatusCallback {url:?} is not valid: it {why}"
        ));
    }
    let callback_get = match first(form, "AsyncAmdStatusCallbackMethod") {
        None | Some("POST") => false,
        Some("GET") => true,
        Some(other) => {
            return Err(format!(
                "AsyncAmdStatusCallbackMethod must be GET or POST, not {other:?}"
            ));
        }
    };
    let timeout_secs = match first(form, "MachineDetectionTimeout").map(str::parse::<u32>) {
        None => None,
        Some(Ok(secs)) if amd::TIMEOUT_RANGE_SECS.contains(&secs) => Some(secs),
        Some(_) => {
            return Err(format!(
                "MachineDetectionTimeout must be {} to {} seconds",
                amd::TIMEOUT_RANGE_SECS.start(),
                amd::TIMEOUT_RANGE_SECS.end()
            ));
        }
    };
    Ok(AmdRequest {
        mode,
        asynchronous,
        callback,
        callback_get,
        timeout_secs,
    })
}

/// The call a `…/Calls/{CallSid}.json` path names, if it is this account's.
fn call_of(sim: &TwilioSim, account_sid: &str, call_file: &str) -> Option<SimCall> {
    let sid = call_file.strip_suffix(".json")?;
    if !is_sid("CA", sid) {
        return None;
    }
    sim.call(sid).filter(|c| c.account_sid == account_sid)
}

async fn fetch_call(
    State(sim): State<TwilioSim>,
    Path((account_sid, call_file)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    delay(&sim).await;
    let path = format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_file}");
    let (answer, authenticated) = match authenticate(&sim, &headers, &account_sid) {
        Err(answer) => (answer, false),
        Ok(_) => match call_of(&sim, &account_sid, &call_file) {
            Some(call) => ((StatusCode::OK, call_json(&call)), true),
            None => (not_found(&path), true),
        },
    };
    record(&sim, "GET", path, Vec::new(), authenticated, &answer);
    respond(answer)
}

async fn update_call(
    State(sim): State<TwilioSim>,
    Path((account_sid, call_file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    delay(&sim).await;
    let path = format!("/2010-04-01/Accounts/{account_sid}/Calls/{call_file}");
    let form = form_of(&headers, &body);
    let (answer, authenticated) = match authenticate(&sim, &headers, &account_sid) {
        Err(answer) => (answer, false),
        Ok(_) => (update(&sim, &account_sid, &call_file, &path, &form), true),
    };
    record(&sim, "POST", path, form, authenticated, &answer);
    respond(answer)
}

fn update(
    sim: &TwilioSim,
    account_sid: &str,
    call_file: &str,
    path: &str,
    form: &[(String, String)],
) -> Answer {
    let bad = |code, message: &str| error(StatusCode::BAD_REQUEST, code, message);
    let Some(call) = call_of(sim, account_sid, call_file) else {
        return not_found(path);
    };
    // A call that has ended (or is ending) is gone as far as updates go.
    if call.finished || call.ending || call.status.is_final() {
        return not_found(path);
    }
    let status = first(form, "Status").filter(|v| !v.is_empty());
    let twiml = first(form, "Twiml").filter(|v| !v.is_empty());
    let url = first(form, "Url").filter(|v| !v.is_empty());
    let not_answered = matches!(call.status, CallStatus::Queued | CallStatus::Ringing);
    let (interrupt, shown_status) = match (status, twiml, url) {
        (Some("completed"), None, None) => {
            let shown = if not_answered {
                CallStatus::Canceled
            } else {
                CallStatus::Completed
            };
            (Some(Interrupt::HangUp), shown)
        }
        (Some("canceled"), None, None) if not_answered => {
            (Some(Interrupt::Cancel), CallStatus::Canceled)
        }
        // Canceling an answered call does nothing.
        (Some("canceled"), None, None) => (None, call.status),
        (Some(_), None, None) => return bad(21200, "Status must be completed or canceled"),
        (None, Some(twiml), None) => {
            if call.status != CallStatus::InProgress {
                return bad(21220, "Call is not in-progress. Cannot redirect.");
            }
            (Some(Interrupt::Redirect(twiml.to_owned())), call.status)
        }
        (None, None, Some(url)) => {
            if check_http_url(url).is_err() {
                return bad(21205, "Url is not a valid URL");
            }
            if call.status != CallStatus::InProgress {
                return bad(21220, "Call is not in-progress. Cannot redirect.");
            }
            (Some(Interrupt::RedirectUrl(url.to_owned())), call.status)
        }
        (None, None, None) => return bad(21200, "Give Status, Url or Twiml to update a call"),
        _ => return bad(21200, "Give only one of Status, Url or Twiml"),
    };
    if let Some(interrupt) = interrupt {
        let ending = matches!(interrupt, Interrupt::HangUp | Interrupt::Cancel);
        let answered = !not_answered;
        let redirect = match &interrupt {
            Interrupt::Redirect(twiml) => Some(twiml.clone()),
            _ => None,
        };
        let sender = sim.read(|s| s.controls.get(&call.sid).cloned());
        let Some(sender) = sender else {
            return not_found(path);
        };
        if sender.try_send(interrupt).is_err() {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                20503,
                "Too many updates in flight for this call",
            );
        }
        sim.update_call(&call.sid, |c| {
            if ending {
                c.ending = true;
                c.hung_up_by_api = answered;
            }
            if let Some(twiml) = redirect {
                c.redirects.push(twiml);
            }
        });
    }
    let mut shown = call;
    shown.status = shown_status;
    (StatusCode::OK, call_json(&shown))
}

/// Twilio's Call resource JSON.
fn call_json(c: &SimCall) -> Value {
    let uri = format!("/2010-04-01/Accounts/{}/Calls/{}", c.account_sid, c.sid);
    json!({
        "sid": c.sid,
        "account_sid": c.account_sid,
        "to": c.to,
        "to_formatted": c.to,
        "from": c.from,
        "from_formatted": c.from,
        "status": c.status.as_str(),
        "direction": c.direction.as_str(),
        "api_version": "2010-04-01",
        "answered_by": c.answered_by,
        "annotation": null,
        "caller_name": null,
        "duration": c.duration_secs.map(|d| d.to_string()),
        "start_time": c.start_time,
        "end_time": c.end_time,
        "date_created": c.date_created,
        "date_updated": super::rfc2822_now(),
        "forwarded_from": null,
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "price": null,
        "price_unit": "USD",
        "queue_time": "0",
        "trunk_sid": null,
        "uri": format!("{uri}.json"),
        "subresource_uris": {
            "notifications": format!("{uri}/Notifications.json"),
            "recordings": format!("{uri}/Recordings.json"),
            "streams": format!("{uri}/Streams.json"),
            "events": format!("{uri}/Events.json"),
        },
    })
}
