//! Test harness: a real voxbridge server on a loopback port, on SQLite or on PostgreSQL (each
//! test in its own schema), plus a small JSON client.

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use voxbridge::config::Config;
use voxbridge::server::Server;
use voxbridge::store::Store;

/// The PostgreSQL the machine provides (trust auth); `TEST_POSTGRES_URL` points elsewhere.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and an API key of a first owner.
pub struct TestServer {
    pub base: String,
    pub key: String,
    pub store: Store,
    /// The database URL it runs on (a second server can share it: [`TestServer::start_beside`]).
    pub database_url: String,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    cleanup: Cleanup,
    /// The process id of a server run as a child process ([`TestServer::spawn_beside`]).
    pid: Option<u32>,
}

enum Cleanup {
    SqliteFile(std::path::PathBuf),
    PostgresSchema(String),
    /// A second server on another's database: the first one removes it.
    Shared,
}

impl TestServer {
    /// Starts a server on `backend`, or answers `None` (having said why) when PostgreSQL is not
    /// reachable outside CI. In CI an unreachable PostgreSQL fails the test.
    pub async fn start(backend: Backend) -> Option<Self> {
        Self::start_with(backend, |_| {}).await
    }

    /// Like [`start`](Self::start), with a chance to adjust the configuration.
    pub async fn start_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<Self> {
        let mut config = test_config("");
        let cleanup = match backend {
            Backend::Sqlite => {
                let path = std::env::temp_dir()
                    .join(format!("voxbridge-test-{}.db", uuid::Uuid::new_v4()));
                config.database_url = format!("sqlite:{}", path.display());
                Cleanup::SqliteFile(path)
            }
            Backend::Postgres => {
                let schema = create_postgres_schema().await?;
                config.database_url = format!(
                    "{}?options=-c%20search_path%3D{schema}",
                    postgres_admin_url()
                );
                Cleanup::PostgresSchema(schema)
            }
        };
        adjust(&mut config);
        Some(Self::serve(config, cleanup).await)
    }

    /// Another server process (a second node) on this server's database, configured as
    /// `adjust` says; stopping it leaves the database to this one.
    pub async fn start_beside(&self, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = test_config(&self.database_url);
        adjust(&mut config);
        Self::serve(config, Cleanup::Shared).await
    }

    /// Stops this server and starts another on its database, configured as `adjust` says (a
    /// restart: on SQLite the two cannot run at once).
    pub async fn restart_with(mut self, adjust: impl FnOnce(&mut Config)) -> Self {
        let cleanup = std::mem::replace(&mut self.cleanup, Cleanup::Shared);
        let mut config = test_config(&self.database_url);
        adjust(&mut config);
        self.stop().await;
        Self::serve(config, cleanup).await
    }

    async fn serve(config: Config, cleanup: Cleanup) -> Self {
        let database_url = config.database_url.clone();
        let server = Server::bind(config).await.expect("server starts");
        let base = format!("http://{}", server.local_addr());
        let store = server.store().clone();
        let key = store
            .create_api_key("owner@example.com")
            .await
            .expect("key")
            .plaintext;
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            server
                .run_until(async {
                    let _ = rx.await;
                })
                .await
                .expect("server runs");
        });
        Self {
            base,
            key,
            store,
            database_url,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            cleanup,
            pid: None,
        }
    }

    /// Another node as a real `voxbridge serve` process on this server's database (so it can be
    /// killed outright), its providers the fakes at `sim_url`, configured by `env`
    /// (`VOXBRIDGE_*` variables) on top of the test defaults. Stopping it sends SIGTERM.
    pub async fn spawn_beside(&self, sim_url: &str, env: &[(&str, &str)]) -> Self {
        use std::io::BufRead;
        let recordings = std::env::temp_dir()
            .join(format!("voxbridge-recordings-{}", uuid::Uuid::new_v4()))
            .display()
            .to_string();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_voxbridge"))
            .args(["serve", "--sim-url", sim_url])
            .env("VOXBRIDGE_DATABASE_URL", &self.database_url)
            .env("VOXBRIDGE_BIND", "127.0.0.1:0")
            .env("VOXBRIDGE_DATABASE_MAX_CONNECTIONS", "4")
            .env("VOXBRIDGE_DRAIN_TIMEOUT_SECS", "0")
            .env("VOXBRIDGE_RECORDINGS_DIR", recordings)
            .env("VOXBRIDGE_LOG_LEVEL", "warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("voxbridge serve starts");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let (address_tx, address_rx) = oneshot::channel();
        // Reads the address it prints, then keeps its stdout drained so it never blocks.
        std::thread::spawn(move || {
            let mut address_tx = Some(address_tx);
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(base) = line.strip_prefix("voxbridge listening on ")
                    && let Some(tx) = address_tx.take()
                {
                    let _ = tx.send(base.trim().to_owned());
                }
            }
        });
        let base = tokio::time::timeout(std::time::Duration::from_secs(30), address_rx)
            .await
            .expect("the process prints its address in time")
            .expect("the process prints its address before exiting");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = rx.await;
            signal(pid, "-TERM");
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        });
        Self {
            base,
            key: self.key.clone(),
            store: self.store.clone(),
            database_url: self.database_url.clone(),
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
            cleanup: Cleanup::Shared,
            pid: Some(pid),
        }
    }

    /// Makes `other` the server whose stop removes the database, so this one can stop first (a
    /// node replaced in a rolling restart).
    pub fn hand_database_to(&mut self, other: &mut TestServer) {
        std::mem::swap(&mut self.cleanup, &mut other.cleanup);
    }

    /// Kills a server process with SIGKILL: nothing of it runs after this, no drain, no clean-up.
    pub fn kill(&self) {
        signal(self.pid.expect("only a process can be killed"), "-KILL");
    }

    /// A key of another owner.
    pub async fn key_for(&self, email: &str) -> String {
        self.store
            .create_api_key(email)
            .await
            .expect("key")
            .plaintext
    }

    /// Sends a request with `key` as Bearer (if any) and a JSON body (if any).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request is answered");
        Self::read(response).await
    }

    /// Sends a raw body with a given content type.
    pub async fn call_raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request is answered");
        Self::read(response).await
    }

    async fn read(response: reqwest::Response) -> (StatusCode, Value) {
        let status = response.status();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {text}"));
        (status, json)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, Some(&self.key), None).await
    }

    /// `data` of `/call/details/{call_id}` once the call has ended (polls; a test's timeout bounds
    /// the wait).
    pub async fn ended_call_details(&self, call_id: &str) -> Value {
        loop {
            let (_, details) = self.get(&format!("/call/details/{call_id}")).await;
            if details["data"]["ended_at"].is_string() {
                return details["data"].clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(&self.key), Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PATCH, path, Some(&self.key), Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, Some(&self.key), None).await
    }

    /// Signals shutdown (as SIGTERM would) without waiting for the server to stop: it drains.
    /// Answers once `/readyz` says so (a 503), as a load balancer would see it.
    pub async fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for _ in 0..50 {
            if self.get("/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("/readyz still answers ready while the server drains");
    }

    /// Stops the server and removes its database.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        match &self.cleanup {
            Cleanup::SqliteFile(path) => {
                for suffix in ["", "-wal", "-shm", ".lock"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::PostgresSchema(schema) => {
                if let Ok(pool) = admin_pool().await {
                    let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await;
                }
            }
            Cleanup::Shared => {}
        }
    }
}

/// A test server's configuration on `database_url`: any free port, a small pool, its own
/// recordings folder, and no drain (tests stop servers with calls still up; they end at once
/// unless a test drains).
fn test_config(database_url: &str) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        database_max_connections: 4,
        drain_timeout_secs: 0,
        recordings_dir: std::env::temp_dir()
            .join(format!("voxbridge-recordings-{}", uuid::Uuid::new_v4()))
            .display()
            .to_string(),
        ..Config::default()
    }
}

/// Sends a signal with `kill(1)` (the test crate has no libc of its own).
fn signal(pid: u32, signal: &str) {
    let _ = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status();
}

async fn admin_pool() -> Result<sqlx::AnyPool, sqlx::Error> {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&postgres_admin_url())
        .await
}

async fn create_postgres_schema() -> Option<String> {
    let pool = match admin_pool().await {
        Ok(pool) => pool,
        Err(e) => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "PostgreSQL at {} is required in CI: {e}",
                    postgres_admin_url()
                );
            }
            println!(
                "SKIPPED: PostgreSQL at {} is not reachable ({e}); with CI set this fails",
                postgres_admin_url()
            );
            return None;
        }
    };
    let schema = format!("vb_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .expect("schema created");
    Some(schema)
}

/// Generates, for each named `async fn(TestServer)`, a test on SQLite and one on PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use $crate::common::{Backend, TestServer};

                #[tokio::test]
                async fn sqlite() {
                    let server = TestServer::start(Backend::Sqlite).await.expect("sqlite always runs");
                    super::$name(&server).await;
                    server.stop().await;
                }

                #[tokio::test]
                async fn postgres() {
                    if let Some(server) = TestServer::start(Backend::Postgres).await {
                        super::$name(&server).await;
                        server.stop().await;
                    }
                }
            }
        )*
    };
}
