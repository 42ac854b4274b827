// The listener page under admission control: on a node with room for one listener, a second
// page waits in line (position 1, kept across a reload), gets in when the first leaves and hears
// the CLI speaker's 440 Hz; a listener that drops comes back with its ticket, not through the
// queue. On a node under "attack" (--pow-threshold 1) the page solves the proof of work in a Web
// Worker and goes live. And web/js/pow.js is SHA-256, checked against node:crypto.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, ARTIFACTS, BIN, launchBrowser, routeHlsJs, screenshot, startServer, toneWav, API_KEY } from './harness.mjs';
import { hex, PrefixHasher, search, workBits } from '../../web/js/pow.js';

let browser;
const servers = [];

before(async () => {
  browser = await launchBrowser(toneWav(join(ARTIFACTS, 'silence-mic.wav'), 1000, 2));
});

after(async () => {
  await browser?.close();
  for (const s of servers) s.stop();
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function serve(args) {
  const s = await startServer({ args: ['--no-data', ...args] });
  servers.push(s);
  return s;
}

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

const admission = (page) => page.evaluate(() => window.tribune.admission);

/** Leading zero bits of SHA-256(text), by node:crypto: the reference for the page's proof. */
function referenceBits(text) {
  let bits = 0;
  for (const byte of createHash('sha256').update(text).digest()) {
    if (byte !== 0) return bits + Math.clz32(byte) - 24;
    bits += 8;
  }
  return bits;
}

test('pow.js is SHA-256 with a midstate: equal to node:crypto for every prefix length', () => {
  // Prefix lengths around every block boundary; nonces of 1 to 16 digits (one or two tail blocks).
  for (let len = 0; len < 200; len++) {
    const prefix = `${'c'.repeat(len)}:`;
    const hasher = new PrefixHasher(prefix);
    for (const nonce of [0, 9, 4711, 123456789, 2 ** 53 - 1]) {
      const digits = new TextEncoder().encode(String(nonce));
      const want = createHash('sha256').update(prefix + nonce).digest('hex');
      assert.equal(hex(hasher.digest(digits, digits.length)), want, `prefix ${len} bytes, nonce ${nonce}`);
    }
  }
  // A non-ASCII challenge is hashed as UTF-8, like the node does.
  assert.equal(workBits('é', 3), referenceBits('é:3'));
  // search() finds the first nonce with enough zero bits, as the node's solve() would.
  const challenge = 'eyJraWQiOiJrMSJ9.c2lnbmF0dXJl';
  const nonce = search(new PrefixHasher(`${challenge}:`), 12, 0, 1 << 20);
  assert.ok(referenceBits(`${challenge}:${nonce}`) >= 12);
  for (let n = 0; n < nonce; n++) assert.ok(referenceBits(`${challenge}:${n}`) < 12, `nonce ${n} already solves it`);
});

test('a full node puts the second listener in line; it gets in when the first leaves and hears 440 Hz', async () => {
  const server = await serve(['--max-listeners', '1']);
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Waiting room test' }, API_KEY);
  const speaker = speak(server.url, room, 90);
  try {
    // The first listener takes the only seat.
    const first = await browser.newContext();
    const pageA = await openPage(first, `${server.url}/r/${room.id}`);
    await pageA.click('#listen');
    await pageA.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 15000 });
    assert.deepEqual((await admission(pageA)).positions, [], 'the first listener never waited');

    // The second waits, first in line, and is told so.
    const second = await browser.newContext();
    let pageB = await openPage(second, `${server.url}/r/${room.id}`);
    await pageB.click('#listen');
    await pageB.waitForSelector('#waiting:not([hidden])', { timeout: 10000 });
    await pageB.waitForFunction(() => window.tribune.admission.queued >= 2, null, { timeout: 10000 });
    assert.match(await pageB.textContent('#waiting-text'), /^You're in line — position 1, about \d+ s$/);
    assert.equal(await pageB.textContent('#state'), 'waiting');
    assert.ok((await admission(pageB)).positions.every((p) => p === 1));
    assert.equal(await pageB.evaluate(() => window.tribune.player.ws), undefined, 'no listen socket while waiting');
    assert.equal((await api(server.url, 'GET', `/api/rooms/${room.id}`)).listeners, 1);
    await screenshot(pageB, 'listener-page-waiting-room');

    // A reload keeps the place: the page comes back with its queue ticket (number 0, position 1).
    // A fresh join would have drawn number 1, behind it: position 2.
    await pageB.reload();
    await pageB.click('#listen');
    await pageB.waitForFunction(() => window.tribune.admission.queued >= 1, null, { timeout: 10000 });
    assert.equal((await admission(pageB)).positions[0], 1, 'still first in line after a reload');
    assert.match(await pageB.textContent('#waiting-text'), /position 1,/);

    // The first listener leaves: the second is called, comes back with its queue ticket, and plays.
    await first.close();
    await pageB.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 15000 });
    assert.equal(await pageB.isHidden('#waiting'), true);
    await pageB.waitForFunction(() => window.tribune.player.stats.framesReceived > 150, null, { timeout: 15000 });
    const freq = await pageB.evaluate(() => window.tribune.frequency());
    const seen = await admission(pageB);
    console.log('second listener after waiting:', { freq, seen });
    assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
    assert.ok(seen.positions.every((p, i) => i === 0 || p <= seen.positions[i - 1]), 'positions never go up');
    assert.equal(await pageB.evaluate(() => sessionStorage.getItem(`tribune.queue.${location.pathname.split('/').pop()}`)), null,
      'the queue ticket is forgotten once in');

    // A drop: the page resumes with its listen ticket (same listener id, no new place in line).
    const before = await pageB.evaluate(() => ({
      id: window.tribune.player.ticket.listener_id,
      queued: window.tribune.admission.queued,
      resumed: window.tribune.admission.resumed,
      frames: window.tribune.player.stats.framesReceived,
    }));
    await pageB.evaluate(() => window.tribune.player.ws.close(4000, 'test drop'));
    await pageB.waitForFunction((n) => window.tribune.player.stats.framesReceived > n + 100, before.frames, { timeout: 15000 });
    const afterDrop = await pageB.evaluate(() => ({
      id: window.tribune.player.ticket.listener_id,
      queued: window.tribune.admission.queued,
      resumed: window.tribune.admission.resumed,
      reconnects: window.tribune.player.stats.reconnects,
      lost: window.tribune.player.stats.framesLost,
    }));
    console.log('after a drop:', { before, afterDrop });
    assert.equal(afterDrop.id, before.id, 'the same listener came back');
    assert.equal(afterDrop.resumed, before.resumed + 1);
    assert.equal(afterDrop.queued, before.queued, 'a resume is never queued');
    assert.equal(afterDrop.reconnects, 1);
    assert.equal(afterDrop.lost, 0, 'resumed from the next frame');
    await second.close();
  } finally {
    speaker.kill();
  }
});

test('the LL-HLS page waits in line the same way, then plays', async () => {
  const server = await serve(['--max-listeners', '1']);
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Waiting room over HLS' }, API_KEY);
  const speaker = speak(server.url, room, 60);
  try {
    const first = await browser.newContext();
    const pageA = await openPage(first, `${server.url}/r/${room.id}`);
    await pageA.click('#listen');
    await pageA.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 15000 });

    const context = await browser.newContext();
    await routeHlsJs(context);
    const page = await openPage(context, `${server.url}/r/${room.id}?transport=hls`);
    await page.click('#listen');
    await page.waitForFunction(() => window.tribune.admission.queued >= 2, null, { timeout: 10000 });
    assert.match(await page.textContent('#waiting-text'), /^You're in line — position 1, about \d+ s$/);
    assert.equal(await page.textContent('#transport'), 'via LL-HLS (hls.js)');
    assert.equal(await page.evaluate(() => window.tribune.player.url), undefined, 'no playlist while waiting');

    await first.close();
    await page.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 20000 });
    assert.equal(await page.isHidden('#waiting'), true);
    await sleep(3000);
    const freq = await page.evaluate(() => window.tribune.frequency());
    assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
    await context.close();
  } finally {
    speaker.kill();
  }
});

test('under attack the page solves the proof of work in a Web Worker and goes live', async () => {
  const server = await serve(['--pow-threshold', '1']);
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Proof of work test' }, API_KEY);
  const speaker = speak(server.url, room, 60);
  try {
    // More than one unproven join in a second: the node starts asking for proofs.
    const answers = [];
    for (let i = 0; i < 4; i++) {
      answers.push((await fetch(`${server.url}/api/rooms/${room.id}/join`, { method: 'POST', body: '{}' })).status);
    }
    assert.equal(answers.at(-1), 401, `join answers ${answers}`);

    const context = await browser.newContext();
    const page = await context.newPage();
    const workers = [];
    page.on('worker', (w) => workers.push(w.url()));
    page.on('console', (m) => m.type() === 'error' && console.log('page:', m.text()));
    await page.goto(`${server.url}/r/${room.id}`);
    await page.click('#listen');
    await page.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 20000 });
    const seen = await admission(page);
    console.log('proof of work:', seen.lastProof, 'workers:', workers);
    assert.equal(seen.challenges, 1);
    assert.equal(seen.solvedInWorker, 1);
    assert.deepEqual(workers, [`${server.url}/web/js/pow-worker.js`]);
    const { challenge, bits, nonce } = seen.lastProof;
    assert.ok(bits >= 8, `asked for ${bits} bits`);
    assert.ok(referenceBits(`${challenge}:${nonce}`) >= bits, 'the nonce solves the challenge (node:crypto)');
    assert.equal(await page.isHidden('#waiting'), true);
    await page.waitForFunction(() => window.tribune.player.stats.framesReceived > 150, null, { timeout: 15000 });
    const freq = await page.evaluate(() => window.tribune.frequency());
    assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
    await screenshot(page, 'listener-page-after-proof-of-work');
  } finally {
    speaker.kill();
  }
});

test('the proof-of-work check shows its progress while the main thread stays free', async () => {
  // A hard challenge is faked at the page's fetch: the worker, the progress bar and the main
  // thread are what is under test here, not the node (whose difficulty depends on the flood).
  const server = await serve([]);
  const room = await api(server.url, 'POST', '/api/rooms', { title: 'Slow proof' }, API_KEY);
  const context = await browser.newContext();
  const page = await context.newPage();
  let joins = 0;
  await page.route(`${server.url}/api/rooms/${room.id}/join`, (route) => {
    joins += 1;
    if (joins === 1) {
      return route.fulfill({
        status: 401,
        contentType: 'application/json',
        body: JSON.stringify({ error: 'proof_of_work_required', challenge: 'x'.repeat(150), bits: 40 }),
      });
    }
    return route.continue();
  });
  // Counts Worker.terminate() calls, to see that Stop cancels the check.
  await page.addInitScript(() => {
    window.terminated = 0;
    const t = Worker.prototype.terminate;
    Worker.prototype.terminate = function () { window.terminated += 1; return t.call(this); };
  });
  await page.goto(`${server.url}/r/${room.id}`);
  // Main-thread responsiveness: the longest gap between 10 ms timer ticks while the worker runs.
  await page.evaluate(() => {
    window.maxGap = 0;
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      window.maxGap = Math.max(window.maxGap, now - last);
      last = now;
    }, 10);
  });
  await page.click('#listen');
  await page.waitForFunction(() => document.querySelector('#pow-progress').value > 0, null, { timeout: 10000 });
  await sleep(1500);
  assert.equal(await page.textContent('#waiting-text'), 'Checking your browser…');
  const value = await page.evaluate(() => document.querySelector('#pow-progress').value);
  // 2^40 attempts on average: after a second or two the odds bar has barely moved, but moved.
  assert.ok(value > 0 && value < 0.01, `progress ${value}`);
  const gap = await page.evaluate(() => window.maxGap);
  assert.ok(gap < 250, `main thread blocked for ${gap} ms`);
  await screenshot(page, 'listener-page-checking-browser');

  // Stop cancels the check: the worker is terminated.
  await page.click('#listen');
  await page.waitForFunction(() => document.querySelector('#waiting').hidden);
  for (let i = 0; i < 50 && page.workers().length; i++) await sleep(100);
  assert.equal(await page.evaluate(() => window.terminated), 1);
  assert.equal(page.workers().length, 0, 'the worker was terminated');

  // What a hash costs in this browser: our midstate SHA-256 against crypto.subtle.digest.
  const rates = await page.evaluate(async () => {
    const { PrefixHasher, search } = await import('/web/js/pow.js');
    const prefix = `${'x'.repeat(150)}:`;
    let t = performance.now();
    search(new PrefixHasher(prefix), 64, 0, 200000);
    const own = 200000 / (performance.now() - t) * 1000;
    const enc = new TextEncoder();
    t = performance.now();
    for (let i = 0; i < 20000; i += 256) {
      await Promise.all(Array.from({ length: 256 }, (_, k) => crypto.subtle.digest('SHA-256', enc.encode(prefix + (i + k)))));
    }
    const subtle = 20480 / (performance.now() - t) * 1000;
    return { own: Math.round(own), subtle: Math.round(subtle) };
  });
  console.log('hashes per second in Chromium:', rates);
  assert.ok(rates.own > rates.subtle, 'the midstate SHA-256 beats crypto.subtle per attempt');
});
