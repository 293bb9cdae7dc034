//! API keys and their owners. A key is shown once at creation; only its SHA-256 is stored (see
//! [`crate::tokens`]), so a database leak does not leak keys.

use sqlx::Row;

use super::{Store, StoreError, now_timestamp};
use crate::tokens::{random_token, token_hash};

/// What every key starts with, so a leaked key is recognisable in logs and secret scanners.
const KEY_PREFIX: &str = "vbx_";
/// How many leading characters of a key are kept in clear, to tell keys apart in `keys list`.
const SHOWN_PREFIX_LEN: usize = 12;

/// The owner of API keys and of everything created with them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub id: String,
    pub email: String,
}

/// A stored key as `keys list` shows it (never the key itself).
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    pub id: String,
    pub email: String,
    pub key_prefix: String,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// A key just created: the only moment its plaintext exists.
#[derive(Debug)]
pub struct NewApiKey {
    pub row: ApiKeyRow,
    pub plaintext: String,
}

impl Store {
    /// Creates a key for `email`, creating the owner on first use.
    pub async fn create_api_key(&self, email: &str) -> Result<NewApiKey, StoreError> {
        let owner = self.ensure_owner(email).await?;
        let plaintext = random_token(KEY_PREFIX);
        let row = ApiKeyRow {
            id: uuid::Uuid::now_v7().to_string(),
            email: owner.email,
            key_prefix: plaintext[..SHOWN_PREFIX_LEN].to_owned(),
            created_at: now_timestamp(),
            revoked_at: None,
        };
        sqlx::query(
            "INSERT INTO api_keys (id, user_id, key_prefix, key_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&row.id)
        .bind(&owner.id)
        .bind(&row.key_prefix)
        .bind(token_hash(&plaintext))
        .bind(&row.created_at)
        .execute(self.pool())
        .await?;
        Ok(NewApiKey { row, plaintext })
    }

    /// The owner with this email, created on first use.
    pub async fn ensure_owner(&self, email: &str) -> Result<Owner, StoreError> {
        let email = email.trim().to_lowercase();
        // Insert-then-select is race-free on both backends: a concurrent insert of the same email
        // loses on the unique index and the select below finds the winner.
        sqlx::query(
            "INSERT INTO users (id, email, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (email) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&email)
        .bind(now_timestamp())
        .execute(self.pool())
        .await?;
        let row = sqlx::query("SELECT id, email FROM users WHERE email = $1")
            .bind(&email)
            .fetch_one(self.pool())
            .await?;
        Ok(Owner {
            id: row.try_get("id")?,
            email: row.try_get("email")?,
        })
    }

    /// The owner of an active key, or `None` for an unknown or revoked key.
    pub async fn owner_by_key(&self, key: &str) -> Result<Option<Owner>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.email FROM api_keys k JOIN users u ON u.id = k.user_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
        )
        .bind(token_hash(key))
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(Owner {
                id: row.try_get("id")?,
                email: row.try_get("email")?,
            })
        })
        .transpose()
    }

    /// Every key, oldest first, revoked ones included.
    pub async fn list_api_keys(&self) -> Result<Vec<ApiKeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.id, u.email, k.key_prefix, k.created_at, k.revoked_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id ORDER BY k.created_at, k.id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ApiKeyRow {
                    id: row.try_get("id")?,
                    email: row.try_get("email")?,
                    key_prefix: row.try_get("key_prefix")?,
                    created_at: row.try_get("created_at")?,
                    revoked_at: row.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes the key with this id or shown prefix. Answers how many keys were revoked.
    pub async fn revoke_api_key(&self, id_or_prefix: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = $1 \
             WHERE (id = $2 OR key_prefix = $2) AND revoked_at IS NULL",
        )
        .bind(now_timestamp())
        .bind(id_or_prefix)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// How many keys exist at all (revoked included): zero means a brand-new database.
    pub async fn count_api_keys(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }
}
