//! Reads the TeXML the fake's inbound calls are answered with, as far as Telnyx acts on it for
//! voxbridge: `<Connect><Stream url=… bidirectionalMode=…>` with its `<Parameter>`s, or
//! `<Reject reason=…>`, or `<Redirect>`.

/// What an answer document asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Stream {
        url: String,
        bidirectional_mode: Option<String>,
        bidirectional_codec: Option<String>,
        parameters: Vec<(String, String)>,
    },
    Reject(String),
    Redirect(String),
    Other(String),
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The value of `name="…"` in a tag's text.
fn attr(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let end = tag[start..].find('"')? + start;
    Some(unescape(&tag[start..end]))
}

/// Reads `xml`.
pub fn read(xml: &str) -> Answer {
    if let Some(start) = xml.find("<Stream ") {
        let tag_end = xml[start..]
            .find('>')
            .map(|e| start + e)
            .unwrap_or(xml.len());
        let tag = &xml[start..tag_end];
        let body_end = xml[tag_end..]
            .find("</Stream>")
            .map(|e| tag_end + e)
            .unwrap_or(tag_end);
        let mut parameters = Vec::new();
        let mut rest = &xml[tag_end..body_end];
        while let Some(p) = rest.find("<Parameter ") {
            let end = rest[p..].find("/>").map(|e| p + e).unwrap_or(rest.len());
            let tag = &rest[p..end];
            if let (Some(n), Some(v)) = (attr(tag, "name"), attr(tag, "value")) {
                parameters.push((n, v));
            }
            rest = &rest[end..];
        }
        return Answer::Stream {
            url: attr(tag, "url").unwrap_or_default(),
            bidirectional_mode: attr(tag, "bidirectionalMode"),
            bidirectional_codec: attr(tag, "bidirectionalCodec"),
            parameters,
        };
    }
    if let Some(start) = xml.find("<Reject") {
        let tag = &xml[start
            ..xml[start..]
                .find('>')
                .map(|e| start + e)
                .unwrap_or(xml.len())];
        return Answer::Reject(attr(tag, "reason").unwrap_or_else(|| "rejected".to_owned()));
    }
    if let Some(start) = xml.find("<Redirect") {
        let open = xml[start..]
            .find('>')
            .map(|e| start + e + 1)
            .unwrap_or(xml.len());
        let close = xml[open..]
            .find("</Redirect>")
            .map(|e| open + e)
            .unwrap_or(open);
        return Answer::Redirect(unescape(&xml[open..close]));
    }
    Answer::Other(xml.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_documents_read_back() {
        let xml = crate::telephony::telnyx::texml::connect_stream(
            "ws://127.0.0.1:1/telnyx/media",
            &[("call_id", "c&1"), ("token", "t")],
        )
        .unwrap();
        assert_eq!(
            read(&xml),
            Answer::Stream {
                url: "ws://127.0.0.1:1/telnyx/media".into(),
                bidirectional_mode: Some("rtp".into()),
                bidirectional_codec: Some("PCMU".into()),
                parameters: vec![
                    ("call_id".into(), "c&1".into()),
                    ("token".into(), "t".into())
                ],
            }
        );
        assert_eq!(
            read(&crate::telephony::telnyx::texml::reject(
                crate::telephony::telnyx::texml::RejectReason::Busy
            )),
            Answer::Reject("busy".into())
        );
    }
}
