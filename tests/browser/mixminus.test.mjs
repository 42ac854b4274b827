// The stage as a conversation, in real browsers with fake microphones: the host console plays
// the stage from the moment it opens and publishes 440 Hz; a listener brought on stage through
// a request to speak publishes 660 Hz and switches from the program to its mix-minus. The host
// hears 660 with 440 at least 30 dB under it, the speaker 440 with 660 at least 30 dB under it,
// an audience page both; muting does not stop hearing; leaving the stage plays the program again.

import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, ARTIFACTS, launchBrowser, screenshot, startServer, toneWav, API_KEY } from './harness.mjs';

let server;
let hostBrowser;
let guestBrowser;

before(async () => {
  server = await startServer();
  hostBrowser = await launchBrowser(toneWav(join(ARTIFACTS, 'mic-440.wav'), 440, 60));
  guestBrowser = await launchBrowser(toneWav(join(ARTIFACTS, 'mic-660.wav'), 660, 60));
});

after(async () => {
  await hostBrowser?.close();
  await guestBrowser?.close();
  server?.stop();
});

async function metric(name) {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`tribune_${name} `));
  return line ? Number(line.split(' ')[1]) : NaN;
}

/** Three readings 300 ms apart of what a page hears of the stage: each must pass `check`. */
async function stageReadings(page, check, what) {
  for (let i = 0; i < 3; i++) {
    const r = await page.evaluate(() => window.tribune.stageBands([440, 660]));
    check(r, `${what} (reading ${i + 1}: ${JSON.stringify(r)})`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

test('host and speaker each hear the other and not themselves; the audience hears both', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Mix-minus' }, API_KEY);
  const hostPage = await (await hostBrowser.newContext()).newPage();
  hostPage.on('dialog', (d) => d.accept());
  hostPage.on('console', (m) => m.type() === 'error' && console.log('host page:', m.text()));
  await hostPage.goto(`${server.url}/host/${room.id}#token=${room.host_token}`);
  // The console plays the stage before the host goes live.
  await hostPage.waitForFunction(() => /hear everyone/.test(document.querySelector('#stage-status').textContent), null, { timeout: 15000 });
  assert.equal(await metric('whep_sessions{kind="stage"}'), 1);
  await hostPage.click('#go-live');
  await hostPage.waitForFunction(() => /connected|live/.test(document.querySelector('#mic-status').textContent), null, { timeout: 15000 });

  // A listener asks to speak, the host accepts, the listener publishes 660 Hz.
  const guestPage = await (await guestBrowser.newContext()).newPage();
  guestPage.on('console', (m) => m.type() === 'error' && console.log('guest page:', m.text()));
  guestPage.on('response', (r) => r.status() >= 400 && console.log('guest page got', r.status(), r.url()));
  await guestPage.goto(`${server.url}/r/${room.id}`);
  await guestPage.click('#listen');
  await guestPage.waitForFunction(() => window.tribune.player && window.tribune.player.state === 'live', null, { timeout: 15000 });
  await guestPage.click('#request');
  await hostPage.waitForSelector('#requests button:has-text("Accept")', { timeout: 10000 });
  await hostPage.click('#requests button:has-text("Accept")');
  await guestPage.waitForFunction(() => window.tribune.hearing() === 'stage', null, { timeout: 20000 });

  // The host hears the guest, not itself.
  await hostPage.waitForFunction(() => {
    const r = window.tribune.stageBands([440, 660]);
    return r.level > 0.02 && r.db[440] < -30;
  }, null, { timeout: 15000 });
  await stageReadings(hostPage, (r, what) => {
    assert.ok(r.level > 0.02, `host hears the stage: ${what}`);
    assert.equal(r.db[660], 0, `660 Hz is what the host hears: ${what}`);
    assert.ok(r.db[440] <= -30, `440 Hz at least 30 dB under: ${what}`);
  }, 'host');
  // The guest hears the host, not itself.
  await guestPage.waitForFunction(() => {
    const r = window.tribune.stageBands([440, 660]);
    return r && r.level > 0.02 && r.db[660] < -30;
  }, null, { timeout: 15000 });
  await stageReadings(guestPage, (r, what) => {
    assert.ok(r.level > 0.02, `guest hears the stage: ${what}`);
    assert.equal(r.db[440], 0, `440 Hz is what the guest hears: ${what}`);
    assert.ok(r.db[660] <= -30, `660 Hz at least 30 dB under: ${what}`);
  }, 'guest');
  await screenshot(hostPage, 'host-console-hears-stage');

  // An audience page hears both.
  const audience = await (await hostBrowser.newContext()).newPage();
  await audience.goto(`${server.url}/r/${room.id}`);
  await audience.click('#listen');
  await audience.waitForFunction(() => window.tribune.player && window.tribune.player.stats.framesReceived > 100, null, { timeout: 20000 });
  const both = await audience.evaluate(() => window.tribune.programBands([440, 660]));
  assert.ok(both[440] > -10 && both[660] > -10, `the audience hears both tones: ${JSON.stringify(both)}`);

  // Muted, the host still hears the stage.
  await hostPage.click('#mute');
  await new Promise((r) => setTimeout(r, 1000));
  await stageReadings(hostPage, (r, what) => {
    assert.ok(r.level > 0.02 && r.db[440] <= -30, `muted host still hears 660: ${what}`);
  }, 'muted host');

  await hostPage.click('#mute');
  await new Promise((r) => setTimeout(r, 1500));

  // The guest leaves the stage: its page plays the program again, where the guest was heard
  // until a moment ago, and its stage session is gone.
  await guestPage.click('#leave-stage');
  assert.equal(await guestPage.evaluate(() => window.tribune.hearing()), 'program');
  const program = await guestPage.evaluate(() => window.tribune.programBands([440, 660], 1.5));
  assert.ok(program[440] > -15 && program[660] > -15, `the program, both tones: ${JSON.stringify(program)}`);
  for (let i = 0; i < 50 && (await metric('whep_sessions{kind="stage"}')) !== 1; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await metric('whep_sessions{kind="stage"}'), 1, 'only the host plays the stage now');
  await screenshot(guestPage, 'listener-page-back-to-program');
});
