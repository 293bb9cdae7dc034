//! Phone numbers routed to assistants through trunks. A number is unique among active numbers
//! across all owners (a partial unique index), because an inbound call names only the number it
//! dialled. Deleting an assistant or a trunk leaves its numbers in place; the inbound lookup is
//! what refuses to route through anything inactive.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::trunks::trunk_from_prefixed_row;
use super::{Store, StoreError};
use crate::telephony::{InboundRoute, PhoneNumber};

/// `SELECT <every phone number column> FROM phone_numbers <rest>`.
macro_rules! select_numbers {
    ($rest:literal) => {
        concat!(
            "SELECT id, owner_id, number, assistant_id, trunk_id, created_at, updated_at \
             FROM phone_numbers ",
            $rest
        )
    };
}

impl Store {
    /// Stores a new number. A number already active (for any owner) is a unique violation (see
    /// [`StoreError::is_unique_violation`]).
    pub async fn insert_phone_number(&self, p: &PhoneNumber) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO phone_numbers (id, owner_id, number, assistant_id, trunk_id, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&p.id)
        .bind(&p.owner_id)
        .bind(&p.number)
        .bind(&p.assistant_id)
        .bind(&p.trunk_id)
        .bind(&p.created_at)
        .bind(&p.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner's active number with this id.
    pub async fn get_phone_number(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<PhoneNumber>, StoreError> {
        let row = sqlx::query(select_numbers!(
            "WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL"
        ))
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(number_from_row).transpose()
    }

    /// The owner's active numbers, newest first.
    pub async fn list_phone_numbers(&self, owner_id: &str) -> Result<Vec<PhoneNumber>, StoreError> {
        let rows = sqlx::query(select_numbers!(
            "WHERE owner_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC"
        ))
        .bind(owner_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(number_from_row).collect()
    }

    /// Writes every field of `p` if the row is still active and still carries `read_updated_at`.
    /// A number taken by another active row is a unique violation.
    pub async fn update_phone_number(
        &self,
        p: &PhoneNumber,
        read_updated_at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET number = $1, assistant_id = $2, trunk_id = $3, \
             updated_at = $4 \
             WHERE id = $5 AND owner_id = $6 AND deleted_at IS NULL AND updated_at = $7",
        )
        .bind(&p.number)
        .bind(&p.assistant_id)
        .bind(&p.trunk_id)
        .bind(&p.updated_at)
        .bind(&p.id)
        .bind(&p.owner_id)
        .bind(read_updated_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks the owner's active number deleted, which frees the number for anyone.
    pub async fn delete_phone_number(
        &self,
        owner_id: &str,
        id: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE phone_numbers SET deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND owner_id = $3 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(owner_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Where an inbound call to `called_number` (E.164, as the provider's webhook gives it) goes:
    /// only when the number, its assistant and its trunk are all active and all the same
    /// owner's. `None` means the call must be refused.
    pub async fn find_inbound_route(
        &self,
        called_number: &str,
    ) -> Result<Option<InboundRoute>, StoreError> {
        let row = sqlx::query(
            "SELECT p.id AS p_id, p.number AS p_number, p.owner_id AS p_owner_id, \
             p.assistant_id AS p_assistant_id, \
             t.id AS t_id, t.owner_id AS t_owner_id, t.name AS t_name, t.provider AS t_provider, \
             t.account_sid AS t_account_sid, t.auth_token AS t_auth_token, \
             t.options AS t_options, \
             t.default_caller_number AS t_default_caller_number, \
             t.created_at AS t_created_at, t.updated_at AS t_updated_at \
             FROM phone_numbers p \
             JOIN assistants a ON a.id = p.assistant_id AND a.owner_id = p.owner_id \
               AND a.deleted_at IS NULL \
             JOIN trunks t ON t.id = p.trunk_id AND t.owner_id = p.owner_id \
               AND t.deleted_at IS NULL \
             WHERE p.number = $1 AND p.deleted_at IS NULL",
        )
        .bind(called_number)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(InboundRoute {
            phone_number_id: row.try_get("p_id")?,
            phone_number: row.try_get("p_number")?,
            owner_id: row.try_get("p_owner_id")?,
            assistant_id: row.try_get("p_assistant_id")?,
            trunk: trunk_from_prefixed_row(&row, "t_")?,
        }))
    }

    /// Whether `id` is one of the owner's active voice assistants (a number never routes to a
    /// v1 assistant: those are not placed on calls, and their hard delete removes the row).
    pub async fn owner_has_active_assistant(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let found = sqlx::query(
            "SELECT 1 AS found FROM assistants WHERE id = $1 AND owner_id = $2 \
             AND deleted_at IS NULL AND surface = 'voice'",
        )
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }

    /// Whether `id` is one of the owner's active trunks.
    pub async fn owner_has_active_trunk(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let found = sqlx::query(
            "SELECT 1 AS found FROM trunks WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.is_some())
    }
}

fn number_from_row(row: &AnyRow) -> Result<PhoneNumber, StoreError> {
    Ok(PhoneNumber {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        number: row.try_get("number")?,
        assistant_id: row.try_get("assistant_id")?,
        trunk_id: row.try_get("trunk_id")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
