//! Call records and their transcripts. A call is written when it is set up and updated as it
//! moves (status callbacks, stream start, end), and each transcript turn is appended as it
//! happens, so a crash loses at most the turn in progress.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Store, StoreError, now_timestamp};

/// Where a call came from. A text chat is stored as a call too, with direction `chat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Inbound,
    Outbound,
    Web,
    Chat,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
            Direction::Web => "web",
            Direction::Chat => "chat",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "inbound" => Direction::Inbound,
            "outbound" => Direction::Outbound,
            "web" => Direction::Web,
            "chat" => Direction::Chat,
            _ => return None,
        })
    }
}

/// The life of a call, in Twilio's vocabulary (which the other providers map onto).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallStatus {
    Queued,
    Ringing,
    InProgress,
    Completed,
    Busy,
    NoAnswer,
    Failed,
    Canceled,
}

impl CallStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Queued => "queued",
            CallStatus::Ringing => "ringing",
            CallStatus::InProgress => "in-progress",
            CallStatus::Completed => "completed",
            CallStatus::Busy => "busy",
            CallStatus::NoAnswer => "no-answer",
            CallStatus::Failed => "failed",
            CallStatus::Canceled => "canceled",
        }
    }

    /// Parses our names and Twilio's (`initiated` is Twilio's word for a queued call).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" | "initiated" => CallStatus::Queued,
            "ringing" => CallStatus::Ringing,
            "in-progress" | "answered" => CallStatus::InProgress,
            "completed" => CallStatus::Completed,
            "busy" => CallStatus::Busy,
            "no-answer" => CallStatus::NoAnswer,
            "failed" => CallStatus::Failed,
            "canceled" => CallStatus::Canceled,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        self >= CallStatus::Completed
    }

    /// Order of progress: a status only ever moves forward, so late or repeated callbacks
    /// cannot move a call back.
    fn rank(self) -> i64 {
        match self {
            CallStatus::Queued => 0,
            CallStatus::Ringing => 1,
            CallStatus::InProgress => 2,
            _ => 3,
        }
    }

    pub const ALL: [CallStatus; 8] = [
        CallStatus::Queued,
        CallStatus::Ringing,
        CallStatus::InProgress,
        CallStatus::Completed,
        CallStatus::Busy,
        CallStatus::NoAnswer,
        CallStatus::Failed,
        CallStatus::Canceled,
    ];
}

/// A call to be written at set-up.
#[derive(Debug, Clone)]
pub struct NewCall {
    pub id: String,
    pub owner_id: String,
    pub assistant_id: String,
    pub trunk_id: Option<String>,
    pub direction: Direction,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub status: CallStatus,
    pub provider_call_sid: Option<String>,
    pub metadata: serde_json::Value,
    pub rendered_prompt: String,
    pub rendered_start_instruction: Option<String>,
    /// The assistant's voicemail message, rendered (outbound calls of an assistant with one).
    pub rendered_voicemail_message: Option<String>,
    pub missing_variables: Vec<String>,
    /// SHA-256 (hex) of the one-time media-stream token, if the call gets a stream.
    pub stream_token_hash: Option<String>,
    /// Until when the token may be used (a timestamp in the stored format).
    pub stream_token_expires_at: Option<String>,
}

/// A stored call.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    pub id: String,
    pub owner_id: String,
    pub assistant_id: String,
    pub trunk_id: Option<String>,
    pub direction: Direction,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    pub status: CallStatus,
    pub end_reason: Option<String>,
    pub provider_call_sid: Option<String>,
    pub metadata: serde_json::Value,
    pub rendered_prompt: String,
    pub rendered_start_instruction: Option<String>,
    pub rendered_voicemail_message: Option<String>,
    pub missing_variables: Vec<String>,
    /// Who answered, as answering-machine detection found (`human`, `machine_end_beep`, …).
    pub answered_by: Option<String>,
    /// The server process whose session runs the call now (none before it connects and after
    /// it ends); see `store/nodes.rs`.
    pub node_id: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub updated_at: String,
}

/// One line of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRecord {
    pub seq: i64,
    /// `user`, `assistant` or `tool`.
    pub role: String,
    pub text: String,
    /// Milliseconds from the start of the call.
    pub offset_ms: i64,
    /// An assistant turn cut short by the caller (its text is what was heard).
    pub interrupted: bool,
}

/// Filters of `GET /call/list` (and `GET /chat/list`, with `chats`).
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Text chats only; otherwise calls only.
    pub chats: bool,
    pub assistant_id: Option<String>,
    pub status: Option<CallStatus>,
    pub direction: Option<Direction>,
    /// Created at or after this stored-format timestamp (or a prefix of one: a date).
    pub created_after: Option<String>,
    /// Created before this one.
    pub created_before: Option<String>,
    pub limit: i64,
    pub offset: i64,
}

const CALL_COLUMNS: &str = "id, owner_id, assistant_id, trunk_id, direction, from_number, \
    to_number, status, end_reason, provider_call_sid, metadata, rendered_prompt, \
    rendered_start_instruction, rendered_voicemail_message, missing_variables, answered_by, \
    node_id, created_at, started_at, ended_at, updated_at";

const INSERT_COLUMNS: &str = "id, owner_id, assistant_id, trunk_id, direction, from_number, \
    to_number, status, status_rank, provider_call_sid, metadata, rendered_prompt, \
    rendered_start_instruction, rendered_voicemail_message, missing_variables, \
    stream_token_hash, stream_token_expires_at, created_at, updated_at";
const INSERT_VALUES: &str =
    "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $18";

/// A call that holds capacity, with `$18` as now: not finished, not a text chat (it holds no
/// media), and not a web call whose session token expired unused (it never started).
const ACTIVE_CALL: &str = "direction <> 'chat' \
    AND status IN ('queued', 'ringing', 'in-progress') \
    AND NOT (direction = 'web' AND stream_token_used_at IS NULL \
             AND stream_token_expires_at <= $18)";

/// Binds `$1`..`$18` of [`INSERT_VALUES`] (`$18` is `now`).
fn bind_new_call<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    c: &NewCall,
    now: &str,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    query
        .bind(&c.id)
        .bind(&c.owner_id)
        .bind(&c.assistant_id)
        .bind(&c.trunk_id)
        .bind(c.direction.as_str())
        .bind(&c.from_number)
        .bind(&c.to_number)
        .bind(c.status.as_str())
        .bind(c.status.rank())
        .bind(&c.provider_call_sid)
        .bind(c.metadata.to_string())
        .bind(&c.rendered_prompt)
        .bind(&c.rendered_start_instruction)
        .bind(&c.rendered_voicemail_message)
        .bind(serde_json::to_string(&c.missing_variables).expect("strings serialise"))
        .bind(&c.stream_token_hash)
        .bind(&c.stream_token_expires_at)
        .bind(now)
}

impl Store {
    /// Writes a new call.
    pub async fn insert_call(&self, c: &NewCall) -> Result<(), StoreError> {
        let sql = format!("INSERT INTO calls ({INSERT_COLUMNS}) VALUES ({INSERT_VALUES})");
        bind_new_call(sqlx::query(sqlx::AssertSqlSafe(sql)), c, &now_timestamp())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Writes a new call only if its owner then has fewer than `limit` active calls (as
    /// [`Store::count_active_calls`] counts them); answers whether it was written.
    ///
    /// The count and the insert are one statement, so on SQLite (whose writers are serialised
    /// and take the write lock before the statement reads) no other insert can slip between
    /// them. On PostgreSQL, under READ COMMITTED, two such statements could both count the same
    /// committed rows and both insert; a transaction-scoped advisory lock on the owner makes
    /// them take turns, across every process on the database, and the statement that runs
    /// second sees the first's committed row.
    pub async fn insert_call_within_limit(
        &self,
        c: &NewCall,
        limit: i64,
    ) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let sql = format!(
            "INSERT INTO calls ({INSERT_COLUMNS}) SELECT {INSERT_VALUES} \
             WHERE (SELECT COUNT(*) FROM calls WHERE owner_id = $2 AND {ACTIVE_CALL}) < $19"
        );
        let insert = bind_new_call(sqlx::query(sqlx::AssertSqlSafe(sql)), c, &now).bind(limit);
        let written = match self.backend() {
            Backend::Sqlite => insert.execute(self.pool()).await?,
            Backend::Postgres => {
                let mut tx = self.pool().begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("calls:{}", c.owner_id))
                    .execute(&mut *tx)
                    .await?;
                let written = insert.execute(&mut *tx).await?;
                tx.commit().await?;
                written
            }
        };
        Ok(written.rows_affected() == 1)
    }

    /// Consumes a call's one-time stream token: answers the call if `token_hash` matches an
    /// unused, unexpired token, and marks it used in the same statement, so a token works exactly
    /// once even when two sockets race with it.
    pub async fn consume_stream_token(
        &self,
        call_id: &str,
        token_hash: &str,
    ) -> Result<Option<CallRecord>, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE calls SET stream_token_used_at = $1, updated_at = $1 \
             WHERE id = $2 AND stream_token_hash = $3 AND stream_token_used_at IS NULL \
             AND (stream_token_expires_at IS NULL OR stream_token_expires_at > $1)",
        )
        .bind(&now)
        .bind(call_id)
        .bind(token_hash)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_call_any_owner(call_id).await
    }

    /// Consumes a web call's one-time session token, found by its hash alone (the browser's
    /// socket URL carries only the token): answers the call if the token is unused and
    /// unexpired, marking it used in the same statement, so a second use (or a race of two
    /// sockets) finds nothing.
    pub async fn consume_web_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<CallRecord>, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE calls SET stream_token_used_at = $1, updated_at = $1 \
             WHERE stream_token_hash = $2 AND direction = 'web' AND stream_token_used_at IS NULL \
             AND stream_token_expires_at > $1",
        )
        .bind(&now)
        .bind(token_hash)
        .execute(self.pool())
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        let sql = select_calls("WHERE stream_token_hash = $1 AND direction = 'web'");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(token_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// A call by id, whoever owns it (for the call layer; the API uses [`Store::get_call`]).
    pub async fn get_call_any_owner(&self, id: &str) -> Result<Option<CallRecord>, StoreError> {
        let sql = select_calls("WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The owner's call with this id.
    pub async fn get_call(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<CallRecord>, StoreError> {
        let sql = select_calls("WHERE id = $1 AND owner_id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(owner_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The call a provider knows by its own id (e.g. a Twilio CallSid).
    pub async fn get_call_by_provider_sid(
        &self,
        sid: &str,
    ) -> Result<Option<CallRecord>, StoreError> {
        let sql = select_calls("WHERE provider_call_sid = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sid)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(call_from_row).transpose()
    }

    /// The owner's calls, newest first, filtered and paginated. Answers the page and the total.
    pub async fn list_calls(
        &self,
        owner_id: &str,
        f: &CallFilter,
    ) -> Result<(Vec<CallRecord>, i64), StoreError> {
        // Optional filters are written as `($n IS NULL OR col = $n)` so one static statement
        // serves every combination.
        let kind = if f.chats {
            "direction = 'chat'"
        } else {
            "direction <> 'chat'"
        };
        let filter = format!(
            "WHERE owner_id = $1 AND ($2 IS NULL OR assistant_id = $2) AND ($3 IS NULL OR status = $3) \
             AND ($4 IS NULL OR direction = $4) AND ($5 IS NULL OR created_at >= $5) \
             AND ($6 IS NULL OR created_at < $6) AND {kind}"
        );
        let status = f.status.map(CallStatus::as_str);
        let direction = f.direction.map(Direction::as_str);
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM calls {filter}"
        )))
        .bind(owner_id)
        .bind(&f.assistant_id)
        .bind(status)
        .bind(direction)
        .bind(&f.created_after)
        .bind(&f.created_before)
        .fetch_one(self.pool())
        .await?
        .try_get("n")?;
        let sql = format!(
            "{} ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8",
            select_calls(&filter)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner_id)
            .bind(&f.assistant_id)
            .bind(status)
            .bind(direction)
            .bind(&f.created_after)
            .bind(&f.created_before)
            .bind(f.limit)
            .bind(f.offset)
            .fetch_all(self.pool())
            .await?;
        let calls = rows.iter().map(call_from_row).collect::<Result<_, _>>()?;
        Ok((calls, total))
    }

    /// How many of the owner's calls are not finished (queued, ringing or in progress). A web
    /// call whose session token expired unused never started and does not count; text chats
    /// hold no media and do not count either.
    pub async fn count_active_calls(&self, owner_id: &str) -> Result<i64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM calls WHERE owner_id = $1 AND {}",
            ACTIVE_CALL.replace("$18", "$2")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner_id)
            .bind(now_timestamp())
            .fetch_one(self.pool())
            .await?;
        Ok(row.try_get("n")?)
    }

    /// Records the provider's id for a call once the provider has accepted it.
    pub async fn set_provider_call_sid(&self, call_id: &str, sid: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE calls SET provider_call_sid = $1, updated_at = $2 WHERE id = $3")
            .bind(sid)
            .bind(now_timestamp())
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Moves a call forward to `status` (never backward, never out of a final status). Answers
    /// whether anything changed. Sets `started_at` on entering in-progress and `ended_at` (and
    /// the end reason, if none yet) on entering a final status.
    pub async fn advance_call_status(
        &self,
        call_id: &str,
        status: CallStatus,
        end_reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE calls SET status = $1, status_rank = $2, updated_at = $3, \
             started_at = CASE WHEN $2 = 2 AND started_at IS NULL THEN $3 ELSE started_at END, \
             ended_at = CASE WHEN $2 = 3 AND ended_at IS NULL THEN $3 ELSE ended_at END, \
             end_reason = CASE WHEN $2 = 3 AND end_reason IS NULL THEN $4 ELSE end_reason END \
             WHERE id = $5 AND status_rank < $2",
        )
        .bind(status.as_str())
        .bind(status.rank())
        .bind(&now)
        .bind(end_reason)
        .bind(call_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records why a live call ended (the status follows from the provider or the session).
    pub async fn set_end_reason(&self, call_id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE calls SET end_reason = $1, updated_at = $2 WHERE id = $3 AND end_reason IS NULL")
            .bind(reason)
            .bind(now_timestamp())
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records who answered the call (answering-machine detection's verdict); a repeated
    /// callback only writes the same word again.
    pub async fn set_answered_by(
        &self,
        call_id: &str,
        answered_by: &str,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE calls SET answered_by = $1, updated_at = $2 WHERE id = $3")
            .bind(answered_by)
            .bind(now_timestamp())
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The sequence number of the call's last transcript turn (0 when there is none).
    pub async fn last_turn_seq(&self, call_id: &str) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(seq), 0) AS n FROM call_turns WHERE call_id = $1")
                .bind(call_id)
                .fetch_one(self.pool())
                .await?;
        Ok(row.try_get("n")?)
    }

    /// Appends one transcript turn; a turn with the `seq` of one already stored replaces it (a
    /// caller's turn that went on after a pause is stored again, merged, in its place).
    pub async fn append_turn(&self, call_id: &str, turn: &TurnRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO call_turns (call_id, seq, role, text, offset_ms, interrupted, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (call_id, seq) DO UPDATE SET role = excluded.role, text = excluded.text, \
             offset_ms = excluded.offset_ms, interrupted = excluded.interrupted",
        )
        .bind(call_id)
        .bind(turn.seq)
        .bind(&turn.role)
        .bind(&turn.text)
        .bind(turn.offset_ms)
        .bind(i64::from(turn.interrupted))
        .bind(now_timestamp())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The transcript of a call, in order.
    pub async fn call_turns(&self, call_id: &str) -> Result<Vec<TurnRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, role, text, offset_ms, interrupted FROM call_turns \
             WHERE call_id = $1 ORDER BY seq",
        )
        .bind(call_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TurnRecord {
                    seq: r.try_get("seq")?,
                    role: r.try_get("role")?,
                    text: r.try_get("text")?,
                    offset_ms: r.try_get("offset_ms")?,
                    interrupted: r.try_get::<i64, _>("interrupted")? != 0,
                })
            })
            .collect()
    }
}

fn select_calls(filter: &str) -> String {
    format!("SELECT {CALL_COLUMNS} FROM calls {filter}")
}

fn call_from_row(row: &AnyRow) -> Result<CallRecord, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |what: String| StoreError::Corrupt(format!("call {id}: {what}"));
    let direction: String = row.try_get("direction")?;
    let status: String = row.try_get("status")?;
    let metadata: String = row.try_get("metadata")?;
    let missing: String = row.try_get("missing_variables")?;
    Ok(CallRecord {
        owner_id: row.try_get("owner_id")?,
        assistant_id: row.try_get("assistant_id")?,
        trunk_id: row.try_get("trunk_id")?,
        direction: Direction::parse(&direction)
            .ok_or_else(|| corrupt(format!("direction {direction}")))?,
        from_number: row.try_get("from_number")?,
        to_number: row.try_get("to_number")?,
        status: CallStatus::parse(&status).ok_or_else(|| corrupt(format!("status {status}")))?,
        end_reason: row.try_get("end_reason")?,
        provider_call_sid: row.try_get("provider_call_sid")?,
        metadata: serde_json::from_str(&metadata).map_err(|e| corrupt(e.to_string()))?,
        rendered_prompt: row.try_get("rendered_prompt")?,
        rendered_start_instruction: row.try_get("rendered_start_instruction")?,
        rendered_voicemail_message: row.try_get("rendered_voicemail_message")?,
        missing_variables: serde_json::from_str(&missing).map_err(|e| corrupt(e.to_string()))?,
        answered_by: row.try_get("answered_by")?,
        node_id: row.try_get("node_id")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_twilio_words_and_order_forward() {
        assert_eq!(CallStatus::parse("initiated"), Some(CallStatus::Queued));
        assert_eq!(
            CallStatus::parse("in-progress"),
            Some(CallStatus::InProgress)
        );
        assert!(CallStatus::Completed.is_terminal() && CallStatus::Canceled.is_terminal());
        assert!(!CallStatus::InProgress.is_terminal());
        assert!(CallStatus::Ringing.rank() > CallStatus::Queued.rank());
        for s in CallStatus::ALL {
            assert_eq!(CallStatus::parse(s.as_str()), Some(s));
        }
    }
}
