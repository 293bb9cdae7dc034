//! Trunks: an owner's telephony provider accounts. Reads return the secret (the call layer needs
//! it to place calls and to verify webhooks); the REST layer is what keeps it out of responses.
//! Deletion is soft and every query is scoped to the owner, except the one lookup by id that
//! verifies callbacks of calls placed before a trunk was deleted.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::telephony::{Trunk, TrunkProvider};

/// `SELECT <every trunk column> FROM trunks <rest>`, as the `&'static str` sqlx wants.
macro_rules! select_trunks {
    ($rest:literal) => {
        concat!(
            "SELECT id, owner_id, name, provider, account_sid, auth_token, options, \
             default_caller_number, created_at, updated_at FROM trunks ",
            $rest
        )
    };
}

impl Store {
    /// Stores a new trunk.
    pub async fn insert_trunk(&self, t: &Trunk) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO trunks (id, owner_id, name, provider, account_sid, auth_token, \
             default_caller_number, created_at, updated_at, options) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&t.id)
        .bind(&t.owner_id)
        .bind(&t.name)
        .bind(t.provider.as_str())
        .bind(&t.account_sid)
        .bind(&t.auth_token)
        .bind(&t.default_caller_number)
        .bind(&t.created_at)
        .bind(&t.updated_at)
        .bind(options_text(t))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner's active trunk with this id, secret included: what placing a call needs.
    pub async fn get_trunk_for_owner(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<Trunk>, StoreError> {
        let row = sqlx::query(select_trunks!(
            "WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(trunk_from_row).transpose()
    }

    /// A trunk by id whatever its state, secret included. Only for verifying the signed
    /// webhooks of a call already in progress (its trunk may be deleted while it runs); never
    /// for placing calls or answering an API caller.
    pub async fn get_trunk_for_callbacks(&self, id: &str) -> Result<Option<Trunk>, StoreError> {
        let row = sqlx::query(select_trunks!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(trunk_from_row).transpose()
    }

    /// The owner's active trunks, newest first.
    pub async fn list_trunks(&self, owner_id: &str) -> Result<Vec<Trunk>, StoreError> {
        let rows = sqlx::query(select_trunks!(
            "WHERE owner_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC"
        ))
        .bind(owner_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(trunk_from_row).collect()
    }

    /// Writes every field of `t` if the row is still active and still carries `read_updated_at`
    /// (optimistic concurrency). Answers false when it changed or disappeared in between.
    pub async fn update_trunk(&self, t: &Trunk, read_updated_at: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE trunks SET name = $1, provider = $2, account_sid = $3, auth_token = $4, \
             default_caller_number = $5, updated_at = $6, options = $10 \
             WHERE id = $7 AND owner_id = $8 AND deleted_at IS NULL AND updated_at = $9",
        )
        .bind(&t.name)
        .bind(t.provider.as_str())
        .bind(&t.account_sid)
        .bind(&t.auth_token)
        .bind(&t.default_caller_number)
        .bind(&t.updated_at)
        .bind(&t.id)
        .bind(&t.owner_id)
        .bind(read_updated_at)
        .bind(options_text(t))
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks the owner's active trunk deleted. Its phone numbers stay, but no longer route
    /// inbound calls (see [`Store::find_inbound_route`]).
    pub async fn delete_trunk(
        &self,
        owner_id: &str,
        id: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE trunks SET deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND owner_id = $3 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(owner_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

fn options_text(t: &Trunk) -> String {
    serde_json::Value::Object(t.options.clone()).to_string()
}

/// Reads a trunk from a row of `select_trunks!`.
pub(super) fn trunk_from_row(row: &AnyRow) -> Result<Trunk, StoreError> {
    trunk_from_prefixed_row(row, "")
}

/// Reads a trunk from a row whose trunk columns are named `{prefix}{column}`.
pub(super) fn trunk_from_prefixed_row(row: &AnyRow, prefix: &str) -> Result<Trunk, StoreError> {
    let col = |name: &str| format!("{prefix}{name}");
    let id: String = row.try_get(col("id").as_str())?;
    let provider: String = row.try_get(col("provider").as_str())?;
    let provider = TrunkProvider::parse(&provider)
        .ok_or_else(|| StoreError::Corrupt(format!("trunk {id}: unknown provider {provider}")))?;
    Ok(Trunk {
        owner_id: row.try_get(col("owner_id").as_str())?,
        name: row.try_get(col("name").as_str())?,
        provider,
        account_sid: row.try_get(col("account_sid").as_str())?,
        auth_token: row.try_get(col("auth_token").as_str())?,
        options: {
            let text: String = row.try_get(col("options").as_str())?;
            serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("trunk {id}: options: {e}")))?
        },
        default_caller_number: row.try_get(col("default_caller_number").as_str())?,
        created_at: row.try_get(col("created_at").as_str())?,
        updated_at: row.try_get(col("updated_at").as_str())?,
        id,
    })
}
