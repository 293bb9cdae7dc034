//! The life of one fake Plivo call: ringing, the signed answer-URL request, the Plivo XML, the
//! stream (a simulated caller), Plivo's second socket after the stream, the hang-up URL.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::caller_wire::{EXTRA_HEADERS, PlivoWire};
use super::{PlivoSim, SentWebhook, SimCall};
use crate::sim::caller::wire::{CallerProtocol, CallerWire};
use crate::sim::caller::{CallerConfig, CallerScript, spawn_caller};
use crate::sim::twilio::CallOutcome;
use crate::telephony::plivo::signature::{
    Method, NONCE_HEADER, SIGNATURE_HEADER, compute_signature,
};

/// Plivo's stream protocol for the shared caller.
pub fn protocol() -> CallerProtocol {
    CallerProtocol::new("plivo", |config| Box::new(PlivoWire::new(config)))
}

/// What an answer URL said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlivoXml {
    Stream {
        url: String,
        extra_headers: Option<String>,
        content_type: Option<String>,
        bidirectional: bool,
    },
    Hangup {
        reason: Option<String>,
    },
    Redirect {
        url: String,
    },
    Other(String),
}

/// The value of `name="…"` in an element's attributes, XML entities undone.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Reads the first instruction of a Plivo XML answer (what our answers contain).
pub fn parse_xml(xml: &str) -> PlivoXml {
    if let Some(open) = xml.find("<Stream") {
        let tag_end = xml[open..].find('>').map(|i| open + i).unwrap_or(xml.len());
        let tag = &xml[open..tag_end];
        let body_end = xml[tag_end..].find("</Stream>").map(|i| tag_end + i);
        let url = body_end
            .map(|end| unescape(xml[tag_end + 1..end].trim()))
            .unwrap_or_default();
        return PlivoXml::Stream {
            url,
            extra_headers: attribute(tag, "extraHeaders"),
            content_type: attribute(tag, "contentType"),
            bidirectional: attribute(tag, "bidirectional").as_deref() == Some("true"),
        };
    }
    if let Some(open) = xml.find("<Hangup") {
        let tag_end = xml[open..].find('>').map(|i| open + i).unwrap_or(xml.len());
        return PlivoXml::Hangup {
            reason: attribute(&xml[open..tag_end], "reason"),
        };
    }
    if let Some(open) = xml.find("<Redirect") {
        let tag_end = xml[open..].find('>').map(|i| open + i).unwrap_or(xml.len());
        let end = xml[tag_end..].find("</Redirect>").map(|i| tag_end + i);
        return PlivoXml::Redirect {
            url: end
                .map(|end| unescape(xml[tag_end + 1..end].trim()))
                .unwrap_or_default(),
        };
    }
    PlivoXml::Other(xml.to_owned())
}

/// Posts a form, V3-signed with `auth_id`'s token, and records it; answers the response body.
pub async fn post_signed(
    sim: &PlivoSim,
    auth_id: &str,
    url: &str,
    form: Vec<(String, String)>,
) -> Option<String> {
    let token = sim.token(auth_id).unwrap_or_default();
    let nonce = format!(
        "{}",
        uuid::Uuid::new_v4().as_u128() % 100_000_000_000_000_000_000
    );
    let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let signature =
        compute_signature(&token, Method::Post, url, &pairs, &nonce).unwrap_or_default();
    let response = sim
        .inner
        .http
        .post(url)
        .header(SIGNATURE_HEADER, signature)
        .header(NONCE_HEADER, nonce)
        .form(&form)
        .send()
        .await;
    let (status, body) = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, response.text().await.unwrap_or_default())
        }
        Err(e) => {
            tracing::warn!(url, error = %e, "fake Plivo webhook failed");
            (0, String::new())
        }
    };
    sim.state().webhooks.push(SentWebhook {
        url: url.to_owned(),
        form,
        status,
        body: body.clone(),
    });
    sim.notify();
    (200..300).contains(&status).then_some(body)
}

fn plivo_number(e164: &str) -> String {
    e164.strip_prefix('+').unwrap_or(e164).to_owned()
}

fn base_form(call: &SimCall, status: &str) -> Vec<(String, String)> {
    let mut form = vec![
        ("CallUUID".to_owned(), call.call_uuid.clone()),
        ("From".to_owned(), plivo_number(&call.from)),
        ("To".to_owned(), plivo_number(&call.to)),
        ("CallStatus".to_owned(), status.to_owned()),
        (
            "Direction".to_owned(),
            if call.inbound { "inbound" } else { "outbound" }.to_owned(),
        ),
    ];
    if !call.request_uuid.is_empty() {
        form.push(("RequestUUID".to_owned(), call.request_uuid.clone()));
        form.push(("ALegUUID".to_owned(), call.call_uuid.clone()));
        form.push(("ALegRequestUUID".to_owned(), call.request_uuid.clone()));
    }
    form
}

/// Ends the call: the final status to `hangup_url`, and the record closed.
async fn finish(sim: &PlivoSim, call: &SimCall, status: &str) {
    sim.update_call(&call.call_uuid, |c| c.status = status.to_owned());
    if let Some(url) = &call.hangup_url {
        let mut form = base_form(call, status);
        form.push(("HangupCause".to_owned(), "NORMAL_CLEARING".to_owned()));
        post_signed(sim, &call.auth_id, url, form).await;
    }
    {
        let mut state = sim.state();
        state.controls.remove(&call.call_uuid);
        state.cancels.remove(&call.request_uuid);
    }
    sim.update_call(&call.call_uuid, |c| c.finished = true);
}

/// Waits `after`, or answers false at once if the request is hung up meanwhile.
async fn ring(after: Duration, cancelled: &mut Option<watch::Receiver<bool>>) -> bool {
    match cancelled {
        Some(rx) => tokio::select! {
            () = tokio::time::sleep(after) => true,
            _ = rx.wait_for(|c| *c) => false,
        },
        None => {
            tokio::time::sleep(after).await;
            true
        }
    }
}

/// Runs one call to its end.
pub async fn run(
    sim: PlivoSim,
    call: SimCall,
    script: CallerScript,
    mut cancelled: Option<watch::Receiver<bool>>,
) {
    if !call.inbound {
        sim.update_call(&call.call_uuid, |c| c.status = "ringing".into());
        if let Some(url) = &call.ring_url {
            post_signed(&sim, &call.auth_id, url, base_form(&call, "ringing")).await;
        }
        let outcome = sim.outcome_for(&call.to);
        let (after, end) = match outcome {
            CallOutcome::Answer { after } => (after, None),
            CallOutcome::Busy { after } => (after, Some("busy")),
            CallOutcome::NoAnswer { after } => (after, Some("timeout")),
            CallOutcome::Failed => (Duration::ZERO, Some("failed")),
        };
        if !ring(after, &mut cancelled).await {
            return finish(&sim, &call, "cancel").await;
        }
        if let Some(status) = end {
            return finish(&sim, &call, status).await;
        }
        sim.state().cancels.remove(&call.request_uuid);
    }
    sim.update_call(&call.call_uuid, |c| c.status = "in-progress".into());
    let answer = post_signed(
        &sim,
        &call.auth_id,
        &call.answer_url,
        base_form(
            &call,
            if call.inbound {
                "ringing"
            } else {
                "in-progress"
            },
        ),
    )
    .await;
    let Some(xml) = answer else {
        return finish(&sim, &call, "failed").await;
    };
    sim.update_call(&call.call_uuid, |c| c.answers.push(xml.clone()));
    let PlivoXml::Stream {
        url, extra_headers, ..
    } = parse_xml(&xml)
    else {
        return finish(&sim, &call, "completed").await;
    };
    sim.update_call(&call.call_uuid, |c| {
        c.stream_url = Some(url.clone());
        c.extra_headers = extra_headers.clone();
    });
    let parameters = extra_headers
        .iter()
        .map(|e| (EXTRA_HEADERS.to_owned(), e.clone()))
        .collect();
    let config = CallerConfig {
        url: url.clone(),
        protocol: protocol(),
        account_sid: call.auth_id.clone(),
        call_sid: call.call_uuid.clone(),
        stream_sid: uuid::Uuid::new_v4().to_string(),
        custom_parameters: parameters,
        script,
        record: sim.inner.record,
        max_duration: call
            .time_limit_secs
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or_else(|| sim.max_call_duration()),
        connect_timeout: Duration::from_secs(10),
        signing_token: None,
    };
    let second = config.clone();
    let caller = spawn_caller(config);
    sim.state()
        .controls
        .insert(call.call_uuid.clone(), caller.control());
    let report = caller.finished().await;
    sim.state().controls.remove(&call.call_uuid);
    sim.update_call(&call.call_uuid, |c| c.reports.push(report));
    let refused = second_socket(&second).await;
    sim.update_call(&call.call_uuid, |c| c.second_socket_refused = Some(refused));
    finish(&sim, &call, "completed").await;
}

/// Plivo's trap: after the call, a new socket to the same stream URL with the same `start`.
/// Answers whether the server closed it without playing anything.
async fn second_socket(config: &CallerConfig) -> bool {
    let Ok(Ok((mut socket, _))) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(config.url.as_str()),
    )
    .await
    else {
        // Not even accepted: refused.
        return true;
    };
    let mut wire = PlivoWire::new(config);
    for message in wire.greeting() {
        if socket.send(message).await.is_err() {
            return true;
        }
    }
    let _ = socket.send(wire.media(None)).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => {
                let _ = socket.close(None).await;
                return false;
            }
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(Message::Text(text)))) if text.contains("playAudio") => {
                let _ = socket.close(None).await;
                return false;
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_stream_xml_is_read_back() {
        let xml = crate::telephony::plivo::xml::stream("wss://h/plivo/media", "c", "t").unwrap();
        match parse_xml(&xml) {
            PlivoXml::Stream {
                url,
                extra_headers,
                content_type,
                bidirectional,
            } => {
                assert_eq!(url, "wss://h/plivo/media");
                assert!(extra_headers.unwrap().starts_with("callid="));
                assert_eq!(content_type.as_deref(), Some("audio/x-mulaw;rate=8000"));
                assert!(bidirectional);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse_xml(r#"<Response><Hangup reason="busy"/></Response>"#),
            PlivoXml::Hangup {
                reason: Some("busy".into())
            }
        );
    }
}
