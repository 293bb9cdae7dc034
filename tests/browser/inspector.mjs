// The call inspector in a real browser: headless Debian Chromium driven by playwright-core.
//
//   node tests/browser/inspector.mjs <base_url> <api_key> <call_id> [long_call_id]
//
// Opens <base_url>/calls, pastes the key, finds the call in the list (and filters it away and
// back), opens it, and checks the page against the API's own numbers: one stacked latency bar
// per timed reply with the reply's total and each stage's milliseconds, a timeline that spans
// the call with the caller's and the agent's speech on it, the transcript beside it, the webhook
// attempts, and the recording's player; clicking a reply moves the playhead. No console errors.
// With a long call (an hour, 500 replies) its page is opened too: every reply drawn, and how long
// it took printed (not judged: a shared CI machine's timing is no verdict).
// Screenshots (list, call, long call) go to $VOXBRIDGE_ARTIFACTS (default target/browser-artifacts).
// Exit code 0 on success; 1 with the reason otherwise.

import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const [baseUrl, apiKey, callId, longCallId] = process.argv.slice(2);
if (!baseUrl || !apiKey || !callId) {
  console.error('usage: node inspector.mjs <base_url> <api_key> <call_id>');
  process.exit(2);
}
const artifacts = resolve(process.env.VOXBRIDGE_ARTIFACTS || join(root, 'target', 'browser-artifacts'));
const chromiumPath = process.env.VOXBRIDGE_CHROMIUM || '/usr/bin/chromium';
mkdirSync(artifacts, { recursive: true });

const args = ['--disable-background-networking', '--disable-dev-shm-usage'];
if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');
const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
const consoleLines = [];
const errors = [];
page.on('console', (m) => {
  consoleLines.push(`[${m.type()}] ${m.text()}`);
  if (m.type() === 'error') errors.push(m.text());
});
page.on('pageerror', (e) => {
  consoleLines.push(`[pageerror] ${e.message}`);
  errors.push(e.message);
});

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    throw error;
  }
}

const api = (path) => page.evaluate(async ([path, key]) => {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${key}` } });
  return (await response.json()).data;
}, [path, apiKey]);

let failed = null;
try {
  await step('the inspector lists the call once the key is pasted', async () => {
    await page.goto(`${baseUrl}/calls`);
    await page.fill('#key', apiKey);
    await page.click('#use-key');
    await page.waitForSelector(`tr[data-call="${callId}"]`, { timeout: 10_000 });
    const stored = await page.evaluate(() => ({
      session: Object.keys(sessionStorage),
      local: Object.keys(localStorage),
      cookies: document.cookie,
    }));
    if (stored.local.length > 0 || stored.cookies) throw new Error(`stored beyond the tab: ${JSON.stringify(stored)}`);
  });
  await step('the filters narrow the list and bring it back', async () => {
    await page.selectOption('#f-direction', 'outbound');
    await page.click('#filters button[type=submit]');
    await page.waitForFunction((id) => !document.querySelector(`tr[data-call="${id}"]`), callId, { timeout: 10_000 });
    await page.selectOption('#f-direction', 'inbound');
    await page.selectOption('#f-status', 'completed');
    await page.click('#filters button[type=submit]');
    await page.waitForSelector(`tr[data-call="${callId}"]`, { timeout: 10_000 });
  });
  await page.screenshot({ path: join(artifacts, 'inspector-list.png'), fullPage: true });

  const details = await api(`/call/details/${callId}`);
  await step('the call page opens with a latency bar per timed reply', async () => {
    await page.click(`tr[data-call="${callId}"]`);
    await page.waitForSelector('#latency .turn-bar', { timeout: 10_000 });
    const timed = details.turns.filter((t) => t.total_ms != null);
    if (timed.length === 0) throw new Error('the API has no timed replies');
    const bars = await page.$$eval('#latency .turn-bar', (all) => all.map((g) => ({
      turn: Number(g.dataset.turn),
      total: Number(g.dataset.total),
      stages: Object.fromEntries([...g.querySelectorAll('rect.stage')].map((r) => [r.dataset.stage, Number(r.dataset.ms)])),
      label: g.textContent,
    })));
    if (bars.length !== timed.length) throw new Error(`${bars.length} bars for ${timed.length} timed replies`);
    for (const [i, t] of timed.entries()) {
      const bar = bars[i];
      if (bar.turn !== t.turn || bar.total !== t.total_ms) {
        throw new Error(`bar ${i}: ${JSON.stringify(bar)} vs reply ${t.turn} total ${t.total_ms}`);
      }
      if (!bar.label.includes(`${t.total_ms} ms`)) throw new Error(`bar ${i} does not show its total: ${bar.label}`);
      for (const [name, ms] of Object.entries(t.stages)) {
        const stage = name.replace(/_ms$/, '');
        if (ms == null) {
          if (stage in bar.stages) throw new Error(`bar ${i} draws ${stage}, which did not happen`);
        } else if (bar.stages[stage] !== ms) {
          throw new Error(`bar ${i} ${stage}: ${bar.stages[stage]} vs ${ms}`);
        }
      }
    }
    // Each bar's slowest stage is its widest segment (ties allowed).
    const slowest = await page.$$eval('#latency .turn-bar', (all) => all.every((g) => {
      const rects = [...g.querySelectorAll('rect.stage')];
      const width = (r) => Number(r.getAttribute('width'));
      const longest = rects.reduce((a, b) => (Number(b.dataset.ms) > Number(a.dataset.ms) ? b : a));
      return rects.every((r) => width(r) <= width(longest) + 1e-6);
    }));
    if (!slowest) throw new Error('a bar\'s widest segment is not its slowest stage');
  });
  await step('the timeline spans the call, with both voices and the tools on it', async () => {
    const span = await page.$eval('#timeline', (svg) => Number(svg.dataset.durationMs));
    const lastEvent = Math.max(...details.turns.map((t) => t.ended_ms), ...details.transcript.map((t) => t.offset_ms));
    if (span < lastEvent) throw new Error(`the timeline spans ${span} ms; the call's last event is at ${lastEvent} ms`);
    if (details.duration_seconds && span < details.duration_seconds * 1000 - 1) {
      throw new Error(`the timeline spans ${span} ms of a ${details.duration_seconds} s call`);
    }
    const counts = await page.evaluate(() => ({
      caller: document.querySelectorAll('#timeline .caller-bar').length,
      agent: document.querySelectorAll('#timeline .agent-bar').length,
      tools: [...document.querySelectorAll('#timeline .tool-marker')].map((g) => g.dataset.name),
      hover: [...document.querySelectorAll('#timeline .tool-marker title')].map((t) => t.textContent),
    }));
    const users = details.transcript.filter((t) => t.role === 'user').length;
    const audible = details.turns.filter((t) => t.stamps.first_frame_ms != null || t.stamps.tts_first_audio_ms != null).length;
    if (counts.caller !== users) throw new Error(`${counts.caller} caller bars for ${users} caller turns`);
    if (counts.agent !== audible) throw new Error(`${counts.agent} agent bars for ${audible} audible replies`);
    const tools = details.turns.flatMap((t) => t.tools.map((tool) => tool.name));
    if (JSON.stringify(counts.tools) !== JSON.stringify(tools)) throw new Error(`tool markers ${counts.tools} vs ${tools}`);
    if (tools.length > 0 && !counts.hover[0].includes(details.turns.flatMap((t) => t.tools)[0].result_preview.slice(0, 10))) {
      throw new Error(`a tool's hover does not show its result: ${counts.hover[0]}`);
    }
    const inside = await page.$$eval('#timeline .agent-bar, #timeline .caller-bar', (all) => {
      const svg = document.querySelector('#timeline');
      const width = Number(svg.getAttribute('width'));
      return all.every((r) => Number(r.getAttribute('x')) >= 0 && Number(r.getAttribute('x')) + Number(r.getAttribute('width')) <= width + 1);
    });
    if (!inside) throw new Error('a speech bar lies outside the timeline');
  });
  await step('the transcript, the analysis and the webhook attempts are beside it', async () => {
    const lines = await page.$$eval('#transcript .line', (all) => all.length);
    if (lines !== details.transcript.length) throw new Error(`${lines} lines for ${details.transcript.length}`);
    await page.waitForSelector('#webhooks tr.attempt', { timeout: 10_000 });
    const attempt = await page.textContent('#webhooks tr.attempt');
    if (!/delivered/.test(attempt) || !/200/.test(attempt)) throw new Error(`attempt row: ${attempt}`);
    const analysis = await page.textContent('#analysis');
    if (!analysis.trim()) throw new Error('no analysis panel');
  });
  if (details.recording_url) {
    await step('the recording plays from the page and the timeline follows it', async () => {
      await page.waitForFunction(() => document.querySelector('#audio').src.startsWith('blob:'), null, { timeout: 10_000 });
      await page.waitForFunction(() => document.querySelector('#audio').readyState >= 1, null, { timeout: 10_000 });
      const seconds = await page.$eval('#audio', (a) => a.duration);
      if (!(seconds > 1)) throw new Error(`the recording lasts ${seconds} s`);
      // Clicking the last reply's bar seeks there and moves the playhead.
      await page.click('#latency .turn-bar:last-of-type text');
      const moved = await page.evaluate(() => {
        const line = document.querySelector('#playhead');
        return { visible: line.getAttribute('visibility'), x: Number(line.getAttribute('x1')), t: document.querySelector('#audio').currentTime };
      });
      if (moved.visible !== 'visible' || !(moved.t > 0)) throw new Error(`playhead ${JSON.stringify(moved)}`);
    });
  }
  await page.screenshot({ path: join(artifacts, 'inspector-call.png'), fullPage: true });
  if (longCallId) {
    await step('an hour-long call with 500 replies draws every one of them', async () => {
      const long = await api(`/call/details/${longCallId}`);
      const started = Date.now();
      await page.goto(`${baseUrl}/calls#call/${longCallId}`);
      await page.waitForFunction((n) => document.querySelectorAll('#latency .turn-bar').length === n, long.turns.length, { timeout: 30_000 });
      const drawn = Date.now() - started;
      const counts = await page.evaluate(() => ({
        agent: document.querySelectorAll('#timeline .agent-bar').length,
        caller: document.querySelectorAll('#timeline .caller-bar').length,
        interruptions: document.querySelectorAll('#timeline .interruption').length,
        lines: document.querySelectorAll('#transcript .line').length,
      }));
      const expected = {
        agent: long.turns.length,
        caller: long.transcript.filter((t) => t.role === 'user').length,
        interruptions: long.turns.reduce((n, t) => n + t.interruptions.length, 0),
        lines: long.transcript.length,
      };
      if (JSON.stringify(counts) !== JSON.stringify(expected)) {
        throw new Error(`drawn ${JSON.stringify(counts)}, expected ${JSON.stringify(expected)}`);
      }
      console.log(`     the ${long.turns.length}-reply call was drawn ${drawn} ms after navigation`);
      await page.click('#zoom-in');
      await page.click('#zoom-in');
      await page.screenshot({ path: join(artifacts, 'inspector-long.png') });
    });
  }
  await step('no console errors', async () => {
    if (errors.length > 0) throw new Error(errors.join('\n'));
  });
} catch (error) {
  failed = error;
  await page.screenshot({ path: join(artifacts, 'inspector-failed.png'), fullPage: true }).catch(() => {});
} finally {
  if (failed) console.log(`browser console:\n${consoleLines.join('\n')}`);
  await browser.close();
}
process.exit(failed ? 1 : 0);
