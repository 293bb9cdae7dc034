//! A browser-like client of the widget's socket protocol (`/web-call/ws`): PCM16 frames every
//! 20 ms from a "microphone", mark echoes as if played at once, and what the client saw. Shared
//! by the web-call tests and the multi-node tests.

use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxbridge::audio::Resampler;

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub async fn connect(url: &str) -> Socket {
    tokio_tungstenite::connect_async(url)
        .await
        .expect("the socket upgrades")
        .0
}

pub async fn start(ws: &mut Socket, rate: u32) -> Value {
    ws.send(Message::text(
        json!({"type": "start", "sample_rate": rate}).to_string(),
    ))
    .await
    .unwrap();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("started in time")
        {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(text.as_str()).unwrap(),
            Some(Ok(Message::Ping(_))) => {}
            other => panic!("expected started, got {other:?}"),
        }
    }
}

/// A committed caller clip (8 kHz) at `rate`.
pub fn clip_at(name: &str, rate: u32) -> Vec<i16> {
    let wav = voxbridge::audio::wav::read(format!(
        "{}/audio/caller/{name}.wav",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("caller clip");
    let mut resampler = Resampler::new(wav.sample_rate, rate).unwrap();
    let mut out = Vec::new();
    resampler.push(&wav.samples, |f| out.extend_from_slice(f));
    resampler.flush(|f| out.extend_from_slice(f));
    out
}

pub enum Pump {
    Play(Vec<i16>),
    Text(String),
}

/// Sends 20 ms PCM16 frames at real time (silence between clips, as a live microphone does)
/// and any text it is given.
pub fn spawn_microphone(mut sink: SplitSink<Socket, Message>, rate: u32) -> mpsc::Sender<Pump> {
    let (tx, mut rx) = mpsc::channel::<Pump>(16);
    tokio::spawn(async move {
        let frame = (rate / 50) as usize;
        let mut playing: Vec<i16> = Vec::new();
        let mut at = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(Pump::Play(samples)) => { playing = samples; at = 0; }
                    Some(Pump::Text(text)) => {
                        if sink.send(Message::text(text)).await.is_err() { return; }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    let mut bytes = Vec::with_capacity(frame * 2);
                    for i in 0..frame {
                        let s = playing.get(at + i).copied().unwrap_or(0);
                        bytes.extend_from_slice(&s.to_le_bytes());
                    }
                    at += frame;
                    if sink.send(Message::binary(bytes)).await.is_err() { return; }
                }
            }
        }
    });
    tx
}

/// What the client saw, read until `until` holds (or the socket closes).
#[derive(Default, Debug)]
pub struct Seen {
    pub audio_bytes: usize,
    pub loud_frames: usize,
    pub transcripts: Vec<(String, bool)>,
    pub agent_text: Vec<String>,
    pub recommendations: Vec<Value>,
    pub marks: Vec<String>,
    pub interrupts: usize,
    pub end: Option<String>,
    pub close: Option<(u16, String)>,
}

/// Reads messages, echoing marks (the client "plays" at once), until `until` says so.
pub async fn read_until(
    stream: &mut SplitStream<Socket>,
    mic: &mpsc::Sender<Pump>,
    seen: &mut Seen,
    timeout: Duration,
    until: impl Fn(&Seen) -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !until(seen) {
        let message = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(message))) => message,
            Ok(_) => return,
            Err(_) => panic!("timed out; seen so far: {seen:?}"),
        };
        match message {
            Message::Binary(bytes) => {
                seen.audio_bytes += bytes.len();
                let peak = bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]).unsigned_abs())
                    .max()
                    .unwrap_or(0);
                if peak > 1000 {
                    seen.loud_frames += 1;
                }
            }
            Message::Text(text) => {
                let event: Value = serde_json::from_str(text.as_str()).unwrap();
                match event["type"].as_str().unwrap() {
                    "mark" => {
                        let name = event["name"].as_str().unwrap().to_owned();
                        let echo = json!({"type": "mark", "name": name}).to_string();
                        let _ = mic.send(Pump::Text(echo)).await;
                        seen.marks.push(name);
                    }
                    "transcript" => seen.transcripts.push((
                        event["text"].as_str().unwrap().to_owned(),
                        event["final"].as_bool().unwrap(),
                    )),
                    "agent_text" => seen
                        .agent_text
                        .push(event["text"].as_str().unwrap().to_owned()),
                    "interrupt" => seen.interrupts += 1,
                    "recommendation" => seen.recommendations.push(event["products"].clone()),
                    "end" => seen.end = Some(event["reason"].as_str().unwrap().to_owned()),
                    other => panic!("unexpected event {other}: {text}"),
                }
            }
            Message::Close(frame) => {
                seen.close = Some(
                    frame
                        .map(|f| (u16::from(f.code), f.reason.to_string()))
                        .unwrap_or((1005, String::new())),
                );
                return;
            }
            _ => {}
        }
    }
}

/// A web call of `assistant_id` created on `server`, at 16 kHz, whose greeting has been heard to
/// its end mark: the session's data, the server's side of the socket, the microphone pumping
/// silence, and what was seen so far.
pub async fn live_call(
    server: &crate::common::TestServer,
    assistant_id: &str,
) -> (Value, SplitStream<Socket>, mpsc::Sender<Pump>, Seen) {
    let (status, reply) = server
        .post("/web-call/create", json!({"assistant_id": assistant_id}))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{reply}");
    let data = reply["data"].clone();
    let mut ws = connect(data["ws_url"].as_str().unwrap()).await;
    start(&mut ws, 16_000).await;
    let (sink, mut stream) = ws.split();
    let mic = spawn_microphone(sink, 16_000);
    let mut seen = Seen::default();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.marks.iter().any(|m| m.ends_with(".end"))
    })
    .await;
    (data, stream, mic, seen)
}

/// Types `digits` on the keypad (`#` ends the entry) and waits for the agent's answer to them.
pub async fn press(
    stream: &mut SplitStream<Socket>,
    mic: &mpsc::Sender<Pump>,
    seen: &mut Seen,
    digits: &str,
) {
    for digit in digits.chars() {
        let key = json!({"type": "dtmf", "digit": digit.to_string()}).to_string();
        mic.send(Pump::Text(key)).await.unwrap();
    }
    let entry = digits.trim_end_matches('#').to_owned();
    read_until(stream, mic, seen, Duration::from_secs(20), |s| {
        s.agent_text
            .join(" ")
            .contains(&format!("{entry} on the keypad"))
    })
    .await;
}

/// Hangs up as the widget does and reads until the server closes the socket.
pub async fn hang_up(stream: &mut SplitStream<Socket>, mic: &mpsc::Sender<Pump>, seen: &mut Seen) {
    mic.send(Pump::Text(r#"{"type":"hangup"}"#.to_owned()))
        .await
        .unwrap();
    read_until(stream, mic, seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;
}
