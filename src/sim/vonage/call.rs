//! The life of one fake Vonage call on its own task: events posted (signed) to `event_url` as
//! the call rings, is answered or not, runs its NCCO's websocket and ends; an inbound call
//! fetches its answer URL first. REST changes arrive as [`Interrupt`]s.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;

use super::caller_wire::VonageWire;
use super::{Interrupt, VonageSim, rest};
use crate::sim::caller::wire::CallerProtocol;
use crate::sim::caller::{CallerConfig, CallerReport, CallerScript, spawn_caller};
use crate::sim::twilio::CallOutcome;
use crate::telephony::new_sid;

impl VonageSim {
    /// Posts the event `status` about `uuid` to its event URL.
    async fn event(&self, uuid: &str, status: &str) {
        let Some(call) = self.call(uuid) else { return };
        self.update(uuid, |c| c.statuses.push(status.to_owned()));
        let Some(url) = call.event_url.clone() else {
            return;
        };
        let body = json!({
            "headers": {},
            "from": call.from,
            "to": call.to,
            "uuid": call.uuid,
            "conversation_uuid": format!("CON-{}", call.uuid),
            "status": status,
            "direction": if call.direction == super::Direction::Outbound { "outbound" } else { "inbound" },
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        });
        self.send_signed(&url, status, Some(body.to_string().into_bytes()), &[])
            .await;
    }

    async fn finish(&self, uuid: &str, status: &str) {
        self.update(uuid, |c| c.ended = true);
        self.event(uuid, status).await;
        self.update(uuid, |c| c.finished = true);
    }

    fn caller(
        &self,
        uuid: &str,
        (url, content_type, headers): super::WebsocketEndpoint,
        script: CallerScript,
    ) -> CallerConfig {
        let mut config = CallerConfig::new(url, script);
        config.call_sid = uuid.to_owned();
        config.stream_sid = uuid.to_owned();
        config.account_sid = new_sid("AC");
        config.custom_parameters = headers;
        config.record = self.inner.record;
        config.max_duration = self.max_call();
        config.protocol = CallerProtocol::new("vonage", move |c| {
            Box::new(VonageWire::new(c, content_type.clone()))
        });
        config
    }
}

/// Plays the websocket leg to its end or until a change ends it.
async fn stream(
    config: CallerConfig,
    interrupts: &mut mpsc::Receiver<Interrupt>,
) -> (CallerReport, Option<serde_json::Value>) {
    let caller = spawn_caller(config);
    let control = caller.control();
    let mut finished = Box::pin(caller.finished());
    loop {
        tokio::select! {
            report = &mut finished => return (report, None),
            interrupt = interrupts.recv() => match interrupt {
                Some(Interrupt::HangUp) => {
                    control.hang_up();
                    return ((&mut finished).await, None);
                }
                Some(Interrupt::Transfer(to)) => {
                    control.redirect();
                    return ((&mut finished).await, Some(to));
                }
                None => {}
            }
        }
    }
}

async fn ring(after: Duration, interrupts: &mut mpsc::Receiver<Interrupt>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(after) => false,
        interrupt = interrupts.recv() => matches!(interrupt, Some(Interrupt::HangUp)),
    }
}

pub(super) async fn run_outbound(
    sim: VonageSim,
    uuid: String,
    outcome: CallOutcome,
    script: CallerScript,
    mut interrupts: mpsc::Receiver<Interrupt>,
) {
    sim.event(&uuid, "started").await;
    sim.event(&uuid, "ringing").await;
    let timer = Duration::from_secs(sim.call(&uuid).and_then(|c| c.ringing_timer).unwrap_or(60));
    let after = match outcome {
        CallOutcome::Answer { after } => after,
        CallOutcome::Busy { after } => {
            let status = if ring(after, &mut interrupts).await {
                "cancelled"
            } else {
                "busy"
            };
            return sim.finish(&uuid, status).await;
        }
        CallOutcome::NoAnswer { after } => {
            let status = if ring(after.min(timer), &mut interrupts).await {
                "cancelled"
            } else {
                "timeout"
            };
            return sim.finish(&uuid, status).await;
        }
        CallOutcome::Failed => return sim.finish(&uuid, "failed").await,
    };
    if ring(after, &mut interrupts).await {
        return sim.finish(&uuid, "cancelled").await;
    }
    sim.event(&uuid, "answered").await;
    let Some(websocket) = sim.call(&uuid).and_then(|c| c.websocket) else {
        return sim.finish(&uuid, "completed").await;
    };
    let (report, transfer) = stream(sim.caller(&uuid, websocket, script), &mut interrupts).await;
    sim.update(&uuid, |c| {
        c.caller_report = Some(report);
        c.transfers.extend(transfer.clone());
    });
    if transfer.is_some() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.finish(&uuid, "completed").await;
}

pub(super) async fn run_inbound(
    sim: VonageSim,
    uuid: String,
    answer_url: String,
    script: CallerScript,
    mut interrupts: mpsc::Receiver<Interrupt>,
) {
    let Some(call) = sim.call(&uuid) else { return };
    let query = vec![
        ("to".to_owned(), call.to.clone()),
        ("from".to_owned(), call.from.clone()),
        ("uuid".to_owned(), uuid.clone()),
        ("conversation_uuid".to_owned(), format!("CON-{uuid}")),
        (
            "region_url".to_owned(),
            "https://api-us-3.vonage.com".to_owned(),
        ),
    ];
    let (status, body) = sim.send_signed(&answer_url, "answer", None, &query).await;
    let ncco: Option<serde_json::Value> = (200..300)
        .contains(&status)
        .then(|| serde_json::from_str(&body).ok())
        .flatten();
    let Some(ncco) = ncco else {
        sim.update(&uuid, |c| {
            c.rejected = Some(format!("no NCCO (HTTP {status})"))
        });
        return sim.update(&uuid, |c| {
            c.ended = true;
            c.finished = true;
        });
    };
    sim.update(&uuid, |c| c.ncco = Some(ncco.clone()));
    match rest::websocket_endpoint(&ncco) {
        Ok(Some(websocket)) => {
            sim.update(&uuid, |c| c.websocket = Some(websocket.clone()));
            let (report, transfer) =
                stream(sim.caller(&uuid, websocket, script), &mut interrupts).await;
            sim.update(&uuid, |c| {
                c.caller_report = Some(report);
                c.transfers.extend(transfer);
            });
        }
        // An empty NCCO (or one without a websocket) ends the call at once.
        Ok(None) => sim.update(&uuid, |c| {
            c.rejected = Some("the NCCO ended the call".to_owned())
        }),
        Err(e) => sim.update(&uuid, |c| c.rejected = Some(format!("invalid NCCO: {e}"))),
    }
    sim.update(&uuid, |c| {
        c.ended = true;
        c.finished = true;
    });
}
