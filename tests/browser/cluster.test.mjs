// The listener page in a cluster: the page comes from the origin, the join sends it to an edge;
// that edge is killed (SIGKILL) and the page goes on from an alternate edge, resuming by
// sequence number: no frame lost, the tone still 440 Hz.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { api, ARTIFACTS, BIN, launchBrowser, screenshot, startServer, toneWav, API_KEY } from './harness.mjs';

const SECRET = 'browser-cluster-secret-0123456789';
let redis;
let origin;
let edges = [];
let browser;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tribune-redis-'));
  const socket = join(dir, 'redis.sock');
  redis = spawn('redis-server', ['--port', '0', '--unixsocket', socket, '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' });
  for (let i = 0; i < 100 && !existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
  const cluster = ['--secret', SECRET, '--no-data', '--redis', `redis+unix://${socket}`];
  origin = await startServer({ args: ['--role', 'origin', ...cluster] });
  for (let i = 0; i < 2; i++) {
    edges.push(await startServer({ args: ['--role', 'edge', '--upstream', origin.url, ...cluster] }));
  }
  browser = await launchBrowser(toneWav(join(ARTIFACTS, 'silence-mic.wav'), 1000, 2));
});

after(async () => {
  await browser?.close();
  for (const e of edges) e.stop();
  origin?.stop();
  redis?.kill();
});

test('the listener page moves to another edge when its edge is killed, losing nothing', async () => {
  const room = await api(origin.url, 'POST', '/api/rooms', { title: 'Cluster listen test' }, API_KEY);
  // Until joins on the origin name both edges.
  for (let i = 0; ; i++) {
    const j = await api(origin.url, 'POST', `/api/rooms/${room.id}/join`, {});
    if ((j.alternates || []).length === 1) break;
    assert.ok(i < 50, 'edges never registered');
    await new Promise((r) => setTimeout(r, 200));
  }
  const speaker = spawn(
    BIN,
    ['speak', '--server', origin.url, '--room', room.id, '--token', room.host_token, '--tone', '440', '--seconds', '40'],
    { stdio: 'inherit' },
  );
  try {
    const page = await (await browser.newContext()).newPage();
    page.on('console', (m) => m.type() === 'error' && console.log('page:', m.text()));
    await page.goto(`${origin.url}/r/${room.id}`);
    await page.click('#listen');
    await page.waitForFunction(() => window.tribune.player && window.tribune.player.stats.framesReceived > 150, null, { timeout: 15000 });
    // The edge the page listens on: the one whose listeners gauge says 1.
    const counts = await Promise.all(edges.map(async (e) => {
      const text = await (await fetch(`${e.url}/metrics`)).text();
      return Number(/^tribune_listeners (\d+)$/m.exec(text)[1]);
    }));
    const i = counts.indexOf(1);
    assert.ok(i >= 0, `listeners per edge ${counts}`);
    const before = await page.evaluate(() => window.tribune.player.stats.framesReceived);
    edges[i].child.kill('SIGKILL');
    await page.waitForFunction((n) => window.tribune.player.stats.framesReceived > n + 150, before, { timeout: 15000 });
    const freq = await page.evaluate(() => window.tribune.frequency());
    const stats = await page.evaluate(() => window.tribune.player.stats);
    console.log('listener page across an edge kill:', { freq, stats });
    assert.ok(stats.reconnects >= 1);
    assert.equal(stats.framesLost, 0);
    assert.ok(Math.abs(freq - 440) <= 10, `dominant frequency ${freq} Hz`);
    assert.equal(await page.textContent('#state'), 'LIVE');
    await screenshot(page, 'listener-page-edge-failover');
  } finally {
    speaker.kill();
  }
});
