//! Calls across several server processes on one PostgreSQL database (issue 20): a hang-up sent
//! to any node reaches the node holding the call; a node killed outright leaves its call to a
//! survivor, which ends and reports it; webhooks go out once each while a node dies mid-run; and
//! a rolling restart of two nodes under calls loses none of them.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::config::Config;

use crate::call_lab::{CallLab, LabOptions};
use crate::common::{Backend, TestServer};
use crate::web_client::{hang_up, live_call, press, read_until};

/// Nodes that notice a lost peer within about a second, and give up on a silent one in two.
fn quick_cluster(config: &mut Config) {
    config.cluster.heartbeat_ms = 100;
    config.cluster.node_timeout_ms = 1_000;
    config.cluster.relay_timeout_ms = 2_000;
}

/// [`quick_cluster`] and the lab's own settings, for a node run as a process.
const QUICK_CLUSTER_ENV: [(&str, &str); 5] = [
    ("VOXBRIDGE_CLUSTER__HEARTBEAT_MS", "100"),
    ("VOXBRIDGE_CLUSTER__NODE_TIMEOUT_MS", "1000"),
    ("VOXBRIDGE_CLUSTER__RELAY_TIMEOUT_MS", "2000"),
    ("VOXBRIDGE_EGRESS__ALLOW_LOOPBACK", "true"),
    ("VOXBRIDGE_WEBHOOK__RETRY_BASE_MS", "100"),
];

/// A call lab on PostgreSQL whose server is a node of a quick cluster; `None` outside CI when
/// PostgreSQL cannot be reached.
async fn cluster_lab(drain_timeout_secs: u64) -> Option<CallLab> {
    CallLab::try_start(LabOptions {
        backend: Backend::Postgres,
        configure: Box::new(move |c| {
            quick_cluster(c);
            c.drain_timeout_secs = drain_timeout_secs;
        }),
        ..LabOptions::default()
    })
    .await
}

/// Another in-process node beside the lab's server, on the same fakes.
async fn node_beside(lab: &CallLab, drain_timeout_secs: u64) -> TestServer {
    lab.server
        .start_beside(|c| {
            lab.sim.configure(c, true);
            c.egress.allow_loopback = true;
            c.webhook.retry_base_ms = 100;
            c.drain_timeout_secs = drain_timeout_secs;
            quick_cluster(c);
        })
        .await
}

/// The end-of-call reports the lab's receiver got for `call_id`.
fn reports_of(lab: &CallLab, call_id: &str) -> Vec<Value> {
    lab.webhooks
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|(_, body)| serde_json::from_str::<Value>(body).unwrap())
        .filter(|report| report["call_id"] == call_id)
        .collect()
}

/// Waits until the lab's receiver has `n` reports for `call_id`, then a little longer, so a
/// second one would have arrived; answers them.
async fn settled_reports(lab: &CallLab, call_id: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        if reports_of(lab, call_id).len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    reports_of(lab, call_id)
}

/// `POST /call/hangup` on a node that does not hold the web call is relayed to the node that
/// does, and answered once that node has told the call; a call held by a node that does not
/// answer gets a 504 after the relay timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hang_up_sent_to_any_node_reaches_the_call() {
    let Some(lab) = cluster_lab(0).await else {
        return;
    };
    let other = node_beside(&lab, 0).await;
    let (data, mut stream, mic, mut seen) = live_call(&lab.server, &lab.assistant_id).await;
    let call_id = data["call_id"].as_str().unwrap().to_owned();

    let (status, reply) = other
        .post(&format!("/call/hangup/{call_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;
    assert_eq!(seen.end.as_deref(), Some("hung_up_by_api"), "{seen:?}");
    let details = other.ended_call_details(&call_id).await;
    assert_eq!(details["end_reason"], "hung_up_by_api", "{details}");
    assert_eq!(settled_reports(&lab, &call_id, 1).await.len(), 1);

    // A call its node never answers for: the node is named, but nobody listens.
    let (status, reply) = other
        .post(
            "/web-call/create",
            json!({"assistant_id": lab.assistant_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let stuck = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let store = &lab.server.store;
    store.node_heartbeat("silentnode", "nowhere").await.unwrap();
    store.hold_call(&stuck, "silentnode").await.unwrap();
    let (status, reply) = other
        .post(&format!("/call/hangup/{stuck}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{reply}");
    assert_eq!(reply["success"], false, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .contains("did not answer"),
        "{reply}"
    );

    other.stop().await;
    lab.stop().await;
}

/// A node killed with SIGKILL mid-call: a survivor finds it lost, ends its call as
/// `server_lost` with the transcript stored so far, and sends the call's report once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_node_leaves_its_call_ended_and_reported_by_a_survivor() {
    let Some(lab) = cluster_lab(0).await else {
        return;
    };
    let doomed = lab
        .server
        .spawn_beside(&lab.sim.base_url, &QUICK_CLUSTER_ENV)
        .await;
    let (data, mut stream, mic, mut seen) = live_call(&doomed, &lab.assistant_id).await;
    let call_id = data["call_id"].as_str().unwrap().to_owned();
    // The greeting is stored before the node dies (turns are written as they end).
    for _ in 0..100 {
        let (_, details) = lab.server.get(&format!("/call/details/{call_id}")).await;
        if details["data"]["transcript"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    doomed.kill();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(10), |s| {
        s.close.is_some()
    })
    .await;
    let details = lab.server.ended_call_details(&call_id).await;
    assert_eq!(details["end_reason"], "server_lost", "{details}");
    assert_eq!(details["status"], "completed", "{details}");
    assert_eq!(
        details["transcript"][0]["text"],
        crate::call_lab::GREETING,
        "{details}"
    );
    let reports = settled_reports(&lab, &call_id, 1).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert_eq!(reports[0]["end_reason"], "server_lost");
    assert_eq!(
        reports[0]["transcript"][0]["text"],
        crate::call_lab::GREETING
    );

    doomed.stop().await;
    lab.stop().await;
}

/// Three nodes share an outbox of 60 reports and one of them is killed while it delivers:
/// every report arrives, each once, except at most the few the dead node had in flight (a
/// delivery whose receiver answered just as its sender died goes out again: at least once,
/// with the delivery id to deduplicate on), and no delivery stays claimed by the dead node.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhooks_go_out_once_each_while_a_node_is_killed() {
    let Some(lab) = cluster_lab(0).await else {
        return;
    };
    let second = node_beside(&lab, 0).await;
    let doomed = lab
        .server
        .spawn_beside(&lab.sim.base_url, &QUICK_CLUSTER_ENV)
        .await;
    let (url, counts) = crate::multinode::counting_receiver(Duration::from_millis(200)).await;
    let mut ids = Vec::new();
    for _ in 0..60 {
        let (status, reply) = lab
            .server
            .post(
                "/web-call/create",
                json!({"assistant_id": lab.assistant_id}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
        let id = uuid::Uuid::now_v7().to_string();
        let payload = json!({"event": "call.ended", "call_id": call_id}).to_string();
        let due = voxbridge::store::now_timestamp();
        lab.server
            .store
            .enqueue_webhook_at(&id, &call_id, &url, &payload, &due)
            .await
            .unwrap();
        ids.push(id);
    }
    // Kill it while deliveries are going out.
    for _ in 0..200 {
        if counts.lock().unwrap().len() >= 10 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    doomed.kill();
    for _ in 0..300 {
        if counts.lock().unwrap().len() == ids.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let counts = counts.lock().unwrap().clone();
    assert_eq!(counts.len(), ids.len(), "every report arrives: {counts:?}");
    let twice: Vec<_> = counts.values().filter(|&&n| n > 1).collect();
    // A node sends at most 8 deliveries at once; only those can have been in flight.
    assert!(twice.len() <= 8, "{counts:?}");
    assert!(counts.values().all(|&n| n <= 2), "{counts:?}");
    doomed.stop().await;
    second.stop().await;
    lab.stop().await;
}

/// A rolling restart of two nodes while calls are up: each node in turn is told to stop
/// (SIGTERM), refuses new calls (which the "load balancer" — here the test — sends to the other
/// node), lets its live calls finish, and stops; a fresh node takes its place. No call is cut:
/// every one ends as its caller hung up, and is reported once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_two_nodes_loses_no_call() {
    let Some(mut lab) = cluster_lab(30).await else {
        return;
    };
    let mut second = node_beside(&lab, 30).await;
    let mut calls = Vec::new();

    // A call on each node.
    let on_first = live_call(&lab.server, &lab.assistant_id).await;
    let on_second = live_call(&second, &lab.assistant_id).await;

    // The first node drains: a new call goes to the second.
    lab.server.begin_shutdown().await;
    let (status, _) = lab
        .server
        .post(
            "/web-call/create",
            json!({"assistant_id": lab.assistant_id}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let moved = live_call(&second, &lab.assistant_id).await;
    // Its call talks on and ends as its caller wants; then the node stops.
    let (data, mut stream, mic, mut seen) = on_first;
    press(&mut stream, &mic, &mut seen, "1#").await;
    hang_up(&mut stream, &mic, &mut seen).await;
    calls.push((data, seen));
    // A fresh node takes the first one's place (and the duty of removing the test database).
    let mut fresh_node = node_beside(&lab, 30).await;
    lab.server.hand_database_to(&mut fresh_node);
    let first_node = std::mem::replace(&mut lab.server, fresh_node);
    tokio::time::timeout(Duration::from_secs(30), first_node.stop())
        .await
        .expect("the drained node stops once its call ended");

    // The second node drains: the fresh node takes the next call.
    second.begin_shutdown().await;
    let fresh = live_call(&lab.server, &lab.assistant_id).await;
    for (data, mut stream, mic, mut seen) in [on_second, moved] {
        press(&mut stream, &mic, &mut seen, "2#").await;
        hang_up(&mut stream, &mic, &mut seen).await;
        calls.push((data, seen));
    }
    tokio::time::timeout(Duration::from_secs(30), second.stop())
        .await
        .expect("the drained node stops once its calls ended");
    let (data, mut stream, mic, mut seen) = fresh;
    hang_up(&mut stream, &mic, &mut seen).await;
    calls.push((data, seen));

    for (data, seen) in &calls {
        let call_id = data["call_id"].as_str().unwrap();
        assert_eq!(seen.end.as_deref(), Some("caller_hung_up"), "{seen:?}");
        let details = lab.server.ended_call_details(call_id).await;
        assert_eq!(details["end_reason"], "caller_hung_up", "{details}");
        let reports = settled_reports(&lab, call_id, 1).await;
        assert_eq!(reports.len(), 1, "{call_id}: {reports:?}");
    }
    lab.stop().await;
}

/// On SQLite there is one node, but a server that crashed still leaves its calls marked as its
/// own, and its heartbeat looking fresh: the next server on the file ends them as `server_lost`
/// and reports them as it starts, without waiting for the node timeout (no other node can hold
/// the file).
#[tokio::test]
async fn a_call_left_by_a_crashed_server_is_ended_when_sqlite_restarts() {
    // Longer than the test: only the restart can find the crashed node lost.
    let slow_cluster = |c: &mut Config| {
        c.cluster.heartbeat_ms = 100;
        c.cluster.node_timeout_ms = 600_000;
    };
    let lab = CallLab::start(LabOptions {
        configure: Box::new(slow_cluster),
        ..LabOptions::default()
    })
    .await;
    let (status, reply) = lab
        .server
        .post(
            "/web-call/create",
            json!({"assistant_id": lab.assistant_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    // As a crashed server leaves it: its row just beat, and the call is marked as its own.
    let store = lab.server.store.clone();
    store.node_heartbeat("crashednode", "gone").await.unwrap();
    store.hold_call(&call_id, "crashednode").await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, details) = lab.server.get(&format!("/call/details/{call_id}")).await;
    assert!(details["data"]["end_reason"].is_null(), "{details}");

    let lab = lab.restart(slow_cluster).await;
    let details = lab.server.ended_call_details(&call_id).await;
    assert_eq!(details["end_reason"], "server_lost", "{details}");
    let reports = settled_reports(&lab, &call_id, 1).await;
    assert_eq!(reports.len(), 1, "{reports:?}");
    lab.stop().await;
}
