//! The sales assistant's states: immutable snapshots of a conversation. Each answer inserts a
//! new state (never updates one), so two clients continuing from the same state each get their
//! own branch, and an old state id can be continued at any time.

use sqlx::Row;

use super::{Store, StoreError};

/// One stored state.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesState {
    pub id: String,
    pub owner_id: String,
    pub business_id: String,
    pub session_id: String,
    /// The state this one continued (`None` for a session's first).
    pub parent_id: Option<String>,
    /// The assistant (the seed's agent descriptor) that answers in this session.
    pub assistant_id: String,
    /// The conversation so far: the model's messages without the system prompt (JSON).
    pub history: String,
    pub created_at: String,
}

impl Store {
    pub async fn insert_sales_state(&self, s: &SalesState) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sales_states (id, owner_id, business_id, session_id, parent_id, \
             assistant_id, history, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&s.id)
        .bind(&s.owner_id)
        .bind(&s.business_id)
        .bind(&s.session_id)
        .bind(&s.parent_id)
        .bind(&s.assistant_id)
        .bind(&s.history)
        .bind(&s.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner's state `id` in the business's sessions.
    pub async fn get_sales_state(
        &self,
        owner_id: &str,
        business_id: &str,
        id: &str,
    ) -> Result<Option<SalesState>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner_id, business_id, session_id, parent_id, assistant_id, history, \
             created_at FROM sales_states WHERE id = $1 AND owner_id = $2 AND business_id = $3",
        )
        .bind(id)
        .bind(owner_id)
        .bind(business_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(SalesState {
            id: r.try_get("id")?,
            owner_id: r.try_get("owner_id")?,
            business_id: r.try_get("business_id")?,
            session_id: r.try_get("session_id")?,
            parent_id: r.try_get("parent_id")?,
            assistant_id: r.try_get("assistant_id")?,
            history: r.try_get("history")?,
            created_at: r.try_get("created_at")?,
        }))
    }
}
