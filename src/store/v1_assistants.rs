//! v1 assistants (seed 001): an `assistants` row of surface `v1` (what the agent reads), its
//! `v1_assistants` row (the user inside the tenant, type, provider, units) and its teams.
//! Every query is scoped to the tenant (the API key's owner) and, except an admin's list, to
//! the user; soft-deleted assistants are read by nothing but the hard delete.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::assistants::{
    Surface, assistant_from_row, insert_assistant_row, to_json, write_tool_links,
};
use super::{Store, StoreError};
use crate::assistant::v1::{AssistantType, Team, V1Assistant, V1Profile, WorkflowType};

/// Columns of an assistant and its profile, for `FROM assistants a JOIN v1_assistants v`.
const COLUMNS: &str = "a.id, a.owner_id, a.name, a.description, a.prompt, a.tts_model, \
     a.tts_config, a.start_instruction, a.end_call_url, a.settings, a.created_at, a.updated_at, \
     v.user_id, v.assistant_type, v.provider, v.ask_human, v.interrupt_task, v.main_unit, \
     v.support_units";

/// Which assistants a list shows.
#[derive(Debug, Clone)]
pub struct V1ListFilter {
    /// Only this user's (`None`: every user of the tenant, for an admin).
    pub user_id: Option<String>,
    pub assistant_type: Option<AssistantType>,
    pub limit: i64,
    pub offset: i64,
}

/// How a get-or-create ended.
#[derive(Debug, Clone)]
pub enum GeneralAssistant {
    Created(V1Assistant),
    Existing(V1Assistant),
}

impl Store {
    /// Stores a new v1 assistant, its tools and teams in one transaction. A second general
    /// assistant of the same user fails on the unique index (see [`Self::get_or_create_general`]).
    pub async fn insert_v1_assistant(&self, a: &V1Assistant) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_assistant_row(&mut tx, &a.core, Surface::V1).await?;
        let p = &a.profile;
        sqlx::query(
            "INSERT INTO v1_assistants (assistant_id, owner_id, user_id, assistant_type, provider, \
             ask_human, interrupt_task, main_unit, support_units, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&a.core.id)
        .bind(&a.core.owner_id)
        .bind(&p.user_id)
        .bind(p.assistant_type.as_str())
        .bind(&p.provider)
        .bind(i64::from(p.ask_human))
        .bind(i64::from(p.interrupt))
        .bind(p.main_unit.as_str())
        .bind(units_json(&p.support_units))
        .bind(&a.core.created_at)
        .execute(&mut *tx)
        .await?;
        write_teams(&mut tx, &a.core.id, &p.teams).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user's general assistant, stored from `fresh` if they have none yet. Two first calls
    /// at once both try to insert; the unique index lets one win, and the other reads it.
    pub async fn get_or_create_general(
        &self,
        fresh: &V1Assistant,
    ) -> Result<GeneralAssistant, StoreError> {
        let (owner, user) = (&fresh.core.owner_id, &fresh.profile.user_id);
        if let Some(existing) = self.general_v1_assistant(owner, user).await? {
            return Ok(GeneralAssistant::Existing(existing));
        }
        match self.insert_v1_assistant(fresh).await {
            Ok(()) => Ok(GeneralAssistant::Created(fresh.clone())),
            Err(e) if e.is_unique_violation() => self
                .general_v1_assistant(owner, user)
                .await?
                .map(GeneralAssistant::Existing)
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    async fn general_v1_assistant(
        &self,
        owner_id: &str,
        user_id: &str,
    ) -> Result<Option<V1Assistant>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM assistants a JOIN v1_assistants v ON v.assistant_id = a.id \
             WHERE a.owner_id = $1 AND v.user_id = $2 AND v.assistant_type = 'general_assistant' \
             AND a.deleted_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner_id)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        self.complete(row).await
    }

    /// The user's active v1 assistant with this id.
    pub async fn get_v1_assistant(
        &self,
        owner_id: &str,
        user_id: &str,
        id: &str,
    ) -> Result<Option<V1Assistant>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM assistants a JOIN v1_assistants v ON v.assistant_id = a.id \
             WHERE a.id = $1 AND a.owner_id = $2 AND v.user_id = $3 AND a.deleted_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(owner_id)
            .bind(user_id)
            .fetch_optional(self.pool())
            .await?;
        self.complete(row).await
    }

    /// A page of the tenant's active v1 assistants, newest first, and how many there are.
    pub async fn list_v1_assistants(
        &self,
        owner_id: &str,
        filter: &V1ListFilter,
    ) -> Result<(Vec<V1Assistant>, i64), StoreError> {
        // Empty strings stand for "any": one statement for every combination of filters.
        let conditions = "a.owner_id = $1 AND a.deleted_at IS NULL \
             AND ($2 = '' OR v.user_id = $2) AND ($3 = '' OR v.assistant_type = $3)";
        let user = filter.user_id.as_deref().unwrap_or("");
        let kind = filter.assistant_type.map_or("", AssistantType::as_str);
        let count_sql = format!(
            "SELECT COUNT(*) AS n FROM assistants a JOIN v1_assistants v ON v.assistant_id = a.id \
             WHERE {conditions}"
        );
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(count_sql))
            .bind(owner_id)
            .bind(user)
            .bind(kind)
            .fetch_one(self.pool())
            .await?
            .try_get("n")?;
        let page_sql = format!(
            "SELECT {COLUMNS} FROM assistants a JOIN v1_assistants v ON v.assistant_id = a.id \
             WHERE {conditions} ORDER BY a.created_at DESC, a.id DESC LIMIT $4 OFFSET $5"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(page_sql))
            .bind(owner_id)
            .bind(user)
            .bind(kind)
            .bind(filter.limit)
            .bind(filter.offset)
            .fetch_all(self.pool())
            .await?;
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(assistant) = self.complete(Some(row)).await? {
                page.push(assistant);
            }
        }
        Ok((page, total))
    }

    /// Writes every field of `a` if the stored row is still active and still carries
    /// `read_updated_at`; answers false when it changed or disappeared in between.
    pub async fn update_v1_assistant(
        &self,
        a: &V1Assistant,
        read_updated_at: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let c = &a.core;
        let done = sqlx::query(
            "UPDATE assistants SET name = $1, description = $2, prompt = $3, settings = $4, \
             updated_at = $5 WHERE id = $6 AND owner_id = $7 AND deleted_at IS NULL \
             AND updated_at = $8 AND surface = 'v1'",
        )
        .bind(&c.name)
        .bind(&c.description)
        .bind(&c.prompt)
        .bind(to_json(&c.settings))
        .bind(&c.updated_at)
        .bind(&c.id)
        .bind(&c.owner_id)
        .bind(read_updated_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let p = &a.profile;
        sqlx::query(
            "UPDATE v1_assistants SET provider = $1, ask_human = $2, interrupt_task = $3, \
             support_units = $4 WHERE assistant_id = $5",
        )
        .bind(&p.provider)
        .bind(i64::from(p.ask_human))
        .bind(i64::from(p.interrupt))
        .bind(units_json(&p.support_units))
        .bind(&c.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM assistant_tools WHERE assistant_id = $1")
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        write_tool_links(&mut tx, &c.id, &c.tool_ids).await?;
        sqlx::query("DELETE FROM v1_assistant_teams WHERE assistant_id = $1")
            .bind(&c.id)
            .execute(&mut *tx)
            .await?;
        write_teams(&mut tx, &c.id, &p.teams).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Marks the user's active v1 assistant deleted; answers false if there was none.
    pub async fn soft_delete_v1_assistant(
        &self,
        owner_id: &str,
        user_id: &str,
        id: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE assistants SET deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND owner_id = $3 AND deleted_at IS NULL AND surface = 'v1' \
             AND id IN (SELECT assistant_id FROM v1_assistants WHERE user_id = $4)",
        )
        .bind(at)
        .bind(id)
        .bind(owner_id)
        .bind(user_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The type of the user's v1 assistant with this id, soft-deleted or not (`None`: no such
    /// assistant of this user).
    pub async fn v1_assistant_type_any_state(
        &self,
        owner_id: &str,
        user_id: &str,
        id: &str,
    ) -> Result<Option<AssistantType>, StoreError> {
        let row = sqlx::query(
            "SELECT assistant_type FROM v1_assistants \
             WHERE assistant_id = $1 AND owner_id = $2 AND user_id = $3",
        )
        .bind(id)
        .bind(owner_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            let kind: String = row.try_get("assistant_type")?;
            AssistantType::parse(&kind)
                .ok_or_else(|| StoreError::Corrupt(format!("v1 assistant {id}: type {kind:?}")))
        })
        .transpose()
    }

    /// Removes the user's v1 assistant (soft-deleted or not) and everything that belongs to it:
    /// its teams, tool links, and its chats with their transcripts, histories, analyses and
    /// webhook deliveries. Answers false if there was none.
    pub async fn hard_delete_v1_assistant(
        &self,
        owner_id: &str,
        user_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let found = sqlx::query(
            "SELECT assistant_id FROM v1_assistants \
             WHERE assistant_id = $1 AND owner_id = $2 AND user_id = $3",
        )
        .bind(id)
        .bind(owner_id)
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_none() {
            return Ok(false);
        }
        let of_its_calls = "(SELECT id FROM calls WHERE assistant_id = $1)";
        // Attempts hang off deliveries, so they go before them.
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries \
             WHERE call_id IN (SELECT id FROM calls WHERE assistant_id = $1))",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        for table in [
            ("call_turns", "call_id"),
            ("call_turn_timings", "call_id"),
            ("call_provider_events", "call_id"),
            ("chat_histories", "chat_id"),
            ("analyses", "conversation_id"),
            ("webhook_deliveries", "call_id"),
        ] {
            let sql = format!(
                "DELETE FROM {} WHERE {} IN {of_its_calls}",
                table.0, table.1
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        for sql in [
            "DELETE FROM calls WHERE assistant_id = $1",
            "DELETE FROM assistant_tools WHERE assistant_id = $1",
            "DELETE FROM v1_assistant_teams WHERE assistant_id = $1",
            "DELETE FROM v1_assistants WHERE assistant_id = $1",
            "DELETE FROM assistants WHERE id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Completes a selected row with its tool links and teams.
    async fn complete(&self, row: Option<AnyRow>) -> Result<Option<V1Assistant>, StoreError> {
        let Some(row) = row else {
            return Ok(None);
        };
        let mut core = assistant_from_row(&row)?;
        core.tool_ids = self.tool_links(&core.id).await?;
        let corrupt =
            |what: String| StoreError::Corrupt(format!("v1 assistant {}: {what}", core.id));
        let kind: String = row.try_get("assistant_type")?;
        let main: String = row.try_get("main_unit")?;
        let units: String = row.try_get("support_units")?;
        let units: Vec<WorkflowType> =
            serde_json::from_str(&units).map_err(|e| corrupt(e.to_string()))?;
        let ask_human: i64 = row.try_get("ask_human")?;
        let interrupt: i64 = row.try_get("interrupt_task")?;
        let profile = V1Profile {
            user_id: row.try_get("user_id")?,
            assistant_type: AssistantType::parse(&kind)
                .ok_or_else(|| corrupt(format!("type {kind:?}")))?,
            provider: row.try_get("provider")?,
            ask_human: ask_human != 0,
            interrupt: interrupt != 0,
            main_unit: WorkflowType::parse(&main)
                .ok_or_else(|| corrupt(format!("main unit {main:?}")))?,
            support_units: units,
            teams: self.teams(&core.id).await?,
        };
        Ok(Some(V1Assistant { core, profile }))
    }

    async fn teams(&self, assistant_id: &str) -> Result<Vec<Team>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, workflow_type FROM v1_assistant_teams \
             WHERE assistant_id = $1 ORDER BY position",
        )
        .bind(assistant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("workflow_type")?;
                Ok(Team {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    workflow_type: WorkflowType::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("team of {assistant_id}: {kind:?}"))
                    })?,
                })
            })
            .collect()
    }
}

async fn write_teams(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    assistant_id: &str,
    teams: &[Team],
) -> Result<(), StoreError> {
    for (position, team) in teams.iter().enumerate() {
        sqlx::query(
            "INSERT INTO v1_assistant_teams (id, assistant_id, name, workflow_type, position) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&team.id)
        .bind(assistant_id)
        .bind(&team.name)
        .bind(team.workflow_type.as_str())
        .bind(position as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

fn units_json(units: &[WorkflowType]) -> String {
    to_json(&units)
}
