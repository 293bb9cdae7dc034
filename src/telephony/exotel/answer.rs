//! What our `/exotel/voice` answers the Voicebot applet's https URL: the call's stream URL as
//! JSON `{"url": "wss://…"}` (the dynamic form of the applet; the shape used by integrations of
//! it, Exotel's pages only say the endpoint "returns the WSS URL"). The URL carries the trunk's
//! stream credentials as userinfo (sent back by Exotel as Basic auth on the upgrade), our call id
//! and token as query parameters (they come back in `start.custom_parameters`; Exotel allows
//! three, 256 characters in all) and `sample-rate=8000`.
//!
//! The applet cannot be told "busy" or "rejected": for those the answer has no URL, the applet
//! fails and the owner's flow goes on to its next applet (a hang-up, typically).

use serde_json::json;

/// The content type of the answer.
pub const CONTENT_TYPE: &str = "application/json";
/// The rate we ask Exotel to stream at (its default; the telephone band).
pub const SAMPLE_RATE: u32 = 8000;

/// The stream URL of one call: `media` (with its credentials) and our ids.
pub fn stream_url(media: &str, call_id: &str, token: &str) -> Result<String, String> {
    let mut url = url::Url::parse(media).map_err(|e| format!("{media}: {e}"))?;
    if !matches!(url.scheme(), "wss" | "ws") {
        return Err(format!("{media} is not a ws:// or wss:// URL"));
    }
    url.query_pairs_mut()
        .append_pair("call_id", call_id)
        .append_pair("token", token)
        .append_pair("sample-rate", &SAMPLE_RATE.to_string());
    Ok(url.into())
}

/// `{"url": …}`.
pub fn stream(url: &str) -> String {
    json!({ "url": url }).to_string()
}

/// An answer with no stream, saying why.
pub fn refusal(reason: &str) -> String {
    json!({ "url": null, "reason": reason }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_keeps_credentials_and_adds_our_ids() {
        let url = stream_url(
            "wss://acme1:s3cret@vb.example.com/exotel/media",
            "c-1",
            "vst_a-b",
        )
        .unwrap();
        assert_eq!(
            url,
            "wss://acme1:s3cret@vb.example.com/exotel/media?call_id=c-1&token=vst_a-b&sample-rate=8000"
        );
        let doc: serde_json::Value = serde_json::from_str(&stream(&url)).unwrap();
        assert_eq!(doc["url"], url);
        assert!(stream_url("https://vb.example.com/x", "c", "t").is_err());
        let refusal: serde_json::Value = serde_json::from_str(&refusal("busy")).unwrap();
        assert!(refusal["url"].is_null());
    }
}
