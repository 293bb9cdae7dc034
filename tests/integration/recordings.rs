//! Recorded calls: a whole Twilio call with `assistant_recording`, its WAV read back (caller
//! left, agent right, both where the caller heard and said them), served with ranges to its
//! owner only, and linked from the details and the end-of-call report.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::audio::g711;
use voxbridge::sim::caller::CallerScript;

use crate::call_lab::{CallLab, LabOptions, after_agent, clip};

/// Where the first 20 ms window louder than the noise floor starts, in samples.
fn onset(samples: impl Iterator<Item = i16>, frame: usize) -> Option<usize> {
    let samples: Vec<i16> = samples.collect();
    samples
        .chunks(frame)
        .position(|w| {
            let energy: f64 = w.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / w.len() as f64;
            energy.sqrt() > 500.0
        })
        .map(|i| i * frame)
}

fn ms(samples: usize) -> i64 {
    (samples / 8) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_is_two_channels_on_the_callers_clock() {
    let mut options = LabOptions::default();
    options.assistant["assistant_recording"] = json!(true);
    let lab = CallLab::start(options).await;
    let words = clip("book_table");
    let script = after_agent(CallerScript::new()).say(words.clone());
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let call_id = call["call_id"].as_str().unwrap();
    let url = call["recording_url"].as_str().expect("a recording url");
    assert!(
        url.ends_with(&format!("/call/recording/{call_id}")),
        "{url}"
    );

    let client = reqwest::Client::new();
    let response = client
        .get(url)
        .bearer_auth(&lab.server.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "audio/wav");
    assert_eq!(response.headers()["accept-ranges"], "bytes");
    let wav = response.bytes().await.unwrap();
    let mut reader = hound::WavReader::new(std::io::Cursor::new(wav.to_vec())).unwrap();
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (2, 8000, 16)
    );
    let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
    let left = || samples.iter().step_by(2).copied();
    let right = || samples.iter().skip(1).step_by(2).copied();

    // As long as the call, from the caller's side.
    let sim = lab.twilio.call(&sid).unwrap();
    let report = &sim.caller_reports[0];
    let heard = report.ended_at - report.connected_at.unwrap_or_default();
    let recorded = Duration::from_millis(ms(samples.len() / 2) as u64);
    assert!(
        recorded.abs_diff(heard) < Duration::from_millis(500),
        "recorded {recorded:?}, call {heard:?}"
    );

    // Both sides on one clock: the caller's words and the agent's greeting lie as far apart in
    // the recording as the caller said and heard them.
    let greeting_heard = report.first_agent_audio_at().unwrap();
    let clip_onset = onset(words.as_bytes().iter().map(|&b| g711::mulaw_decode(b)), 160).unwrap();
    let words_said =
        report.first_speech_at().unwrap() + Duration::from_millis(ms(clip_onset) as u64);
    let agent_onset = ms(onset(right(), 160).expect("the agent is on the right"));
    let caller_onset = ms(onset(left(), 160).expect("the caller is on the left"));
    let said_apart = words_said.as_millis() as i64 - greeting_heard.as_millis() as i64;
    let recorded_apart = caller_onset - agent_onset;
    assert!(
        (said_apart - recorded_apart).abs() <= 120,
        "the caller spoke {said_apart} ms after the greeting; the recording has {recorded_apart} ms"
    );
    // The caller's channel is silent while the agent greets, and the agent's while the caller
    // speaks its first words (no bleed between channels).
    assert!(caller_onset > agent_onset);

    // A range, as a player seeking asks for it.
    let size = wav.len();
    let header = client
        .get(url)
        .bearer_auth(&lab.server.key)
        .header("Range", "bytes=0-43")
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        header.headers()["content-range"],
        format!("bytes 0-43/{size}").as_str()
    );
    let head = header.bytes().await.unwrap();
    assert_eq!((head.len(), &head[..4]), (44, &b"RIFF"[..]));
    let tail = client
        .get(url)
        .bearer_auth(&lab.server.key)
        .header("Range", "bytes=-100")
        .send()
        .await
        .unwrap();
    assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(tail.bytes().await.unwrap(), wav.slice(size - 100..));
    let past = client
        .get(url)
        .bearer_auth(&lab.server.key)
        .header("Range", format!("bytes={size}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(
        past.headers()["content-range"],
        format!("bytes */{size}").as_str()
    );

    // Another owner's key finds nothing; neither does an unknown call.
    let stranger = lab.server.key_for("stranger@example.com").await;
    let foreign = client.get(url).bearer_auth(&stranger).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let body: Value = foreign.json().await.unwrap();
    assert_eq!(body["success"], false);
    let (status, _) = lab
        .server
        .get("/call/recording/00000000-0000-4000-8000-000000000000")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The end-of-call report links the recording.
    let mut report_body = Value::Null;
    for _ in 0..100 {
        if let Some((_, body)) = lab.webhooks.received.lock().unwrap().last() {
            report_body = serde_json::from_str(body).unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(report_body["recording_url"], url, "{report_body}");
    lab.stop().await;
}
