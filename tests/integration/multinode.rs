//! Many server processes on one database (issue 20): limits that hold under a burst, webhook
//! deliveries claimed so each goes out once across nodes, and SQLite refusing a second node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::json;
use voxbridge::config::Config;
use voxbridge::egress::{AddressPolicy, EgressClient};
use voxbridge::server::Server;
use voxbridge::store::{CallStatus, Direction, NewCall, format_timestamp};
use voxbridge::webhook::{WebhookSettings, Webhooks};

use crate::common::{Backend, TestServer};

/// Creates a voice assistant over REST; answers its id.
async fn assistant(server: &TestServer) -> String {
    let (status, reply) = server
        .post(
            "/assistant/create",
            json!({"assistant_name": "A", "assistant_description": "d", "assistant_prompt": "p",
                   "assistant_tts_model": "sarvam", "assistant_tts_config": {"speaker": "meera"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["assistant_id"].as_str().unwrap().to_owned()
}

/// 50 web calls at once against a limit of 5: the reservation lets exactly 5 through.
async fn a_burst_cannot_pass_the_call_limit(backend: Backend) {
    let Some(server) =
        TestServer::start_with(backend, |c| c.max_concurrent_calls_per_owner = 5).await
    else {
        return;
    };
    let assistant_id = assistant(&server).await;
    let body = json!({"assistant_id": assistant_id});
    let replies = futures_util::future::join_all(
        (0..50).map(|_| server.post("/web-call/create", body.clone())),
    )
    .await;
    let statuses: Vec<u16> = replies.iter().map(|(s, _)| s.as_u16()).collect();
    let created = replies.iter().filter(|(s, _)| *s == StatusCode::OK).count();
    let refused: Vec<_> = replies
        .iter()
        .filter(|(s, _)| *s == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(created, 5, "{statuses:?}");
    assert_eq!(refused.len(), 45, "{statuses:?}");
    for (_, reply) in refused {
        assert_eq!(reply["success"], false, "{reply}");
        assert!(
            reply["message"].as_str().unwrap().contains("5 calls"),
            "{reply}"
        );
    }
    let owner = server
        .store
        .owner_by_key(&server.key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.store.count_active_calls(&owner.id).await.unwrap(), 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_cannot_pass_the_call_limit_sqlite() {
    a_burst_cannot_pass_the_call_limit(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_cannot_pass_the_call_limit_postgres() {
    a_burst_cannot_pass_the_call_limit(Backend::Postgres).await;
}

/// A receiver that answers after `delay` (so deliveries overlap in time, or are in flight when a
/// node dies) and counts each delivery id.
pub async fn counting_receiver(delay: Duration) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let counts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let sink = counts.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap| {
            let sink = sink.clone();
            async move {
                tokio::time::sleep(delay).await;
                let id = headers["x-voxbridge-delivery"].to_str().unwrap().to_owned();
                *sink.lock().unwrap().entry(id).or_default() += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, counts)
}

/// Writes an ended call that deliveries can belong to.
async fn ended_call(server: &TestServer, assistant_id: &str, id: &str) {
    let owner = server
        .store
        .owner_by_key(&server.key)
        .await
        .unwrap()
        .unwrap();
    server
        .store
        .insert_call(&NewCall {
            id: id.into(),
            owner_id: owner.id,
            assistant_id: assistant_id.into(),
            trunk_id: None,
            direction: Direction::Web,
            from_number: None,
            to_number: None,
            status: CallStatus::Completed,
            provider_call_sid: None,
            metadata: json!({}),
            rendered_prompt: "p".into(),
            rendered_start_instruction: None,
            rendered_voicemail_message: None,
            missing_variables: vec![],
            stream_token_hash: None,
            stream_token_expires_at: None,
        })
        .await
        .unwrap();
}

fn timestamp_in(offset: Duration) -> String {
    format_timestamp(time::OffsetDateTime::now_utc() + offset)
}

/// Queues 20 reports due at one instant a little ahead, so every worker finds them due in the
/// same poll, and checks that each went out exactly once.
async fn twenty_reports_go_out_once(server: &TestServer) {
    let assistant_id = assistant(server).await;
    let (url, counts) = counting_receiver(Duration::from_millis(300)).await;
    let due = timestamp_in(Duration::from_millis(1_200));
    let mut ids = Vec::new();
    for i in 0..20 {
        let call_id = format!("call-{i}");
        ended_call(server, &assistant_id, &call_id).await;
        let id = uuid::Uuid::now_v7().to_string();
        let payload = json!({"event": "call.ended", "call_id": call_id}).to_string();
        server
            .store
            .enqueue_webhook_at(&id, &call_id, &url, &payload, &due)
            .await
            .unwrap();
        ids.push((id, call_id));
    }
    for _ in 0..200 {
        if counts.lock().unwrap().len() == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for a second worker's poll to send anything again.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), ids.len(), "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
    for (id, call_id) in &ids {
        let state = server.store.call_webhooks(call_id).await.unwrap();
        assert_eq!(state[0].id, *id);
        assert_eq!(state[0].status, "delivered", "{state:?}");
        assert_eq!(state[0].attempts, 1, "{state:?}");
    }
}

/// Two server processes on one PostgreSQL schema, each with its outbox worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_deliver_each_report_once_postgres() {
    let Some(first) =
        TestServer::start_with(Backend::Postgres, |c| c.egress.allow_loopback = true).await
    else {
        return;
    };
    let second = first.start_beside(|c| c.egress.allow_loopback = true).await;
    twenty_reports_go_out_once(&first).await;
    second.stop().await;
    first.stop().await;
}

/// SQLite is one node, but its claims still keep two workers of that node apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_deliver_each_report_once_sqlite() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.egress.allow_loopback = true)
        .await
        .unwrap();
    let egress = EgressClient::new(AddressPolicy {
        allow_loopback: true,
        allow_private: false,
    })
    .unwrap();
    let extra = Webhooks::new(server.store.clone(), WebhookSettings::default(), egress)
        .await
        .unwrap();
    let worker = extra.spawn_worker();
    twenty_reports_go_out_once(&server).await;
    worker.abort();
    server.stop().await;
}

/// A delivery claimed by a process that then died is left alone while the lease lasts, then
/// taken over and delivered once by the live server.
async fn an_abandoned_claim_is_taken_over_after_its_lease(backend: Backend) {
    let Some(server) = TestServer::start_with(backend, |c| c.egress.allow_loopback = true).await
    else {
        return;
    };
    let assistant_id = assistant(&server).await;
    ended_call(&server, &assistant_id, "call-abandoned").await;
    let (url, counts) = counting_receiver(Duration::from_millis(300)).await;
    let id = uuid::Uuid::now_v7().to_string();
    let payload = json!({"event": "call.ended", "call_id": "call-abandoned"}).to_string();
    // Due a little ahead, so the live worker cannot claim it before the dead one does.
    let due = timestamp_in(Duration::from_millis(500));
    server
        .store
        .enqueue_webhook_at(&id, "call-abandoned", &url, &payload, &due)
        .await
        .unwrap();
    let claimed = server
        .store
        .claim_due_webhooks(
            &due,
            &timestamp_in(Duration::from_millis(2_000)),
            "dead-node",
            10,
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // A claimed delivery is going out: a held report cannot be swapped under it.
    assert!(
        !server
            .store
            .release_held_webhook(&id, &payload)
            .await
            .unwrap()
    );

    tokio::time::sleep(Duration::from_millis(1_600)).await;
    assert!(counts.lock().unwrap().is_empty(), "sent under a live lease");
    for _ in 0..100 {
        if !counts.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(counts.lock().unwrap().get(&id), Some(&1));
    let state = server.store.call_webhooks("call-abandoned").await.unwrap();
    assert_eq!(state[0].status, "delivered", "{state:?}");
    assert_eq!(state[0].attempts, 1, "{state:?}");
    // The dead node's late outcome cannot overwrite the new holder's.
    assert!(
        !server
            .store
            .webhook_attempt_failed(&id, "dead-node", "late", None)
            .await
            .unwrap()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_claim_is_taken_over_after_its_lease_sqlite() {
    an_abandoned_claim_is_taken_over_after_its_lease(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_claim_is_taken_over_after_its_lease_postgres() {
    an_abandoned_claim_is_taken_over_after_its_lease(Backend::Postgres).await;
}

/// A configuration of a server on `database_url`, on a free port.
fn config_on(database_url: &str) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        recordings_dir: std::env::temp_dir()
            .join(format!("voxbridge-recordings-{}", uuid::Uuid::new_v4()))
            .display()
            .to_string(),
        ..Config::default()
    }
}

/// SQLite is one node: a second server on the same file is refused while the first lives, and
/// starts once the first has stopped.
#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    let first = TestServer::start(Backend::Sqlite).await.unwrap();
    let url = first.database_url.clone();
    let refused = Server::bind(config_on(&url))
        .await
        .err()
        .expect("a second server on the file is refused");
    let message = refused.to_string();
    assert!(
        message.contains("is already in use by another voxbridge server")
            && message.contains(".lock")
            && message.contains("PostgreSQL"),
        "{message}"
    );
    first.stop().await;
    let second = Server::bind(config_on(&url))
        .await
        .expect("the file is free once the first server stopped");
    drop(second);
    let path = url.trim_start_matches("sqlite:");
    for suffix in ["", "-wal", "-shm", ".lock"] {
        let _ = std::fs::remove_file(format!("{path}{suffix}"));
    }
}
