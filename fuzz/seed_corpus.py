#!/usr/bin/env python3
"""Writes the committed seed corpora (fuzz/corpus/<target>/) from the wire examples in the
protocol notes (../shared/protocols/*.md, when present) plus hand-written cases taken from the
server's tests. Re-run after adding examples; libFuzzer's grown corpora live in fuzz/work/."""
import hashlib, json, os, re, sys

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOCOLS = os.path.join(HERE, "..", "..", "shared", "protocols")
SID = "MZ22222222222222222222222222222222"


def blocks(doc, langs):
    path = os.path.join(PROTOCOLS, doc)
    if not os.path.exists(path):
        return []
    text = open(path, encoding="utf-8").read()
    return [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang in langs]


def compact(body):
    """A JSON block as the one-line message it is on the wire; other text as is."""
    try:
        return json.dumps(json.loads(body), separators=(",", ":"), ensure_ascii=False)
    except ValueError:
        return body.strip()


corpus = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    corpus.setdefault(target, set()).add(data)


# Twilio Media Streams: the notes' frames (with the stream's SID, so they get past the check),
# and a whole call as one input.
twilio = [compact(b).replace("MZ2222...", SID) for b in blocks("twilio-media-streams.md", {"json"})]
twilio = [t for t in twilio if '"event"' in t]
b64 = "f39/f39/f39/f39/f39/f39/f39/f39/"
twilio += [
    '{"event":"connected","protocol":"Call","version":"1.0.0"}',
    f'{{"event":"media","sequenceNumber":"2","media":{{"track":"inbound","chunk":"1","timestamp":"20","payload":"{b64}"}},"streamSid":"{SID}"}}',
    f'{{"event":"mark","sequenceNumber":"3","streamSid":"{SID}","mark":{{"name":"g1-w3"}}}}',
    f'{{"event":"dtmf","streamSid":"{SID}","sequenceNumber":"4","dtmf":{{"track":"inbound_track","digit":"7"}}}}',
    f'{{"event":"stop","sequenceNumber":"5","streamSid":"{SID}","stop":{{"accountSid":"AC1","callSid":"CA1"}}}}',
    f'{{"event":"media","sequenceNumber":"6","streamSid":"{SID}","media":{{"payload":"!!!not base64!!!"}}}}',
]
for t in twilio:
    seed("twilio_frame", t)
seed("twilio_frame", "\n".join(twilio))

# TwiML: the notes' documents and what the server writes.
for b in blocks("twilio-media-streams.md", {"xml"}) + blocks("other-telephony-streams.md", {"xml"}):
    seed("twiml_reader", b)
seed("twiml_reader", '<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream url="wss://example.com/twilio/media" name="call"><Parameter name="call_id" value="c1"/><Parameter name="token" value="t&amp;1"/></Stream></Connect></Response>')
seed("twiml_reader", '<Response><Dial callerId="+14155550100" timeout="20" timeLimit="600"><Number>+14155550123</Number><Sip>sip:agent@example.com</Sip><Client>alice</Client></Dial></Response>')
seed("twiml_reader", '<Response><Say>Hello &lt;there&gt; &#233;&#x41;</Say><Pause length="2"/><Play>https://example.com/a.wav</Play><Hangup/></Response>')
seed("twiml_reader", '<Response><Reject reason="busy"/><Redirect method="POST">https://example.com/next</Redirect><!-- c --><![CDATA[x]]></Response>')

# Browser widget frames: text JSON; a line starting with NUL is a binary (PCM16) frame.
pcm = bytes(range(0, 200, 3)) * 6  # even length
pcm = pcm[: len(pcm) // 2 * 2].replace(b"\n", b"\x0b")
for rate in (16000, 48000):
    seed("browser_frame", b"\n".join([
        f'{{"type":"start","sample_rate":{rate}}}'.encode(),
        b"\0" + pcm,
        b'{"type":"mark","name":"g1-w3"}',
        b'{"type":"dtmf","digit":"5"}',
        b'{"type":"playback","played_ms":1200}',
        b"\0" + pcm[:480],
        b'{"type":"hangup"}',
    ]))
seed("browser_frame", b'{"type":"start","sample_rate":44100}')
seed("browser_frame", b'{"type":"start","sample_rate":16000}\n{"type":"dtmf","digit":"x"}\n\0\x01')

# OpenAI-compatible streamed bodies.
for b in blocks("openai-chat-streaming.md", {""}):
    if "data:" in b:
        seed("sse_reader", b)
        seed("sse_reader", b.replace("\n", "\r\n"))
seed("sse_reader", ': keep-alive\n\nevent: x\nid: 1\ndata: {"choices":[{"index":0,"delta":{"content":"a"}}]}\ndata: \n\ndata:[DONE]\n\n')
seed("sse_reader", '\ufeffdata: {"error":{"message":"overloaded","type":"server_error"}}\n\n')
seed("sse_reader", 'data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_1","function":{"name":"end_call","arguments":"{}"}}]},"finish_reason":"stop"}]}\r\rdata: [DONE]\r')

# Deepgram: the notes' messages and what the sim sends.
dg = [compact(b) for b in blocks("deepgram-stt.md", {"json"})]
dg += [
    '{"type":"Results","channel_index":[0,1],"duration":1.2,"start":0.0,"is_final":true,"speech_final":true,"from_finalize":false,"channel":{"alternatives":[{"transcript":"hello there","confidence":0.98,"words":[]}]}}',
    '{"type":"SpeechStarted","channel":[0],"timestamp":0.5}',
    '{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.1}',
    '{"type":"Metadata","request_id":"r1"}',
]
for m in dg:
    seed("deepgram_message", m)
seed("deepgram_message", "\n".join(dg))

# Sarvam (STT and TTS share the notes).
sv = [compact(b) for b in blocks("sarvam.md", {"json"})]
stt = sv + [
    '{"type":"data","data":{"request_id":"r1","transcript":"नमस्ते","language_code":"hi-IN"}}',
    '{"type":"events","data":{"signal_type":"START_SPEECH","occured_at":1.0}}',
    '{"type":"events","data":{"event_type":"END_SPEECH"}}',
    '{"type":"error","data":{"error":"bad audio","code":"invalid_request_error"}}',
    '{"type":"error","data":{"message":"slow down","code":429}}',
]
for m in stt:
    seed("sarvam_stt_message", m)
seed("sarvam_stt_message", "\n".join(stt))
tts = sv + [
    '{"type":"audio","data":{"content_type":"audio/wav","audio":"AAABAAIAAwA="}}',
    '{"type":"event","data":{"event_type":"final"}}',
    '{"type":"error","data":{"message":"quota","code":"insufficient_quota_error"}}',
    '{"type":"error"}',
]
for m in tts:
    seed("sarvam_tts_message", m)
seed("sarvam_tts_message", "\n".join(tts))

# Cartesia: the notes' messages aimed at the live contexts.
ct = [compact(b) for b in blocks("cartesia-tts.md", {"json"})]
ct = [re.sub(r'"context_id":"[^"]*"', '"context_id":"ctx-2"', m) for m in ct]
ct += [
    '{"type":"chunk","context_id":"ctx-2","data":"AAABAAIA","done":false,"status_code":206,"step_time":12.5}',
    '{"type":"timestamps","context_id":"ctx-2","word_timestamps":{"words":["How","can"],"start":[0.0,0.2],"end":[0.2,0.4]}}',
    '{"type":"done","context_id":"ctx-1","done":true,"status_code":200}',
    '{"type":"error","context_id":"ctx-2","status_code":400,"title":"Invalid","message":"bad voice","error_code":"voice_not_found"}',
    '{"type":"error","error":"old shape"}',
    '{"type":"flush_done","context_id":"ctx-2"}',
]
for m in ct:
    seed("cartesia_message", m)
seed("cartesia_message", "\n".join(ct))

# Templates (after NUL: the call's metadata).
for t in [
    "Hello {{name|there}}, this is {{agent.name}} calling about order {{order_id}}.",
    "Today is {{current_date}} at {{current_time}} ({{current_datetime}}); call {{call_id}} to {{to_number}} from {{from_number}}.",
    "{{{name}}} {{ missing }} {{a|}} {{|x}} {{x\n}} }} {{",
    'Hi {{customer.first}} {{customer.last|Smith}}, your balance is {{balance}}.\0{"customer":{"first":"Ana"},"balance":12.5,"a.b":"lit"}',
]:
    seed("template_render", t)

# JSON Schemas (after NUL: a document to check against it).
for s in [
    '{"type":"object","properties":{"date":{"type":"string","description":"YYYY-MM-DD"},"party":{"type":"integer","minimum":1}},"required":["date"]}\0{"date":"2026-03-06","party":2}',
    '{"type":"object","properties":{"items":{"type":"array","items":{"type":"object","properties":{"sku":{"type":"string","pattern":"^[A-Z]{3}-\\\\d+$"}},"additionalProperties":false}},"kind":{"enum":["a","b"]},"any":{"anyOf":[{"type":"string"},{"type":"null"}]}},"$defs":{"x":{"type":"number"}}}\0{"items":[{"sku":"ABC-1"}],"kind":"c"}',
    '{"type":"object","properties":{"x":{"$ref":"#/$defs/x"}},"$defs":{"x":{"type":["string","null"],"maxLength":3}},"required":["x"]}\0{"x":"long"}',
    '{"type":"object","properties":{"x":{"type":"strnig"}}}',
    '{"type":"object","properties":{"x":{"$ref":"https://example.com/s.json"}}}',
    '{"type":"string"}',
    'true',
]:
    seed("json_schema_check", s)

# voxbridge.toml (after NUL: KEY=VALUE environment lines).
for c in [
    'bind = "0.0.0.0:8080"\ndatabase_url = "postgres://voxbridge@db.internal:5432/voxbridge"\n\n[deepgram]\napi_key = "dg_..."\n\n[llm]\nbase_url = "http://127.0.0.1:11434/v1"   # Ollama\nmodel = "llama3.1"\n',
    'bind = "127.0.0.1:9000"\nlog_level = "debug"\nlog_format = "json"\nmax_body_bytes = 1048576\nmedia_inactivity_secs = 30\n\n[http]\nheader_timeout_secs = 10\nidle_timeout_secs = 60\nmax_connections = 1024\n\n[egress]\nallow_loopback = true\n\n[cartesia]\napi_key = "sk"\nversion = "2026-03-01"\n\n[llm]\nallowed_base_urls = ["https://api.openai.com/v1"]\n\n[llm.providers.groq]\nbase_url = "https://api.groq.com/openai/v1"\napi_key = "gsk"\n\n[webhook]\nsecret = "s"\nmax_attempts = 5\ntimeout_ms = 3000\n\n[cluster]\nheartbeat_ms = 1000\nnode_timeout_ms = 5000\n\n[api_v1]\ntrust_user_header = true\ntenant_email = "t@example.com"\n\n[default_voice]\nmodel = "sonic-3"\n',
    'log_level = "info"\n\0LOG_LEVEL=warn\nDEEPGRAM__API_KEY=dg-key\nDEEPGRAM__BASE_URL=http://127.0.0.1:9100\nHTTP__MAX_CONNECTIONS=12\n',
    'bnid = "127.0.0.1:9000"\n',
    '[twilio]\nbase_url = "http://127.0.0.1:1"\n[[llm.allowed_base_urls]]\n',
]:
    seed("config_load", c)

total = 0
for target, items in sorted(corpus.items()):
    out = os.path.join(HERE, "corpus", target)
    os.makedirs(out, exist_ok=True)
    for data in items:
        name = hashlib.sha1(data).hexdigest()
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
        total += len(data)
    print(f"{target}: {len(items)} seeds")
print(f"{total} bytes", file=sys.stderr)
