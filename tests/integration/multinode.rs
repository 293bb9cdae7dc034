//! Many server processes on one database (issue 20): limits that hold under a burst, webhook
//! deliveries claimed so each goes out once across nodes, and SQLite refusing a second node.

use reqwest::StatusCode;
use serde_json::json;

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
