#!/usr/bin/env node
// Browser end-to-end test: a real Chromium talks WebSocket to the tower-upgrade
// echo example through the page it serves.
//
//   usage: node tests/browser/echo.mjs http://127.0.0.1:PORT/
//   env:   SCREENSHOT=path.png   also save a screenshot of the page (pass or fail)
//          CHROMIUM=/path        browser binary (default /usr/bin/chromium, Debian's)
//          ECHO_TIMEOUT_MS=10000 how long to wait for each step
//
// Prints `browser echo: PASS` and exits 0 when permessage-deflate was negotiated and
// the echoed text message and a 1 MiB binary message show up in the page; otherwise
// prints what it saw and exits 1.
//
// ---------------------------------------------------------------------------
// PAGE CONTRACT (the page served at the URL must follow it exactly):
//
//   #state    any element. Its textContent is exactly `connecting` while the
//             WebSocket is connecting, `open` once its `open` event fired, and
//             `closed` after `close` (or `error`). Whitespace around it is ignored.
//   #message  an <input type="text"> holding the message to send.
//   #send     a <button>. Clicking it sends the current value of #message as one
//             WebSocket text frame, and appends a sent entry to #log.
//   #log      a list (<ul>/<ol>, or any container). Each entry is one child
//             element appended at the end:
//               sent:     textContent `> ` + message   (e.g. `> hello`)
//               received: textContent `< ` + message   (e.g. `< hello`)
//             i.e. a `>` or `<`, one space, then the message text verbatim
//             (set with textContent, not innerHTML). A received entry carries its
//             round trip in ms in `data-rtt`.
//   #extensions  textContent: the extensions the WebSocket negotiated
//             (`WebSocket.extensions`) once open.
//   window.sendBinary(size)  sends a binary message of `size` bytes; its echo is
//             logged as `< (binary: SIZE bytes, same)` when identical.
//
// The page opens its WebSocket by itself on load, to the same host as the page
// (e.g. ws://HOST:PORT/ws); this test does not tell it where.
// ---------------------------------------------------------------------------
//
// The browser is Debian's chromium driven by playwright-core; nothing is ever
// downloaded (`npx playwright install` does not work on these machines). Each run
// uses a fresh temporary profile directory, removed afterwards.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const url = process.argv[2];
if (!url) {
  console.error('usage: node tests/browser/echo.mjs http://127.0.0.1:PORT/');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const stepTimeout = Number(process.env.ECHO_TIMEOUT_MS || 10000);
const screenshot = process.env.SCREENSHOT || '';
// Non-ASCII on purpose: the text frame must round-trip as UTF-8.
const message = `hello from chromium \u2713 ${process.pid}-${Date.now()}`;

const seen = { console: [], errors: [], sockets: [] };
let context;
let page;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-upgrade-chromium-'));

// Hard stop, in case the browser itself hangs.
const watchdog = setTimeout(() => {
  console.log('browser echo: FAIL (watchdog: the whole test took longer than 60 s)');
  cleanup().finally(() => process.exit(1));
}, 60000);

async function cleanup() {
  try {
    if (context) await context.close();
  } catch {}
  context = undefined;
  try {
    fs.rmSync(userDataDir, { recursive: true, force: true });
  } catch {}
}

async function describe() {
  const out = { url: page ? page.url() : url };
  if (page) {
    try {
      out.page = await page.evaluate(() => {
        const q = (id) => document.getElementById(id);
        const log = q('log');
        return {
          title: document.title,
          state: q('state') ? q('state').textContent.trim() : '(no #state element)',
          hasMessage: !!q('message'),
          hasSend: !!q('send'),
          log: log ? Array.from(log.children, (e) => e.textContent) : '(no #log element)',
        };
      });
    } catch (e) {
      out.page = `(could not read the page: ${e.message})`;
    }
  }
  out.websockets = seen.sockets;
  out.console = seen.console.slice(-20);
  out.pageErrors = seen.errors;
  return out;
}

async function shoot() {
  if (!screenshot || !page) return;
  try {
    fs.mkdirSync(path.dirname(path.resolve(screenshot)), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    console.log(`browser echo: screenshot ${screenshot}`);
  } catch (e) {
    console.log(`browser echo: screenshot failed: ${e.message}`);
  }
}

let step = 'launch chromium';
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 800, height: 600 },
    timeout: 30000,
  });
  page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => seen.console.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('websocket', (ws) => {
    const s = { url: ws.url(), sent: [], received: [], closed: false, error: null };
    seen.sockets.push(s);
    ws.on('framesent', (f) => s.sent.push(String(f.payload).slice(0, 200)));
    ws.on('framereceived', (f) => s.received.push(String(f.payload).slice(0, 200)));
    ws.on('socketerror', (e) => (s.error = String(e)));
    ws.on('close', () => (s.closed = true));
  });

  step = `open ${url}`;
  await page.goto(url, { waitUntil: 'load', timeout: stepTimeout });

  step = 'wait for #state to say "open"';
  await page.waitForFunction(
    () => {
      const s = document.getElementById('state');
      return !!s && s.textContent.trim() === 'open';
    },
    null,
    { timeout: stepTimeout },
  );

  step = 'type the message into #message and click #send';
  await page.fill('#message', message, { timeout: stepTimeout });
  await page.click('#send', { timeout: stepTimeout });

  step = `wait for "< ${message}" in #log`;
  await page.waitForFunction(
    (want) => {
      const log = document.getElementById('log');
      return !!log && Array.from(log.children).some((e) => e.textContent.trim() === want);
    },
    `< ${message}`,
    { timeout: stepTimeout },
  );

  step = 'check #extensions shows permessage-deflate';
  const extensions = await page.evaluate(() => document.getElementById('extensions').textContent.trim());
  if (!extensions.startsWith('permessage-deflate')) {
    throw new Error(`permessage-deflate was not negotiated: #extensions is ${JSON.stringify(extensions)}`);
  }
  const rtt = await page.evaluate(
    (want) => Array.from(document.getElementById('log').children).find((e) => e.textContent.trim() === want)?.dataset.rtt,
    `< ${message}`,
  );
  if (rtt === undefined) throw new Error('the echo has no data-rtt round trip');

  step = 'send a 1 MiB binary message with window.sendBinary and wait for its echo';
  const size = 1 << 20;
  await page.evaluate((n) => window.sendBinary(n), size);
  await page.waitForFunction(
    (want) => Array.from(document.getElementById('log').children).some((e) => e.textContent.trim() === want),
    `< (binary: ${size} bytes, same)`,
    { timeout: stepTimeout },
  );
  const binRtt = await page.evaluate(
    () => Array.from(document.getElementById('log').children).filter((e) => e.textContent.startsWith('< (binary')).pop()?.dataset.rtt,
  );

  await shoot();
  const sentShown = await page.evaluate(
    (want) => Array.from(document.getElementById('log').children).some((e) => e.textContent.trim() === want),
    `> ${message}`,
  );
  if (!sentShown) console.log(`browser echo: note: no "> ${message}" entry in #log`);
  console.log(`browser echo: negotiated ${JSON.stringify(extensions)}`);
  console.log(`browser echo: round trips: text ${rtt} ms, 1 MiB binary ${binRtt} ms`);
  console.log(`browser echo: echoed ${JSON.stringify(message)} via ${seen.sockets.map((s) => s.url).join(', ') || '?'}`);
  console.log('browser echo: PASS');
  clearTimeout(watchdog);
  await cleanup();
  process.exit(0);
} catch (e) {
  console.log(`browser echo: FAIL at step: ${step}`);
  console.log(`browser echo: error: ${String(e.message || e).split('\n')[0]}`);
  console.log(`browser echo: saw: ${JSON.stringify(await describe(), null, 2)}`);
  await shoot();
  clearTimeout(watchdog);
  await cleanup();
  process.exit(1);
}
