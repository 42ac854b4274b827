// The listener page plays a room over WebSocket + WebCodecs + AudioWorklet: a CLI speaker says
// a 440 Hz tone; the page's decoded audio has that frequency.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, ARTIFACTS, BIN, launchBrowser, screenshot, startServer, toneWav, API_KEY } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser(toneWav(join(ARTIFACTS, 'silence-mic.wav'), 1000, 2));
});

after(async () => {
  await browser?.close();
  server?.stop();
});

test('listener page decodes a CLI speaker\'s 440 Hz tone', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Browser listen test' }, API_KEY);
  const speaker = spawn(
    BIN,
    ['speak', '--server', server.url, '--room', room.id, '--token', room.host_token, '--tone', '440', '--seconds', '20'],
    { stdio: 'inherit' },
  );
  try {
    const page = await (await browser.newContext()).newPage();
    page.on('console', (m) => m.type() === 'error' && console.log('page:', m.text()));
    await page.goto(`${server.url}/r/${room.id}`);
    await page.click('#listen');
    await page.waitForFunction(() => window.tribune.player && window.tribune.player.stats.framesReceived > 150, null, { timeout: 15000 });
    const freq = await page.evaluate(() => window.tribune.frequency());
    const stats = await page.evaluate(() => window.tribune.player.stats);
    console.log('listener page:', { freq, stats });
    assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
    assert.equal(stats.framesLost, 0);
    assert.equal(stats.decodeErrors, 0);
    assert.equal(await page.textContent('#state'), 'LIVE');
    await screenshot(page, 'listener-page-cli-speaker');
  } finally {
    speaker.kill();
  }
});

test('lobby lists the room and creates a new one', async () => {
  const page = await (await browser.newContext()).newPage();
  await page.goto(server.url);
  await page.waitForSelector('#rooms a');
  assert.match(await page.textContent('#rooms'), /Browser listen test/);
  await page.fill('#title', 'Made in the lobby');
  await page.click('#create-btn');
  // Only operators start rooms: the lobby asks for the key once.
  await page.waitForSelector('#api-key', { state: 'visible' });
  assert.match(await page.textContent('#create-error'), /operator key/);
  await page.fill('#api-key', 'not-the-key-at-all');
  await page.click('#create-btn');
  await page.waitForFunction(() => /refused/.test(document.querySelector('#create-error').textContent));
  await page.fill('#api-key', API_KEY);
  await page.click('#create-btn');
  await page.waitForURL(/\/host\/[a-z0-9]{10}$/);
  const id = page.url().split('/').pop();
  const room = await api(server.url, 'GET', `/api/rooms/${id}`);
  assert.equal(room.title, 'Made in the lobby');
  await page.waitForFunction(() => document.querySelector('#title').textContent === 'Made in the lobby');
  await screenshot(page, 'host-console-new-room');
  // The key is remembered: the next room is made without asking.
  await page.goto(server.url);
  await page.fill('#title', 'A second lobby room');
  await page.click('#create-btn');
  await page.waitForURL(/\/host\/[a-z0-9]{10}$/);
  assert.notEqual(page.url().split('/').pop(), id);
});
