//! What the agent may do to a live Vonage call beyond its media stream: transfer it, by moving
//! the call to an NCCO that connects it to the target (the websocket leg ends as a result).

use std::sync::Arc;

use futures_util::future::BoxFuture;

use super::jwt::ApplicationKey;
use super::ncco;
use super::rest::{Application, VonageRest};
use crate::telephony::CallControl;

/// A live Vonage call, known by its uuid.
pub struct VonageCallControl {
    pub rest: VonageRest,
    pub application_id: String,
    pub key: Arc<ApplicationKey>,
    pub uuid: String,
    /// Caller ID shown to the transfer target (our number on this call).
    pub caller_id: Option<String>,
}

impl CallControl for VonageCallControl {
    fn transfer(&self, to: String) -> BoxFuture<'static, Result<(), String>> {
        let rest = self.rest.clone();
        let application_id = self.application_id.clone();
        let key = self.key.clone();
        let uuid = self.uuid.clone();
        let caller_id = self.caller_id.clone();
        Box::pin(async move {
            let app = Application {
                id: &application_id,
                key: &key,
            };
            rest.transfer(&app, &uuid, ncco::connect_phone(&to, caller_id.as_deref()))
                .await
                .map_err(|e| e.to_string())
        })
    }
}
