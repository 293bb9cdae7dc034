//! Ends chats nobody has written to for `chat_idle_timeout_secs`, so an abandoned chat still
//! gets its end webhook and analysis. A sweep runs every quarter of the timeout (at most once a
//! minute); any process may run it, since ending a chat is a forward-only status change.

use std::time::Duration;

use tokio::task::JoinHandle;

use super::{ChatEnd, end_chat};
use crate::call::CallServices;
use crate::store::format_timestamp;

/// Chats ended per sweep at most; the next sweep takes the rest.
const BATCH: i64 = 200;

pub fn spawn_idle_sweeper(services: CallServices) -> JoinHandle<()> {
    tokio::spawn(async move {
        let timeout = Duration::from_secs(services.config.chat_idle_timeout_secs.max(1));
        let every = (timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
        loop {
            tokio::time::sleep(every).await;
            let before = format_timestamp(time::OffsetDateTime::now_utc() - timeout);
            let idle = match services.store.idle_chats(&before, BATCH).await {
                Ok(idle) => idle,
                Err(e) => {
                    tracing::error!(error = %e, "cannot look for idle chats");
                    continue;
                }
            };
            for chat_id in idle {
                let chat = match services.store.get_call_any_owner(&chat_id).await {
                    Ok(Some(chat)) => chat,
                    _ => continue,
                };
                if let Err(e) = end_chat(&services, &chat, ChatEnd::IdleTimeout).await {
                    tracing::error!(error = %e, chat_id, "idle chat not ended");
                }
            }
        }
    })
}
