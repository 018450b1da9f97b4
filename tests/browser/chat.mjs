#!/usr/bin/env node
// Browser end-to-end test of the chat example: two pages in a real Chromium (Debian's,
// driven by playwright-core) join the room through the page the example serves, exchange
// messages, see the same order and the number online, and one page reconnects after its
// connection drops.
//
//   usage: node tests/browser/chat.mjs http://127.0.0.1:PORT/
//   env:   SCREENSHOT=path.png   also save a screenshot of both pages (pass or fail)
//          CHROMIUM=/path        browser binary (default /usr/bin/chromium)
//          STEP_TIMEOUT_MS=10000 how long to wait for each step
//
// Prints `browser chat: PASS` and exits 0, or what it saw and exits 1.
//
// Page contract: #name (input), #message (input), #send (button), #log (one child per
// received message, its text verbatim), #state (`connecting` / `open` / `closed`),
// #online (the number of people in the room); `window.chatSocket` is the page's current
// WebSocket.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const url = process.argv[2];
if (!url) {
  console.error('usage: node tests/browser/chat.mjs http://127.0.0.1:PORT/');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const stepTimeout = Number(process.env.STEP_TIMEOUT_MS || 10000);
const screenshot = process.env.SCREENSHOT || '';
const tag = `${process.pid}-${Date.now()}`;
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tower-upgrade-chromium-'));
let context;
const pages = [];

const watchdog = setTimeout(() => {
  console.log('browser chat: FAIL (watchdog: the whole test took longer than 90 s)');
  cleanup().finally(() => process.exit(1));
}, 90000);

async function cleanup() {
  try {
    if (context) await context.close();
  } catch {}
  context = undefined;
  try {
    fs.rmSync(userDataDir, { recursive: true, force: true });
  } catch {}
}

const log = (page) =>
  page.evaluate(() => Array.from(document.getElementById('log').children, (e) => e.textContent));

async function waitState(page, want) {
  await page.waitForFunction(
    (w) => document.getElementById('state')?.textContent.trim() === w,
    want,
    { timeout: stepTimeout },
  );
}

async function say(page, text) {
  await page.fill('#message', text, { timeout: stepTimeout });
  await page.click('#send', { timeout: stepTimeout });
}

async function waitLog(page, want) {
  await page.waitForFunction(
    (w) => Array.from(document.getElementById('log').children).some((e) => e.textContent === w),
    want,
    { timeout: stepTimeout },
  );
}

async function shoot() {
  if (!screenshot) return;
  for (const [i, page] of pages.entries()) {
    try {
      const file = screenshot.replace(/\.png$/, `-${i + 1}.png`);
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      await page.screenshot({ path: file, fullPage: true });
      console.log(`browser chat: screenshot ${file}`);
    } catch (e) {
      console.log(`browser chat: screenshot failed: ${e.message}`);
    }
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
  for (const name of ['ana', 'ben']) {
    step = `open the page for ${name}`;
    const page = pages.length === 0 ? context.pages()[0] || (await context.newPage()) : await context.newPage();
    pages.push(page);
    await page.goto(url, { waitUntil: 'load', timeout: stepTimeout });
    await waitState(page, 'open');
    await page.fill('#name', name, { timeout: stepTimeout });
  }
  const [ana, ben] = pages;

  step = 'both pages show 2 people online';
  for (const page of pages) {
    await page.waitForFunction(() => document.getElementById('online').textContent.trim() === '2', null, {
      timeout: stepTimeout,
    });
  }

  step = 'ana and ben each send a message; both pages show both';
  const fromAna = `ana: hello ${tag} ✓`;
  const fromBen = `ben: hi ${tag}`;
  await say(ana, `hello ${tag} ✓`);
  await waitLog(ben, fromAna);
  await say(ben, `hi ${tag}`);
  for (const page of pages) {
    await waitLog(page, fromAna);
    await waitLog(page, fromBen);
  }
  step = 'both pages saw the same order';
  const [logA, logB] = [await log(ana), await log(ben)];
  if (JSON.stringify(logA) !== JSON.stringify(logB)) {
    throw new Error(`different orders: ${JSON.stringify(logA)} vs ${JSON.stringify(logB)}`);
  }

  step = "ben's connection drops; his page reconnects and is heard again";
  await ben.evaluate(() => window.chatSocket.close());
  await waitState(ben, 'open');
  const again = `ben: back ${tag}`;
  await say(ben, `back ${tag}`);
  await waitLog(ana, again);
  await waitLog(ben, again);

  await shoot();
  console.log(`browser chat: two pages exchanged ${(await log(ana)).length} messages in one order; one reconnected`);
  console.log('browser chat: PASS');
  clearTimeout(watchdog);
  await cleanup();
  process.exit(0);
} catch (e) {
  console.log(`browser chat: FAIL at step: ${step}`);
  console.log(`browser chat: error: ${String(e.message || e).split('\n')[0]}`);
  for (const [i, page] of pages.entries()) {
    try {
      console.log(`browser chat: page ${i + 1} state=${await page.textContent('#state')} log=${JSON.stringify(await log(page))}`);
    } catch {}
  }
  await shoot();
  clearTimeout(watchdog);
  await cleanup();
  process.exit(1);
}
