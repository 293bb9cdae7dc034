//! The end-of-call report sent to the assistant's `assistant_end_call_url`: who called whom,
//! when, for how long, why it ended, the transcript and the call's metadata.

use serde_json::{Value, json};

use crate::store::{CallRecord, TurnRecord};

/// The report's JSON document (its field list is documented in the README).
pub fn end_of_call_report(call: &CallRecord, turns: &[TurnRecord]) -> Value {
    let duration_seconds = match (&call.started_at, &call.ended_at) {
        (Some(start), Some(end)) => seconds_between(start, end),
        _ => None,
    };
    json!({
        "event": "call.ended",
        "call_id": call.id,
        "assistant_id": call.assistant_id,
        "direction": call.direction.as_str(),
        "from_number": call.from_number,
        "to_number": call.to_number,
        "status": call.status.as_str(),
        "end_reason": call.end_reason,
        "created_at": call.created_at,
        "started_at": call.started_at,
        "ended_at": call.ended_at,
        "duration_seconds": duration_seconds,
        "transcript": turns.iter().map(|t| json!({
            "role": t.role,
            "text": t.text,
            "offset_ms": t.offset_ms,
            "interrupted": t.interrupted,
        })).collect::<Vec<_>>(),
        "metadata": call.metadata,
    })
}

fn seconds_between(start: &str, end: &str) -> Option<f64> {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    );
    let start = time::PrimitiveDateTime::parse(start, format).ok()?;
    let end = time::PrimitiveDateTime::parse(end, format).ok()?;
    Some(((end - start).as_seconds_f64() * 1000.0).round() / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{CallStatus, Direction};

    #[test]
    fn report_carries_the_call_and_its_transcript() {
        let call = CallRecord {
            id: "c1".into(),
            owner_id: "o".into(),
            assistant_id: "a1".into(),
            trunk_id: None,
            direction: Direction::Outbound,
            from_number: Some("+15550100000".into()),
            to_number: Some("+15550200000".into()),
            status: CallStatus::Completed,
            end_reason: Some("caller_hung_up".into()),
            provider_call_sid: None,
            metadata: json!({"name": "John"}),
            rendered_prompt: String::new(),
            rendered_start_instruction: None,
            missing_variables: vec![],
            created_at: "2026-01-01T10:00:00.000000".into(),
            started_at: Some("2026-01-01T10:00:01.000000".into()),
            ended_at: Some("2026-01-01T10:01:13.500000".into()),
            updated_at: String::new(),
        };
        let turns = [TurnRecord {
            seq: 1,
            role: "assistant".into(),
            text: "Hi".into(),
            offset_ms: 200,
            interrupted: false,
        }];
        let report = end_of_call_report(&call, &turns);
        assert_eq!(report["duration_seconds"], 72.5);
        assert_eq!(report["direction"], "outbound");
        assert_eq!(report["transcript"][0]["text"], "Hi");
        assert_eq!(report["metadata"]["name"], "John");
        assert_eq!(report["end_reason"], "caller_hung_up");
    }
}
