//! What the agent may do to a live Telnyx call beyond its media stream: transfer it with Call
//! Control's `transfer` command (the stream ends as the call leaves us).

use futures_util::future::BoxFuture;

use super::rest::TelnyxRest;
use crate::telephony::CallControl;

/// A live Telnyx call, known by its call control id.
pub struct TelnyxCallControl {
    pub rest: TelnyxRest,
    pub api_key: String,
    pub call_control_id: String,
    /// Caller ID shown to the transfer target (our number on this call).
    pub caller_id: Option<String>,
}

impl CallControl for TelnyxCallControl {
    fn transfer(&self, to: String) -> BoxFuture<'static, Result<(), String>> {
        let rest = self.rest.clone();
        let api_key = self.api_key.clone();
        let id = self.call_control_id.clone();
        let from = self.caller_id.clone();
        Box::pin(async move {
            rest.transfer(&api_key, &id, &to, from.as_deref())
                .await
                .map_err(|e| e.to_string())
        })
    }
}
