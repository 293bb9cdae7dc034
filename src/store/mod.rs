//! Persistent storage: one connection pool over SQLite (embedded default) or PostgreSQL.
//!
//! Both backends run the same SQL through sqlx's `Any` driver, which carries only text, integers,
//! floats and bytes; so ids are UUID text, times are UTC text in the API's format, and JSON
//! documents are text. Each repository file owns the queries of one table group.

mod analyses;
mod api_keys;
mod assistants;
mod calls;
mod catalog;
mod chats;
mod clock;
mod conversations;
mod mcp_servers;
mod nodes;
mod phone_numbers;
mod provider_events;
mod sales;
mod tools;
mod trunks;
mod turn_timings;
mod v1_assistants;
mod webhook_attempts;
mod webhooks;

pub use analyses::StoredAnalysis;
pub use api_keys::{ApiKeyRow, NewApiKey, Owner};
pub use assistants::AssistantSummary;
pub use calls::{CallFilter, CallRecord, CallStatus, Direction, NewCall, TurnRecord};
pub use clock::{format_timestamp, now_timestamp};
pub use conversations::{ConversationMessage, ConversationRecord};
pub use nodes::OrphanedCall;
pub use provider_events::ProviderEvent;
pub use sales::SalesState;
pub use turn_timings::{TurnInterruption, TurnStages, TurnStamps, TurnTiming, TurnTool};
pub use v1_assistants::{GeneralAssistant, V1ListFilter};
pub use webhook_attempts::AttemptRecord;
pub use webhooks::{DeliveryState, PendingDelivery};

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

/// Which database engine sits behind the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A storage failure. Callers map it to a 500 (or to a 503 for readiness).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use sqlite:<path> or postgres://...")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("stored document is corrupt: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// True when the failure is a uniqueness violation (e.g. a tool name already in use).
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

/// The shared handle to the database. Cloning is cheap (the pool is reference-counted).
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

impl Store {
    /// Connects to `url`, creating a SQLite file if it does not exist yet.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let (backend, url) = normalise_url(url)?;
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers proceed while a call writes its transcript.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Self { pool, backend })
    }

    /// Applies every pending migration for this backend.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// Answers whether the database can run a query right now.
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Closes every connection; used at shutdown so SQLite checkpoints its WAL.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// Picks the backend from the URL scheme and makes a SQLite file creatable on first start.
fn normalise_url(url: &str) -> Result<(Backend, String), StoreError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok((Backend::Postgres, url.to_owned()));
    }
    if url.starts_with("sqlite:") {
        let is_memory = url.contains(":memory:") || url.contains("mode=memory");
        let url = if is_memory || url.contains("mode=") {
            url.to_owned()
        } else if url.contains('?') {
            format!("{url}&mode=rwc")
        } else {
            format!("{url}?mode=rwc")
        };
        return Ok((Backend::Sqlite, url));
    }
    Err(StoreError::UnsupportedUrl(url.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_become_creatable() {
        assert_eq!(
            normalise_url("sqlite:voxbridge.db").unwrap(),
            (Backend::Sqlite, "sqlite:voxbridge.db?mode=rwc".to_owned())
        );
        assert_eq!(
            normalise_url("sqlite:/tmp/a.db?mode=ro").unwrap().1,
            "sqlite:/tmp/a.db?mode=ro"
        );
        assert_eq!(
            normalise_url("postgres://u@h/db").unwrap().0,
            Backend::Postgres
        );
        assert!(normalise_url("mysql://u@h/db").is_err());
    }
}
