// The host console's recording controls: it shows that the room is being recorded, the host
// stops and restarts recording from the page (the node's recording status follows), and after
// the room ends the console offers the recording as a download that is a real MP4.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, ARTIFACTS, launchBrowser, screenshot, startServer, toneWav, API_KEY } from './harness.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser(toneWav(join(ARTIFACTS, 'mic-recording-330.wav'), 330, 20));
});

after(async () => {
  await browser?.close();
  server?.stop();
});

const recordingStatus = (id) => api(server.url, 'GET', `/api/rooms/${id}/recording`);

test('the host switches recording off and on, and downloads it after the room ends', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Recorded room' }, API_KEY);
  const page = await (await browser.newContext()).newPage();
  page.on('dialog', (d) => d.accept());
  await page.goto(`${server.url}/host/${room.id}#token=${room.host_token}`);
  await page.waitForFunction(() => /● Recording/.test(document.querySelector('#recording').textContent), null, { timeout: 10000 });

  await page.click('#recording-toggle');
  await page.waitForFunction(() => /Not recording/.test(document.querySelector('#recording').textContent), null, { timeout: 5000 });
  assert.equal((await recordingStatus(room.id)).enabled, false);
  assert.equal(await page.textContent('#recording-toggle'), 'Record');

  await page.click('#recording-toggle');
  await page.waitForFunction(() => /● Recording/.test(document.querySelector('#recording').textContent), null, { timeout: 5000 });
  assert.equal((await recordingStatus(room.id)).enabled, true);

  // A room records while someone is on stage: the host goes live with the fake microphone.
  await page.click('#go-live');
  await page.waitForFunction(() => /connected|live/.test(document.querySelector('#mic-status').textContent), null, { timeout: 15000 });
  // Wait for a recorded segment (2 s of program), then end the room.
  for (let i = 0; i < 100 && (await recordingStatus(room.id)).segments < 1; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok((await recordingStatus(room.id)).segments >= 1, 'a segment was recorded');
  await page.click('#end');
  await page.waitForFunction(() => /Recording complete/.test(document.querySelector('#recording').textContent), null, { timeout: 10000 });
  assert.equal(await page.isVisible('#recording-toggle'), false);
  const href = await page.getAttribute('#recording-download', 'href');
  assert.equal(href, `/api/rooms/${room.id}/recording.m4a`);
  const file = Buffer.from(await (await fetch(`${server.url}${href}`)).arrayBuffer());
  assert.equal(file.subarray(4, 8).toString('latin1'), 'ftyp', 'an MP4 file');
  assert.ok(file.includes(Buffer.from('moof')), 'with media fragments');
  await screenshot(page, 'host-console-recording');
});
