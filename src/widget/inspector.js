// The call inspector (`/calls`): a filterable list of the owner's calls and, per call, a
// timeline of who spoke when (interruptions and tool calls marked), a stacked latency bar per
// reply, the transcript, the analysis, the webhook's attempts and the recording, with the
// timeline following the audio. Plain DOM and SVG built as strings and set once per view, so a
// one-hour call with hundreds of replies draws in one layout pass. The API key lives in this
// tab's sessionStorage only.

const $ = (id) => document.getElementById(id);
const KEY = 'voxbridge.inspector.key';
const PAGE_SIZE = 50;
/** Recordings up to this size load with the page; larger ones on a click. */
const AUTOLOAD_BYTES = 30e6;

/** The stages of a reply, in order, with their colours and the names the API gives them. */
export const STAGES = [
  ['stt_final', 'STT final', '#6c8ebf'],
  ['llm_first_token', 'LLM first token', '#e0a03a'],
  ['first_phrase', 'first phrase', '#c9c23a'],
  ['tts_first_audio', 'TTS first audio', '#3aa6a0'],
  ['first_frame', 'first frame sent', '#5cb85c'],
  ['first_mark', 'first mark echoed', '#9b8fc9'],
];

const state = { page: 1, assistants: new Map(), call: null, zoom: 1, audio: null, objectUrl: null };

const escape = (text) => String(text ?? '').replace(/[&<>"']/g, (c) => ({
  '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
}[c]));

const seconds = (ms) => {
  const s = Math.max(0, ms) / 1000;
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}:${(s - m * 60).toFixed(1).padStart(4, '0')}` : `${s.toFixed(1)}s`;
};

function showError(message) {
  $('error').textContent = message || '';
}

async function api(path) {
  const key = sessionStorage.getItem(KEY);
  if (!key) throw new Error('Paste an API key first.');
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  const envelope = await response.json().catch(() => null);
  if (!response.ok || !envelope || !envelope.success) {
    throw new Error(envelope?.message || `HTTP ${response.status}`);
  }
  return envelope.data;
}

// ----- routing ----------------------------------------------------------------------------

function route() {
  showError('');
  const hasKey = Boolean(sessionStorage.getItem(KEY));
  $('hello').hidden = hasKey;
  const match = location.hash.match(/^#call\/([^/?#]+)$/);
  $('list-view').hidden = !hasKey || Boolean(match);
  $('call-view').hidden = !hasKey || !match;
  if (!hasKey) return;
  const view = match ? showCall(decodeURIComponent(match[1])) : showList();
  view.catch((e) => showError(e.message));
}

// ----- the list ---------------------------------------------------------------------------

async function loadAssistants() {
  if (state.assistants.size > 0) return;
  const data = await api('/assistant/list');
  const list = Array.isArray(data) ? data : [];
  const select = $('f-assistant');
  for (const a of list) {
    const id = a.assistant_id;
    state.assistants.set(id, a.assistant_name || id);
    select.insertAdjacentHTML('beforeend', `<option value="${escape(id)}">${escape(state.assistants.get(id))}</option>`);
  }
}

function listQuery() {
  const query = new URLSearchParams({ page: state.page, page_size: PAGE_SIZE });
  const add = (name, value) => { if (value) query.set(name, value); };
  add('status', $('f-status').value);
  add('assistant_id', $('f-assistant').value);
  add('direction', $('f-direction').value);
  add('created_after', $('f-after').value);
  if ($('f-before').value) {
    // "Until" a day includes that day.
    const next = new Date(`${$('f-before').value}T00:00:00Z`);
    next.setUTCDate(next.getUTCDate() + 1);
    add('created_before', next.toISOString().slice(0, 10));
  }
  return query;
}

function duration(call) {
  if (!call.started_at || !call.ended_at) return '';
  const at = (stamp) => Date.parse(`${stamp.slice(0, 23)}Z`);
  const ms = at(call.ended_at) - at(call.started_at);
  return Number.isFinite(ms) ? seconds(ms) : '';
}

async function showList() {
  await loadAssistants().catch(() => {});
  const data = await api(`/call/list?${listQuery()}`);
  $('calls').innerHTML = data.calls.map((c) => `
    <tr class="call-row" data-call="${escape(c.call_id)}">
      <td>${escape(c.created_at.slice(0, 19).replace('T', ' '))}</td>
      <td>${escape(c.direction)}</td>
      <td>${escape(state.assistants.get(c.assistant_id) || c.assistant_id)}</td>
      <td>${escape(c.status)}</td>
      <td>${escape(c.end_reason || '')}</td>
      <td>${escape(duration(c))}</td>
    </tr>`).join('') || '<tr><td colspan="6" class="note">No calls match.</td></tr>';
  const pages = Math.max(1, Math.ceil(data.total / PAGE_SIZE));
  $('page').textContent = `page ${state.page} of ${pages} · ${data.total} calls`;
  $('prev').disabled = state.page <= 1;
  $('next').disabled = state.page >= pages;
}

// ----- one call ---------------------------------------------------------------------------

async function showCall(id) {
  const [call, hooks] = await Promise.all([
    api(`/call/details/${encodeURIComponent(id)}`),
    api(`/call/webhooks/${encodeURIComponent(id)}`).catch(() => ({ deliveries: [], attempts: [] })),
  ]);
  state.call = call;
  state.zoom = 1;
  renderFacts(call);
  renderTimeline();
  renderLatency(call.turns || []);
  renderTranscript(call.transcript || []);
  renderAnalysis(call);
  renderWebhooks(hooks);
  await loadRecording(call);
}

/** The span the timeline draws: the call's duration, or whatever happened last. */
export function callSpanMs(call) {
  let end = (call.duration_seconds || 0) * 1000;
  for (const t of call.transcript || []) end = Math.max(end, t.offset_ms);
  for (const t of call.turns || []) end = Math.max(end, t.ended_ms);
  return Math.max(1000, Math.ceil(end));
}

function renderFacts(call) {
  const fact = (name, value) => (value == null || value === '' ? '' : `<span>${name} <b>${escape(value)}</b></span>`);
  $('facts').innerHTML = [
    fact('call', call.call_id),
    fact('assistant', state.assistants.get(call.assistant_id) || call.assistant_id),
    fact('direction', call.direction),
    fact('from', call.from_number),
    fact('to', call.to_number),
    fact('status', call.status),
    fact('ended by', call.end_reason),
    fact('duration', call.duration_seconds != null ? seconds(call.duration_seconds * 1000) : null),
    fact('replies', (call.turns || []).length),
    fact('started', call.started_at),
  ].join('');
}

/** Caller speech as [start, end] spans: from a user line's offset to the end of that speech
 * (the next reply's `caller_stopped_ms`), or an estimate from its words when none is known. */
export function callerSpans(call) {
  const stops = (call.turns || []).map((t) => t.stamps.caller_stopped_ms).filter((v) => v != null).sort((a, b) => a - b);
  let next = 0;
  return (call.transcript || []).filter((t) => t.role === 'user').map((t) => {
    while (next < stops.length && stops[next] < t.offset_ms) next += 1;
    const estimate = t.offset_ms + 350 * Math.max(1, t.text.split(/\s+/).length);
    const end = next < stops.length ? stops[next] : estimate;
    return { start: t.offset_ms, end: Math.max(end, t.offset_ms + 100), text: t.text };
  });
}

/** Agent speech as spans: from the reply's first frame (or first audio) to its end. */
export function agentSpans(call) {
  return (call.turns || []).flatMap((t) => {
    const start = t.stamps.first_frame_ms ?? t.stamps.tts_first_audio_ms;
    if (start == null) return [];
    return [{ start, end: Math.max(t.ended_ms, start + 50), turn: t }];
  });
}

function renderTimeline() {
  const call = state.call;
  const span = callSpanMs(call);
  const box = $('timeline-box');
  const width = Math.max(600, Math.round((box.clientWidth || 1000) * state.zoom) - 4);
  const left = 50;
  const x = (ms) => left + ((width - left - 10) * ms) / span;
  const rows = { caller: 18, agent: 52 };
  const height = 100;
  const parts = [];
  // Ticks: about ten across, at a round number of seconds.
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800];
  const step = (steps.find((s) => (span / 1000) / s <= 10 * state.zoom) || 3600) * 1000;
  for (let t = 0; t <= span; t += step) {
    parts.push(`<line x1="${x(t)}" x2="${x(t)}" y1="8" y2="${height - 18}" stroke="#e4e7ec"/>`);
    parts.push(`<text x="${x(t)}" y="${height - 4}" text-anchor="middle">${seconds(t)}</text>`);
  }
  parts.push(`<text x="4" y="${rows.caller + 13}">caller</text><text x="4" y="${rows.agent + 13}">agent</text>`);
  for (const s of callerSpans(call)) {
    parts.push(`<rect class="caller-bar" data-start="${s.start}" data-end="${s.end}" x="${x(s.start)}" y="${rows.caller}" width="${Math.max(1.5, x(s.end) - x(s.start))}" height="18" rx="2" fill="var(--caller)"><title>${escape(`${seconds(s.start)} caller: ${s.text}`)}</title></rect>`);
  }
  for (const s of agentSpans(call)) {
    const t = s.turn;
    const color = t.outcome === 'interrupted' ? 'var(--cut)' : 'var(--agent)';
    parts.push(`<rect class="agent-bar" data-turn="${t.turn}" data-start="${s.start}" data-end="${s.end}" x="${x(s.start)}" y="${rows.agent}" width="${Math.max(1.5, x(s.end) - x(s.start))}" height="18" rx="2" fill="${color}" fill-opacity="0.85"><title>${escape(`reply ${t.turn} (${t.outcome}), ${seconds(s.start)}–${seconds(s.end)}`)}</title></rect>`);
  }
  for (const t of call.turns || []) {
    for (const i of t.interruptions || []) {
      const what = i.confirmed_ms != null ? `interrupted; heard: “${i.heard || ''}”` : 'false interruption; resumed';
      parts.push(`<g class="interruption" data-onset="${i.onset_ms}"><line x1="${x(i.onset_ms)}" x2="${x(i.onset_ms)}" y1="${rows.caller - 4}" y2="${rows.agent + 22}" stroke="var(--cut)" stroke-width="2" stroke-dasharray="${i.confirmed_ms != null ? '' : '3 2'}"/><path d="M${x(i.onset_ms) - 5},${rows.caller - 9} l10,0 l-5,6 z" fill="var(--cut)"/><title>${escape(`${seconds(i.onset_ms)} ${what}`)}</title></g>`);
    }
    for (const tool of t.tools || []) {
      const cx = x(tool.started_ms);
      const hover = `${tool.name}(${tool.arguments}) · ${tool.duration_ms} ms · ${tool.result_bytes} bytes${tool.error ? ` · error: ${tool.error}` : ''}\n${tool.result_preview}`;
      parts.push(`<g class="tool-marker" data-name="${escape(tool.name)}"><path d="M${cx},${rows.agent + 22} l6,7 l-6,7 l-6,-7 z" fill="${tool.error ? 'var(--cut)' : 'var(--tool)'}"/><title>${escape(hover)}</title></g>`);
    }
  }
  parts.push(`<line id="playhead" x1="${left}" x2="${left}" y1="6" y2="${height - 16}" stroke="#123" stroke-width="1.5" visibility="hidden"/>`);
  box.innerHTML = `<svg id="timeline" data-duration-ms="${span}" data-left="${left}" data-right="${width - 10}" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${parts.join('')}</svg>`;
  $('zoom').textContent = `×${state.zoom}`;
  const svg = $('timeline');
  svg.addEventListener('click', (event) => {
    const rect = svg.getBoundingClientRect();
    const ms = ((event.clientX - rect.left - left) / (width - left - 10)) * span;
    seek(Math.max(0, Math.min(span, ms)));
  });
  movePlayhead();
}

function renderLatency(turns) {
  $('legend').innerHTML = STAGES.map(([, label, color]) => `<span><i style="background:${color}"></i>${label}</span>`).join('');
  const timed = turns.filter((t) => t.total_ms != null);
  if (timed.length === 0) {
    $('latency-box').innerHTML = '<p class="note">No reply timings for this call.</p>';
    $('latency-note').textContent = '';
    return;
  }
  const totals = timed.map((t) => t.total_ms).sort((a, b) => a - b);
  const max = Math.max(1, totals[totals.length - 1]);
  // The first mark comes after the total (it includes the first word's playing): drawn faint,
  // past the total, and the scale leaves room for it.
  const widest = Math.max(max, ...timed.map((t) => t.total_ms + (t.stages.first_mark_ms ?? 0)));
  $('latency-note').textContent = `median ${totals[Math.floor((totals.length - 1) / 2)]} ms · worst ${max} ms`;
  const rowHeight = 20;
  const labelWidth = 130;
  const width = Math.max(420, ($('latency-box').clientWidth || 600) - 16);
  const scale = (width - labelWidth - 70) / widest;
  const rows = timed.map((t, row) => {
    const y = row * rowHeight;
    let at = labelWidth;
    const rects = STAGES.map(([name, label, color]) => {
      const ms = t.stages[`${name}_ms`];
      if (ms == null) return '';
      const w = ms * scale;
      const faint = name === 'first_mark' ? ' fill-opacity="0.35"' : '';
      const rect = `<rect class="stage" data-stage="${name}" data-ms="${ms}" x="${at}" y="${y + 3}" width="${Math.max(w, ms > 0 ? 1 : 0)}" height="${rowHeight - 6}" fill="${color}"${faint}><title>${escape(`${label}: ${ms} ms`)}</title></rect>`;
      at += w;
      return rect;
    }).join('');
    const label = `#${t.turn} ${seconds(t.started_ms)}${t.outcome === 'interrupted' ? ' ✂' : ''}${t.tools.length ? ' ⚙' : ''}`;
    return `<g class="turn-bar" data-turn="${t.turn}" data-total="${t.total_ms}" data-start="${t.started_ms}"><text x="2" y="${y + 14}">${escape(label)}</text>${rects}<text x="${at + 4}" y="${y + 14}">${t.total_ms} ms</text></g>`;
  });
  $('latency-box').innerHTML = `<svg id="latency" width="${width}" height="${timed.length * rowHeight}">${rows.join('')}</svg>`;
  $('latency').addEventListener('click', (event) => {
    const bar = event.target.closest('.turn-bar');
    if (bar) seek(Number(bar.dataset.start));
  });
}

function renderTranscript(lines) {
  $('transcript').innerHTML = lines.map((line) => {
    const cls = line.interrupted ? 'assistant cut' : line.role;
    const who = line.role === 'user' ? 'caller' : line.role;
    const cut = line.interrupted ? ' <span class="note">(interrupted: this is what was heard)</span>' : '';
    return `<div class="line ${cls}" data-offset="${line.offset_ms}"><span class="when" data-seek="${line.offset_ms}">${seconds(line.offset_ms)}</span><b>${who}</b> ${escape(line.text)}${cut}</div>`;
  }).join('') || '<p class="note">No transcript.</p>';
  $('transcript').onclick = (event) => {
    const when = event.target.closest('[data-seek]');
    if (when) seek(Number(when.dataset.seek));
  };
}

function renderAnalysis(call) {
  if (!call.analysis_status) {
    $('analysis').innerHTML = '<p class="note">The assistant asks for no analysis.</p>';
    return;
  }
  const a = call.analysis || {};
  const parts = [`<p>status <b>${escape(call.analysis_status)}</b>${a.success != null ? ` · success <b>${escape(a.success)}</b>` : ''}</p>`];
  if (a.summary) parts.push(`<p>${escape(a.summary)}</p>`);
  if (a.structured_data != null) parts.push(`<pre>${escape(JSON.stringify(a.structured_data, null, 2))}</pre>`);
  if (a.error) parts.push(`<p class="note">error: ${escape(a.error)}</p>`);
  $('analysis').innerHTML = parts.join('');
}

function renderWebhooks(hooks) {
  if (hooks.deliveries.length === 0) {
    $('webhooks').innerHTML = '<p class="note">No webhook for this call (the assistant has no end-of-call URL).</p>';
    return;
  }
  $('webhooks').innerHTML = hooks.deliveries.map((d) => {
    const attempts = hooks.attempts.filter((a) => a.delivery_id === d.delivery_id).map((a) => `
      <tr class="attempt"><td>${a.attempt}</td><td>${escape(a.started_at.slice(0, 23).replace('T', ' '))}</td><td>${escape(a.outcome)}</td>
      <td>${a.status_code ?? '—'}</td><td>${a.duration_ms} ms</td><td>${escape(a.error || '')}</td></tr>`).join('');
    return `<p><b>${escape(d.status)}</b> · ${escape(d.url)} · ${d.attempts} attempt(s)${d.last_error ? ` · last error: ${escape(d.last_error)}` : ''}</p>
      <table><thead><tr><th>#</th><th>at (UTC)</th><th>outcome</th><th>HTTP</th><th>took</th><th>error</th></tr></thead>
      <tbody>${attempts || '<tr><td colspan="6" class="note">Not attempted yet.</td></tr>'}</tbody></table>`;
  }).join('');
}

// ----- the recording and the playhead ------------------------------------------------------

async function loadRecording(call) {
  const audio = $('audio');
  if (state.objectUrl) URL.revokeObjectURL(state.objectUrl);
  state.objectUrl = null;
  audio.removeAttribute('src');
  $('load-recording').hidden = true;
  $('recording-panel').hidden = !call.recording_url;
  if (!call.recording_url) return;
  // The recording needs the key, which an <audio> element cannot send: it is fetched once and
  // played from memory. A long one (an hour is over 100 MB) waits to be asked for.
  const url = `/call/recording/${encodeURIComponent(call.call_id)}`;
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY)}` };
  const probe = await fetch(url, { headers: { ...headers, Range: 'bytes=0-0' } });
  await probe.body?.cancel();
  if (!probe.ok) {
    $('recording-panel').hidden = true;
    return;
  }
  const size = Number((probe.headers.get('Content-Range') || '').split('/')[1]) || 0;
  const load = async () => {
    $('load-recording').hidden = true;
    const response = await fetch(url, { headers });
    if (!response.ok || state.call !== call) return;
    state.objectUrl = URL.createObjectURL(await response.blob());
    audio.src = state.objectUrl;
  };
  if (size > AUTOLOAD_BYTES) {
    const button = $('load-recording');
    button.textContent = `Load the recording (${Math.round(size / 1e6)} MB)`;
    button.hidden = false;
    button.onclick = () => load().catch((e) => showError(e.message));
  } else {
    await load();
  }
}

function seek(ms) {
  const audio = $('audio');
  if (audio.src) {
    audio.currentTime = ms / 1000;
  }
  highlight(ms);
  movePlayhead(ms);
}

function movePlayhead(atMs) {
  const svg = $('timeline');
  const line = $('playhead');
  if (!svg || !line) return;
  const audio = $('audio');
  const ms = atMs ?? (audio.src ? audio.currentTime * 1000 : null);
  if (ms == null) return;
  const left = Number(svg.dataset.left);
  const right = Number(svg.dataset.right);
  const px = left + ((right - left) * ms) / Number(svg.dataset.durationMs);
  line.setAttribute('x1', px);
  line.setAttribute('x2', px);
  line.setAttribute('visibility', 'visible');
  // Follow the audio: keep the playhead in view when zoomed in.
  const box = $('timeline-box');
  if (px < box.scrollLeft || px > box.scrollLeft + box.clientWidth) box.scrollLeft = Math.max(0, px - box.clientWidth / 3);
}

let lastLine = null;
function highlight(ms) {
  const lines = $('transcript').children;
  let current = null;
  // Lines are in time order: the last one at or before `ms`.
  let lo = 0;
  let hi = lines.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (Number(lines[mid].dataset.offset) <= ms) { current = lines[mid]; lo = mid + 1; } else { hi = mid - 1; }
  }
  if (current === lastLine) return;
  lastLine?.classList.remove('now');
  current?.classList.add('now');
  lastLine = current;
}

function follow() {
  const audio = $('audio');
  if (!audio.paused && audio.src) {
    movePlayhead();
    highlight(audio.currentTime * 1000);
  }
  requestAnimationFrame(follow);
}

// ----- start --------------------------------------------------------------------------------

function start() {
  $('key').value = sessionStorage.getItem(KEY) || '';
  $('use-key').addEventListener('click', () => {
    const key = $('key').value.trim();
    if (key) sessionStorage.setItem(KEY, key); else sessionStorage.removeItem(KEY);
    state.assistants.clear();
    route();
  });
  $('filters').addEventListener('submit', (event) => {
    event.preventDefault();
    state.page = 1;
    showList().catch((e) => showError(e.message));
  });
  $('prev').addEventListener('click', () => { state.page -= 1; showList().catch((e) => showError(e.message)); });
  $('next').addEventListener('click', () => { state.page += 1; showList().catch((e) => showError(e.message)); });
  $('calls').addEventListener('click', (event) => {
    const row = event.target.closest('[data-call]');
    if (row) location.hash = `call/${encodeURIComponent(row.dataset.call)}`;
  });
  $('zoom-in').addEventListener('click', () => { state.zoom = Math.min(64, state.zoom * 2); renderTimeline(); });
  $('zoom-out').addEventListener('click', () => { state.zoom = Math.max(1, state.zoom / 2); renderTimeline(); });
  $('audio').addEventListener('seeked', () => movePlayhead());
  window.addEventListener('hashchange', route);
  requestAnimationFrame(follow);
  route();
}

start();
