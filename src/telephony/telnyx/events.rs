//! What Telnyx's callbacks about a call say, in our vocabulary. Two shapes reach
//! `/telnyx/status`: Call Control events for the calls we dial (JSON `{"data": {"event_type":
//! "call.hangup", "payload": {"call_control_id", "hangup_cause", …}}}`, sent to the dial's
//! `webhook_url`) and TeXML status callbacks for inbound calls (form-encoded, Twilio's words:
//! `CallSid`, `CallStatus`).
//!
//! Call Control has no "completed" or "busy": a call ends with `call.hangup` and a
//! `hangup_cause` (`normal_clearing`, `user_busy`, `call_rejected`, `timeout`,
//! `originator_cancel`, `time_limit`, `not_found`, `unspecified`), mapped here onto the statuses
//! Twilio would report for the same ending. Answering-machine detection (`greeting_end`) reports
//! twice — human or machine, then the end of a machine's greeting — and becomes one verdict, as
//! Twilio's `DetectMessageEnd` gives.

use serde::Deserialize;

use crate::call::voicemail::AnsweredBy;
use crate::store::CallStatus;
use crate::telephony::provider::{BadWebhook, Callback, CallbackEvent};

#[derive(Deserialize)]
struct Event {
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    event_type: String,
    #[serde(default)]
    payload: EventPayload,
}

#[derive(Deserialize, Default)]
struct EventPayload {
    #[serde(default)]
    call_control_id: Option<String>,
    #[serde(default)]
    hangup_cause: Option<String>,
    #[serde(default)]
    result: Option<String>,
}

/// The status a call that ended with `cause` has.
pub fn hangup_status(cause: &str) -> CallStatus {
    match cause {
        "user_busy" | "call_rejected" => CallStatus::Busy,
        "timeout" | "no_answer" => CallStatus::NoAnswer,
        "originator_cancel" => CallStatus::Canceled,
        "not_found" | "unallocated_number" | "invalid_number_format" => CallStatus::Failed,
        // normal_clearing, time_limit, unspecified and causes added later: the call ended.
        // Whether it was answered is already stored (statuses only move forward), and a call
        // that streamed gets its end reason from its session.
        _ => CallStatus::Completed,
    }
}

/// Reads a Call Control event (JSON) or a TeXML status callback (form).
pub fn parse(body: &[u8]) -> Result<Callback, BadWebhook> {
    let trimmed = body.trim_ascii_start();
    if trimmed.first() == Some(&b'{') {
        parse_event(trimmed)
    } else {
        parse_texml(body)
    }
}

fn parse_event(body: &[u8]) -> Result<Callback, BadWebhook> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| BadWebhook(format!("not a Telnyx event: {e}")))?;
    let payload = event.data.payload;
    let result = payload.result.as_deref().unwrap_or_default();
    let event = match event.data.event_type.as_str() {
        "call.initiated" => CallbackEvent::Status(CallStatus::Queued),
        "call.ringing" => CallbackEvent::Status(CallStatus::Ringing),
        "call.answered" => CallbackEvent::Status(CallStatus::InProgress),
        "call.hangup" => CallbackEvent::Status(hangup_status(
            payload.hangup_cause.as_deref().unwrap_or("unspecified"),
        )),
        "call.machine.detection.ended" | "call.machine.premium.detection.ended" => match result {
            "human" | "human_residence" | "human_business" => {
                CallbackEvent::AnsweredBy(AnsweredBy::Human)
            }
            "fax_detected" => CallbackEvent::AnsweredBy(AnsweredBy::Fax),
            // A machine: its greeting's end is reported next, and that is the verdict.
            "machine" => CallbackEvent::Ignored,
            _ => CallbackEvent::AnsweredBy(AnsweredBy::Unknown),
        },
        "call.machine.greeting.ended" | "call.machine.premium.greeting.ended" => match result {
            "beep_detected" => CallbackEvent::AnsweredBy(AnsweredBy::MachineEndBeep),
            _ => CallbackEvent::AnsweredBy(AnsweredBy::MachineEndOther),
        },
        // streaming.started/stopped/failed, call.dtmf.received, …: nothing to store.
        _ => CallbackEvent::Ignored,
    };
    Ok(Callback {
        provider_call_id: payload.call_control_id,
        event,
    })
}

fn parse_texml(body: &[u8]) -> Result<Callback, BadWebhook> {
    let mut call_sid = None;
    let mut status = None;
    let mut stream_event = false;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "CallSid" => call_sid = Some(v.into_owned()),
            "CallStatus" => status = Some(v.into_owned()),
            "StreamEvent" => stream_event = true,
            _ => {}
        }
    }
    let event = match status.as_deref() {
        Some(s) => CallbackEvent::Status(
            CallStatus::parse(s).ok_or_else(|| BadWebhook(format!("unknown CallStatus {s:?}")))?,
        ),
        None if stream_event => CallbackEvent::Ignored,
        None => return Err(BadWebhook("CallStatus is required".to_owned())),
    };
    Ok(Callback {
        provider_call_id: call_sid,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(event_type: &str, payload: &str) -> Vec<u8> {
        format!(
            r#"{{"data":{{"record_type":"event","event_type":"{event_type}","id":"0ccc7b54-4df3-4bca-a65a-3da1ecc777f0","occurred_at":"2018-02-02T22:25:27.521992Z","payload":{payload}}},"meta":{{"attempt":1,"delivered_to":"https://a/telnyx/status"}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn call_control_events_map_onto_our_statuses() {
        let id = r#""call_control_id":"v3:MdI9""#;
        let cases = [
            (
                "call.initiated",
                format!("{{{id},\"state\":\"parked\"}}"),
                CallbackEvent::Status(CallStatus::Queued),
            ),
            (
                "call.answered",
                format!("{{{id}}}"),
                CallbackEvent::Status(CallStatus::InProgress),
            ),
            (
                "call.hangup",
                format!(
                    "{{{id},\"hangup_cause\":\"normal_clearing\",\"hangup_source\":\"caller\",\"sip_hangup_cause\":\"200\"}}"
                ),
                CallbackEvent::Status(CallStatus::Completed),
            ),
            (
                "call.hangup",
                format!("{{{id},\"hangup_cause\":\"user_busy\"}}"),
                CallbackEvent::Status(CallStatus::Busy),
            ),
            (
                "call.hangup",
                format!("{{{id},\"hangup_cause\":\"call_rejected\"}}"),
                CallbackEvent::Status(CallStatus::Busy),
            ),
            (
                "call.hangup",
                format!("{{{id},\"hangup_cause\":\"timeout\"}}"),
                CallbackEvent::Status(CallStatus::NoAnswer),
            ),
            (
                "call.hangup",
                format!("{{{id},\"hangup_cause\":\"originator_cancel\"}}"),
                CallbackEvent::Status(CallStatus::Canceled),
            ),
            (
                "call.hangup",
                format!("{{{id},\"hangup_cause\":\"not_found\"}}"),
                CallbackEvent::Status(CallStatus::Failed),
            ),
            (
                "streaming.started",
                format!("{{{id},\"stream_url\":\"wss://a\"}}"),
                CallbackEvent::Ignored,
            ),
            (
                "call.machine.detection.ended",
                format!("{{{id},\"result\":\"human\"}}"),
                CallbackEvent::AnsweredBy(AnsweredBy::Human),
            ),
            (
                "call.machine.detection.ended",
                format!("{{{id},\"result\":\"machine\"}}"),
                CallbackEvent::Ignored,
            ),
            (
                "call.machine.greeting.ended",
                format!("{{{id},\"result\":\"beep_detected\"}}"),
                CallbackEvent::AnsweredBy(AnsweredBy::MachineEndBeep),
            ),
        ];
        for (event_type, payload, expected) in cases {
            let callback = parse(&event(event_type, &payload)).unwrap();
            assert_eq!(callback.event, expected, "{event_type} {payload}");
            assert_eq!(callback.provider_call_id.as_deref(), Some("v3:MdI9"));
        }
    }

    #[test]
    fn texml_status_callbacks_use_twilio_words() {
        let callback = parse(
            b"AccountSid=f5586561&CallSid=v3%3A9X2v&CallStatus=completed&CallbackSource=call-progress-events&From=%2B35319605860&To=%2B13129457420",
        )
        .unwrap();
        assert_eq!(callback.event, CallbackEvent::Status(CallStatus::Completed));
        assert_eq!(callback.provider_call_id.as_deref(), Some("v3:9X2v"));
        let stream = parse(b"CallSid=v3%3Ax&StreamEvent=stream-started").unwrap();
        assert_eq!(stream.event, CallbackEvent::Ignored);
    }

    #[test]
    fn unreadable_callbacks_are_refused() {
        assert!(parse(b"{not json").is_err());
        assert!(parse(br#"{"data":{}}"#).is_err());
        assert!(parse(b"CallSid=x&CallStatus=exploded").is_err());
        assert!(parse(b"CallSid=x").is_err());
    }
}
