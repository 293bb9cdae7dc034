//! The life of one fake Exotel call: ringing, the `answered` callback, the Voicebot stream (a
//! simulated caller), the `terminal` callback; inbound, the applet's https URL first.

use std::time::Duration;

use super::caller_wire::ExotelWire;
use super::{ExotelSim, SentWebhook, SimCall};
use crate::sim::caller::wire::CallerProtocol;
use crate::sim::caller::{CallerConfig, CallerScript, spawn_caller};
use crate::sim::twilio::CallOutcome;

/// A stream URL's parts: the URL to connect to, `user:password`, the query's pairs.
pub type StreamUrlParts = (String, Option<String>, Vec<(String, String)>);

/// Exotel's stream protocol for the shared caller.
pub fn protocol() -> CallerProtocol {
    CallerProtocol::new("exotel", |config| Box::new(ExotelWire::new(config)))
}

/// A stream URL as Exotel uses it: the URL without its userinfo, the userinfo as
/// `user:password` (sent as Basic auth), and the query as custom parameters.
pub fn split_stream_url(url: &str) -> Option<StreamUrlParts> {
    let mut parsed = url::Url::parse(url).ok()?;
    let user = percent(parsed.username());
    let password = parsed.password().map(percent);
    let credentials = (!user.is_empty() || password.is_some())
        .then(|| format!("{user}:{}", password.unwrap_or_default()));
    let parameters = parsed.query_pairs().into_owned().collect();
    parsed.set_username("").ok()?;
    parsed.set_password(None).ok()?;
    Some((parsed.into(), credentials, parameters))
}

fn percent(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={text}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Exotel's national form of an Indian number (what its applet requests carry).
fn national(e164: &str) -> String {
    match e164.strip_prefix("+91") {
        Some(rest) => format!("0{rest}"),
        None => e164.to_owned(),
    }
}

async fn post_callback(sim: &ExotelSim, call: &SimCall, event: &str, status: &str) {
    let Some(url) = &call.status_callback else {
        return;
    };
    if !call.status_callback_events.iter().any(|e| e == event) && event != "terminal" {
        return;
    }
    let mut form = vec![
        ("CallSid".to_owned(), call.sid.clone()),
        ("Status".to_owned(), status.to_owned()),
        ("DateUpdated".to_owned(), "2026-12-06 10:00:00".to_owned()),
        ("RecordingUrl".to_owned(), String::new()),
    ];
    if call.status_callback_events.iter().any(|e| e == event) {
        form.push(("EventType".to_owned(), event.to_owned()));
        form.push(("From".to_owned(), call.from.clone()));
        form.push(("To".to_owned(), call.to.clone()));
        form.push(("Direction".to_owned(), "outbound-api".to_owned()));
        if let Some(custom) = &call.custom_field {
            form.push(("CustomField".to_owned(), custom.clone()));
        }
    }
    let response = sim.inner.http.post(url).form(&form).send().await;
    let (status, body) = match response {
        Ok(r) => {
            let s = r.status().as_u16();
            (s, r.text().await.unwrap_or_default())
        }
        Err(_) => (0, String::new()),
    };
    sim.state().webhooks.push(SentWebhook {
        url: url.clone(),
        form,
        status,
        body,
    });
    sim.notify();
}

async fn finish(sim: &ExotelSim, call: &SimCall, status: &str) {
    sim.update_call(&call.sid, |c| c.status = status.to_owned());
    if !call.inbound {
        post_callback(sim, call, "terminal", status).await;
    }
    sim.state().controls.remove(&call.sid);
    sim.update_call(&call.sid, |c| c.finished = true);
}

/// Runs one call to its end.
pub async fn run(sim: ExotelSim, mut call: SimCall, script: CallerScript) {
    if call.inbound {
        // The applet's https URL answers the stream URL.
        let separator = if call.stream_url.contains('?') {
            '&'
        } else {
            '?'
        };
        let url = format!(
            "{}{separator}{}",
            call.stream_url,
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("CallSid", &call.sid)
                .append_pair("CallFrom", &national(&call.from))
                .append_pair("CallTo", &national(&call.to))
                .append_pair("Direction", "incoming")
                .finish()
        );
        let response = sim.inner.http.get(&url).send().await;
        let (status, body) = match response {
            Ok(r) => {
                let s = r.status().as_u16();
                (s, r.text().await.unwrap_or_default())
            }
            Err(_) => (0, String::new()),
        };
        sim.state().webhooks.push(SentWebhook {
            url,
            form: Vec::new(),
            status,
            body: body.clone(),
        });
        sim.notify();
        let stream = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|j| j.get("url").and_then(|u| u.as_str()).map(str::to_owned));
        match stream {
            Some(url) if (200..300).contains(&status) => call.stream_url = url,
            _ => return finish(&sim, &call, "failed").await,
        }
        sim.update_call(&call.sid, |c| c.stream_url = call.stream_url.clone());
    } else {
        sim.update_call(&call.sid, |c| c.status = "ringing".into());
        let (after, end) = match sim.outcome_for(&call.from) {
            CallOutcome::Answer { after } => (after, None),
            CallOutcome::Busy { after } => (after, Some("busy")),
            CallOutcome::NoAnswer { after } => (after, Some("no-answer")),
            CallOutcome::Failed => (Duration::ZERO, Some("failed")),
        };
        tokio::time::sleep(after).await;
        if let Some(status) = end {
            return finish(&sim, &call, status).await;
        }
        post_callback(&sim, &call, "answered", "in-progress").await;
    }
    sim.update_call(&call.sid, |c| c.status = "in-progress".into());
    let Some((url, credentials, parameters)) = split_stream_url(&call.stream_url) else {
        return finish(&sim, &call, "failed").await;
    };
    let config = CallerConfig {
        url,
        protocol: protocol(),
        account_sid: call.account_sid.clone(),
        call_sid: call.sid.clone(),
        stream_sid: format!("MZ{}", uuid::Uuid::new_v4().simple()),
        custom_parameters: parameters,
        script,
        record: sim.inner.record,
        max_duration: call
            .time_limit_secs
            .map(|s| Duration::from_secs(s.into()))
            .unwrap_or_else(|| sim.max_call_duration()),
        connect_timeout: Duration::from_secs(10),
        signing_token: credentials,
    };
    let caller = spawn_caller(config);
    sim.state()
        .controls
        .insert(call.sid.clone(), caller.control());
    let report = caller.finished().await;
    sim.update_call(&call.sid, |c| c.reports.push(report));
    finish(&sim, &call, "completed").await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_urls_split_as_exotel_reads_them() {
        let (url, credentials, parameters) = split_stream_url(
            "wss://acme1:s3cret@vb.example.com/exotel/media?call_id=c-1&token=vst_a&sample-rate=8000",
        )
        .unwrap();
        assert_eq!(
            url,
            "wss://vb.example.com/exotel/media?call_id=c-1&token=vst_a&sample-rate=8000"
        );
        assert_eq!(credentials.as_deref(), Some("acme1:s3cret"));
        assert_eq!(parameters[0], ("call_id".to_owned(), "c-1".to_owned()));
        assert_eq!(national("+918040000000"), "08040000000");
    }
}
