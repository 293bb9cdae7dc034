//! Assistants and the tools attached to them. Deletion is soft (`deleted_at`), so call records
//! keep pointing at the assistant they used; every read here sees active assistants only, and
//! every query is scoped to the owner, so one key can never reach another owner's rows.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::assistant::{Assistant, CallSettings, TtsConfig, TtsModel};

/// One line of `GET /assistant/list`.
#[derive(Debug, Clone)]
pub struct AssistantSummary {
    pub id: String,
    pub name: String,
    pub tts_model: String,
    pub created_by_email: String,
    pub created_at: String,
}

impl Store {
    /// Stores a new voice assistant and its tool list in one transaction.
    pub async fn insert_assistant(&self, a: &Assistant) -> Result<(), StoreError> {
        let mut tx = self.pool().begin().await?;
        insert_assistant_row(&mut tx, a, Surface::Voice).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The owner's active voice assistant with this id (what the voice API manages and what
    /// calls are placed with).
    pub async fn get_assistant(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<Assistant>, StoreError> {
        self.active_assistant(owner_id, id, Some(Surface::Voice))
            .await
    }

    /// The owner's active assistant with this id, of any surface (a chat may talk to a v1
    /// assistant too).
    async fn active_assistant(
        &self,
        owner_id: &str,
        id: &str,
        surface: Option<Surface>,
    ) -> Result<Option<Assistant>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner_id, name, description, prompt, tts_model, tts_config, \
             start_instruction, end_call_url, settings, created_at, updated_at \
             FROM assistants WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL \
             AND ($3 = '' OR surface = $3)",
        )
        .bind(id)
        .bind(owner_id)
        .bind(surface.map_or("", Surface::as_str))
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut assistant = assistant_from_row(&row)?;
        assistant.tool_ids = self.tool_links(&assistant.id).await?;
        Ok(Some(assistant))
    }

    /// The owner's assistant with this id even if it was deleted since (a call that used it
    /// still reports to its webhook).
    pub async fn get_assistant_any_state(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<Assistant>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner_id, name, description, prompt, tts_model, tts_config, \
             start_instruction, end_call_url, settings, created_at, updated_at \
             FROM assistants WHERE id = $1 AND owner_id = $2",
        )
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(assistant_from_row).transpose()
    }

    /// The owner's active assistants, newest first.
    pub async fn list_assistants(
        &self,
        owner_id: &str,
    ) -> Result<Vec<AssistantSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, a.tts_model, u.email, a.created_at FROM assistants a \
             JOIN users u ON u.id = a.owner_id \
             WHERE a.owner_id = $1 AND a.deleted_at IS NULL AND a.surface = 'voice' ORDER BY a.created_at DESC, a.id DESC",
        )
        .bind(owner_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AssistantSummary {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    tts_model: row.try_get("tts_model")?,
                    created_by_email: row.try_get("email")?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// Writes every field of `a` if the stored row is still active and still carries
    /// `read_updated_at` (optimistic concurrency: two PATCHes never silently overwrite each
    /// other). Answers false when the row changed or disappeared in between.
    pub async fn update_assistant(
        &self,
        a: &Assistant,
        read_updated_at: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE assistants SET name = $1, description = $2, prompt = $3, tts_model = $4, \
             tts_config = $5, start_instruction = $6, end_call_url = $7, settings = $8, \
             updated_at = $9 \
             WHERE id = $10 AND owner_id = $11 AND deleted_at IS NULL AND updated_at = $12 \
             AND surface = 'voice'",
        )
        .bind(&a.name)
        .bind(&a.description)
        .bind(&a.prompt)
        .bind(a.tts.model().as_str())
        .bind(to_json(&a.tts))
        .bind(&a.start_instruction)
        .bind(&a.end_call_url)
        .bind(to_json(&a.settings))
        .bind(&a.updated_at)
        .bind(&a.id)
        .bind(&a.owner_id)
        .bind(read_updated_at)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM assistant_tools WHERE assistant_id = $1")
            .bind(&a.id)
            .execute(&mut *tx)
            .await?;
        write_tool_links(&mut tx, &a.id, &a.tool_ids).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The owner's active assistant (voice or v1) and its tools that still exist (a deleted
    /// tool is left out): what a call or a chat talks to.
    pub async fn assistant_with_tools(
        &self,
        owner_id: &str,
        assistant_id: &str,
    ) -> Result<Option<(Assistant, Vec<crate::assistant::HttpTool>)>, StoreError> {
        let Some(assistant) = self.active_assistant(owner_id, assistant_id, None).await? else {
            return Ok(None);
        };
        let mut tools = Vec::with_capacity(assistant.tool_ids.len());
        for id in &assistant.tool_ids {
            if let Some(tool) = self.get_tool(owner_id, id).await? {
                tools.push(tool);
            }
        }
        Ok(Some((assistant, tools)))
    }

    /// Marks the owner's active voice assistant inactive. Answers false if there was none.
    pub async fn delete_assistant(
        &self,
        owner_id: &str,
        id: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE assistants SET deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND owner_id = $3 AND deleted_at IS NULL AND surface = 'voice'",
        )
        .bind(at)
        .bind(id)
        .bind(owner_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub(super) async fn tool_links(&self, assistant_id: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.tool_id FROM assistant_tools l JOIN tools t ON t.id = l.tool_id \
             WHERE l.assistant_id = $1 AND t.deleted_at IS NULL ORDER BY l.position",
        )
        .bind(assistant_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("tool_id")?)).collect()
    }
}

/// Which API manages an assistant row: the voice assistant API or the v1 assistant API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Surface {
    Voice,
    V1,
}

impl Surface {
    fn as_str(self) -> &'static str {
        match self {
            Surface::Voice => "voice",
            Surface::V1 => "v1",
        }
    }
}

/// Writes an assistant row and its tool list inside `tx`.
pub(super) async fn insert_assistant_row(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    a: &Assistant,
    surface: Surface,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO assistants (id, owner_id, name, description, prompt, tts_model, \
         tts_config, start_instruction, end_call_url, settings, created_at, updated_at, surface) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(&a.id)
    .bind(&a.owner_id)
    .bind(&a.name)
    .bind(&a.description)
    .bind(&a.prompt)
    .bind(a.tts.model().as_str())
    .bind(to_json(&a.tts))
    .bind(&a.start_instruction)
    .bind(&a.end_call_url)
    .bind(to_json(&a.settings))
    .bind(&a.created_at)
    .bind(&a.updated_at)
    .bind(surface.as_str())
    .execute(&mut **tx)
    .await?;
    write_tool_links(tx, &a.id, &a.tool_ids).await
}

pub(super) async fn write_tool_links(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    assistant_id: &str,
    tool_ids: &[String],
) -> Result<(), StoreError> {
    for (position, tool_id) in tool_ids.iter().enumerate() {
        sqlx::query(
            "INSERT INTO assistant_tools (assistant_id, tool_id, position) VALUES ($1, $2, $3)",
        )
        .bind(assistant_id)
        .bind(tool_id)
        .bind(position as i64)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain structs serialise")
}

pub(super) fn assistant_from_row(row: &AnyRow) -> Result<Assistant, StoreError> {
    let id: String = row.try_get("id")?;
    let model: String = row.try_get("tts_model")?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("assistant {id}: {what}"));
    let model = TtsModel::parse(&model).ok_or_else(|| corrupt("unknown tts_model"))?;
    let tts_json: String = row.try_get("tts_config")?;
    let tts: TtsConfig = serde_json::from_str(&tts_json).map_err(|e| corrupt(&e.to_string()))?;
    if tts.model() != model {
        return Err(corrupt("tts_config does not match tts_model"));
    }
    let settings_json: String = row.try_get("settings")?;
    let settings: CallSettings =
        serde_json::from_str(&settings_json).map_err(|e| corrupt(&e.to_string()))?;
    Ok(Assistant {
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        prompt: row.try_get("prompt")?,
        tts,
        start_instruction: row.try_get("start_instruction")?,
        end_call_url: row.try_get("end_call_url")?,
        settings,
        tool_ids: Vec::new(),
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}
