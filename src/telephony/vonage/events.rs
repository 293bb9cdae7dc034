//! What Vonage's event webhooks say about a call, in our vocabulary. Vonage posts JSON to the
//! call's `event_url` (`{"uuid", "conversation_uuid", "status", "direction", "timestamp", …}`)
//! with `status` one of `started`, `ringing`, `answered`, `completed`, `busy`, `failed`,
//! `timeout`, `rejected`, `cancelled`, `unanswered` (plus `human`/`machine` from machine
//! detection). Events without a status (a websocket leg's `transfer`, `input`, …) are nothing
//! to store. A rejected call is reported as Twilio reports a declined one: busy.

use serde::Deserialize;

use crate::call::voicemail::AnsweredBy;
use crate::store::CallStatus;
use crate::telephony::provider::{BadWebhook, Callback, CallbackEvent};

#[derive(Deserialize)]
struct Event {
    #[serde(default)]
    uuid: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    sub_state: Option<String>,
}

/// Our status for Vonage's `status`; `None` for values that are not a call's progress.
pub fn status(value: &str) -> Option<CallStatus> {
    Some(match value {
        "started" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "answered" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" | "rejected" => CallStatus::Busy,
        "timeout" | "unanswered" => CallStatus::NoAnswer,
        "cancelled" => CallStatus::Canceled,
        "failed" => CallStatus::Failed,
        _ => return None,
    })
}

/// Reads an event webhook's JSON body.
pub fn parse(body: &[u8]) -> Result<Callback, BadWebhook> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| BadWebhook(format!("not a Vonage event: {e}")))?;
    let event_kind = match event.status.as_deref() {
        None => CallbackEvent::Ignored,
        // Machine detection in `detect_beep` mode: a machine is reported, then the beep that
        // ends its greeting (or that none came), which is the verdict.
        Some("human") => CallbackEvent::AnsweredBy(AnsweredBy::Human),
        Some("machine") => match event.sub_state.as_deref() {
            Some("beep_start") => CallbackEvent::AnsweredBy(AnsweredBy::MachineEndBeep),
            Some("beep_timeout") => CallbackEvent::AnsweredBy(AnsweredBy::MachineEndOther),
            _ => CallbackEvent::Ignored,
        },
        Some(other) => match status(other) {
            Some(s) => CallbackEvent::Status(s),
            // `disconnected` (a websocket leg), `input`, …
            None => CallbackEvent::Ignored,
        },
    };
    Ok(Callback {
        provider_call_id: event.uuid,
        event: event_kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_onto_ours() {
        for (vonage, ours) in [
            ("started", CallStatus::Queued),
            ("ringing", CallStatus::Ringing),
            ("answered", CallStatus::InProgress),
            ("completed", CallStatus::Completed),
            ("busy", CallStatus::Busy),
            ("rejected", CallStatus::Busy),
            ("timeout", CallStatus::NoAnswer),
            ("unanswered", CallStatus::NoAnswer),
            ("cancelled", CallStatus::Canceled),
            ("failed", CallStatus::Failed),
        ] {
            let body = format!(
                r#"{{"from":"447700900001","to":"447700900000","uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356","conversation_uuid":"CON-f972836a-550f-45fa-956c-12a2ab5b7d22","status":"{vonage}","direction":"outbound","timestamp":"2026-12-06T10:00:00.000Z"}}"#
            );
            let callback = parse(body.as_bytes()).unwrap();
            assert_eq!(callback.event, CallbackEvent::Status(ours), "{vonage}");
            assert_eq!(
                callback.provider_call_id.as_deref(),
                Some("63f61863-4a51-4f6b-86e1-46edebcf9356")
            );
        }
    }

    #[test]
    fn other_events_are_ignored_and_garbage_refused() {
        let transfer =
            parse(br#"{"conversation_uuid_from":"CON-1","type":"transfer","uuid":"u"}"#).unwrap();
        assert_eq!(transfer.event, CallbackEvent::Ignored);
        let leg = parse(br#"{"uuid":"u","status":"disconnected"}"#).unwrap();
        assert_eq!(leg.event, CallbackEvent::Ignored);
        assert_eq!(
            parse(br#"{"uuid":"u","status":"machine","sub_state":"beep_start"}"#)
                .unwrap()
                .event,
            CallbackEvent::AnsweredBy(AnsweredBy::MachineEndBeep)
        );
        assert!(parse(b"status=answered").is_err());
    }
}
