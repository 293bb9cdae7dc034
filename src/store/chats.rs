//! The histories of text chats (a chat is otherwise a call with direction `chat`): the model's
//! messages as JSON, a claim that serialises replies, and the last activity that idle chats are
//! ended by.

use sqlx::Row;

use super::{Store, StoreError, now_timestamp};

impl Store {
    /// Writes the first history of a chat.
    pub async fn insert_chat_history(
        &self,
        chat_id: &str,
        messages: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO chat_histories (chat_id, messages, replying_since, last_activity_at) \
             VALUES ($1, $2, NULL, $3)",
        )
        .bind(chat_id)
        .bind(messages)
        .bind(now_timestamp())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Claims the right to reply in a chat: answers its history, or `None` when another reply
    /// holds the claim (one taken before `stale_before` is considered abandoned).
    pub async fn claim_chat_reply(
        &self,
        chat_id: &str,
        stale_before: &str,
    ) -> Result<Option<String>, StoreError> {
        let now = now_timestamp();
        let claimed = sqlx::query(
            "UPDATE chat_histories SET replying_since = $1 WHERE chat_id = $2 \
             AND (replying_since IS NULL OR replying_since < $3)",
        )
        .bind(&now)
        .bind(chat_id)
        .bind(stale_before)
        .execute(self.pool())
        .await?;
        if claimed.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query("SELECT messages FROM chat_histories WHERE chat_id = $1")
            .bind(chat_id)
            .fetch_one(self.pool())
            .await?;
        Ok(Some(row.try_get("messages")?))
    }

    /// Stores the history a reply extended and gives the claim back.
    pub async fn save_chat_reply(&self, chat_id: &str, messages: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE chat_histories SET messages = $1, replying_since = NULL, \
             last_activity_at = $2 WHERE chat_id = $3",
        )
        .bind(messages)
        .bind(now_timestamp())
        .bind(chat_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Gives the claim back without changing the history (the reply failed).
    pub async fn release_chat_reply(&self, chat_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE chat_histories SET replying_since = NULL WHERE chat_id = $1")
            .bind(chat_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Chats still open whose last activity was before `before`.
    pub async fn idle_chats(&self, before: &str, limit: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.chat_id FROM chat_histories h JOIN calls c ON c.id = h.chat_id \
             WHERE c.status = 'in-progress' AND h.last_activity_at < $1 \
             AND h.replying_since IS NULL ORDER BY h.last_activity_at LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("chat_id")?)).collect()
    }
}
