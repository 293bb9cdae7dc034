// End-to-end test of the voxbridge widget in a real browser: headless Debian Chromium with a fake
// microphone playing a speech WAV, driven by playwright-core (never downloads a browser).
//
//   node tests/browser/e2e.mjs <base_url> <api_key> [mic.wav]
//
// The demo page at <base_url>/ is used as a visitor would: paste the key, load the assistants,
// press Call. Checks, in order: the socket starts; the caller's words come back as a transcript
// on the page; the agent's audio is played (loudness measured in the playback worklet); speech
// over the agent's reply brings `interrupt` and the playback is flushed and falls silent. A
// screenshot is saved to $VOXBRIDGE_ARTIFACTS (default target/browser-artifacts) either way.
// Exit code 0 on success; 1 with the reason otherwise.
//
// With VOXBRIDGE_E2E_MODE=shop the server's assistant is linked to a catalog and the caller asks
// for a product: the agent's `recommendation` event must show product cards (title, price,
// image, link) beside the transcript, then the call is hung up (screenshot e2e-shop.png).

import { mkdirSync, existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '..', '..');
const [baseUrl, apiKey, micArg] = process.argv.slice(2);
if (!baseUrl || !apiKey) {
  console.error('usage: node e2e.mjs <base_url> <api_key> [mic.wav]');
  process.exit(2);
}
const mic = resolve(micArg || join(root, 'audio', 'caller', 'book_table.wav'));
const artifacts = resolve(process.env.VOXBRIDGE_ARTIFACTS || join(root, 'target', 'browser-artifacts'));
const chromiumPath = process.env.VOXBRIDGE_CHROMIUM || '/usr/bin/chromium';
mkdirSync(artifacts, { recursive: true });
if (!existsSync(mic)) {
  console.error(`no microphone WAV at ${mic}`);
  process.exit(2);
}

const args = [
  '--use-fake-ui-for-media-stream',
  '--use-fake-device-for-media-stream',
  `--use-file-for-fake-audio-capture=${mic}%noloop`,
  '--autoplay-policy=no-user-gesture-required',
  '--disable-background-networking',
  '--disable-dev-shm-usage',
];
if (typeof process.getuid === 'function' && process.getuid() === 0) args.push('--no-sandbox');

const browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args });
const page = await browser.newPage();
const consoleLines = [];
page.on('console', (m) => consoleLines.push(`[${m.type()}] ${m.text()}`));
page.on('pageerror', (e) => consoleLines.push(`[pageerror] ${e.message}`));

const stats = () => page.evaluate(() => (window.voxbridgeCall ? window.voxbridgeCall.stats : null));
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

let failed = null;
const shop = process.env.VOXBRIDGE_E2E_MODE === 'shop';
// The demo call's screenshot; the embedding step's goes to its own file.
let shotName = shop ? 'e2e-shop.png' : 'e2e.png';
try {
  if (shop) {
    await shopSteps();
  } else {
    await voiceSteps();
  }
} catch (error) {
  failed = error;
} finally {
  const shot = join(artifacts, shotName);
  await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
  const s = await stats().catch(() => null);
  console.log(`screenshot: ${shot}`);
  console.log(`stats: ${JSON.stringify(s && { ...s, transcripts: s.transcripts.length, agentText: s.agentText.join(' ') })}`);
  if (failed) console.log(`browser console:\n${consoleLines.join('\n')}`);
  await browser.close();
}
process.exit(failed ? 1 : 0);

async function startDemoCall() {
  await step('the demo page loads', async () => {
    await page.goto(`${baseUrl}/`);
    await page.fill('#key', apiKey);
    await page.click('#load');
    await page.waitForFunction(() => document.querySelector('#assistant').value !== '', null, {
      timeout: 10_000,
    });
  });
  await step('the call starts (socket open, started received)', async () => {
    await page.click('.vbx button[data-role=call]');
    await page.waitForFunction(() => window.voxbridgeCall && window.voxbridgeCall.stats.started, null, {
      timeout: 15_000,
    });
  });
}

async function shopSteps() {
  await startDemoCall();
  await step('asked for a product, the agent shows product cards beside the transcript', async () => {
    await page.waitForFunction(() => window.voxbridgeCall.stats.recommendations.length > 0, null, {
      timeout: 40_000,
    });
    await page.waitForFunction(() => document.querySelectorAll('.vbx-products .vbx-card').length >= 2, null, {
      timeout: 2_000,
    });
    const cards = await page.$$eval('.vbx-products .vbx-card', (all) =>
      all.map((card) => ({
        id: card.dataset.productId,
        title: card.querySelector('a') && card.querySelector('a').textContent,
        href: card.querySelector('a') && card.querySelector('a').href,
        image: card.querySelector('img') && card.querySelector('img').getAttribute('src'),
        price: card.querySelector('.vbx-price') && card.querySelector('.vbx-price').textContent,
        visible: card.getBoundingClientRect().width > 0,
      })),
    );
    const pink = cards.find((c) => c.title === 'Pink dress size 10yrs');
    if (!pink) throw new Error(`no card for the pink dress: ${JSON.stringify(cards)}`);
    if (!pink.visible) throw new Error('the cards are not shown');
    if (pink.href !== 'https://shop.example.com/products/pink-dress-10yrs') {
      throw new Error(`the card links to ${pink.href}`);
    }
    if (!/pink-dress-10yrs\.jpg$/.test(pink.image || '')) throw new Error(`image ${pink.image}`);
    if (!/79\.90/.test(pink.price || '')) throw new Error(`price ${pink.price}`);
    // Beside the transcript: the log is still there, with the caller's words in it.
    const log = await page.textContent('.vbx-log');
    if (!/pink dress/i.test(log)) throw new Error(`the transcript beside the cards: ${log}`);
    const side = await page.evaluate(() => {
      const log = document.querySelector('.vbx-log').getBoundingClientRect();
      const shelf = document.querySelector('.vbx-products').getBoundingClientRect();
      return shelf.left >= log.right - 1 && shelf.top < log.bottom;
    });
    if (!side) throw new Error('the cards are not beside the transcript');
  });
  await page.screenshot({ path: join(artifacts, shotName), fullPage: true });
  await step('hang up ends the call normally', async () => {
    await page.click('.vbx button[data-role=hangup]');
    await page.waitForFunction(() => window.voxbridgeCall.stats.close !== null, null, { timeout: 10_000 });
  });
}

async function voiceSteps() {
  await startDemoCall();
  await step('the keypad opens with twelve keys and closes again', async () => {
    await page.click('.vbx button[data-role=keys]');
    const keys = await page.$$eval('.vbx-keypad.vbx-open button', (all) => all.map((b) => b.dataset.key));
    if (keys.join('') !== '123456789*0#') throw new Error(`keys ${JSON.stringify(keys)}`);
    await page.click('.vbx button[data-role=keys]');
    if (await page.$('.vbx-keypad.vbx-open')) throw new Error('the keypad stayed open');
  });
  await step("the agent's audio is played (non-silent output)", async () => {
    await page.waitForFunction(() => window.voxbridgeCall.stats.maxRms > 0.02, null, { timeout: 20_000 });
  });
  await step("the caller's first utterance comes back as a transcript on the page", async () => {
    await page.waitForFunction(
      () => /book a table/i.test(document.querySelector('.vbx-log').textContent),
      null,
      { timeout: 30_000 },
    );
  });
  await step("speech over the agent's reply interrupts it and playback is flushed", async () => {
    await page.waitForFunction(() => window.voxbridgeCall.stats.interrupts > 0, null, { timeout: 30_000 });
    await page.waitForFunction(() => window.voxbridgeCall.stats.flushes > 0, null, { timeout: 2_000 });
    // Nothing of the interrupted reply plays on: the output stays silent after the flush until
    // a new reply arrives, which needs the caller's turn to end first (endpointing alone is
    // 300 ms of silence). Unflushed or still-streaming old audio would sound within 20-40 ms.
    await page.waitForTimeout(500);
    const s = await stats();
    const quiet = s.quietAfterFlushMs.length > 0 ? s.quietAfterFlushMs[0] : Infinity;
    if (quiet < 100) {
      throw new Error(`playback audible ${Math.round(quiet)} ms after the flush`);
    }
  });
  await step('hang up ends the call normally', async () => {
    await page.click('.vbx button[data-role=hangup]');
    await page.waitForFunction(() => window.voxbridgeCall.stats.close !== null, null, { timeout: 10_000 });
    const s = await stats();
    if (s.close.code !== 1000 || s.endReason !== 'caller_hung_up') {
      throw new Error(`closed with ${JSON.stringify(s.close)}, end ${s.endReason}`);
    }
  });
  await page.screenshot({ path: join(artifacts, shotName), fullPage: true });
  shotName = 'e2e-embed.png';
  await step('one script tag and a token endpoint embed the widget on any page', async () => {
    const assistantId = await page.evaluate(() => document.querySelector('#assistant').value);
    // A customer's backend: its token endpoint holds the API key.
    await page.route(`${baseUrl}/my-token`, async (route) => {
      const response = await fetch(`${baseUrl}/web-call/create`, {
        method: 'POST',
        headers: { Authorization: `Bearer ${apiKey}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ assistant_id: assistantId, metadata: { name: 'Embedded' } }),
      });
      route.fulfill({ contentType: 'application/json', body: await response.text() });
    });
    // The one tag, added to a page served from the network (a page Playwright made up itself
    // would be refused local-network access by Chromium). Its own URL, so the module runs anew.
    await page.goto(`${baseUrl}/`);
    await page.evaluate(() => {
      const tag = document.createElement('script');
      tag.type = 'module';
      tag.src = '/widget/voxbridge.js?embedded';
      tag.dataset.tokenUrl = '/my-token';
      tag.dataset.label = 'Talk to Acme';
      document.body.appendChild(tag);
    });
    await page.waitForSelector('.vbx-floating button[data-role=call]', { timeout: 10_000 });
    await page.click('.vbx-floating button[data-role=call]');
    await page.waitForFunction(() => window.voxbridgeCall && window.voxbridgeCall.stats.started, null, {
      timeout: 15_000,
    });
    await page.waitForFunction(() => window.voxbridgeCall.stats.maxRms > 0.02, null, { timeout: 20_000 });
    await page.click('.vbx-floating button[data-role=hangup]');
    await page.waitForFunction(() => window.voxbridgeCall.stats.close !== null, null, { timeout: 10_000 });
    const s = await stats();
    if (s.close.code !== 1000) throw new Error(`closed with ${JSON.stringify(s.close)}`);
    const text = await page.textContent('.vbx-floating');
    if (!/Talk to Acme/.test(text)) throw new Error(`the widget's label is missing: ${text}`);
  });
}
