// The listener page's LL-HLS fallback: with WebCodecs taken away, the page plays the room's
// live.m3u8 through hls.js (loaded from its pinned CDN URL, which the test serves from the
// devDependency so the page's SRI check proves the bytes); playback time advances in real time
// and what the <audio> element plays has the CLI speaker's 440 Hz.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  api, ARTIFACTS, BIN, launchBrowser, localHlsJs, pinnedHlsJs, routeHlsJs, screenshot, startServer, toneWav, API_KEY,
} from './harness.mjs';

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

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function speak(url, room, seconds) {
  return spawn(BIN, ['speak', '--server', url, '--room', room.id, '--token', room.host_token, '--tone', '440', '--seconds', String(seconds)], {
    stdio: 'inherit',
  });
}

async function openPage(context, url) {
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && console.log('page:', m.text()));
  page.on('pageerror', (e) => console.log('page error:', e.message));
  await page.goto(url);
  return page;
}

test('without WebCodecs the page plays LL-HLS with the pinned hls.js and hears 440 Hz', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'HLS listen test' }, API_KEY);
  const speaker = speak(server.url, room, 60);
  try {
    const context = await browser.newContext();
    const served = await routeHlsJs(context);
    // A browser without WebCodecs (an older Safari, or a page on plain http from another host).
    await context.addInitScript(() => {
      delete window.AudioDecoder;
      delete window.EncodedAudioChunk;
    });
    const page = await openPage(context, `${server.url}/r/${room.id}`);
    await page.click('#listen');
    await page.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 20000 });
    assert.equal(await page.textContent('#transport'), 'via LL-HLS (hls.js)');
    assert.equal(served.count, 1, 'hls.js fetched once, from the pinned URL');
    assert.equal(await page.evaluate(() => window.Hls.version), pinnedHlsJs().version);
    assert.equal(await page.evaluate(() => window.tribune.player.hls.config.lowLatencyMode), true);

    // Playback runs at real-time speed: 8 s of wall clock, about 8 s of media.
    const t0 = await page.evaluate(() => window.tribune.player.audio.currentTime);
    const w0 = Date.now();
    await sleep(8000);
    const t1 = await page.evaluate(() => window.tribune.player.audio.currentTime);
    const wall = (Date.now() - w0) / 1000;
    const stats = await page.evaluate(() => window.tribune.player.stats);
    const freq = await page.evaluate(() => window.tribune.frequency());
    console.log('hls listener page:', { t0, t1, wall, freq, stats });
    assert.ok(t1 - t0 >= wall - 1.5 && t1 - t0 <= wall + 1, `played ${t1 - t0} s in ${wall} s`);
    assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
    assert.equal(await page.textContent('#state'), 'LIVE');
    // PDT-based: a positive delay of a few parts, not the 6 s of a non-low-latency player.
    assert.ok(stats.latencyMs > 0 && stats.latencyMs < 4000, `latency ${stats.latencyMs} ms`);
    assert.match(await page.textContent('#stats'), /s played · ~\d+\.\d s behind live/);
    await screenshot(page, 'listener-page-hls');

    // The host ends the room: the playlist gets EXT-X-ENDLIST and the page says so.
    await api(server.url, 'POST', `/api/rooms/${room.id}/end`, {}, room.host_token);
    await page.waitForFunction(() => window.tribune.player.state === 'ended', null, { timeout: 15000 });
    assert.equal(await page.textContent('#state'), 'ended');
    assert.equal(await page.textContent('#listen'), 'This room has ended');
  } finally {
    speaker.kill();
  }
});

test('hls.js bytes that do not match the pinned hash are refused', async () => {
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Tampered hls.js' }, API_KEY);
  const context = await browser.newContext();
  const pinned = pinnedHlsJs();
  const tampered = Buffer.concat([localHlsJs(pinned.file).body, Buffer.from('\n/* one more byte */\n')]);
  const served = await routeHlsJs(context, pinned.url, tampered);
  const page = await openPage(context, `${server.url}/r/${room.id}?transport=hls`);
  await page.click('#listen');
  await page.waitForFunction(() => !document.querySelector('#error').hidden, null, { timeout: 10000 });
  assert.equal(served.count, 1);
  assert.match(await page.textContent('#error'), /could not load hls\.js/);
  assert.equal(await page.evaluate(() => typeof window.Hls), 'undefined');
  assert.notEqual(await page.evaluate(() => window.tribune.player.state), 'live');
});

test('an operator can self-host hls.js (TRIBUNE_HLSJS_URL, TRIBUNE_HLSJS_INTEGRITY)', async () => {
  const own = 'http://127.0.0.1:9/vendor/hls.js';
  const { integrity } = localHlsJs(pinnedHlsJs().file);
  const node = await startServer({ env: { TRIBUNE_HLSJS_URL: own, TRIBUNE_HLSJS_INTEGRITY: integrity } });
  try {
    const room = await api(node.url, 'POST', '/api/rooms', { title: 'Self-hosted hls.js' }, API_KEY);
    const context = await browser.newContext();
    const cdn = await routeHlsJs(context);
    const mine = await routeHlsJs(context, own, localHlsJs(pinnedHlsJs().file).body);
    const page = await openPage(context, `${node.url}/r/${room.id}?transport=hls`);
    await page.click('#listen');
    await page.waitForFunction(() => typeof window.Hls === 'function', null, { timeout: 10000 });
    assert.equal(mine.count, 1);
    assert.equal(cdn.count, 0);
  } finally {
    node.stop();
  }
});
