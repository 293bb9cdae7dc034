//! Helpers for the STT tests: fakes on loopback ports, synthetic speech, event waiting.

use std::time::Duration;

use axum::Router;
use bytes::Bytes;
use tokio::sync::mpsc;
use voxbridge::audio::g711::mulaw_encode;
use voxbridge::stt::{SttEvent, SttInput};

/// Serves `router` on a loopback port; returns its base URL (`http://127.0.0.1:port`).
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// A base URL where nothing listens.
pub async fn dead_base_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A voiced sound: a 150 Hz buzz with a few harmonics, like a vowel, at a speech level.
fn voiced_sample(n: usize, rate: u32) -> i16 {
    let t = n as f32 / rate as f32;
    let mut s = 0.0;
    for (k, amp) in [(1.0, 5000.0), (2.0, 2500.0), (3.0, 1200.0)] {
        s += amp * (2.0 * std::f32::consts::PI * 150.0 * k * t).sin();
    }
    s as i16
}

/// Segments of speech (`true`) and silence (`false`), in ms, as PCM16 samples.
pub fn samples(segments: &[(bool, u32)], rate: u32) -> Vec<i16> {
    let mut out = Vec::new();
    for &(voiced, ms) in segments {
        let n = (rate * ms / 1000) as usize;
        let start = out.len();
        out.extend((0..n).map(|i| {
            if voiced {
                voiced_sample(start + i, rate)
            } else {
                0
            }
        }));
    }
    out
}

/// Segments as μ-law 8 kHz bytes.
pub fn mulaw_8k(segments: &[(bool, u32)]) -> Vec<u8> {
    samples(segments, 8000)
        .into_iter()
        .map(mulaw_encode)
        .collect()
}

/// Segments as PCM16 LE bytes at `rate`.
pub fn pcm16(segments: &[(bool, u32)], rate: u32) -> Vec<u8> {
    samples(segments, rate)
        .into_iter()
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// Sends `audio` in frames of `frame_bytes` (20 ms of μ-law 8 kHz is 160).
pub async fn send_audio(input: &mpsc::Sender<SttInput>, audio: &[u8], frame_bytes: usize) {
    for frame in audio.chunks(frame_bytes) {
        input
            .send(SttInput::Audio(Bytes::copy_from_slice(frame)))
            .await
            .expect("session accepts audio");
    }
}

/// Like [`send_audio`], one frame per `pace` of real time.
pub async fn send_audio_paced(
    input: &mpsc::Sender<SttInput>,
    audio: &[u8],
    frame_bytes: usize,
    pace: Duration,
) {
    for frame in audio.chunks(frame_bytes) {
        if input
            .send(SttInput::Audio(Bytes::copy_from_slice(frame)))
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(pace).await;
    }
}

/// The next event, or a panic after `seconds`.
pub async fn next_event(events: &mut mpsc::Receiver<SttEvent>, seconds: u64) -> SttEvent {
    tokio::time::timeout(Duration::from_secs(seconds), events.recv())
        .await
        .expect("an STT event in time")
        .expect("the session is still open")
}

/// Events up to and including the first that matches `done`.
pub async fn events_until(
    events: &mut mpsc::Receiver<SttEvent>,
    done: impl Fn(&SttEvent) -> bool,
) -> Vec<SttEvent> {
    let mut seen = Vec::new();
    loop {
        let event = next_event(events, 10).await;
        let finished = done(&event);
        seen.push(event);
        if finished {
            return seen;
        }
    }
}

/// Polls `condition` (real time) until it holds, or panics after 5 s.
pub async fn wait_for(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

pub fn is_final(event: &SttEvent) -> bool {
    matches!(event, SttEvent::Transcript { is_final: true, .. })
}

pub fn final_texts(events: &[SttEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            SttEvent::Transcript {
                text,
                is_final: true,
                ..
            } => Some(text.clone()),
            _ => None,
        })
        .collect()
}
