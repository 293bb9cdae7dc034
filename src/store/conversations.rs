//! Conversations of the conversations API: the record (function, bot, human user), the model
//! history and the case found so far, a claim that serialises replies, the messages as shown,
//! and the bot of each owner and function.

use sqlx::Row;

use super::{Store, StoreError, now_timestamp};

/// A stored conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    pub id: String,
    pub owner_id: String,
    pub function: String,
    pub bot_id: String,
    pub human_user_id: String,
    /// The model's history (JSON).
    pub history: String,
    /// The case found so far (JSON object).
    pub case_data: String,
    pub complete: bool,
    pub completed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// One message as the API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationMessage {
    /// `human` or `bot`.
    pub role: String,
    pub message: String,
    pub created_at: String,
}

impl Store {
    /// The owner's bot for `function`, created on first use (one per owner and function, even
    /// when two first requests race).
    pub async fn conversation_bot(
        &self,
        owner_id: &str,
        function: &str,
    ) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO conversation_bots (id, owner_id, function, created_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (owner_id, function) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(owner_id)
        .bind(function)
        .bind(now_timestamp())
        .execute(self.pool())
        .await?;
        let row =
            sqlx::query("SELECT id FROM conversation_bots WHERE owner_id = $1 AND function = $2")
                .bind(owner_id)
                .bind(function)
                .fetch_one(self.pool())
                .await?;
        Ok(row.try_get("id")?)
    }

    pub async fn insert_conversation(&self, c: &ConversationRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO conversations (id, owner_id, function, bot_id, human_user_id, history, \
             case_data, complete, completed_at, replying_since, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, NULL, NULL, $8, $8)",
        )
        .bind(&c.id)
        .bind(&c.owner_id)
        .bind(&c.function)
        .bind(&c.bot_id)
        .bind(&c.human_user_id)
        .bind(&c.history)
        .bind(&c.case_data)
        .bind(&c.created_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner's conversation with this id.
    pub async fn get_conversation(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner_id, function, bot_id, human_user_id, history, case_data, complete, \
             completed_at, created_at, updated_at FROM conversations WHERE id = $1 AND owner_id = $2",
        )
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let complete: i64 = r.try_get("complete")?;
        Ok(Some(ConversationRecord {
            id: r.try_get("id")?,
            owner_id: r.try_get("owner_id")?,
            function: r.try_get("function")?,
            bot_id: r.try_get("bot_id")?,
            human_user_id: r.try_get("human_user_id")?,
            history: r.try_get("history")?,
            case_data: r.try_get("case_data")?,
            complete: complete != 0,
            completed_at: r.try_get("completed_at")?,
            created_at: r.try_get("created_at")?,
            updated_at: r.try_get("updated_at")?,
        }))
    }

    /// Claims the conversation for one reply; false when another reply holds it (a claim
    /// taken before `stale_before` is considered abandoned).
    pub async fn claim_conversation(
        &self,
        id: &str,
        stale_before: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE conversations SET replying_since = $1 WHERE id = $2 \
             AND (replying_since IS NULL OR replying_since < $3)",
        )
        .bind(now_timestamp())
        .bind(id)
        .bind(stale_before)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Stores what a reply changed and gives the claim back. Answers whether the case became
    /// complete with it (true once in a conversation's life).
    pub async fn save_conversation_reply(
        &self,
        id: &str,
        history: &str,
        case_data: &str,
        complete: bool,
        messages: &[(&str, &str)],
    ) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let mut tx = self.pool().begin().await?;
        let last: i64 = sqlx::query(
            "SELECT COALESCE(MAX(seq), 0) AS n FROM conversation_messages WHERE conversation_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        for (i, (role, message)) in messages.iter().enumerate() {
            sqlx::query(
                "INSERT INTO conversation_messages (conversation_id, seq, role, message, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(last + 1 + i as i64)
            .bind(*role)
            .bind(*message)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query(
            "UPDATE conversations SET history = $1, case_data = $2, replying_since = NULL, \
             updated_at = $3 WHERE id = $4",
        )
        .bind(history)
        .bind(case_data)
        .bind(&now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        let newly_complete = if complete {
            let done = sqlx::query(
                "UPDATE conversations SET complete = 1, completed_at = $1 \
                 WHERE id = $2 AND completed_at IS NULL",
            )
            .bind(&now)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            done.rows_affected() == 1
        } else {
            false
        };
        tx.commit().await?;
        Ok(newly_complete)
    }

    /// Gives the claim back without changing anything (the reply failed).
    pub async fn release_conversation(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE conversations SET replying_since = NULL WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The conversation's messages, in order.
    pub async fn conversation_messages(
        &self,
        id: &str,
    ) -> Result<Vec<ConversationMessage>, StoreError> {
        let rows = sqlx::query(
            "SELECT role, message, created_at FROM conversation_messages \
             WHERE conversation_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ConversationMessage {
                    role: r.try_get("role")?,
                    message: r.try_get("message")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }
}
