//! The `voxbridge` command itself: migrate, keys, and the first key `serve` prints on an empty
//! database.

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
