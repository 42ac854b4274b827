// The end-to-end: the host console publishes Chromium's fake microphone (a 440 Hz WAV)
// over WHIP; a second browser context opens the listener page and hears 440 Hz; the host console
// shows the listener. Screenshots of both pages are saved in test-artifacts/.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, ARTIFACTS, launchBrowser, screenshot, startServer, toneWav, API_KEY } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser(toneWav(join(ARTIFACTS, 'mic-440.wav'), 440, 30));
});

after(async () => {
  await browser?.close();
  server?.stop();
});

test('host goes live from the browser and a listener page hears 440 Hz', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Browser stage test' }, API_KEY);
  const hostPage = await (await browser.newContext()).newPage();
  hostPage.on('console', (m) => m.type() === 'error' && console.log('host page:', m.text()));
  await hostPage.goto(`${server.url}/host/${room.id}#token=${room.host_token}`);
  await hostPage.click('#go-live');
  await hostPage.waitForFunction(() => /connected|live/.test(document.querySelector('#mic-status').textContent), null, { timeout: 15000 });
  // The server sees one speaker.
  for (let i = 0; i < 50; i++) {
    if ((await api(server.url, 'GET', `/api/rooms/${room.id}`)).speakers === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await api(server.url, 'GET', `/api/rooms/${room.id}`)).speakers, 1);

  const listenPage = await (await browser.newContext()).newPage();
  listenPage.on('console', (m) => m.type() === 'error' && console.log('listener page:', m.text()));
  await listenPage.goto(`${server.url}/r/${room.id}`);
  await listenPage.click('#listen');
  await listenPage.waitForFunction(() => window.tribune.player && window.tribune.player.stats.framesReceived > 200, null, { timeout: 20000 });
  const freq = await listenPage.evaluate(() => window.tribune.frequency());
  const stats = await listenPage.evaluate(() => window.tribune.player.stats);
  console.log('listener page hears the host:', { freq, stats });
  assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
  assert.equal(stats.decodeErrors, 0);

  await hostPage.waitForFunction(() => parseInt(document.querySelector('#listeners').textContent, 10) >= 1, null, { timeout: 5000 });
  const count = parseInt(await hostPage.textContent('#listeners'), 10);
  assert.ok(count >= 1, `host console shows ${count} listeners`);
  await screenshot(hostPage, 'host-console-live');
  await screenshot(listenPage, 'listener-page-hears-host');
});

test('a listener requests to speak, the host accepts, the listener publishes, the host ends the room', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Request to speak' }, API_KEY);
  const hostPage = await (await browser.newContext()).newPage();
  hostPage.on('dialog', (d) => d.accept());
  await hostPage.goto(`${server.url}/host/${room.id}#token=${room.host_token}`);

  // A phone-sized listener.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true });
  const listenPage = await phone.newPage();
  await listenPage.goto(`${server.url}/r/${room.id}`);
  await listenPage.click('#listen');
  await listenPage.waitForFunction(() => window.tribune.player && window.tribune.player.state === 'live', null, { timeout: 10000 });
  await listenPage.click('#request');
  await listenPage.waitForFunction(() => /in line|Waiting|Request sent/.test(document.querySelector('#stage-status').textContent));

  // The host console lists the request; accepting it puts the listener on stage.
  await hostPage.waitForSelector('#requests button:has-text("Accept")', { timeout: 10000 });
  await screenshot(hostPage, 'host-console-request');
  await hostPage.click('#requests button:has-text("Accept")');
  await listenPage.waitForFunction(() => /live on stage/.test(document.querySelector('#stage-status').textContent), null, { timeout: 15000 });
  for (let i = 0; i < 50; i++) {
    if ((await api(server.url, 'GET', `/api/rooms/${room.id}`)).speakers === 1) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal((await api(server.url, 'GET', `/api/rooms/${room.id}`)).speakers, 1, 'the listener publishes over WHIP');
  // Host (not connected) and the new speaker.
  await hostPage.waitForFunction(() => document.querySelectorAll('#speakers .speaker').length === 2);
  await screenshot(listenPage, 'listener-page-on-stage-phone');

  // Ending the room reaches the listener page as a clear state.
  await hostPage.click('#end');
  await listenPage.waitForFunction(() => document.querySelector('#state').textContent === 'ended', null, { timeout: 10000 });
  assert.match(await listenPage.textContent('#listen'), /ended/);
  await screenshot(listenPage, 'listener-page-ended-phone');
});

test('a link with another token is offered to the host, never swapped in silently', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Token links' }, API_KEY);
  const cohost = await api(server.url, 'POST', `/api/rooms/${room.id}/speakers`, { role: 'co_host' }, room.host_token);
  const page = await (await browser.newContext()).newPage();
  const stored = () => page.evaluate((id) => localStorage.getItem(`tribune.token.${id}`), room.id);
  // A browser with no token for the room takes the link's; the token leaves the address bar.
  await page.goto(`${server.url}/host/${room.id}#token=${room.host_token}`);
  await page.waitForFunction(() => document.querySelector('#state').textContent !== 'loading');
  assert.equal(await stored(), room.host_token);
  assert.equal(new URL(page.url()).hash, '');
  assert.equal(await page.isVisible('#token-offer'), false);
  // A link carrying another token: offered, not taken.
  await page.goto(`${server.url}/host/${room.id}#token=${cohost.token}`);
  await page.waitForSelector('#token-offer', { state: 'visible' });
  assert.equal(await stored(), room.host_token);
  await screenshot(page, 'host-console-token-offer');
  await page.click('#token-keep');
  assert.equal(await page.isVisible('#token-offer'), false);
  assert.equal(await stored(), room.host_token);
  // Taken only when the host says so.
  await page.goto(`${server.url}/host/${room.id}#token=${cohost.token}`);
  await page.click('#token-use');
  await page.waitForFunction(([id, t]) => localStorage.getItem(`tribune.token.${id}`) === t, [room.id, cohost.token]);
  await page.waitForLoadState('load');
  assert.equal(await stored(), cohost.token);
});
