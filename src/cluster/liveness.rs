//! The node's heartbeat, and the sweep that ends the calls of nodes that stopped heartbeating
//! (killed, frozen, cut off from the database). A survivor ends each such call as `server_lost`
//! with the transcript the lost node stored turn by turn, queues its end-of-call report, and
//! hands the lost node's webhook claims back so their deliveries go out without waiting for
//! their leases.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::call::CallServices;
use crate::store::{Backend, format_timestamp};

/// The end reason of a call whose node was lost.
pub const SERVER_LOST: &str = "server_lost";

/// Heartbeats every `cluster.heartbeat_ms` and sweeps lost nodes after each beat (PostgreSQL);
/// on SQLite, registers once and ends what a crashed predecessor left running.
pub fn spawn_liveness(services: CallServices) -> JoinHandle<()> {
    tokio::spawn(async move {
        let settings = services.config.cluster;
        let mut ticks = tokio::time::interval(settings.heartbeat());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let address = services.config.public_base_url();
        let beat = || services.store.node_heartbeat(&services.node.id, &address);
        if services.store.backend() == Backend::Sqlite {
            // A SQLite file has one node at a time (its lock says so): whatever an earlier
            // process left marked as running is lost the moment this one starts, and there is
            // nobody to beat for afterwards (no write every few seconds on the embedded store).
            match beat().await {
                Ok(()) => sweep(&services, Duration::ZERO).await,
                Err(e) => tracing::warn!(error = %e, "node not registered"),
            }
            return;
        }
        loop {
            ticks.tick().await;
            if let Err(e) = beat().await {
                tracing::warn!(error = %e, "heartbeat not written");
                continue;
            }
            sweep(&services, settings.node_timeout()).await;
        }
    })
}

/// Ends the calls of nodes silent for longer than `timeout`, releases their webhook claims and
/// forgets them.
async fn sweep(services: &CallServices, timeout: Duration) {
    let store = &services.store;
    let node = &*services.node.id;
    let cutoff = format_timestamp(time::OffsetDateTime::now_utc() - timeout);
    let stale = match store.stale_nodes(node, &cutoff).await {
        Ok(stale) => stale,
        Err(e) => {
            tracing::warn!(error = %e, "nodes not read");
            return;
        }
    };
    for lost in &stale {
        tracing::warn!(
            node = lost,
            "node lost: taking over its calls and deliveries"
        );
        metrics::counter!(crate::metrics::NODES_LOST).increment(1);
        if let Err(e) = store.release_webhook_claims(lost).await {
            tracing::warn!(node = lost, error = %e, "webhook claims not released");
        }
    }
    let orphans = match store.orphaned_calls(node, &cutoff).await {
        Ok(orphans) => orphans,
        Err(e) => {
            tracing::warn!(error = %e, "orphaned calls not read");
            return;
        }
    };
    for orphan in orphans {
        match store.end_orphaned_call(&orphan, SERVER_LOST).await {
            Ok(true) => {
                tracing::warn!(
                    call_id = orphan.call_id,
                    node = orphan.node_id,
                    "call lost with its node"
                );
                metrics::counter!(crate::metrics::CALLS_ENDED, "reason" => SERVER_LOST)
                    .increment(1);
                crate::call::report::queue_report(services, &orphan.call_id).await;
            }
            // Another survivor, or the session itself, ended it first.
            Ok(false) => {}
            Err(e) => tracing::warn!(call_id = orphan.call_id, error = %e, "lost call not ended"),
        }
    }
    for lost in &stale {
        if let Err(e) = store.forget_node(lost, &cutoff).await {
            tracing::warn!(node = lost, error = %e, "lost node not forgotten");
        }
    }
}
