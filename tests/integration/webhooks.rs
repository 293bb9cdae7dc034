//! The webhook outbox survives restarts: what was pending is delivered by the next worker.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use serde_json::json;
use voxbridge::egress::{AddressPolicy, EgressClient};
use voxbridge::store::{CallStatus, Direction, NewCall};
use voxbridge::webhook::{WebhookSettings, Webhooks, verify};

use crate::common::TestServer;
use crate::on_both_backends;

on_both_backends!(pending_deliveries_resume_after_a_restart);

async fn pending_deliveries_resume_after_a_restart(s: &TestServer) {
    let (_, reply) = s
        .post(
            "/assistant/create",
            json!({"assistant_name": "A", "assistant_description": "d", "assistant_prompt": "p",
                   "assistant_tts_model": "sarvam", "assistant_tts_config": {"speaker": "meera"}}),
        )
        .await;
    let assistant_id = reply["data"]["assistant_id"].as_str().unwrap().to_owned();
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    s.store
        .insert_call(&NewCall {
            id: "call-restart".into(),
            owner_id: owner.id,
            assistant_id,
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

    // The receiver is down: reserve a port, then free it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/hook");
    let settings = WebhookSettings {
        retry_base_ms: 50,
        retry_max_ms: 200,
        ..Default::default()
    };
    let egress = EgressClient::new(AddressPolicy {
        allow_loopback: true,
        allow_private: false,
    })
    .unwrap();
    let first = Webhooks::new(s.store.clone(), settings.clone(), egress.clone())
        .await
        .unwrap();
    first
        .enqueue(
            "call-restart",
            &url,
            &json!({"event": "call.ended", "call_id": "call-restart"}),
        )
        .await
        .unwrap();
    let worker = first.spawn_worker();
    tokio::time::sleep(Duration::from_millis(400)).await;
    // A server stopping hands back what its worker held, as `Server::run_until` does.
    worker.abort();
    let _ = worker.await;
    first.release_claims().await.unwrap();
    let state = s.store.call_webhooks("call-restart").await.unwrap();
    assert_eq!(state[0].status, "pending");
    assert!(
        state[0].attempts >= 1,
        "attempted while the receiver was down"
    );

    // The receiver comes up; a new worker (a restarted server) delivers what was pending.
    let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let second = Webhooks::new(s.store.clone(), settings, egress)
        .await
        .unwrap();
    assert_eq!(
        second.secret(),
        first.secret(),
        "the generated secret is kept"
    );
    let worker = second.spawn_worker();
    for _ in 0..100 {
        if !received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    worker.abort();
    let received = received.lock().unwrap().clone();
    assert_eq!(received.len(), 1, "delivered exactly once");
    let signature = received[0].0["x-voxbridge-signature"].to_str().unwrap();
    assert!(verify(second.secret(), signature, received[0].1.as_bytes()));
    let state = s.store.call_webhooks("call-restart").await.unwrap();
    assert_eq!(state[0].status, "delivered");
}
