//! The life of one fake Telnyx call on its own task: Call Control events posted (signed) to the
//! dial's `webhook_url` as the call rings, is answered or not, streams and ends; an inbound call
//! asks the TeXML voice URL what to do first. REST commands arrive as [`Interrupt`]s.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::caller_wire::{TelnyxStream, TelnyxWire};
use super::texml_reader::{self, Answer};
use super::{Interrupt, TelnyxSim};
use crate::sim::caller::wire::CallerProtocol;
use crate::sim::caller::{CallerConfig, CallerReport, CallerScript, spawn_caller};
use crate::sim::twilio::CallOutcome;
use crate::telephony::new_sid;

impl TelnyxSim {
    /// Posts a Call Control event about `id` to its webhook URL.
    async fn event(&self, id: &str, event_type: &str, extra: serde_json::Value) {
        let Some(call) = self.call(id) else { return };
        self.update(id, |c| c.events.push(event_type.to_owned()));
        let Some(url) = call.webhook_url.clone() else {
            return;
        };
        let mut payload = json!({
            "call_control_id": call.call_control_id,
            "connection_id": call.connection_id,
            "call_leg_id": uuid::Uuid::new_v4().to_string(),
            "call_session_id": uuid::Uuid::new_v4().to_string(),
            "from": call.from,
            "to": call.to,
            "direction": if call.direction == super::Direction::Outbound { "outgoing" } else { "incoming" },
        });
        if let Some(state) = &call.client_state {
            payload["client_state"] = json!(state);
        }
        if let (Some(target), Some(extra)) = (payload.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                target.insert(k.clone(), v.clone());
            }
        }
        let body = json!({
            "data": {
                "record_type": "event",
                "event_type": event_type,
                "id": uuid::Uuid::new_v4().to_string(),
                "occurred_at": time::OffsetDateTime::now_utc()
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                "payload": payload,
            },
            "meta": {"attempt": 1, "delivered_to": url},
        });
        self.post_signed(
            &url,
            event_type,
            body.to_string().into_bytes(),
            "application/json",
        )
        .await;
    }

    /// Ends the call: `call.hangup` with `cause`, then nothing more.
    async fn hang_up_with(&self, id: &str, cause: &str) {
        self.update(id, |c| {
            c.ended = true;
            c.hangup_cause = Some(cause.to_owned());
        });
        self.event(
            id,
            "call.hangup",
            json!({"hangup_cause": cause, "hangup_source": "callee", "state": "hangup"}),
        )
        .await;
        self.update(id, |c| c.finished = true);
    }

    fn caller(
        &self,
        id: &str,
        url: String,
        parameters: Vec<(String, String)>,
        stream: TelnyxStream,
        script: CallerScript,
    ) -> CallerConfig {
        let mut config = CallerConfig::new(url, script);
        config.call_sid = id.to_owned();
        config.stream_sid = uuid::Uuid::new_v4().to_string();
        config.account_sid = new_sid("AC");
        config.custom_parameters = parameters;
        config.record = self.inner.record;
        config.max_duration = self.max_call();
        config.protocol = CallerProtocol::new("telnyx", move |c| {
            Box::new(TelnyxWire::new(c, stream.clone()))
        });
        config
    }
}

/// Plays a stream to its end or until a command ends it; answers the caller's report and the
/// transfer target, if the call was transferred.
async fn stream(
    config: CallerConfig,
    interrupts: &mut mpsc::Receiver<Interrupt>,
) -> (CallerReport, Option<String>, bool) {
    let caller = spawn_caller(config);
    let control = caller.control();
    let mut finished = Box::pin(caller.finished());
    loop {
        tokio::select! {
            report = &mut finished => return (report, None, false),
            interrupt = interrupts.recv() => match interrupt {
                Some(Interrupt::HangUp) => {
                    control.hang_up();
                    return ((&mut finished).await, None, true);
                }
                Some(Interrupt::Transfer(to)) => {
                    control.redirect();
                    return ((&mut finished).await, Some(to), false);
                }
                None => {}
            }
        }
    }
}

/// Waits `after`, unless a hang-up comes first (answers `true` then).
async fn ring(after: Duration, interrupts: &mut mpsc::Receiver<Interrupt>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(after) => false,
        interrupt = interrupts.recv() => matches!(interrupt, Some(Interrupt::HangUp)),
    }
}

pub(super) async fn run_outbound(
    sim: TelnyxSim,
    id: String,
    outcome: CallOutcome,
    script: CallerScript,
    mut interrupts: mpsc::Receiver<Interrupt>,
) {
    sim.event(&id, "call.initiated", json!({"state": "bridging"}))
        .await;
    let timeout = Duration::from_secs(sim.call(&id).and_then(|c| c.timeout_secs).unwrap_or(30));
    let after = match outcome {
        CallOutcome::Answer { after } => after,
        CallOutcome::Busy { after } => {
            let cause = if ring(after, &mut interrupts).await {
                "originator_cancel"
            } else {
                "user_busy"
            };
            return sim.hang_up_with(&id, cause).await;
        }
        CallOutcome::NoAnswer { after } => {
            let cause = if ring(after.min(timeout), &mut interrupts).await {
                "originator_cancel"
            } else {
                "timeout"
            };
            return sim.hang_up_with(&id, cause).await;
        }
        CallOutcome::Failed => return sim.hang_up_with(&id, "not_found").await,
    };
    if ring(after, &mut interrupts).await {
        return sim.hang_up_with(&id, "originator_cancel").await;
    }
    sim.event(&id, "call.answered", json!({"state": "answered"}))
        .await;
    let Some(call) = sim.call(&id) else { return };
    if let Some(detection) = &call.answering_machine_detection {
        // A person answers the fake's calls.
        let _ = detection;
        sim.event(
            &id,
            "call.machine.detection.ended",
            json!({"result": "human"}),
        )
        .await;
    }
    let Some(url) = call.stream_url.clone() else {
        // Nothing to do on the call: the callee hangs up.
        return sim.hang_up_with(&id, "normal_clearing").await;
    };
    sim.event(&id, "streaming.started", json!({"stream_url": url}))
        .await;
    let wire = TelnyxStream {
        client_state: call.client_state.clone(),
        bidirectional_rtp: call.bidirectional_mode.as_deref() == Some("rtp"),
    };
    let (report, transfer, _by_api) = stream(
        sim.caller(&id, url, Vec::new(), wire, script),
        &mut interrupts,
    )
    .await;
    sim.update(&id, |c| {
        c.caller_report = Some(report);
        c.transfers.extend(transfer.clone());
    });
    sim.event(&id, "streaming.stopped", json!({})).await;
    if transfer.is_some() {
        // The call now belongs to the transfer target; it talks a moment and hangs up.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.hang_up_with(&id, "normal_clearing").await;
}

pub(super) async fn run_inbound(
    sim: TelnyxSim,
    id: String,
    voice_url: String,
    script: CallerScript,
    mut interrupts: mpsc::Receiver<Interrupt>,
) {
    let Some(call) = sim.call(&id) else { return };
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("AccountSid", "3e6f995f-85f7-4705-9741-53b116d28237")
        .append_pair("CallSid", &id)
        .append_pair("CallSidLegacy", &id)
        .append_pair("ConnectionId", &call.connection_id)
        .append_pair("From", &call.from)
        .append_pair("To", &call.to)
        .append_pair("CallStatus", "ringing")
        .append_pair("Direction", "inbound")
        .finish();
    let (status, texml) = sim
        .post_signed(
            &voice_url,
            "texml.voice",
            form.into_bytes(),
            "application/x-www-form-urlencoded",
        )
        .await;
    let answer = if (200..300).contains(&status) {
        texml_reader::read(&texml)
    } else {
        Answer::Other(format!("HTTP {status}"))
    };
    match answer {
        Answer::Stream {
            url,
            bidirectional_mode,
            parameters,
            ..
        } => {
            sim.update(&id, |c| {
                c.stream_url = Some(url.clone());
                c.bidirectional_mode = bidirectional_mode.clone();
                c.custom_parameters = parameters.clone();
            });
            let wire = TelnyxStream {
                client_state: None,
                bidirectional_rtp: bidirectional_mode.as_deref() == Some("rtp"),
            };
            let (report, transfer, _) = stream(
                sim.caller(&id, url, parameters, wire, script),
                &mut interrupts,
            )
            .await;
            sim.update(&id, |c| {
                c.caller_report = Some(report);
                c.transfers.extend(transfer);
                c.ended = true;
                c.hangup_cause = Some("normal_clearing".to_owned());
            });
        }
        Answer::Reject(reason) => sim.update(&id, |c| {
            c.rejected = Some(reason);
            c.ended = true;
        }),
        Answer::Redirect(_) | Answer::Other(_) => sim.update(&id, |c| {
            c.rejected = Some(format!("unplayable answer (HTTP {status})"));
            c.ended = true;
        }),
    }
    sim.update(&id, |c| c.finished = true);
}
