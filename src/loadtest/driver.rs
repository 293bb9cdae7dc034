//! Which provider's fake carries the load test's calls (`voxbridge loadtest --provider`): it
//! rings our number through that provider's real inbound path (its signed voice webhook, its
//! answer document, its media stream) and hands back what each caller saw. The rest of the
//! generator (script, measures, report) is the same for every provider.

use std::time::Duration;

use serde_json::{Value, json};

use crate::sim::caller::{CallerReport, CallerScript, RecordOptions};
use crate::sim::{exotel, plivo, telnyx, twilio, vonage};
use crate::telephony::TrunkProvider;

/// The stream secret of the load test's Exotel trunk (its applet URL carries it).
const EXOTEL_STREAM_SECRET: &str = "loadtest-exotel-stream-secret-01";

/// One call as the generator measures it: what its caller saw, or why there was no stream.
pub struct DrivenCall {
    pub report: Option<CallerReport>,
    /// Why no stream ran (a rejection, the provider's error), when none did.
    pub no_stream: String,
}

/// A provider's fake, driving calls.
pub enum Driver {
    Twilio(twilio::TwilioSim),
    Plivo(plivo::PlivoSim),
    Exotel(exotel::ExotelSim),
    Telnyx(telnyx::TelnyxSim),
    Vonage(vonage::VonageSim),
}

impl Driver {
    /// A fake for `provider` whose callers keep frames (for the measures) but no audio.
    pub fn new(provider: TrunkProvider, number: &str, duration: Duration) -> Self {
        let record = RecordOptions {
            frames: true,
            audio: false,
        };
        match provider {
            TrunkProvider::Twilio => {
                let sim = twilio::TwilioSim::new(twilio::TwilioSimConfig {
                    record,
                    max_call_duration: duration,
                    ..twilio::TwilioSimConfig::default()
                });
                sim.add_number(twilio::DEFAULT_ACCOUNT_SID, number);
                Driver::Twilio(sim)
            }
            TrunkProvider::Plivo => {
                let sim = plivo::PlivoSim::new(record);
                sim.set_max_call_duration(duration);
                Driver::Plivo(sim)
            }
            TrunkProvider::Exotel => {
                let sim = exotel::ExotelSim::new(record);
                sim.set_max_call_duration(duration);
                Driver::Exotel(sim)
            }
            TrunkProvider::Telnyx => {
                let sim = telnyx::TelnyxSim::new(record);
                sim.set_max_call_duration(duration);
                Driver::Telnyx(sim)
            }
            TrunkProvider::Vonage => {
                let sim = vonage::VonageSim::new(record);
                sim.set_max_call_duration(duration);
                Driver::Vonage(sim)
            }
        }
    }

    /// The trunk fields our server needs to take this fake's calls.
    pub fn trunk(provider: TrunkProvider, number: &str) -> Value {
        let mut trunk = match provider {
            TrunkProvider::Twilio => json!({
                "trunk_account_sid": twilio::DEFAULT_ACCOUNT_SID,
                "trunk_auth_token": twilio::DEFAULT_AUTH_TOKEN,
            }),
            TrunkProvider::Plivo => json!({
                "trunk_account_sid": plivo::DEFAULT_AUTH_ID,
                "trunk_auth_token": plivo::DEFAULT_AUTH_TOKEN,
            }),
            TrunkProvider::Exotel => json!({
                "trunk_account_sid": exotel::DEFAULT_ACCOUNT_SID,
                "trunk_auth_token": exotel::DEFAULT_API_TOKEN,
                "trunk_options": {"api_key": exotel::DEFAULT_API_KEY, "stream_secret": EXOTEL_STREAM_SECRET},
            }),
            TrunkProvider::Telnyx => json!({
                "trunk_account_sid": telnyx::DEFAULT_CONNECTION_ID,
                "trunk_auth_token": telnyx::DEFAULT_API_KEY,
                // Every fake Telnyx signs with the same key.
                "trunk_options": {"public_key": telnyx::TelnyxSim::new(RecordOptions::default()).public_key()},
            }),
            TrunkProvider::Vonage => json!({
                "trunk_account_sid": vonage::DEFAULT_APPLICATION_ID,
                "trunk_auth_token": vonage::default_private_key(),
                "trunk_options": {"signature_secret": vonage::DEFAULT_SIGNATURE_SECRET,
                                  "api_key": vonage::DEFAULT_API_KEY},
            }),
        };
        trunk["trunk_name"] = json!("Load test");
        trunk["trunk_provider"] = json!(provider.as_str());
        trunk["trunk_default_caller_number"] = json!(number);
        trunk
    }

    /// Rings `to` through the node at `node_url`; answers the fake's id of the call.
    pub fn ring(
        &self,
        node_url: &str,
        from: String,
        to: &str,
        script: CallerScript,
    ) -> Result<String, String> {
        match self {
            Driver::Twilio(sim) => sim
                .simulate_inbound_call(twilio::InboundCall {
                    voice_url: format!("{node_url}/twilio/voice"),
                    account_sid: twilio::DEFAULT_ACCOUNT_SID.to_owned(),
                    from,
                    to: to.to_owned(),
                    script: Some(script),
                    status_callback: None,
                    status_callback_events: vec![],
                })
                .map_err(|e| e.to_string()),
            Driver::Plivo(sim) => Ok(sim.simulate_inbound_call(
                &format!("{node_url}/plivo/voice"),
                plivo::DEFAULT_AUTH_ID,
                &from,
                to,
                Some(script),
            )),
            Driver::Exotel(sim) => Ok(sim.simulate_inbound_call(
                &format!("{node_url}/exotel/voice?secret={EXOTEL_STREAM_SECRET}"),
                exotel::DEFAULT_ACCOUNT_SID,
                &from,
                to,
                Some(script),
            )),
            Driver::Telnyx(sim) => Ok(sim.simulate_inbound_call(telnyx::InboundCall {
                voice_url: format!("{node_url}/telnyx/voice"),
                from,
                to: to.to_owned(),
                script: Some(script),
            })),
            Driver::Vonage(sim) => Ok(sim.simulate_inbound_call(vonage::InboundCall {
                answer_url: format!("{node_url}/vonage/voice"),
                from,
                to: to.to_owned(),
                script: Some(script),
            })),
        }
    }

    /// Waits for the call to end; `None` if it did not within `patience`.
    pub async fn wait(&self, id: &str, patience: Duration) -> Option<DrivenCall> {
        match self {
            Driver::Twilio(sim) => sim.wait_for_call_end(id, patience).await.map(|call| {
                let no_stream = match (&call.rejected, call.errors.first()) {
                    (Some(reason), _) => format!("rejected: {reason}"),
                    (None, Some(e)) => format!("Twilio error {}: {}", e.code, e.message),
                    (None, None) => "no media stream".to_owned(),
                };
                DrivenCall {
                    report: call.caller_reports.into_iter().next(),
                    no_stream,
                }
            }),
            Driver::Plivo(sim) => sim.wait_for_call_end(id, patience).await.map(|call| {
                let no_stream = match call.answers.first() {
                    Some(xml) => format!("no stream in the answer: {xml}"),
                    None => "the answer URL failed".to_owned(),
                };
                DrivenCall {
                    report: call.reports.into_iter().next(),
                    no_stream,
                }
            }),
            Driver::Exotel(sim) => {
                sim.wait_for_call_end(id, patience)
                    .await
                    .map(|call| DrivenCall {
                        report: call.reports.into_iter().next(),
                        no_stream: "the applet URL gave no stream".to_owned(),
                    })
            }
            Driver::Telnyx(sim) => {
                sim.wait_for_call_end(id, patience)
                    .await
                    .map(|call| DrivenCall {
                        no_stream: call
                            .rejected
                            .map(|r| format!("rejected: {r}"))
                            .unwrap_or_else(|| "no media stream".to_owned()),
                        report: call.caller_report,
                    })
            }
            Driver::Vonage(sim) => {
                sim.wait_for_call_end(id, patience)
                    .await
                    .map(|call| DrivenCall {
                        no_stream: call
                            .rejected
                            .map(|r| format!("rejected: {r}"))
                            .unwrap_or_else(|| "no media stream".to_owned()),
                        report: call.caller_report,
                    })
            }
        }
    }
}
