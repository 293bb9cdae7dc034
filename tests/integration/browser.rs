//! The widget in a real browser: the call lab (sim providers, a server, an assistant) and
//! `tests/browser/e2e.mjs` driving headless Chromium through the demo page, with a fake
//! microphone playing the caller's committed clips: a call that talks and is interrupted, and
//! a shop assistant's call whose recommendation shows product cards; and `inspector.mjs` opening
//! the call inspector (`/calls`) on a whole phone call made through the fakes. Outside CI, a
//! machine without Chromium, Node
//! or `tests/browser/node_modules` skips with the reason; in CI (`CI` set) that fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use voxbridge::audio::Resampler;

use crate::call_lab::{CallLab, LabOptions};

const CHROMIUM: &str = "/usr/bin/chromium";
/// Longest the browser run may take (it needs about 20 s).
const RUN_LIMIT: Duration = Duration::from_secs(150);

/// Runs `command` to its end, killing it after `limit`; answers its output.
fn run_with_deadline(mut command: std::process::Command, limit: Duration) -> std::process::Output {
    use std::process::Stdio;
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node starts");
    let id = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(output) => output.expect("node's output"),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .arg("-9")
                .arg(id.to_string())
                .status();
            panic!("the browser run took longer than {limit:?}");
        }
    }
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where screenshots and the microphone file go: `<target>/browser-artifacts`.
fn artifacts_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("browser-artifacts")
}

/// Why the browser test cannot run here, if it cannot.
fn missing_tool() -> Option<String> {
    let chromium = std::env::var("VOXBRIDGE_CHROMIUM").unwrap_or_else(|_| CHROMIUM.to_owned());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install -y chromium)"
        ));
    }
    let node = std::process::Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        return Some("no node on PATH".to_owned());
    }
    let module = manifest_dir().join("tests/browser/node_modules/playwright-core");
    if !module.exists() {
        return Some(format!(
            "no {} (npm ci --prefix tests/browser)",
            module.display()
        ));
    }
    None
}

/// The fake microphone: 5 s of silence (the greeting plays), the caller's first turn, 1 s of
/// silence (the agent starts its reply), the second turn over the reply, then silence; 48 kHz.
fn microphone_wav(dir: &Path) -> PathBuf {
    const RATE: u32 = 48_000;
    let clip = |name: &str| {
        let wav =
            voxbridge::audio::wav::read(manifest_dir().join(format!("audio/caller/{name}.wav")))
                .expect("caller clip");
        let mut resampler = Resampler::new(wav.sample_rate, RATE).unwrap();
        let mut out = Vec::new();
        resampler.push(&wav.samples, |f| out.extend_from_slice(f));
        resampler.flush(|f| out.extend_from_slice(f));
        out
    };
    let silence = |secs: f64| vec![0i16; (f64::from(RATE) * secs) as usize];
    let mut samples = silence(5.0);
    samples.extend(clip("book_table"));
    samples.extend(silence(1.0));
    samples.extend(clip("tomorrow_at_seven"));
    samples.extend(silence(20.0));
    let path = dir.join("microphone.wav");
    voxbridge::audio::wav::write(&path, &samples, RATE).expect("microphone file written");
    path
}

/// Whether the browser test can run; outside CI a missing tool skips it (saying why).
fn can_run() -> bool {
    if let Some(why) = missing_tool() {
        if std::env::var_os("CI").is_some() {
            panic!("the browser test must run in CI: {why}");
        }
        println!("SKIPPED: {why}; with CI set this fails");
        return false;
    }
    true
}

/// Runs `e2e.mjs` against the lab's server with the microphone `mic` (in `mode`, if any) and
/// asserts it passed.
async fn run_e2e(lab: &CallLab, mic: &Path, mode: Option<&str>) {
    let mut command = std::process::Command::new("node");
    command
        .arg(manifest_dir().join("tests/browser/e2e.mjs"))
        .arg(&lab.server.base)
        .arg(&lab.server.key)
        .arg(mic);
    if let Some(mode) = mode {
        command.env("VOXBRIDGE_E2E_MODE", mode);
    }
    run_node(command).await;
}

/// Runs a browser script to its end (within [`RUN_LIMIT`]) and asserts it passed.
async fn run_node(mut command: std::process::Command) {
    let artifacts = artifacts_dir();
    command.env("VOXBRIDGE_ARTIFACTS", &artifacts);
    // The server runs on this runtime; node waits on another thread.
    let output = tokio::task::spawn_blocking(move || run_with_deadline(command, RUN_LIMIT))
        .await
        .expect("the runner thread ends");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the browser test failed (screenshot in {}):\n{stdout}\n{stderr}",
        artifacts.display()
    );
}

#[tokio::test]
async fn the_widget_talks_and_is_interrupted_in_a_real_browser() {
    if !can_run() {
        return;
    }
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mic = microphone_wav(&artifacts);
    let lab = CallLab::start(LabOptions::default()).await;
    run_e2e(&lab, &mic, None).await;

    // The fake STT received the browser's audio, resampled to 16 kHz PCM, and heard speech in it.
    // (Two calls: the demo page's, then the embedded widget's short one.)
    let streams = lab.deepgram.streams();
    assert_eq!(streams.len(), 2, "one STT stream per call");
    let stream = &streams[0];
    assert_eq!(stream.query_value("encoding"), Some("linear16"));
    assert_eq!(stream.query_value("sample_rate"), Some("16000"));
    assert!(
        stream.audio_ms > 8000,
        "audio received: {} ms",
        stream.audio_ms
    );
    // And the call is on record with the caller's words and the interrupted reply.
    let (_, list) = lab.server.get("/call/list").await;
    let calls = list["data"]["calls"].as_array().expect("calls");
    assert_eq!(calls.len(), 2, "{list}");
    // Newest first: the demo page's call is the older one.
    let call_id = calls[1]["call_id"]
        .as_str()
        .expect("the call is listed")
        .to_owned();
    let details = lab.server.ended_call_details(&call_id).await;
    assert_eq!(details["direction"], "web");
    let transcript = details["transcript"].as_array().unwrap();
    assert!(
        transcript
            .iter()
            .any(|t| t["role"] == "user"
                && t["text"].as_str().unwrap_or("").contains("book a table")),
        "{transcript:?}"
    );
    assert!(
        transcript
            .iter()
            .any(|t| t["role"] == "assistant" && t["interrupted"] == true),
        "{transcript:?}"
    );
    lab.stop().await;
}

/// A shop assistant's web call: the caller asks for a pink dress, the agent searches the
/// catalog and recommends, and the widget shows the products as cards beside the transcript.
#[tokio::test]
async fn the_widget_shows_recommended_products_in_a_real_browser() {
    if !can_run() {
        return;
    }
    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let mic = shop_microphone_wav(&artifacts);
    let mut options = LabOptions {
        utterances: vec!["I want a pink dress for my daughter's birthday."],
        ..LabOptions::default()
    };
    options.assistant["assistant_catalog_business_id"] = serde_json::json!("kids-shop");
    let lab = CallLab::start(options).await;
    let catalog: serde_json::Value =
        serde_json::from_str(include_str!("../../fixtures/sales/catalog.json")).unwrap();
    let (status, reply) = lab
        .server
        .call(
            reqwest::Method::PUT,
            "/catalog/kids-shop/products",
            Some(&lab.server.key),
            Some(catalog),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{reply}");
    run_e2e(&lab, &mic, Some("shop")).await;

    // The call's record shows the search and the recommendation as tool lines.
    let (_, list) = lab.server.get("/call/list").await;
    let call_id = list["data"]["calls"][0]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let details = lab.server.ended_call_details(&call_id).await;
    let tools: Vec<&str> = details["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "tool")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert!(
        tools.iter().any(|t| t.starts_with("search_products(")),
        "{tools:?}"
    );
    assert!(
        tools.iter().any(|t| t.starts_with("recommend_products(")),
        "{tools:?}"
    );
    lab.stop().await;
}

/// The shop call's microphone: the greeting plays, then one request, then silence.
fn shop_microphone_wav(dir: &Path) -> PathBuf {
    const RATE: u32 = 48_000;
    let wav = voxbridge::audio::wav::read(manifest_dir().join("audio/caller/book_table.wav"))
        .expect("caller clip");
    let mut resampler = Resampler::new(wav.sample_rate, RATE).unwrap();
    let mut samples = vec![0i16; (RATE * 5) as usize];
    resampler.push(&wav.samples, |f| samples.extend_from_slice(f));
    resampler.flush(|f| samples.extend_from_slice(f));
    samples.extend(vec![0i16; (RATE * 30) as usize]);
    let path = dir.join("microphone-shop.wav");
    voxbridge::audio::wav::write(&path, &samples, RATE).expect("microphone file written");
    path
}

/// A recorded phone call through the fakes (three turns, the goodbye's `end_call`), then the
/// call inspector on it in Chromium: `inspector.mjs` compares the page's latency bars and
/// timeline with the API's numbers and keeps screenshots of the list and the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inspector_draws_a_whole_call_in_a_real_browser() {
    use voxbridge::sim::caller::CallerScript;

    use crate::call_lab::{after_agent, clip};

    if !can_run() {
        return;
    }
    let mut options = LabOptions::default();
    options.assistant["assistant_recording"] = serde_json::json!(true);
    let lab = CallLab::start(options).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    assert!(
        call["turns"].as_array().is_some_and(|t| t.len() >= 4),
        "{call:#}"
    );
    // The page shows the webhook's attempt: wait until it was made.
    for _ in 0..100 {
        let (_, hooks) = lab.server.get(&format!("/call/webhooks/{call_id}")).await;
        if hooks["data"]["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let long_call = hour_long_call(&lab).await;
    let mut command = std::process::Command::new("node");
    command
        .arg(manifest_dir().join("tests/browser/inspector.mjs"))
        .arg(&lab.server.base)
        .arg(&lab.server.key)
        .arg(&call_id)
        .arg(&long_call);
    run_node(command).await;
    assert!(artifacts_dir().join("inspector-call.png").exists());
    lab.stop().await;
}

/// A stored one-hour call with 500 exchanges (a caller line, an answer and its timings each,
/// every tenth answer interrupted and every seventh calling a tool), for the inspector to draw.
async fn hour_long_call(lab: &CallLab) -> String {
    use voxbridge::store::{
        CallStatus, Direction, NewCall, TurnInterruption, TurnRecord, TurnStamps, TurnTiming,
        TurnTool,
    };

    let store = &lab.server.store;
    let owner = store.owner_by_key(&lab.server.key).await.unwrap().unwrap();
    let id = uuid::Uuid::now_v7().to_string();
    store
        .insert_call(&NewCall {
            id: id.clone(),
            owner_id: owner.id,
            assistant_id: lab.assistant_id.clone(),
            trunk_id: None,
            direction: Direction::Outbound,
            from_number: None,
            to_number: None,
            status: CallStatus::Completed,
            provider_call_sid: None,
            metadata: serde_json::json!({}),
            rendered_prompt: "p".into(),
            rendered_start_instruction: None,
            rendered_voicemail_message: None,
            missing_variables: vec![],
            stream_token_hash: None,
            stream_token_expires_at: None,
        })
        .await
        .unwrap();
    for n in 0..500i64 {
        let at = n * 7200;
        let user = TurnRecord {
            seq: 2 * n + 1,
            role: "user".into(),
            text: format!("Question number {n}, please."),
            offset_ms: at,
            interrupted: false,
        };
        store.append_turn(&id, &user).await.unwrap();
        let interrupted = n % 10 == 9;
        let answer = TurnRecord {
            seq: 2 * n + 2,
            role: "assistant".into(),
            text: format!("Answer number {n}."),
            offset_ms: at + 2700,
            interrupted,
        };
        store.append_turn(&id, &answer).await.unwrap();
        let mut timing = TurnTiming {
            turn: n + 1,
            source: "model".into(),
            outcome: if interrupted { "interrupted" } else { "heard" }.into(),
            started_ms: at + 1500,
            ended_ms: at + 6000,
            stamps: TurnStamps {
                caller_stopped_ms: Some(at + 1500),
                stt_final_ms: Some(at + 1700 + n % 7 * 20),
                llm_request_ms: Some(at + 1700 + n % 7 * 20),
                llm_first_token_ms: Some(at + 2200 + n % 11 * 40),
                first_phrase_ms: Some(at + 2300 + n % 11 * 40),
                tts_first_audio_ms: Some(at + 2500 + n % 11 * 40),
                first_frame_ms: Some(at + 2505 + n % 11 * 40),
                first_mark_ms: Some(at + 2700 + n % 11 * 40),
            },
            interruptions: if interrupted {
                vec![TurnInterruption {
                    onset_ms: at + 4000,
                    cleared_ms: Some(at + 4000),
                    confirmed_ms: Some(at + 4300),
                    resumed_ms: None,
                    heard: Some(format!("Answer number {n}.")),
                }]
            } else {
                vec![]
            },
            tools: if n % 7 == 0 {
                vec![TurnTool {
                    name: "lookup".into(),
                    arguments: "{}".into(),
                    result_bytes: 11,
                    result_preview: r#"{"ok":true}"#.into(),
                    started_ms: at + 2250,
                    duration_ms: 30,
                    error: None,
                }]
            } else {
                vec![]
            },
            ..TurnTiming::default()
        };
        timing.derive_stages();
        store.append_turn_timing(&id, &timing).await.unwrap();
    }
    id
}
