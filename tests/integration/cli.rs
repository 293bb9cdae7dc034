//! The `voxbridge` command itself: migrate, keys, the first key `serve` prints on an empty
//! database, `sim`, and `serve --sim`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

fn voxbridge(db: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_voxbridge"));
    command
        .env("VOXBRIDGE_DATABASE_URL", format!("sqlite:{db}"))
        .env("VOXBRIDGE_LOG_LEVEL", "warn")
        .env("VOXBRIDGE_CONFIG", "/nonexistent/voxbridge.toml");
    command
}

fn temp_db() -> String {
    std::env::temp_dir()
        .join(format!("voxbridge-cli-{}.db", uuid::Uuid::new_v4()))
        .display()
        .to_string()
}

fn run(command: &mut Command) -> (bool, String, String) {
    let output = command.output().expect("voxbridge runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn migrate_and_manage_keys() {
    let db = temp_db();
    let (ok, out, err) = run(voxbridge(&db).arg("migrate"));
    assert!(ok, "{err}");
    assert!(out.contains("up to date"), "{out}");

    let (ok, key, err) = run(voxbridge(&db).args(["keys", "create", "--email", "Ops@Example.com"]));
    assert!(ok, "{err}");
    let key = key.trim().to_owned();
    assert!(key.starts_with("vbx_") && key.len() == 47, "{key}");
    assert!(err.contains("not shown again"), "{err}");

    let (ok, list, err) = run(voxbridge(&db).args(["keys", "list"]));
    assert!(ok, "{err}");
    assert!(list.contains("ops@example.com"), "{list}");
    assert!(list.contains(&key[..12]), "the prefix is listed: {list}");
    assert!(
        !list.contains(&key),
        "the key itself is never listed: {list}"
    );

    let (ok, out, err) = run(voxbridge(&db).args(["keys", "revoke", &key[..12]]));
    assert!(ok, "{err}");
    assert!(out.contains("revoked 1"), "{out}");
    let (ok, _, err) = run(voxbridge(&db).args(["keys", "revoke", &key[..12]]));
    assert!(!ok && err.contains("no active key"), "{err}");
    let (_, list, _) = run(voxbridge(&db).args(["keys", "list"]));
    assert!(
        list.lines()
            .nth(1)
            .is_some_and(|l| !l.trim_end().ends_with('-')),
        "revoked time shown: {list}"
    );
    let _ = std::fs::remove_file(&db);
}

#[test]
fn a_bad_config_key_is_refused_with_a_clear_message() {
    let db = temp_db();
    let (ok, _, err) = run(voxbridge(&db).env("VOXBRIDGE_BNID", "x").arg("migrate"));
    assert!(!ok);
    assert!(err.contains("bnid"), "{err}");
}

#[tokio::test]
async fn serve_prints_a_first_key_on_an_empty_database_and_stops_on_sigterm() {
    let db = temp_db();
    let mut child = voxbridge(&db)
        .env("VOXBRIDGE_BIND", "127.0.0.1:0")
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut key = None;
    let mut url = None;
    while url.is_none() {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("serve prints");
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("vbx_")) {
            key = Some(k.to_owned());
        }
        if let Some(u) = line.strip_prefix("voxbridge listening on ") {
            url = Some(u.to_owned());
        }
    }
    let key = key.expect("a first key was printed");
    let url = url.unwrap();
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{url}/assistant/list"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "the printed key works");
    // Graceful shutdown on SIGTERM.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    // A second start does not print another key.
    let output = voxbridge(&db).args(["keys", "list"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).lines().count(),
        2,
        "one key only"
    );
    let _ = std::fs::remove_file(&db);
}

/// Lines a child prints on stdout, read on a thread.
fn stdout_lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn sim_prints_one_json_line_naming_fakes_that_check_their_keys() {
    let mut child = voxbridge(&temp_db())
        .args(["sim", "--port", "0", "--llm-first-token-ms", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("sim starts");
    let line = stdout_lines(&mut child)
        .recv_timeout(Duration::from_secs(30))
        .expect("sim prints its URLs");
    let described: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    assert_eq!(described["latency_ms"]["llm_first_token"], 5);
    let openai = &described["openai"];
    let client = reqwest::Client::new();
    let chat = |key: &str| {
        client
            .post(format!(
                "{}/chat/completions",
                openai["base_url"].as_str().unwrap()
            ))
            .bearer_auth(key)
            .json(&serde_json::json!({"model": "gpt-4o-mini", "stream": true,
                "messages": [{"role": "user", "content": "Hello"}]}))
            .send()
    };
    assert_eq!(chat("wrong-key").await.unwrap().status(), 401);
    let reply = chat(openai["api_key"].as_str().unwrap()).await.unwrap();
    assert_eq!(reply.status(), 200);
    assert!(reply.text().await.unwrap().contains("data: [DONE]"));
    stop(&mut child);
}

#[test]
fn sim_refuses_to_listen_beyond_loopback() {
    let (ok, _, err) = run(voxbridge(&temp_db()).args(["sim", "--host", "0.0.0.0", "--port", "0"]));
    assert!(!ok);
    assert!(err.contains("loopback"), "{err}");
}

/// With no provider keys configured, `serve --sim` places a whole outbound call against the
/// in-process fakes: Twilio dials, the greeting is synthesised and the call completes.
#[tokio::test]
async fn serve_sim_runs_a_call_without_any_account() {
    let db = temp_db();
    let mut child = voxbridge(&db)
        .env("VOXBRIDGE_BIND", "127.0.0.1:0")
        .args(["serve", "--sim"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let lines = stdout_lines(&mut child);
    let (mut key, mut url, mut sim) = (None, None, None);
    while url.is_none() {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("serve prints");
        if let Some(k) = line.split_whitespace().find(|w| w.starts_with("vbx_")) {
            key = Some(k.to_owned());
        }
        if line.starts_with("sim providers on ") {
            sim = Some(line.clone());
        }
        if let Some(u) = line.strip_prefix("voxbridge listening on ") {
            url = Some(u.to_owned());
        }
    }
    assert!(sim.is_some(), "serve --sim says where the fakes are");
    let (key, url) = (key.unwrap(), url.unwrap());
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        client
            .post(format!("{url}{path}"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };
    let reply: serde_json::Value = post(
        "/assistant/create",
        serde_json::json!({
            "assistant_name": "Demo", "assistant_description": "Demo", "assistant_prompt": "Be brief.",
            "assistant_tts_model": "cartesia",
            "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
            "assistant_start_instruction": "Hello from the demo."}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let assistant_id = reply["data"]["assistant_id"]
        .as_str()
        .expect("assistant")
        .to_owned();
    let reply: serde_json::Value = post(
        "/trunk/create",
        serde_json::json!({"trunk_name": "Sim", "trunk_provider": "twilio",
            "trunk_account_sid": voxbridge::sim::twilio::DEFAULT_ACCOUNT_SID,
            "trunk_auth_token": voxbridge::sim::twilio::DEFAULT_AUTH_TOKEN,
            "trunk_default_caller_number": "+15550001111"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let trunk_id = reply["data"]["trunk_id"]
        .as_str()
        .expect("trunk")
        .to_owned();
    let reply: serde_json::Value = post(
        "/call/outbound",
        serde_json::json!({"assistant_id": assistant_id, "trunk_id": trunk_id,
            "to_number": "+15557654321", "call_service": "twilio"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let call_id = reply["data"]["call_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{reply}"))
        .to_owned();
    let mut details = serde_json::Value::Null;
    for _ in 0..300 {
        details = client
            .get(format!("{url}/call/details/{call_id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let transcript = details["data"]["transcript"].as_array();
        if transcript.is_some_and(|t| t.iter().any(|turn| turn["text"] == "Hello from the demo.")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let transcript = details["data"]["transcript"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        transcript
            .iter()
            .any(|turn| turn["text"] == "Hello from the demo."),
        "the greeting was spoken through the fake TTS: {details}"
    );
    stop(&mut child);
    let _ = std::fs::remove_file(&db);
}

/// `voxbridge loadtest` end to end: it spawns a server, places calls through the signed
/// webhook and the media stream, and reports every turn answered, the barge-in cut and the
/// server's memory. (Figures are not asserted: speed is measured by benchmarks.)
#[test]
fn loadtest_runs_calls_through_a_spawned_server_and_writes_json() {
    let json =
        std::env::temp_dir().join(format!("voxbridge-loadtest-{}.json", uuid::Uuid::new_v4()));
    let (ok, out, err) = run(voxbridge(&temp_db()).args([
        "loadtest",
        "--calls",
        "3",
        "--ramp",
        "10",
        "--duration",
        "20",
        "--turns",
        "2",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("added latency"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["completed"], 3, "{out}");
    assert_eq!(report["failures"], serde_json::json!({}), "{out}");
    assert_eq!(
        report["added_ms"]["n"], 6,
        "two answered turns per call: {out}"
    );
    assert_eq!(report["unanswered_turns"], 0, "{out}");
    assert_eq!(
        report["barge_in_ms"]["n"], 3,
        "every greeting was cut: {out}"
    );
    // Each caller's uh-huh over the second reply stopped the agent, which then went on.
    assert_eq!(report["false_stop_ms"]["n"], 3, "{out}");
    assert_eq!(report["resumed_ms"]["n"], 3, "{out}");
    // And each caller coughed over the first reply, which was not lost either.
    assert_eq!(report["coughs_over_agent"], 3, "{out}");
    assert_eq!(report["wrongful_cuts"], 0, "{out}");
    assert!(report["frames"].as_u64().unwrap() > 100, "{out}");
    assert!(
        report["server"]["rss_peak_mb"].as_f64().unwrap() > 0.0,
        "{out}"
    );
    assert_eq!(report["delays_ms"]["llm_first_token_ms"], 200);
}

/// `--provider` drives the same calls through another provider's fake: its signed webhook, its
/// answer document and its stream protocol (Telnyx's JSON PCMU, Vonage's binary PCM16 16 kHz).
#[test]
fn loadtest_drives_calls_through_every_provider() {
    for provider in ["plivo", "exotel", "telnyx", "vonage"] {
        let json =
            std::env::temp_dir().join(format!("voxbridge-loadtest-{}.json", uuid::Uuid::new_v4()));
        let (ok, out, err) = run(voxbridge(&temp_db()).args([
            "loadtest",
            "--provider",
            provider,
            "--calls",
            "2",
            "--ramp",
            "10",
            "--duration",
            "20",
            "--turns",
            "2",
            "--json",
            json.to_str().unwrap(),
        ]));
        assert!(ok, "{provider}: stdout:\n{out}\nstderr:\n{err}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(report["completed"], 2, "{provider}: {out}");
        assert_eq!(
            report["failures"],
            serde_json::json!({}),
            "{provider}: {out}"
        );
        assert_eq!(report["added_ms"]["n"], 4, "{provider}: {out}");
        assert_eq!(report["barge_in_ms"]["n"], 2, "{provider}: {out}");
        assert_eq!(report["wrongful_cuts"], 0, "{provider}: {out}");
    }
    let (ok, _, err) = run(voxbridge(&temp_db()).args(["loadtest", "--provider", "skype"]));
    assert!(!ok && err.contains("unknown provider"), "{err}");
}

/// The same with a Sarvam voice and Sarvam ears: every turn answered, the STT's endpoint (its
/// VAD's 500 ms of silence) counted as the STT's, and the choice recorded in the results.
#[test]
fn loadtest_runs_with_sarvam_speech_both_ways() {
    let json =
        std::env::temp_dir().join(format!("voxbridge-loadtest-{}.json", uuid::Uuid::new_v4()));
    let (ok, out, err) = run(voxbridge(&temp_db()).args([
        "loadtest",
        "--calls",
        "2",
        "--ramp",
        "10",
        "--duration",
        "20",
        "--turns",
        "2",
        "--tts",
        "sarvam",
        "--stt",
        "sarvam",
        "--json",
        json.to_str().unwrap(),
    ]));
    assert!(ok, "stdout:\n{out}\nstderr:\n{err}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (&report["tts"], &report["stt"]),
        (&serde_json::json!("sarvam"), &serde_json::json!("sarvam"))
    );
    // The turn ends at our VAD's 200 ms pause (Sarvam's flush), before the fake's 500 ms VAD.
    assert_eq!(report["endpointing_ms"], 200);
    assert_eq!(report["delays_ms"]["sarvam_tts_times_real_time"], 4);
    assert_eq!(report["completed"], 2, "{out}");
    assert_eq!(report["failures"], serde_json::json!({}), "{out}");
    assert_eq!(
        report["added_ms"]["n"], 4,
        "two answered turns per call: {out}"
    );
    assert_eq!(report["unanswered_turns"], 0, "{out}");
    let (ok, _, err) = run(voxbridge(&temp_db()).args(["loadtest", "--tts", "polly"]));
    assert!(!ok);
    assert!(err.contains("polly"), "{err}");
}

#[test]
fn loadtest_refuses_servers_beyond_loopback_and_unbounded_runs() {
    let (ok, _, err) = run(voxbridge(&temp_db()).args([
        "loadtest",
        "--server",
        "http://203.0.113.5:8080",
        "--api-key",
        "vbx_x",
    ]));
    assert!(!ok);
    assert!(err.contains("loopback"), "{err}");
    let (ok, _, err) = run(voxbridge(&temp_db()).args(["loadtest", "--calls", "100000"]));
    assert!(!ok);
    assert!(err.contains("calls must be"), "{err}");
}
