//! Reads TwiML the way Twilio's interpreter would, for the fake Twilio: a small XML reader (no
//! DTDs, no namespaces — TwiML has neither) and the verbs voxbridge uses. A document Twilio could
//! not parse is an error here too (Twilio's 12100), so a broken answer fails the test that
//! produced it instead of passing silently.

/// A TwiML document could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TwiML parse error at byte {at}: {message}")]
pub struct TwimlParseError {
    pub at: usize,
    pub message: String,
}

/// `<Connect><Stream>`: a bidirectional media stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamVerb {
    pub url: String,
    pub name: Option<String>,
    pub status_callback: Option<String>,
    pub track: Option<String>,
    /// The `<Parameter name value/>` children, in order.
    pub parameters: Vec<(String, String)>,
}

/// Where a `<Dial>` goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DialTarget {
    Number(String),
    Sip(String),
    Client(String),
}

/// `<Dial>`: a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialVerb {
    pub caller_id: Option<String>,
    pub timeout_secs: Option<u32>,
    pub time_limit_secs: Option<u32>,
    pub targets: Vec<DialTarget>,
}

/// One TwiML verb.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verb {
    Connect(StreamVerb),
    Say(String),
    Play(String),
    Pause(u32),
    Dial(DialVerb),
    Hangup,
    /// `<Reject reason=…>` (`rejected` or `busy`).
    Reject(String),
    Redirect(String),
    /// A verb (or `<Connect>` content) the fake does not act on: recorded, skipped.
    Other(String),
}

/// Parses a `<Response>` document into its verbs.
pub fn parse_twiml(xml: &str) -> Result<Vec<Verb>, TwimlParseError> {
    let root = Reader::new(xml).document()?;
    if root.name != "Response" {
        return Err(TwimlParseError {
            at: 0,
            message: format!("the root element is <{}>, not <Response>", root.name),
        });
    }
    let mut verbs = Vec::new();
    for child in &root.children {
        match child {
            Node::Text(text) if text.trim().is_empty() => {}
            Node::Text(text) => {
                return Err(TwimlParseError {
                    at: 0,
                    message: format!("text {:?} directly inside <Response>", text.trim()),
                });
            }
            Node::Element(e) => verbs.push(verb(e)?),
        }
    }
    Ok(verbs)
}

fn verb(e: &Element) -> Result<Verb, TwimlParseError> {
    Ok(match e.name.as_str() {
        "Connect" => {
            let mut elements = e.elements();
            match (elements.next(), elements.next()) {
                (Some(stream), None) if stream.name == "Stream" => {
                    Verb::Connect(stream_verb(stream)?)
                }
                (Some(other), _) => Verb::Other(format!("Connect/{}", other.name)),
                (None, _) => Verb::Other("Connect".to_owned()),
            }
        }
        "Say" => Verb::Say(e.text()),
        "Play" => Verb::Play(e.text().trim().to_owned()),
        "Pause" => Verb::Pause(number_attr(e, "length")?.unwrap_or(1)),
        "Hangup" => Verb::Hangup,
        "Reject" => Verb::Reject(e.attr("reason").unwrap_or("rejected").to_owned()),
        "Redirect" => Verb::Redirect(e.text().trim().to_owned()),
        "Dial" => {
            let mut targets = Vec::new();
            for child in e.elements() {
                let value = child.text().trim().to_owned();
                targets.push(match child.name.as_str() {
                    "Number" => DialTarget::Number(value),
                    "Sip" => DialTarget::Sip(value),
                    "Client" => DialTarget::Client(value),
                    other => {
                        return Err(TwimlParseError {
                            at: 0,
                            message: format!("<Dial> cannot contain <{other}>"),
                        });
                    }
                });
            }
            let bare = e.text();
            if !bare.trim().is_empty() {
                targets.push(DialTarget::Number(bare.trim().to_owned()));
            }
            Verb::Dial(DialVerb {
                caller_id: e.attr("callerId").map(str::to_owned),
                timeout_secs: number_attr(e, "timeout")?,
                time_limit_secs: number_attr(e, "timeLimit")?,
                targets,
            })
        }
        other => Verb::Other(other.to_owned()),
    })
}

fn stream_verb(e: &Element) -> Result<StreamVerb, TwimlParseError> {
    let url = e.attr("url").ok_or_else(|| TwimlParseError {
        at: 0,
        message: "<Stream> without a url".to_owned(),
    })?;
    let mut parameters = Vec::new();
    for child in e.elements() {
        if child.name != "Parameter" {
            return Err(TwimlParseError {
                at: 0,
                message: format!("<Stream> cannot contain <{}>", child.name),
            });
        }
        let (Some(name), Some(value)) = (child.attr("name"), child.attr("value")) else {
            return Err(TwimlParseError {
                at: 0,
                message: "<Parameter> needs a name and a value".to_owned(),
            });
        };
        parameters.push((name.to_owned(), value.to_owned()));
    }
    Ok(StreamVerb {
        url: url.to_owned(),
        name: e.attr("name").map(str::to_owned),
        status_callback: e.attr("statusCallback").map(str::to_owned),
        track: e.attr("track").map(str::to_owned),
        parameters,
    })
}

fn number_attr(e: &Element, name: &str) -> Result<Option<u32>, TwimlParseError> {
    e.attr(name)
        .map(|v| {
            v.trim().parse().map_err(|_| TwimlParseError {
                at: 0,
                message: format!("<{} {name}={v:?}> is not a whole number", e.name),
            })
        })
        .transpose()
}

#[derive(Debug)]
struct Element {
    name: String,
    attrs: Vec<(String, String)>,
    children: Vec<Node>,
}

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|c| match c {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The element's own text (not its children's).
    fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|c| match c {
                Node::Text(t) => Some(t.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

struct Reader<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src: src.strip_prefix('\u{FEFF}').unwrap_or(src),
            pos: 0,
        }
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, TwimlParseError> {
        Err(TwimlParseError {
            at: self.pos,
            message: message.into(),
        })
    }

    fn rest(&self) -> &'a str {
        &self.src[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start_matches([' ', '\t', '\r', '\n']);
        self.pos = self.src.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn skip_until(&mut self, end: &str) -> Result<&'a str, TwimlParseError> {
        match self.rest().find(end) {
            Some(i) => {
                let skipped = &self.rest()[..i];
                self.pos += i + end.len();
                Ok(skipped)
            }
            None => self.error(format!("unterminated, expected {end:?}")),
        }
    }

    /// Whitespace, comments and processing instructions between elements.
    fn skip_misc(&mut self) -> Result<(), TwimlParseError> {
        loop {
            self.skip_ws();
            if self.eat("<!--") {
                self.skip_until("-->")?;
            } else if self.eat("<?") {
                self.skip_until("?>")?;
            } else {
                return Ok(());
            }
        }
    }

    fn document(&mut self) -> Result<Element, TwimlParseError> {
        self.skip_misc()?;
        if self.rest().starts_with("<!DOCTYPE") {
            return self.error("DOCTYPE declarations are not accepted");
        }
        let root = self.element()?;
        self.skip_misc()?;
        if !self.rest().is_empty() {
            return self.error("content after the root element");
        }
        Ok(root)
    }

    fn name(&mut self) -> Result<String, TwimlParseError> {
        let end = self
            .rest()
            .find(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ':')))
            .unwrap_or(self.rest().len());
        if end == 0 {
            return self.error("expected a name");
        }
        let name = self.rest()[..end].to_owned();
        self.pos += end;
        Ok(name)
    }

    fn element(&mut self) -> Result<Element, TwimlParseError> {
        if !self.eat("<") {
            return self.error("expected an element");
        }
        let name = self.name()?;
        let mut attrs: Vec<(String, String)> = Vec::new();
        loop {
            let had_space = self.rest().starts_with([' ', '\t', '\r', '\n']);
            self.skip_ws();
            if self.eat("/>") {
                return Ok(Element {
                    name,
                    attrs,
                    children: Vec::new(),
                });
            }
            if self.eat(">") {
                break;
            }
            if !had_space {
                return self.error("expected whitespace before an attribute");
            }
            let key = self.name()?;
            self.skip_ws();
            if !self.eat("=") {
                return self.error(format!("attribute {key} without a value"));
            }
            self.skip_ws();
            let quote = match self.rest().chars().next() {
                Some(q @ ('"' | '\'')) => q,
                _ => return self.error("attribute values must be quoted"),
            };
            self.pos += 1;
            let raw = match self.rest().find(quote) {
                Some(i) => &self.rest()[..i],
                None => return self.error("unterminated attribute value"),
            };
            if raw.contains('<') {
                return self.error("'<' inside an attribute value");
            }
            // Attribute-value normalisation: literal whitespace characters become spaces (the
            // escaped ones, `&#10;`, are kept: that is why writers escape them).
            let value = decode(&raw.replace(['\t', '\n', '\r'], " "), self.pos)?;
            self.pos += raw.len() + 1;
            if attrs.iter().any(|(k, _)| *k == key) {
                return self.error(format!("attribute {key} given twice"));
            }
            attrs.push((key, value));
        }
        let mut children = Vec::new();
        loop {
            if self.eat("</") {
                let closing = self.name()?;
                if closing != name {
                    return self.error(format!("</{closing}> closes <{name}>"));
                }
                self.skip_ws();
                if !self.eat(">") {
                    return self.error("expected '>'");
                }
                return Ok(Element {
                    name,
                    attrs,
                    children,
                });
            }
            if self.eat("<!--") {
                self.skip_until("-->")?;
            } else if self.eat("<![CDATA[") {
                let text = self.skip_until("]]>")?;
                children.push(Node::Text(text.to_owned()));
            } else if self.rest().starts_with('<') {
                children.push(Node::Element(self.element()?));
            } else if self.rest().is_empty() {
                return self.error(format!("<{name}> is never closed"));
            } else {
                let end = self.rest().find('<').unwrap_or(self.rest().len());
                let start = self.pos;
                let text = decode(&self.rest()[..end], start)?;
                self.pos += end;
                children.push(Node::Text(text));
            }
        }
    }
}

/// Replaces the five predefined entities and character references.
fn decode(raw: &str, at: usize) -> Result<String, TwimlParseError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        let Some(semi) = after.find(';') else {
            return Err(TwimlParseError {
                at: at + raw.len() - rest.len() + amp,
                message: "'&' must start an entity (write &amp;)".to_owned(),
            });
        };
        let entity = &after[..semi];
        let c = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = entity.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                match code.and_then(char::from_u32) {
                    Some(c) => c,
                    None => {
                        return Err(TwimlParseError {
                            at: at + raw.len() - rest.len() + amp,
                            message: format!("unknown entity &{entity};"),
                        });
                    }
                }
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::twilio::twiml::{self, DialSpec, StreamSpec};

    #[test]
    fn reads_what_the_builder_writes() {
        let xml = twiml::Twiml::new()
            .connect_stream(&StreamSpec {
                url: "wss://voice.example.com/twilio/media/c1",
                name: Some("agent"),
                status_callback: None,
                parameters: &[("call_id", "c1"), ("token", "a&b<\"'>\n")],
            })
            .unwrap()
            .say("Goodbye & thanks")
            .unwrap()
            .hangup()
            .finish();
        let verbs = parse_twiml(&xml).unwrap();
        assert_eq!(
            verbs,
            [
                Verb::Connect(StreamVerb {
                    url: "wss://voice.example.com/twilio/media/c1".into(),
                    name: Some("agent".into()),
                    status_callback: None,
                    track: None,
                    parameters: vec![
                        ("call_id".into(), "c1".into()),
                        ("token".into(), "a&b<\"'>\n".into())
                    ],
                }),
                Verb::Say("Goodbye & thanks".into()),
                Verb::Hangup,
            ]
        );
        let dial = twiml::dial(&DialSpec {
            target: twiml::DialTarget::Number("+14155550123"),
            caller_id: Some("+14155550100"),
            timeout_secs: Some(20),
            time_limit_secs: None,
        })
        .unwrap();
        assert_eq!(
            parse_twiml(&dial).unwrap(),
            [Verb::Dial(DialVerb {
                caller_id: Some("+14155550100".into()),
                timeout_secs: Some(20),
                time_limit_secs: None,
                targets: vec![DialTarget::Number("+14155550123".into())],
            })]
        );
    }

    #[test]
    fn reads_hand_written_twiml() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
            <!-- answer -->
            <Response>
              <Connect>
                <Stream url='wss://a.example/m'>
                  <Parameter name="x" value="&#49;&#x32;"/>
                </Stream>
              </Connect>
              <Pause length="2"/>
              <Dial>+14155550123</Dial>
              <Reject reason="busy"/>
              <Gather/>
            </Response>"#;
        let verbs = parse_twiml(xml).unwrap();
        assert!(
            matches!(&verbs[0], Verb::Connect(s) if s.parameters == [("x".into(), "12".into())])
        );
        assert_eq!(verbs[1], Verb::Pause(2));
        assert!(
            matches!(&verbs[2], Verb::Dial(d) if d.targets == [DialTarget::Number("+14155550123".into())])
        );
        assert_eq!(verbs[3], Verb::Reject("busy".into()));
        assert_eq!(verbs[4], Verb::Other("Gather".into()));
    }

    #[test]
    fn refuses_what_twilio_could_not_parse() {
        for bad in [
            "",
            "<Response>",
            "<Response><Say>a</Response>",
            "<Reply/>",
            r#"<Response><Connect><Stream url="wss://a/b?x=1&y=2"/></Connect></Response>"#,
            r#"<Response><Connect><Stream url=wss://a/b/></Connect></Response>"#,
            "<Response><Say>&nbsp;</Say></Response>",
            "<Response>hello</Response>",
            "<Response/><Response/>",
            r#"<Response><Connect><Stream/></Connect></Response>"#,
            r#"<Response><Pause length="two"/></Response>"#,
        ] {
            assert!(parse_twiml(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
