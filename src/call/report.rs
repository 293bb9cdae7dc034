//! The end-of-call report sent to the assistant's `assistant_end_call_url`: who called whom,
//! when, for how long, why it ended, the transcript and the call's metadata, the latency of its
//! replies in brief (`latency`: median and worst per stage), and, when the assistant asks for it,
//! the conversation's analysis.
//!
//! A report that waits for its analysis is still written to the outbox at once, held for
//! `analysis_timeout_secs`: if the analysis finishes in time the delivery is released with it,
//! otherwise it goes out as written (`analysis_status: "timeout"`) and the analysis, when it
//! finishes, is still stored and shown in the call's details. A crash in between loses nothing.

use std::time::Duration;

use serde_json::{Value, json};
use tracing::Instrument;

use super::CallServices;
use super::providers;
use crate::analysis::{Analysis, AnalysisStatus, analyze};
use crate::assistant::Assistant;
use crate::llm::LlmTimeouts;
use crate::store::{CallRecord, Direction, TurnRecord};

/// An analysis request may take longer than a spoken reply: it is one larger answer.
const ANALYSIS_TIMEOUTS: LlmTimeouts = LlmTimeouts {
    first_token: Duration::from_secs(30),
    total: Duration::from_secs(120),
};

/// Queues the end-of-call report if the assistant has a webhook, and runs the analysis if the
/// assistant wants one.
pub async fn queue_report(services: &CallServices, call_id: &str) {
    let store = &services.store;
    let Ok(Some(call)) = store.get_call_any_owner(call_id).await else {
        return;
    };
    let Ok(Some(assistant)) = store
        .get_assistant_any_state(&call.owner_id, &call.assistant_id)
        .await
    else {
        return;
    };
    let turns = match store.call_turns(&call.id).await {
        Ok(turns) => turns,
        Err(e) => {
            tracing::error!(error = %e, "transcript not loaded for the report");
            Vec::new()
        }
    };
    let mut report = end_of_call_report(&call, &turns);
    match store.turn_timings(&call.id).await {
        Ok(timings) => report["latency"] = super::latency::summary(&timings),
        Err(e) => tracing::error!(error = %e, "turn timings not loaded for the report"),
    }
    if call.direction != Direction::Chat {
        report["recording_url"] = services.recording_url(&call.id).await.into();
    }
    let wants_analysis = !assistant.analysis().is_empty();
    if !wants_analysis {
        if let Some(url) = &assistant.end_call_url
            && let Err(e) = services.webhooks.enqueue(&call.id, url, &report).await
        {
            tracing::error!(error = %e, "end-of-call report not queued");
        }
        return;
    }
    if let Err(e) = store
        .set_analysis(&call.id, AnalysisStatus::Pending.as_str(), None)
        .await
    {
        tracing::error!(error = %e, "analysis not started");
        return;
    }
    // Written before the analysis starts, so it is durable whatever happens to this process.
    with_analysis(&mut report, AnalysisStatus::Timeout, None);
    let hold = Duration::from_secs(services.config.analysis_timeout_secs);
    let held = match &assistant.end_call_url {
        None => None,
        Some(url) => match services
            .webhooks
            .enqueue_held(&call.id, url, &report, hold)
            .await
        {
            Ok(id) => Some(id),
            Err(e) => {
                tracing::error!(error = %e, "end-of-call report not queued");
                None
            }
        },
    };
    let services = services.clone();
    tokio::spawn(
        async move {
            let (status, analysis) = run_analysis(&services, &assistant, &call, &turns).await;
            let stored = serde_json::to_value(&analysis).expect("plain structs serialise");
            if let Err(e) = services
                .store
                .set_analysis(&call.id, status.as_str(), Some(&stored))
                .await
            {
                tracing::error!(error = %e, "analysis not stored");
            }
            if let Some(id) = held {
                with_analysis(&mut report, status, Some(&analysis));
                match services.webhooks.release(&id, &report).await {
                    Ok(true) => {}
                    Ok(false) => tracing::info!("analysis finished after the report went out"),
                    Err(e) => tracing::error!(error = %e, "report not updated with the analysis"),
                }
            }
        }
        .in_current_span(),
    );
}

async fn run_analysis(
    services: &CallServices,
    assistant: &Assistant,
    call: &CallRecord,
    turns: &[TurnRecord],
) -> (AnalysisStatus, Analysis) {
    let llm = match providers::language_model_with(
        &services.config,
        assistant,
        &services.http,
        &services.egress,
        ANALYSIS_TIMEOUTS,
    ) {
        Ok(llm) => llm,
        Err(e) => {
            let failed = Analysis {
                error: Some(e.to_string()),
                ..Analysis::default()
            };
            return (AnalysisStatus::Failed, failed);
        }
    };
    let transcript: Vec<(String, String)> = turns
        .iter()
        .map(|t| (t.role.clone(), t.text.clone()))
        .collect();
    let (status, analysis) = analyze(
        llm.as_ref(),
        &assistant.analysis(),
        &call.rendered_prompt,
        &transcript,
    )
    .await;
    metrics::counter!(crate::metrics::ANALYSES, "status" => status.as_str()).increment(1);
    (status, analysis)
}

/// Sets the report's `analysis` (`{summary, structured_data, success}`) and `analysis_status`.
pub fn with_analysis(report: &mut Value, status: AnalysisStatus, analysis: Option<&Analysis>) {
    report["analysis_status"] = json!(status.as_str());
    report["analysis"] = match analysis {
        Some(a) => json!({
            "summary": a.summary,
            "structured_data": a.structured_data,
            "success": a.success,
        }),
        None => Value::Null,
    };
}

/// The report's JSON document (its field list is documented in the README).
pub fn end_of_call_report(call: &CallRecord, turns: &[TurnRecord]) -> Value {
    let duration_seconds = match (&call.started_at, &call.ended_at) {
        (Some(start), Some(end)) => seconds_between(start, end),
        _ => None,
    };
    let mut report = json!({
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
    });
    if let Some(answered_by) = &call.answered_by {
        // Only calls that asked for answering-machine detection say who answered.
        report["answered_by"] = json!(answered_by);
    }
    if call.direction == Direction::Chat {
        // A chat's report speaks of a chat: its own event name and id field, no numbers.
        let fields = report.as_object_mut().expect("built as an object");
        fields.insert("event".into(), json!("chat.ended"));
        let id = fields.remove("call_id").unwrap_or(Value::Null);
        fields.insert("chat_id".into(), id);
        fields.remove("from_number");
        fields.remove("to_number");
    }
    report
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
    use crate::store::CallStatus;

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
            rendered_voicemail_message: None,
            missing_variables: vec![],
            answered_by: Some("human".into()),
            node_id: None,
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
        assert_eq!(report["answered_by"], "human");
        let undetected = CallRecord {
            answered_by: None,
            ..call
        };
        let report = end_of_call_report(&undetected, &turns);
        assert!(report.get("answered_by").is_none(), "{report}");
    }
}
