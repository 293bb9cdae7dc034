//! The HTTP server: opens the store (migrating it), binds the listener, serves the router under
//! the connection limits of [`connections`] and shuts down gracefully, letting in-flight
//! requests finish, on SIGINT or SIGTERM.

pub(crate) mod connections;
mod sqlite_lock;

pub use sqlite_lock::{SqliteLock, SqliteLockError};

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::api::{self, AppState};
use crate::call::{CallServices, LiveCalls};
use crate::cluster::{Node, Relay};
use crate::config::Config;
use crate::egress::EgressClient;
use crate::store::{Backend, Store, StoreError};
use crate::webhook::Webhooks;

/// How long shutdown waits for live calls to end.
const CALL_DRAIN: Duration = Duration::from_secs(10);
/// How long shutdown then waits for requests in flight and sockets still open.
const REQUEST_DRAIN: Duration = Duration::from_secs(10);

/// The server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    SqliteInUse(#[from] SqliteLockError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(#[from] std::io::Error),
}

/// A server with its store open and its port bound, ready to serve.
pub struct Server {
    listener: TcpListener,
    state: AppState,
    /// Held while the server lives (SQLite files only): one server per database file.
    sqlite_lock: Option<SqliteLock>,
    /// This node's subscription to controls relayed by other nodes (PostgreSQL only).
    relay_listener: Option<PgListener>,
}

impl Server {
    /// Opens (and migrates) the database and binds the configured address.
    pub async fn bind(config: Config) -> Result<Self, ServerError> {
        crate::metrics::install();
        // Before the database is even opened, so a refused second server does not migrate it.
        let sqlite_lock = SqliteLock::acquire(&config.database_url)?;
        let store = Store::connect(&config.database_url, config.database_max_connections).await?;
        store.migrate().await?;
        let listener =
            TcpListener::bind(config.bind)
                .await
                .map_err(|source| ServerError::Bind {
                    addr: config.bind,
                    source,
                })?;
        let mut config = config;
        if config.public_url.is_empty() {
            // Unset: providers reach us where we listen (with the real port when it was 0).
            let addr = listener.local_addr().map_err(ServerError::Serve)?;
            config.public_url = format!("http://{addr}");
        }
        let config = Arc::new(config);
        let http = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        let egress = EgressClient::new(config.egress_policy())
            .map_err(|e| ServerError::Serve(std::io::Error::other(e)))?;
        let node_id = Node::new_id();
        // Registered before any call can be held by it: a call marked with a node that has no
        // row yet would look orphaned to the other nodes' sweeps.
        store
            .node_heartbeat(&node_id, &config.public_base_url())
            .await?;
        let (relay, relay_listener) = match store.backend() {
            Backend::Postgres => {
                let (relay, listener) = Relay::listen(
                    &config.database_url,
                    Arc::clone(&node_id),
                    store.clone(),
                    config.cluster.relay_timeout(),
                )
                .await?;
                (Some(relay), Some(listener))
            }
            Backend::Sqlite => (None, None),
        };
        let calls = CallServices {
            store: store.clone(),
            config: Arc::clone(&config),
            webhooks: Webhooks::new(store.clone(), config.webhook.clone(), egress.clone())
                .await?
                .on_node(Arc::clone(&node_id)),
            mcp: crate::mcp::McpConnector::new(egress.clone()),
            egress,
            live: LiveCalls::default(),
            http: http.clone(),
            recordings: crate::recording::Recordings::new(
                &config.recordings_dir,
                config.recording_retention_days,
            ),
            node: Node { id: node_id, relay },
        };
        let state = AppState {
            telephony: crate::telephony::Telephony::new(http, &config),
            store,
            config,
            calls,
        };
        Ok(Self {
            listener,
            state,
            sqlite_lock,
            relay_listener,
        })
    }

    /// The bound address (useful when the configured port was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// What live calls share (for tests and the load generator).
    pub fn call_services(&self) -> &CallServices {
        &self.state.calls
    }

    /// Serves until `shutdown` completes, then tells live calls to end, drains in-flight
    /// requests and closes the store. Pending webhooks stay in the outbox for the next start.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let store = self.state.store.clone();
        let live = self.state.calls.live.clone();
        let webhooks = self.state.calls.webhooks.clone();
        let worker = webhooks.spawn_worker();
        let chat_sweeper = crate::chat::spawn_idle_sweeper(self.state.calls.clone());
        let recording_sweeper = self.state.calls.recordings.clone().spawn_sweeper();
        let node = self.state.calls.node.clone();
        let liveness = crate::cluster::spawn_liveness(self.state.calls.clone());
        let relay = match (&node.relay, self.relay_listener) {
            (Some(relay), Some(listener)) => Some(relay.spawn(listener, live.clone())),
            _ => None,
        };
        let limits = self.state.config.http;
        let drain = Duration::from_secs(self.state.config.drain_timeout_secs);
        let app = api::router(self.state).layer(TraceLayer::new_for_http());
        let shutdown = async move {
            shutdown.await;
            // New calls go elsewhere now; live ones get the drain timeout to finish on their
            // own before they are ended politely.
            live.start_draining();
            tracing::info!(live = live.len(), drain_secs = drain.as_secs(), "draining");
            let deadline = tokio::time::Instant::now() + drain;
            while !live.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            live.shutdown_all();
            // Ended calls close their sockets; only then can the server stop.
            let deadline = tokio::time::Instant::now() + CALL_DRAIN;
            while !live.is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        connections::serve(self.listener, app, limits, shutdown, REQUEST_DRAIN).await;
        // Attempts in flight finish (their outcome stored) rather than being cut off and sent
        // again by another process; one that outlasts its timeout is cut off after all.
        webhooks.stop_claiming();
        let mut worker = worker;
        let grace = webhooks.attempt_timeout() + Duration::from_secs(1);
        if tokio::time::timeout(grace, &mut worker).await.is_err() {
            worker.abort();
            let _ = worker.await;
        }
        // An attempt cut off here may or may not have reached its receiver; handing the claim
        // back lets another process (or the next start) send it again at once, which the
        // delivery id lets receivers deduplicate.
        if let Err(e) = webhooks.release_claims().await {
            tracing::warn!(error = %e, "webhook claims not released; they wait for their lease");
        }
        chat_sweeper.abort();
        if let Some(sweeper) = recording_sweeper {
            sweeper.abort();
        }
        if let Some(relay) = relay {
            relay.abort();
        }
        liveness.abort();
        let _ = liveness.await;
        // Calls that outlived the drain are still marked as this node's: with the row gone, the
        // next node to sweep (or this server's next start, on SQLite) ends them as lost.
        if let Err(e) = store.remove_node(&node.id).await {
            tracing::warn!(error = %e, "node row not removed; others will find it lost");
        }
        store.close().await;
        // Only now may another server open the file: this one has let go of it.
        drop(self.sqlite_lock);
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing in-flight requests");
}
