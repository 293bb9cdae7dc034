//! Voicemail on outbound calls (issue 18): an assistant with `assistant_voicemail_message` asks
//! Twilio for asynchronous answering-machine detection; at a machine's beep the agent stops, the
//! message (rendered with the call's metadata) is heard after the beep, and the call hangs up
//! with end reason `voicemail`. A person gets the call as it always was. The verdict's callback
//! is signed like every Twilio webhook.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::sim::caller::{CallerAudio, CallerEnd, CallerScript};
use voxbridge::sim::twilio::{Callee, DEFAULT_AUTH_TOKEN};
use voxbridge::telephony::twilio::signature::compute_signature;

use crate::call_lab::{CallLab, LabOptions, after_agent, clip};

const CALLEE: &str = "+15550200000";
const VOICEMAIL: &str =
    "Hi {{name}}, this is Acme about your table for {{party|two}}. Call us back at {{callback}}.";
const RENDERED: &str = "Hi Ann, this is Acme about your table for two. Call us back at 555 0100.";

fn voicemail_options(utterances: Vec<&'static str>) -> LabOptions {
    let mut options = LabOptions {
        utterances,
        ..LabOptions::default()
    };
    options.assistant["assistant_voicemail_message"] = json!(VOICEMAIL);
    options
}

async fn place(lab: &CallLab, metadata: Value) -> (String, String, Value) {
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            json!({"assistant_id": lab.assistant_id, "trunk_id": lab.trunk_id, "to_number": CALLEE,
                   "call_service": "twilio", "metadata": metadata}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let data = reply["data"].clone();
    (
        data["call_id"].as_str().unwrap().to_owned(),
        data["provider_call_sid"].as_str().unwrap().to_owned(),
        data,
    )
}

/// The Calls request as Twilio received it: every value of `key`.
fn sent(lab: &CallLab, key: &str) -> Vec<String> {
    let create = lab
        .twilio
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/Calls.json"))
        .expect("a create request");
    create.values(key).into_iter().map(str::to_owned).collect()
}

async fn stored_details(lab: &CallLab, call_id: &str) -> Value {
    for _ in 0..200 {
        let (_, reply) = lab.server.get(&format!("/call/details/{call_id}")).await;
        let details = reply["data"].clone();
        if details["ended_at"].is_string() && details["end_reason"].is_string() {
            return details;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the call never ended in the store");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_hears_the_voicemail_after_its_beep_and_the_call_ends() {
    let lab = CallLab::start(voicemail_options(vec![
        "Hi, you have reached Ann. Please leave a message after the tone.",
    ]))
    .await;
    lab.twilio.set_callee(
        CALLEE,
        Callee::Machine {
            greeting: CallerAudio::synthetic_speech(
                "Hi, you have reached Ann. Please leave a message after the tone.",
            ),
        },
    );
    let (call_id, sid, placed) = place(&lab, json!({"name": "Ann", "callback": "555 0100"})).await;
    assert_eq!(placed["missing_variables"], json!([]));
    // Twilio was asked for asynchronous detection that waits for the end of the greeting.
    assert_eq!(sent(&lab, "MachineDetection"), ["DetectMessageEnd"]);
    assert_eq!(sent(&lab, "AsyncAmd"), ["true"]);
    assert_eq!(
        sent(&lab, "AsyncAmdStatusCallback"),
        [format!("{}/twilio/amd?call_id={call_id}", lab.server.base)]
    );
    assert_eq!(sent(&lab, "AsyncAmdStatusCallbackMethod"), ["POST"]);

    let call = lab
        .twilio
        .wait_for_call_end(&sid, Duration::from_secs(90))
        .await
        .expect("the call ends");
    let verdicts = lab.twilio.amd_callbacks(&sid);
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!(verdicts[0].param("AnsweredBy"), Some("machine_end_beep"));
    assert_eq!(verdicts[0].status, Some(204), "{:?}", verdicts[0]);

    // What the machine recorded after its beep: the message, played whole, then the hang-up.
    let report = &call.caller_reports[0];
    assert_eq!(report.speech.len(), 2, "greeting and beep");
    let beep_end = report.speech[1].ended_at.expect("the beep played");
    assert_eq!(
        report.end,
        Some(CallerEnd::ServerClosed),
        "{:?}",
        report.end
    );
    let heard: u64 = report
        .media
        .iter()
        .filter(|m| m.at >= beep_end)
        .map(|m| u64::from(m.bytes))
        .sum();
    // The fake voice speaks 65 ms a character: most of the message's length in audio.
    let message_ms = RENDERED.chars().count() as u64 * 65;
    assert!(
        heard >= message_ms * 8 * 9 / 10,
        "{heard} bytes after the beep for a {message_ms} ms message"
    );
    let end_mark = report
        .marks
        .iter()
        .rev()
        .find(|m| m.name.ends_with(".end"))
        .expect("an end mark");
    assert!(
        end_mark.echoed_at.is_some_and(|t| t > beep_end) && !end_mark.cleared,
        "the message's end mark came back after the beep, played: {end_mark:?}"
    );
    assert!(
        report.clears.iter().all(|c| c.at
            < report
                .media
                .iter()
                .rev()
                .find(|m| m.at >= beep_end)
                .unwrap()
                .at),
        "nothing cut the message: {:?}",
        report.clears
    );
    // The TTS was given the rendered message last.
    let cartesia = lab.cartesia.received();
    let last = cartesia.context_ids.last().expect("a tts context");
    assert_eq!(cartesia.transcript_of(last).trim(), RENDERED);

    let details = stored_details(&lab, &call_id).await;
    assert_eq!(details["end_reason"], "voicemail", "{details}");
    assert_eq!(details["status"], "completed");
    assert_eq!(details["answered_by"], "machine_end_beep");
    assert_eq!(details["rendered_voicemail_message"], RENDERED);
    let transcript = details["transcript"].as_array().unwrap();
    let said = transcript.last().unwrap();
    assert_eq!(
        (&said["role"], &said["text"], &said["interrupted"]),
        (&json!("assistant"), &json!(RENDERED), &json!(false)),
        "{details}"
    );
    // Each test runs in its own process: the count is this call's.
    let metrics = reqwest::get(format!("{}/metrics", lab.server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("voxbridge_voicemails_total") && l.ends_with(" 1")),
        "{metrics}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_with_a_voicemail_message_set_talks_as_before() {
    let lab = CallLab::start(voicemail_options(vec!["Thank you, goodbye."])).await;
    lab.twilio.set_caller_script(
        CALLEE,
        after_agent(CallerScript::new())
            .say(clip("thank_you_goodbye"))
            .wait(Duration::from_secs(20)),
    );
    let (call_id, sid, placed) = place(&lab, json!({"name": "Ann"})).await;
    // The message's placeholders count among the call's missing values.
    assert_eq!(placed["missing_variables"], json!(["callback"]));
    let details = lab.finished_call(&sid).await;
    assert_eq!(details["call_id"], call_id.as_str());
    let verdicts = lab.twilio.amd_callbacks(&sid);
    assert_eq!(verdicts.len(), 1, "{verdicts:?}");
    assert_eq!(verdicts[0].param("AnsweredBy"), Some("human"));
    assert_eq!(verdicts[0].status, Some(204));

    // The conversation went on exactly as without detection: greeting, the caller's words,
    // the goodbye, and the assistant ended the call.
    assert_eq!(details["end_reason"], "assistant_ended_call", "{details}");
    assert_eq!(details["answered_by"], "human");
    let transcript = details["transcript"].as_array().unwrap();
    assert_eq!(transcript[0]["text"], crate::call_lab::GREETING);
    assert!(
        transcript
            .iter()
            .any(|t| t["role"] == "user" && t["text"] == "Thank you, goodbye."),
        "{details}"
    );
    assert!(
        transcript
            .iter()
            .all(|t| !t["text"].as_str().unwrap().contains("call us back")),
        "the voicemail was said to a person: {details}"
    );
    let cartesia = lab.cartesia.received();
    assert!(
        cartesia
            .context_ids
            .iter()
            .all(|c| !cartesia.transcript_of(c).contains("Call us back")),
        "the voicemail reached the TTS"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_voicemail_message_twilio_is_asked_for_no_detection() {
    let lab = CallLab::start(LabOptions::default()).await;
    lab.twilio
        .set_caller_script(CALLEE, CallerScript::new().hang_up());
    let (_, sid, _) = place(&lab, json!({})).await;
    for key in [
        "MachineDetection",
        "AsyncAmd",
        "AsyncAmdStatusCallback",
        "AsyncAmdStatusCallbackMethod",
    ] {
        assert!(sent(&lab, key).is_empty(), "{key} was sent");
    }
    let details = lab.finished_call(&sid).await;
    assert_eq!(details["answered_by"], Value::Null);
    assert_eq!(details["rendered_voicemail_message"], Value::Null);
    lab.stop().await;
}

/// Posts a detection verdict for `call_id` signed with `token`; answers the HTTP status.
async fn post_verdict(lab: &CallLab, call_id: &str, answered_by: &str, token: &str) -> u16 {
    let url = format!("{}/twilio/amd?call_id={call_id}", lab.server.base);
    let params = [
        ("AccountSid", voxbridge::sim::twilio::DEFAULT_ACCOUNT_SID),
        ("AnsweredBy", answered_by),
        ("CallSid", "CA0123456789abcdef0123456789abcdef"),
        ("MachineDetectionDuration", "4200"),
    ];
    let signature = compute_signature(token, &url, &params);
    reqwest::Client::new()
        .post(&url)
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_verdict_callback_is_signed_and_a_gone_call_is_no_error() {
    let lab = CallLab::start(voicemail_options(vec!["Hello?"])).await;
    lab.twilio
        .set_caller_script(CALLEE, CallerScript::new().hang_up());
    let (call_id, sid, _) = place(&lab, json!({"name": "Ann", "callback": "1"})).await;
    let details = lab.finished_call(&sid).await;
    assert_eq!(details["end_reason"], "caller_hung_up", "{details}");

    let forged = "ffffffffffffffffffffffffffffffff";
    assert_eq!(
        post_verdict(&lab, &call_id, "machine_end_beep", forged).await,
        403,
        "a verdict signed with another token is refused"
    );
    // The status route refuses the same way.
    let url = format!("{}/twilio/status?call_id={call_id}", lab.server.base);
    let params = [("CallSid", sid.as_str()), ("CallStatus", "completed")];
    let status = reqwest::Client::new()
        .post(&url)
        .header(
            "X-Twilio-Signature",
            compute_signature(forged, &url, &params),
        )
        .form(&params)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 403);
    let (_, reply) = lab.server.get(&format!("/call/details/{call_id}")).await;
    assert_eq!(
        reply["data"]["answered_by"],
        Value::Null,
        "a forged verdict was stored"
    );

    // The call has ended: the verdict is recorded, and Twilio hears no error.
    assert_eq!(
        post_verdict(&lab, &call_id, "machine_end_beep", DEFAULT_AUTH_TOKEN).await,
        204
    );
    let (_, reply) = lab.server.get(&format!("/call/details/{call_id}")).await;
    assert_eq!(reply["data"]["answered_by"], "machine_end_beep");
    assert_eq!(reply["data"]["end_reason"], "caller_hung_up");
    assert_eq!(
        post_verdict(&lab, &call_id, "robot", DEFAULT_AUTH_TOKEN).await,
        400
    );
    // A call nobody knows: as the status route answers.
    assert_eq!(
        post_verdict(&lab, "no-such-call", "human", DEFAULT_AUTH_TOKEN).await,
        404
    );
    lab.stop().await;
}
