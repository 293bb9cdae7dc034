//! The caller against a small WebSocket server written here, playing the voxbridge side.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::{WebSocketStream, accept_async, accept_hdr_async};

use super::*;
use crate::telephony::twilio::signature::validate_signature;

type ServerWs = WebSocketStream<TcpStream>;

const WAIT: Duration = Duration::from_secs(10);

async fn listener() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/twilio/media/call_1",
        listener.local_addr().unwrap()
    );
    (listener, url)
}

async fn accept(listener: &TcpListener) -> ServerWs {
    let (tcp, _) = tokio::time::timeout(WAIT, listener.accept())
        .await
        .unwrap()
        .unwrap();
    accept_async(tcp).await.unwrap()
}

/// The next text message as JSON (`None` once the socket is closed).
async fn next_json(ws: &mut ServerWs) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("caller keeps talking")
        {
            Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Reads `connected` and `start`; answers the stream SID.
async fn greeting(ws: &mut ServerWs) -> String {
    let connected = next_json(ws).await.unwrap();
    assert_eq!(connected["event"], "connected");
    let start = next_json(ws).await.unwrap();
    assert_eq!(start["event"], "start");
    start["streamSid"].as_str().unwrap().to_owned()
}

fn media(sid: &str, bytes: &[u8]) -> Message {
    Message::text(
        json!({"event": "media", "streamSid": sid, "media": {"payload": BASE64.encode(bytes)}})
            .to_string(),
    )
}

fn mark(sid: &str, name: &str) -> Message {
    Message::text(json!({"event": "mark", "streamSid": sid, "mark": {"name": name}}).to_string())
}

/// Reads until the echo of mark `name`; answers how many caller media frames came first.
async fn frames_until_echo(ws: &mut ServerWs, name: &str) -> usize {
    let mut frames = 0;
    loop {
        let message = next_json(ws).await.expect("mark echo before close");
        match message["event"].as_str().unwrap() {
            "media" => frames += 1,
            "mark" if message["mark"]["name"] == name => return frames,
            other => panic!("unexpected {other}: {message}"),
        }
    }
}

fn is_silence(payload: &Value) -> bool {
    BASE64
        .decode(payload.as_str().unwrap())
        .unwrap()
        .iter()
        .all(|&b| b == SILENCE)
}

#[tokio::test]
// The callback's signature is tungstenite's; its error type is large by design.
#[allow(clippy::result_large_err)]
async fn greeting_and_media_frames_are_shaped_like_twilio() {
    let (listener, url) = listener().await;
    let mut config = CallerConfig::new(
        &url,
        CallerScript::new()
            .say(CallerAudio::tone(440.0, Duration::from_millis(60), 8000))
            .hang_up(),
    );
    config.custom_parameters = vec![
        ("call_id".into(), "c1".into()),
        ("token".into(), "a&b".into()),
    ];
    config.signing_token = Some("12345".into());
    let caller = spawn_caller(config.clone());

    let (tcp, _) = listener.accept().await.unwrap();
    let (signature_tx, signature_rx) = std::sync::mpsc::channel();
    let mut ws = accept_hdr_async(tcp, |request: &Request, response: Response| {
        let signature = request
            .headers()
            .get("x-twilio-signature")
            .map(|v| v.to_str().unwrap().to_owned());
        signature_tx.send(signature).unwrap();
        Ok(response)
    })
    .await
    .unwrap();
    let signature = signature_rx.recv().unwrap().expect("upgrade is signed");
    assert!(validate_signature::<&str, &str>(
        "12345",
        &url,
        &[],
        &signature
    ));

    assert_eq!(
        next_json(&mut ws).await.unwrap(),
        json!({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    );
    let start = next_json(&mut ws).await.unwrap();
    assert_eq!(
        start,
        json!({
            "event": "start",
            "sequenceNumber": "1",
            "start": {
                "accountSid": config.account_sid,
                "streamSid": config.stream_sid,
                "callSid": config.call_sid,
                "tracks": ["inbound"],
                "customParameters": {"call_id": "c1", "token": "a&b"},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            },
            "streamSid": config.stream_sid
        })
    );
    let mut frames = Vec::new();
    let stop = loop {
        let message = next_json(&mut ws).await.expect("stop before close");
        if message["event"] == "stop" {
            break message;
        }
        frames.push(message);
    };
    assert_eq!(frames.len(), 3, "60 ms of speech is three 20 ms frames");
    for (i, frame) in frames.iter().enumerate() {
        let n = i as u64 + 1;
        assert_eq!(frame["event"], "media");
        assert_eq!(frame["streamSid"], config.stream_sid.as_str());
        assert_eq!(
            frame["sequenceNumber"],
            (n + 1).to_string(),
            "strings, after start's 1"
        );
        assert_eq!(frame["media"]["track"], "inbound");
        assert_eq!(frame["media"]["chunk"], n.to_string());
        assert_eq!(frame["media"]["timestamp"], (n * 20).to_string());
        let payload = frame["media"]["payload"].as_str().unwrap();
        assert_eq!(payload.len(), 216);
        assert_eq!(BASE64.decode(payload).unwrap().len(), FRAME_BYTES);
        assert!(
            !is_silence(&frame["media"]["payload"]),
            "the tone is not silence"
        );
    }
    assert_eq!(
        stop,
        json!({
            "event": "stop",
            "sequenceNumber": "5",
            "streamSid": config.stream_sid,
            "stop": {"accountSid": config.account_sid, "callSid": config.call_sid}
        })
    );
    assert!(
        next_json(&mut ws).await.is_none(),
        "the caller closes after stop"
    );
    let _ = ws.close(None).await;
    drop(ws);

    let report = caller.finished().await;
    assert_eq!(report.end, Some(CallerEnd::ScriptHangUp));
    assert_eq!(report.frames_sent, 3);
    assert_eq!(report.speech.len(), 1);
    assert!(report.speech[0].ended_at.is_some());
    let kinds: Vec<_> = report.steps.iter().map(|s| s.kind).collect();
    assert_eq!(kinds, ["say", "hang_up"]);
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
}

#[tokio::test]
async fn silence_fills_the_line_and_marks_come_back_after_playout() {
    let (listener, url) = listener().await;
    let mut config = CallerConfig::new(&url, CallerScript::new());
    config.record.audio = true;
    let caller = spawn_caller(config);
    let mut ws = accept(&listener).await;
    let sid = greeting(&mut ws).await;

    let first = next_json(&mut ws).await.unwrap();
    assert!(
        is_silence(&first["media"]["payload"]),
        "nothing to say: silence frames"
    );

    let audio: Vec<u8> = (0..480u32).map(|i| (i % 200) as u8).collect();
    ws.send(media(&sid, &audio)).await.unwrap();
    ws.send(mark(&sid, "m1")).await.unwrap();
    let frames = frames_until_echo(&mut ws, "m1").await;
    assert!(
        frames >= 2,
        "480 bytes take three ticks to play; echo came after {frames}"
    );

    // Nothing queued: the mark is due at once.
    ws.send(mark(&sid, "m2")).await.unwrap();
    let frames = frames_until_echo(&mut ws, "m2").await;
    assert!(
        frames <= 1,
        "echo of a mark with nothing queued waited {frames} frames"
    );
    ws.close(None).await.unwrap();

    let report = caller.finished().await;
    assert_eq!(report.end, Some(CallerEnd::ServerClosed));
    assert_eq!(report.outbound_audio, audio);
    assert_eq!(report.outbound_bytes, 480);
    assert_eq!(report.played_bytes, 480);
    assert_eq!(report.media.len(), 1);
    let m1 = report.mark("m1").unwrap();
    assert_eq!(m1.offset, 480);
    assert!(m1.echoed_at.unwrap() >= m1.received_at);
    assert!(!m1.cleared);
    assert!(report.first_agent_audio_at().is_some());
}

#[tokio::test]
async fn clear_drops_the_queue_and_returns_pending_marks_at_once() {
    let (listener, url) = listener().await;
    let mut config = CallerConfig::new(&url, CallerScript::new());
    config.record.audio = true;
    let caller = spawn_caller(config);
    let mut ws = accept(&listener).await;
    let sid = greeting(&mut ws).await;

    ws.send(media(&sid, &[1u8; 8000])).await.unwrap();
    ws.send(mark(&sid, "long")).await.unwrap();
    ws.send(media(&sid, &[2u8; 160])).await.unwrap();
    ws.send(mark(&sid, "second")).await.unwrap();
    ws.send(Message::text(
        json!({"event": "clear", "streamSid": sid}).to_string(),
    ))
    .await
    .unwrap();
    let frames = frames_until_echo(&mut ws, "long").await;
    assert!(
        frames <= 1,
        "cleared marks come back at once, not after {frames} frames"
    );
    assert_eq!(frames_until_echo(&mut ws, "second").await, 0);

    ws.send(media(&sid, &[3u8; 320])).await.unwrap();
    ws.send(mark(&sid, "after")).await.unwrap();
    let frames = frames_until_echo(&mut ws, "after").await;
    assert!(frames >= 1, "audio after a clear plays out before its mark");
    ws.close(None).await.unwrap();

    let report = caller.finished().await;
    assert_eq!(report.clears.len(), 1);
    let clear = &report.clears[0];
    assert!(
        clear.dropped_bytes > 0 && clear.dropped_bytes <= 8160,
        "{clear:?}"
    );
    assert_eq!(clear.offset, 8160);
    assert!(report.mark("long").unwrap().cleared);
    assert!(report.mark("second").unwrap().cleared);
    assert!(!report.mark("after").unwrap().cleared);
    assert_eq!(report.played_bytes, 8160 - clear.dropped_bytes + 320);
    assert_eq!(report.media.last().unwrap().after_clears, 1);
    assert_eq!(report.audio_after(clear.at), [3u8; 320]);
    assert_eq!(report.audio_between(8160, 8480), [3u8; 320]);
}

#[tokio::test]
async fn server_messages_are_checked_like_twilio_does() {
    let (listener, url) = listener().await;
    let caller = spawn_caller(CallerConfig::new(&url, CallerScript::new()));
    let mut ws = accept(&listener).await;
    let sid = greeting(&mut ws).await;

    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&[0u8; 40]);
    for bad in [
        json!({"event": "media", "streamSid": "MZ00000000000000000000000000000000", "media": {"payload": "//8="}}),
        json!({"event": "hangup", "streamSid": sid}),
        json!({"event": "media", "streamSid": sid, "media": {"payload": "!!not base64"}}),
        json!({"event": "mark", "streamSid": sid}),
        json!({"event": "media", "media": {"payload": "//8="}}),
        json!({"event": "media", "streamSid": sid, "media": {"payload": BASE64.encode(&wav)}}),
        json!({"streamSid": sid}),
    ] {
        ws.send(Message::text(bad.to_string())).await.unwrap();
    }
    ws.send(Message::text("not json")).await.unwrap();
    ws.send(Message::binary(vec![0xFFu8; 160])).await.unwrap();
    ws.send(mark(&sid, "sync")).await.unwrap();
    frames_until_echo(&mut ws, "sync").await;
    ws.close(None).await.unwrap();

    let report = caller.finished().await;
    assert_eq!(
        report.protocol_errors.len(),
        9,
        "{:#?}",
        report.protocol_errors
    );
    assert!(
        report
            .protocol_errors
            .iter()
            .all(|e| e.code == PROTOCOL_ERROR)
    );
    assert!(report.protocol_errors[1].detail.contains("hangup"));
    assert!(report.protocol_errors[5].detail.contains("WAV"));
}

#[tokio::test]
async fn the_caller_waits_for_the_agent_to_finish_before_speaking() {
    let (listener, url) = listener().await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(5))
        .wait_for_agent_silence(Duration::from_millis(100), Duration::from_secs(5))
        .say(CallerAudio::tone(300.0, Duration::from_millis(40), 8000))
        .hang_up();
    let caller = spawn_caller(CallerConfig::new(&url, script));
    let mut ws = accept(&listener).await;
    let sid = greeting(&mut ws).await;

    // Let the caller stream silence for a moment, then greet it.
    for _ in 0..3 {
        let frame = next_json(&mut ws).await.unwrap();
        assert!(is_silence(&frame["media"]["payload"]));
    }
    ws.send(media(&sid, &[0x10u8; 3200])).await.unwrap();
    ws.send(mark(&sid, "greeting")).await.unwrap();
    let mut echoed = false;
    loop {
        let message = next_json(&mut ws)
            .await
            .expect("the caller speaks, then stops");
        match message["event"].as_str().unwrap() {
            "mark" => echoed = true,
            "media" if !is_silence(&message["media"]["payload"]) => {
                assert!(
                    echoed,
                    "the caller spoke before the greeting finished playing"
                );
            }
            "stop" => break,
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    drop(ws);

    let report = caller.finished().await;
    assert_eq!(report.end, Some(CallerEnd::ScriptHangUp));
    assert!(!report.step(0).unwrap().timed_out);
    assert!(!report.step(1).unwrap().timed_out);
    let speech = report.first_speech_at().unwrap();
    assert!(speech >= report.mark("greeting").unwrap().echoed_at.unwrap());
    assert!(report.first_agent_audio_at().unwrap() < speech);
}

#[tokio::test]
async fn dtmf_is_sent_and_a_remote_hang_up_stops_the_stream() {
    let (listener, url) = listener().await;
    let config = CallerConfig::new(&url, CallerScript::new().dtmf('5'));
    let caller = spawn_caller(config.clone());
    let mut ws = accept(&listener).await;
    greeting(&mut ws).await;
    let dtmf = loop {
        let message = next_json(&mut ws).await.unwrap();
        if message["event"] == "dtmf" {
            break message;
        }
    };
    assert_eq!(
        dtmf["dtmf"],
        json!({"track": "inbound_track", "digit": "5"})
    );
    assert_eq!(dtmf["streamSid"], config.stream_sid.as_str());
    assert!(dtmf["sequenceNumber"].is_string());

    caller.hang_up();
    loop {
        let message = next_json(&mut ws).await.expect("stop before close");
        if message["event"] == "stop" {
            assert_eq!(message["stop"]["callSid"], config.call_sid.as_str());
            break;
        }
    }
    let _ = ws.close(None).await;
    drop(ws);
    let report = caller.finished().await;
    assert_eq!(report.end, Some(CallerEnd::RemoteHangUp));
    assert_eq!(report.dtmf_sent.len(), 1);
    assert!(report.script_finished_at.is_some());
}

#[tokio::test]
async fn an_unreachable_server_is_a_connect_failure() {
    let (listener, url) = listener().await;
    drop(listener);
    let mut config = CallerConfig::new(&url, CallerScript::new());
    config.connect_timeout = Duration::from_secs(2);
    let report = spawn_caller(config).finished().await;
    assert!(
        matches!(report.end, Some(CallerEnd::ConnectFailed(_))),
        "{:?}",
        report.end
    );
}

/// Footprint of many callers at once (for the load generator's budget), printed, not asserted:
/// `cargo nextest run --run-ignored only many_callers --no-capture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a test"]
async fn many_callers_footprint() {
    const CALLERS: usize = 500;
    fn rss_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        statm
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            * 4
    }
    fn cpu_ms() -> u64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap()
            .split_whitespace()
            .collect();
        // utime and stime, in clock ticks (100 Hz).
        (fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()) * 10
    }
    let (listener, url) = listener().await;
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let config = caller_ws_config();
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(tcp, Some(config)).await
                else {
                    return;
                };
                while let Some(Ok(_)) = ws.next().await {}
            });
        }
    });
    let before = rss_kib();
    let mut callers = Vec::new();
    for _ in 0..CALLERS {
        let mut config = CallerConfig::new(&url, CallerScript::new());
        config.record = RecordOptions {
            frames: false,
            audio: false,
        };
        callers.push(spawn_caller(config));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let connected = rss_kib();
    let cpu_start = cpu_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let cpu = cpu_ms() - cpu_start;
    println!(
        "{CALLERS} callers (and their server sockets): {} KiB RSS each; {:.1}% of one core for \
         5 s = {:.1} us per caller frame",
        (connected - before) / CALLERS as u64,
        cpu as f64 / 50.0,
        cpu as f64 * 1000.0 / (CALLERS as f64 * 250.0)
    );
    for caller in &callers {
        caller.hang_up();
    }
    for caller in callers {
        let report = caller.finished().await;
        assert_eq!(report.end, Some(CallerEnd::RemoteHangUp));
    }
}
