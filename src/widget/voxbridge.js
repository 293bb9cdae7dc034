// voxbridge browser widget: a dependency-free ES module.
//
// One tag puts a call button on any page; the page's own backend creates the session (with its
// API key, via POST /web-call/create) and answers its `data` (or the whole envelope):
//
//   <script type="module" src="https://voice.example.com/widget/voxbridge.js"
//           data-token-url="/my-voice-session"></script>
//
// Or from code:
//
//   import { VoxbridgeCall, mount } from 'https://voice.example.com/widget/voxbridge.js';
//   const call = new VoxbridgeCall(session);   // session: {ws_url, call_id, ...}
//   call.addEventListener('transcript', (e) => console.log(e.detail.text));
//   call.addEventListener('recommendation', (e) => console.log(e.detail.products));
//   await call.start();
//
// The protocol is described in the voxbridge README ("Browser protocol").

const WIDGET_BASE = new URL('.', import.meta.url);
const RATES = [16000, 48000];

/** One browser call: microphone → server, server audio → speakers, events in between. */
export class VoxbridgeCall extends EventTarget {
  /**
   * @param {{ws_url: string, call_id?: string}} session what POST /web-call/create answered
   * @param {{sampleRate?: number, audio?: MediaTrackConstraints}} [options]
   */
  constructor(session, options = {}) {
    super();
    if (!session || !session.ws_url) throw new Error('voxbridge: the session has no ws_url');
    this.session = session;
    this.sampleRate = RATES.includes(options.sampleRate) ? options.sampleRate : 48000;
    this.audioConstraints = options.audio || {
      channelCount: 1,
      echoCancellation: true,
      noiseSuppression: true,
      autoGainControl: true,
    };
    this.muted = false;
    this.state = 'idle';
    this.queued = 0; // samples handed to playback since the start
    this.marks = []; // [{name, at}] waiting for playback to reach `at`
    this.stats = {
      started: false,
      framesSent: 0,
      audioReceived: 0,
      played: 0,
      rms: 0,
      maxRms: 0,
      interrupts: 0,
      flushes: 0,
      quietAfterFlushMs: [], // per flush: how long the output stayed silent afterwards
      flushedSamples: 0,
      marksEchoed: 0,
      transcripts: [],
      agentText: [],
      recommendations: [], // per recommendation: the products' ids
      endReason: null,
      close: null,
    };
  }

  /** Asks for the microphone, opens the socket and starts talking. */
  async start() {
    if (this.state !== 'idle') return;
    this._setState('connecting');
    try {
      this.microphone = await navigator.mediaDevices.getUserMedia({ audio: this.audioConstraints });
      await this._openContext({ sampleRate: this.sampleRate });
      try {
        this.source = this.context.createMediaStreamSource(this.microphone);
      } catch (mismatch) {
        // Some browsers (Firefox) cannot feed a microphone into a context at another rate:
        // run at the device's rate instead, if the protocol takes it.
        await this.context.close();
        await this._openContext({});
        if (!RATES.includes(this.context.sampleRate)) {
          throw new Error(`voxbridge: the audio device runs at ${this.context.sampleRate} Hz`);
        }
        this.source = this.context.createMediaStreamSource(this.microphone);
      }
      const rate = this.context.sampleRate;
      this.capture = new AudioWorkletNode(this.context, 'voxbridge-capture', {
        processorOptions: { frameSamples: rate / 50 },
      });
      this.playback = new AudioWorkletNode(this.context, 'voxbridge-playback', {
        outputChannelCount: [1],
      });
      this.source.connect(this.capture);
      this.capture.connect(this.context.destination);
      this.playback.connect(this.context.destination);
      this.playback.port.onmessage = (event) => this._onPlayback(event.data);
      this.capture.port.onmessage = (event) => this._onFrame(event.data);
      this._open(rate);
    } catch (error) {
      this._fail(error);
      throw error;
    }
  }

  async _openContext(options) {
    this.context = new AudioContext(options);
    await this.context.audioWorklet.addModule(new URL('capture-worklet.js', WIDGET_BASE));
    await this.context.audioWorklet.addModule(new URL('playback-worklet.js', WIDGET_BASE));
    if (this.context.state === 'suspended') await this.context.resume();
  }

  /** Mutes the microphone: silence is sent instead, so the call stays alive. */
  setMuted(muted) {
    this.muted = !!muted;
    this._emit('mute', { muted: this.muted });
  }

  /** Presses a keypad key (`0`-`9`, `*`, `#`); the assistant's keypad settings decide what it does. */
  sendDtmf(digit) {
    const key = String(digit);
    if (!/^[0-9*#]$/.test(key)) throw new Error(`voxbridge: ${key} is not a keypad key`);
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'dtmf', digit: key }));
      this._emit('dtmf', { digit: key });
    }
  }

  /** Ends the call; the server answers `end` and closes. */
  hangup() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify({ type: 'hangup' }));
    } else {
      this._teardown();
    }
  }

  _open(rate) {
    const ws = new WebSocket(this.session.ws_url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: 'start', sample_rate: rate }));
    ws.onmessage = (event) => {
      if (typeof event.data === 'string') this._onEvent(JSON.parse(event.data));
      else this._onAudio(event.data);
    };
    ws.onclose = (event) => {
      this.stats.close = { code: event.code, reason: event.reason };
      this._emit('close', { code: event.code, reason: event.reason });
      this._teardown();
    };
    ws.onerror = () => this._emit('error', { error: new Error('voxbridge: socket error') });
  }

  _onFrame(buffer) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN || !this.stats.started) return;
    this.ws.send(this.muted ? new ArrayBuffer(buffer.byteLength) : buffer);
    this.stats.framesSent++;
  }

  _onAudio(buffer) {
    const samples = buffer.byteLength / 2;
    this.queued += samples;
    this.stats.audioReceived += samples;
    this.playback.port.postMessage({ type: 'audio', samples: buffer }, [buffer]);
  }

  _onEvent(event) {
    switch (event.type) {
      case 'started':
        this.stats.started = true;
        this._setState('live');
        this._emit('started', event);
        break;
      case 'mark':
        // Echoed when playback reaches everything queued before it.
        this.marks.push({ name: event.name, at: this.queued });
        this._echoMarks(this.stats.played);
        break;
      case 'interrupt':
        this.stats.interrupts++;
        this.playback.port.postMessage({ type: 'flush' });
        this._emit('interrupt', {});
        break;
      case 'transcript':
        this.stats.transcripts.push({ text: event.text, final: event.final });
        this._emit('transcript', { text: event.text, final: event.final });
        break;
      case 'agent_text':
        this.stats.agentText.push(event.text);
        this._emit('agent-text', { text: event.text });
        break;
      case 'recommendation':
        // Products the agent chose to show (an assistant linked to a catalog).
        this.stats.recommendations.push((event.products || []).map((p) => p.productId));
        this._emit('recommendation', { products: event.products || [] });
        break;
      case 'end':
        this.stats.endReason = event.reason;
        this._emit('end', { reason: event.reason });
        break;
      default:
        break;
    }
  }

  _onPlayback(message) {
    if (message.type === 'flushed') {
      this.stats.flushes++;
      this.flushedAt = performance.now();
      this.stats.flushedSamples += message.flushed;
      this.stats.played = message.played;
      this._echoMarks(message.played);
      this._emit('flushed', { samples: message.flushed });
      return;
    }
    this.stats.played = message.played;
    this.stats.rms = message.rms;
    if (this.flushedAt !== undefined && message.rms > 0.001) {
      this.stats.quietAfterFlushMs.push(performance.now() - this.flushedAt);
      this.flushedAt = undefined;
    }
    this.stats.maxRms = message.maxRms;
    this._echoMarks(message.played);
    this._emit('level', { rms: message.rms });
  }

  _echoMarks(played) {
    while (this.marks.length > 0 && this.marks[0].at <= played) {
      const { name } = this.marks.shift();
      if (this.ws && this.ws.readyState === WebSocket.OPEN) {
        this.ws.send(JSON.stringify({ type: 'mark', name }));
        this.stats.marksEchoed++;
      }
    }
  }

  _setState(state) {
    this.state = state;
    this._emit('state', { state });
  }

  _fail(error) {
    this._emit('error', { error });
    this._teardown();
  }

  _teardown() {
    if (this.state === 'ended') return;
    this._setState('ended');
    if (this.microphone) this.microphone.getTracks().forEach((track) => track.stop());
    if (this.context) this.context.close().catch(() => {});
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close();
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** An http(s) URL as text, or null (a product's links come from a catalog, not from us). */
function safeUrl(value) {
  try {
    const url = new URL(value);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url.href : null;
  } catch {
    return null;
  }
}

function formatPrice(price, currency) {
  if (currency) {
    try {
      return new Intl.NumberFormat(undefined, { style: 'currency', currency }).format(price);
    } catch {
      // An unknown code: shown as given.
    }
  }
  return currency ? `${price} ${currency}` : String(price);
}

/** Fetches a session from the page's own token endpoint (POST, same-origin credentials). */
export async function fetchSession(tokenUrl) {
  const response = await fetch(tokenUrl, { method: 'POST', credentials: 'same-origin' });
  if (!response.ok) throw new Error(`voxbridge: token endpoint answered ${response.status}`);
  const body = await response.json();
  const session = body && body.data && body.data.ws_url ? body.data : body;
  if (!session || !session.ws_url) throw new Error('voxbridge: token endpoint gave no ws_url');
  return session;
}

const STYLE = `
.vbx{font:14px/1.4 system-ui,sans-serif;border:1px solid #ccd;border-radius:10px;padding:10px;
  background:#fff;color:#123;width:320px;box-shadow:0 2px 10px #0002}
.vbx-row{display:flex;gap:6px;align-items:center}
.vbx button{border:0;border-radius:16px;padding:6px 14px;cursor:pointer;background:#2b6;color:#fff}
.vbx button[data-role=hangup]{background:#c33}
.vbx button[data-role=mute],.vbx button[data-role=keys]{background:#667}
.vbx-keypad{display:none;grid-template-columns:repeat(3,1fr);gap:4px;margin-top:6px;width:150px}
.vbx-keypad.vbx-open{display:grid}
.vbx .vbx-keypad button{background:#eef;color:#123;border-radius:6px;padding:6px 0}
.vbx button:disabled{opacity:.4;cursor:default}
.vbx-status{font-size:12px;color:#567;margin-left:auto}
.vbx-level{height:4px;background:#2b6;width:0;transition:width 60ms}
.vbx-body{display:flex;gap:8px;margin-top:8px}
.vbx-log{max-height:220px;overflow:auto;flex:1;min-width:0}
.vbx-products{display:none;flex:0 0 150px;max-height:220px;overflow:auto}
.vbx.vbx-shopping{width:480px}.vbx.vbx-shopping .vbx-products{display:block}
.vbx-card{border:1px solid #dde;border-radius:8px;padding:6px;margin-bottom:6px;font-size:12px}
.vbx-card img{width:100%;height:90px;object-fit:cover;border-radius:4px;background:#eef}
.vbx-card a{color:#146;font-weight:600;text-decoration:none;display:block}
.vbx-card .vbx-price{color:#262}
.vbx-log p{margin:4px 0}.vbx-log .user{color:#246}.vbx-log .agent{color:#262}
.vbx-log .interim{opacity:.6}
.vbx-floating{position:fixed;right:16px;bottom:16px;z-index:2147483000}`;

/**
 * Puts a call widget into `element`: call button, live transcript, mute, keypad, hang up.
 * @param {HTMLElement} element
 * @param {{getSession: () => Promise<object>, label?: string, sampleRate?: number}} options
 * @returns {{element: HTMLElement, call: () => VoxbridgeCall|null}}
 */
export function mount(element, options) {
  if (!document.getElementById('vbx-style')) {
    const style = document.createElement('style');
    style.id = 'vbx-style';
    style.textContent = STYLE;
    document.head.appendChild(style);
  }
  const root = document.createElement('div');
  root.className = 'vbx';
  root.innerHTML = `
    <div class="vbx-row">
      <button data-role="call"></button>
      <button data-role="mute" disabled>Mute</button>
      <button data-role="keys" disabled>Keypad</button>
      <button data-role="hangup" disabled>Hang up</button>
      <span class="vbx-status" data-role="status">ready</span>
    </div>
    <div class="vbx-keypad" data-role="keypad"></div>
    <div class="vbx-level" data-role="level"></div>
    <div class="vbx-body">
      <div class="vbx-log" data-role="log"></div>
      <div class="vbx-products" data-role="products"></div>
    </div>`;
  element.appendChild(root);
  const $ = (role) => root.querySelector(`[data-role=${role}]`);
  const keypad = $('keypad');
  for (const key of ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#']) {
    const button = document.createElement('button');
    button.textContent = key;
    button.dataset.key = key;
    button.addEventListener('click', () => call && call.sendDtmf(key));
    keypad.appendChild(button);
  }
  const callButton = $('call');
  callButton.textContent = options.label || 'Talk to us';
  let call = null;
  let interim = null;
  let agentLine = null;

  const line = (cls, text) => {
    const p = document.createElement('p');
    p.className = cls;
    p.textContent = text;
    $('log').appendChild(p);
    $('log').scrollTop = $('log').scrollHeight;
    return p;
  };

  // Product cards: built with textContent and checked links, never from HTML.
  const showProducts = (products) => {
    const shelf = $('products');
    shelf.textContent = '';
    for (const product of products) {
      const card = document.createElement('div');
      card.className = 'vbx-card';
      card.dataset.productId = product.productId;
      const link = safeUrl(product.url);
      const image = safeUrl(product.imageUrl);
      if (image) {
        const img = document.createElement('img');
        img.src = image;
        img.alt = product.title;
        img.loading = 'lazy';
        card.appendChild(img);
      }
      const title = document.createElement(link ? 'a' : 'span');
      title.textContent = product.title;
      if (link) {
        title.href = link;
        title.target = '_blank';
        title.rel = 'noopener noreferrer';
      }
      card.appendChild(title);
      if (typeof product.price === 'number') {
        const price = document.createElement('div');
        price.className = 'vbx-price';
        price.textContent = formatPrice(product.price, product.currency);
        card.appendChild(price);
      }
      shelf.appendChild(card);
    }
    root.classList.toggle('vbx-shopping', products.length > 0);
  };

  callButton.addEventListener('click', async () => {
    callButton.disabled = true;
    $('status').textContent = 'connecting…';
    $('log').textContent = '';
    showProducts([]);
    interim = null;
    agentLine = null;
    try {
      const session = await options.getSession();
      call = new VoxbridgeCall(session, { sampleRate: options.sampleRate });
      if (typeof window !== 'undefined') window.voxbridgeCall = call;
      call.addEventListener('started', () => {
        $('status').textContent = 'live';
        $('mute').disabled = false;
        $('keys').disabled = false;
        $('hangup').disabled = false;
      });
      call.addEventListener('transcript', (e) => {
        agentLine = null;
        if (!interim) interim = line('user interim', '');
        interim.textContent = `You: ${e.detail.text}`;
        if (e.detail.final) {
          interim.classList.remove('interim');
          interim = null;
        }
      });
      call.addEventListener('agent-text', (e) => {
        if (!agentLine) agentLine = line('agent', 'Agent:');
        agentLine.textContent += ` ${e.detail.text}`;
      });
      call.addEventListener('interrupt', () => {
        agentLine = null;
      });
      call.addEventListener('recommendation', (e) => showProducts(e.detail.products));
      call.addEventListener('level', (e) => {
        $('level').style.width = `${Math.min(100, e.detail.rms * 400)}%`;
      });
      call.addEventListener('end', (e) => line('end', `Call ended (${e.detail.reason}).`));
      call.addEventListener('close', (e) => {
        $('status').textContent = e.detail.code === 1000 ? 'ended' : `closed ${e.detail.code}`;
      });
      call.addEventListener('state', (e) => {
        if (e.detail.state === 'ended') {
          callButton.disabled = false;
          $('mute').disabled = true;
          $('keys').disabled = true;
          keypad.classList.remove('vbx-open');
          $('hangup').disabled = true;
          $('level').style.width = '0';
        }
      });
      call.addEventListener('error', (e) => {
        $('status').textContent = `error: ${e.detail.error && e.detail.error.message}`;
      });
      await call.start();
    } catch (error) {
      $('status').textContent = `error: ${error.message}`;
      callButton.disabled = false;
    }
  });
  $('mute').addEventListener('click', () => {
    if (!call) return;
    call.setMuted(!call.muted);
    $('mute').textContent = call.muted ? 'Unmute' : 'Mute';
  });
  $('keys').addEventListener('click', () => keypad.classList.toggle('vbx-open'));
  $('hangup').addEventListener('click', () => call && call.hangup());
  return { element: root, call: () => call };
}

// One-tag embedding: a <script data-token-url=…> that loaded this module gets a floating widget.
if (typeof document !== 'undefined') {
  const tag = [...document.querySelectorAll('script[data-token-url]')].find(
    (s) => s.src && new URL(s.src, document.baseURI).href === import.meta.url,
  );
  if (tag) {
    const place = () => {
      const host = document.createElement('div');
      host.className = 'vbx-floating';
      document.body.appendChild(host);
      mount(host, {
        label: tag.dataset.label,
        sampleRate: tag.dataset.sampleRate ? Number(tag.dataset.sampleRate) : undefined,
        getSession: () => fetchSession(tag.dataset.tokenUrl),
      });
    };
    if (document.body) place();
    else document.addEventListener('DOMContentLoaded', place);
  }
}
