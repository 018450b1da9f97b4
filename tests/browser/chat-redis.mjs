#!/usr/bin/env node
// Browser end-to-end test of the chat across instances (REDIS_URL): three pages in a real
// Chromium, one on each instance directly and one through nginx, exchange messages in one
// order; Redis is stopped: every page shows the room `degraded` and a system line, and a
// message sent meanwhile is shown to its sender as not sent and to nobody else; Redis is
// started again: every page shows `up`, and messages cross instances again.
//
//   usage: node tests/browser/chat-redis.mjs http://A/ http://B/ http://NGINX/
//   env:   REDIS_STOP="cmd" REDIS_START="cmd"   shell commands that stop and start Redis
//          SCREENSHOT=path.png, CHROMIUM=/path, STEP_TIMEOUT_MS=10000 (as chat.mjs)
//
// Prints `browser chat-redis: PASS` and exits 0, or what it saw and exits 1.
//
// Page contract, besides chat.mjs's: #room (`up` / `degraded`), shown once a notice
// arrived; each notice is one #log child with class `system`.

import { chromium } from 'playwright-core';
import { execSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const urls = process.argv.slice(2);
if (urls.length !== 3 || !process.env.REDIS_STOP || !process.env.REDIS_START) {
  console.error('usage: REDIS_STOP=.. REDIS_START=.. node tests/browser/chat-redis.mjs http://A/ http://B/ http://NGINX/');
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
  console.log('browser chat-redis: FAIL (watchdog: the whole test took longer than 90 s)');
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

const chatLog = (page) =>
  page.evaluate(() =>
    Array.from(document.getElementById('log').children)
      .filter((e) => !e.classList.contains('system'))
      .map((e) => e.textContent),
  );
const systemLog = (page) =>
  page.evaluate(() => Array.from(document.querySelectorAll('#log li.system'), (e) => e.textContent));

async function waitFor(page, fn, arg) {
  await page.waitForFunction(fn, arg, { timeout: stepTimeout });
}

async function say(page, text) {
  await page.fill('#message', text, { timeout: stepTimeout });
  await page.click('#send', { timeout: stepTimeout });
}

const hasLine = (w) => Array.from(document.getElementById('log').children).some((e) => e.textContent === w);
const roomIs = (w) => document.getElementById('room')?.textContent.trim() === w &&
  !document.getElementById('room-box').hidden;

async function shoot() {
  if (!screenshot) return;
  for (const [i, page] of pages.entries()) {
    try {
      const file = screenshot.replace(/\.png$/, `-${i + 1}.png`);
      fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
      await page.screenshot({ path: file, fullPage: true });
      console.log(`browser chat-redis: screenshot ${file}`);
    } catch (e) {
      console.log(`browser chat-redis: screenshot failed: ${e.message}`);
    }
  }
}

let step = 'launch chromium';
try {
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 800, height: 600 },
    timeout: 30000,
  });
  const names = ['ana', 'ben', 'cy'];
  for (const [i, url] of urls.entries()) {
    step = `open the page for ${names[i]} at ${url}`;
    const page = i === 0 ? context.pages()[0] || (await context.newPage()) : await context.newPage();
    pages.push(page);
    await page.goto(url, { waitUntil: 'load', timeout: stepTimeout });
    await waitFor(page, () => document.getElementById('state')?.textContent.trim() === 'open');
    await page.fill('#name', names[i], { timeout: stepTimeout });
  }
  const [ana, ben, cy] = pages;

  step = 'each page sends a message; every page shows all three in one order';
  const said = [];
  for (const [i, page] of pages.entries()) {
    said.push(`${names[i]}: hello ${tag}`);
    await say(page, `hello ${tag}`);
    await waitFor(page, hasLine, said[i]);
  }
  for (const page of pages) for (const line of said) await waitFor(page, hasLine, line);
  const orders = await Promise.all(pages.map(chatLog));
  if (!orders.every((o) => JSON.stringify(o) === JSON.stringify(orders[0]))) {
    throw new Error(`different orders: ${JSON.stringify(orders)}`);
  }

  step = 'Redis stops: every page shows the room degraded, and stays open';
  execSync(process.env.REDIS_STOP, { stdio: 'inherit' });
  for (const page of pages) {
    await waitFor(page, roomIs, 'degraded');
    await waitFor(page, () => document.getElementById('state')?.textContent.trim() === 'open');
  }

  step = 'a message sent while degraded is shown to its sender as not sent';
  const lost = `while down ${tag}`;
  await say(ana, lost);
  await waitFor(ana, () => Array.from(document.querySelectorAll('#log li.system')).some((e) =>
    e.textContent.includes('not sent') && e.textContent.includes('while down')));

  step = 'Redis starts again: every page shows the room up; messages cross instances again';
  execSync(process.env.REDIS_START, { stdio: 'inherit' });
  for (const page of pages) await waitFor(page, roomIs, 'up');
  const back = `ben: back ${tag}`;
  await say(ben, `back ${tag}`);
  for (const page of pages) await waitFor(page, hasLine, back);
  for (const page of pages) {
    if ((await chatLog(page)).some((l) => l.includes('while down'))) {
      throw new Error('the refused message reached a page');
    }
  }

  await shoot();
  console.log(`browser chat-redis: three pages on two instances (one through nginx) in one order; ` +
    `Redis restarted: pages showed ${JSON.stringify(await systemLog(cy))}; the sender of a message ` +
    `sent while degraded saw ${JSON.stringify((await systemLog(ana)).filter((l) => l.includes('not sent')))}`);
  console.log('browser chat-redis: PASS');
  clearTimeout(watchdog);
  await cleanup();
  process.exit(0);
} catch (e) {
  console.log(`browser chat-redis: FAIL at step: ${step}`);
  console.log(`browser chat-redis: error: ${String(e.message || e).split('\n')[0]}`);
  for (const [i, page] of pages.entries()) {
    try {
      const room = await page.textContent('#room');
      const all = await page.evaluate(() => Array.from(document.getElementById('log').children, (e) => e.textContent));
      console.log(`browser chat-redis: page ${i + 1} room=${room} log=${JSON.stringify(all)}`);
    } catch {}
  }
  await shoot();
  clearTimeout(watchdog);
  await cleanup();
  process.exit(1);
}
