// LL-HLS glass-to-ear latency with hls.js in headless Chromium (docs/BENCHMARKS.md, "LL-HLS
// with hls.js"). Run through bench/hlsjs-latency.sh, which builds the release binary.
//
// One `tribune serve` with one room and a `tribune speak --tone 440` speaker. The listener page
// (/r/{id}?transport=hls, hls.js from the devDependency of tests/browser, served at the pinned
// CDN URL) plays the room; after a warm-up, the page's `stats.latencyMs` = Date.now() −
// hls.playingDate (the EXT-X-PROGRAM-DATE-TIME of the playhead; server and browser share the
// host clock) is sampled every SAMPLE_MS for RUN_S seconds. The same is done with hls.js's
// lowLatencyMode off (?lowlatency=0), in the same session and the same room; ROUNDS alternates
// on/off that many times so drifting machine load hits both alike.
//
// Environment: TRIBUNE_BIN (required), RUN_S (60), WARM_S (10), SAMPLE_MS (250), ROUNDS (1).

import { spawn } from 'node:child_process';
import { join } from 'node:path';
import {
  api, API_KEY, ARTIFACTS, BIN, launchBrowser, routeHlsJs, startServer, toneWav,
} from '../tests/browser/harness.mjs';

const RUN_S = Number(process.env.RUN_S || 60);
const WARM_S = Number(process.env.WARM_S || 10);
const SAMPLE_MS = Number(process.env.SAMPLE_MS || 250);
const ROUNDS = Number(process.env.ROUNDS || 1);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function quantile(sorted, q) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

async function measure(browser, url, lowLatency) {
  const context = await browser.newContext();
  await routeHlsJs(context);
  const page = await context.newPage();
  page.on('pageerror', (e) => console.error('page error:', e.message));
  await page.goto(`${url}?transport=hls&lowlatency=${lowLatency ? 1 : 0}`);
  await page.click('#listen');
  await page.waitForFunction(() => window.tribune.player?.state === 'live', null, { timeout: 30000 });
  await sleep(WARM_S * 1000);
  const samples = [];
  const start = await page.evaluate(() => ({ t: window.tribune.player.audio.currentTime, stalls: window.tribune.player.stats.stalls }));
  const w0 = Date.now();
  let hlsjsEstimate = [];
  while (Date.now() - w0 < RUN_S * 1000) {
    const s = await page.evaluate(() => {
      const p = window.tribune.player;
      p.updateStats();
      return { latencyMs: p.stats.latencyMs, hlsLatency: p.hls.latency };
    });
    if (s.latencyMs !== null) samples.push(s.latencyMs);
    hlsjsEstimate.push(s.hlsLatency * 1000);
    await sleep(SAMPLE_MS);
  }
  const end = await page.evaluate(() => ({ t: window.tribune.player.audio.currentTime, stalls: window.tribune.player.stats.stalls, freq: window.tribune.frequency() }));
  await context.close();
  const sorted = [...samples].sort((a, b) => a - b);
  hlsjsEstimate = hlsjsEstimate.sort((a, b) => a - b);
  return {
    lowLatencyMode: lowLatency,
    samples: samples.length,
    p50: quantile(sorted, 0.5),
    p99: quantile(sorted, 0.99),
    min: sorted[0],
    max: sorted[sorted.length - 1],
    hlsjs_latency_p50: quantile(hlsjsEstimate, 0.5),
    played_s: end.t - start.t,
    wall_s: (Date.now() - w0) / 1000,
    stalls: end.stalls - start.stalls,
    freq: end.freq,
  };
}

const server = await startServer();
const browser = await launchBrowser(toneWav(join(ARTIFACTS, 'silence-mic.wav'), 1000, 2));
const room = await api(server.url, 'POST', '/api/rooms', { title: 'hls.js latency bench' }, API_KEY);
const speakS = ROUNDS * 2 * (RUN_S + WARM_S + 20) + 30;
const speaker = spawn(BIN, ['speak', '--server', server.url, '--room', room.id, '--token', room.host_token, '--tone', '440', '--seconds', String(speakS)], {
  stdio: 'ignore',
});
const results = [];
try {
  await sleep(3000);
  for (let r = 1; r <= ROUNDS; r++) {
    for (const low of [true, false]) {
      const res = { round: r, ...(await measure(browser, `${server.url}/r/${room.id}`, low)) };
      console.log(JSON.stringify(res));
      results.push(res);
    }
  }
} finally {
  speaker.kill();
  await browser.close();
  server.stop();
}

const fmt = (x) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
console.log('\n| round | lowLatencyMode | samples | p50 ms | p99 ms | min ms | max ms | hls.latency p50 ms | played s / wall s | stalls | Hz |');
console.log('|---:|---|---:|---:|---:|---:|---:|---:|---|---:|---:|');
for (const r of results) {
  console.log(`| ${r.round} | ${r.lowLatencyMode ? 'on' : 'off'} | ${r.samples} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.min)} | ${fmt(r.max)} | ${fmt(r.hlsjs_latency_p50)} | ${r.played_s.toFixed(1)} / ${r.wall_s.toFixed(1)} | ${r.stalls} | ${r.freq} |`);
}
const mean = (low, k) => {
  const xs = results.filter((r) => r.lowLatencyMode === low).map((r) => r[k]);
  return xs.reduce((a, b) => a + b, 0) / xs.length;
};
const on = mean(true, 'p50');
const off = mean(false, 'p50');
console.log(`\nmean p50: lowLatencyMode on ${on.toFixed(0)} ms, off ${off.toFixed(0)} ms; ratio off / on = ${(off / on).toFixed(2)}×`);
