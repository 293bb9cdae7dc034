//! NCCOs, Vonage's answer documents (a JSON array of actions). Our stream is a `connect` to a
//! `websocket` endpoint asking for `audio/l16;rate=16000`, with our call id and one-time token
//! as `headers`, which Vonage echoes in the socket's first frame. The same document is sent
//! inline when we place a call.
//!
//! An NCCO has no busy tone or reject: an empty NCCO ends the call at once, which is how a call
//! we refuse (no assistant, over the owner's limit) is turned away. It has no redirect either,
//! so a draining node cannot answer "ask again": it answers 503 instead, and Vonage then asks the
//! application's `fallback_answer_url` (point it at the load balancer).

use serde_json::{Value, json};

use super::stream::CONTENT_TYPE;

/// Why a document could not be written.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NccoError {
    #[error("the stream URL must be wss:// or ws://, got {0:?}")]
    BadStreamUrl(String),
}

/// `[{"action": "connect", "endpoint": [{"type": "websocket", …}]}]`.
pub fn connect_websocket(url: &str, call_id: &str, token: &str) -> Result<Value, NccoError> {
    if !(url.starts_with("wss://") || url.starts_with("ws://")) {
        return Err(NccoError::BadStreamUrl(url.to_owned()));
    }
    Ok(json!([{
        "action": "connect",
        "endpoint": [{
            "type": "websocket",
            "uri": url,
            "content-type": CONTENT_TYPE,
            "headers": {"call_id": call_id, "token": token},
        }],
    }]))
}

/// The NCCO that ends the call.
pub fn hang_up() -> Value {
    json!([])
}

/// The NCCO a transfer moves the call to: connect it to a phone number.
pub fn connect_phone(to: &str, from: Option<&str>) -> Value {
    let mut action = json!({
        "action": "connect",
        "endpoint": [{"type": "phone", "number": super::vonage_number(to)}],
    });
    if let Some(from) = from {
        action["from"] = Value::from(super::vonage_number(from));
    }
    json!([action])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stream_ncco_asks_for_16_khz_and_carries_our_headers() {
        let ncco = connect_websocket("wss://a.example/vonage/media", "c1", "t1").unwrap();
        assert_eq!(
            ncco,
            json!([{"action": "connect", "endpoint": [{
                "type": "websocket", "uri": "wss://a.example/vonage/media",
                "content-type": "audio/l16;rate=16000",
                "headers": {"call_id": "c1", "token": "t1"}}]}])
        );
        assert!(connect_websocket("https://a.example/vonage/media", "c", "t").is_err());
        assert_eq!(hang_up(), json!([]));
        assert_eq!(
            connect_phone("+14155550100", Some("+14155550199")),
            json!([{"action": "connect", "from": "14155550199",
                    "endpoint": [{"type": "phone", "number": "14155550100"}]}])
        );
    }
}
