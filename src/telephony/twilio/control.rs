//! What the agent may do to a live Twilio call beyond its media stream: transfer it, by
//! redirecting the call to a `<Dial>` over the REST API (the stream ends as a result).

use futures_util::future::BoxFuture;

use super::rest::{TwilioCredentials, TwilioRest};
use super::twiml::{DialSpec, DialTarget, dial};
use crate::telephony::CallControl;

/// A live Twilio call, known by its CallSid.
pub struct TwilioCallControl {
    pub rest: TwilioRest,
    pub credentials: TwilioCredentials,
    pub call_sid: String,
    /// Caller ID shown to the transfer target (our number on this call).
    pub caller_id: Option<String>,
}

impl CallControl for TwilioCallControl {
    fn transfer(&self, to: String) -> BoxFuture<'static, Result<(), String>> {
        let rest = self.rest.clone();
        let credentials = self.credentials.clone();
        let call_sid = self.call_sid.clone();
        let caller_id = self.caller_id.clone();
        Box::pin(async move {
            let twiml = dial(&DialSpec {
                target: DialTarget::Number(&to),
                caller_id: caller_id.as_deref(),
                timeout_secs: None,
                time_limit_secs: None,
            })
            .map_err(|e| e.to_string())?;
            rest.redirect(&credentials, &call_sid, &twiml)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}
