// Shared pieces of the browser tests: a real `tribune serve` process on a loopback port,
// Debian's Chromium with a fake microphone playing a WAV, and screenshots as artifacts.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { chromium } from 'playwright-core';

export const ROOT = resolve(import.meta.dirname, '../..');
export const ARTIFACTS = join(ROOT, 'test-artifacts');
// The binary under test: TRIBUNE_BIN, else the debug build in CARGO_TARGET_DIR (or ./target).
export const BIN = process.env.TRIBUNE_BIN ||
  join(resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target'), 'debug/tribune');

export async function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
    srv.on('error', fail);
  });
}

/** The operator key every test node is started with (rooms are created with it). */
export const API_KEY = 'browser-test-operator-key-0123';

/**
 * Starts `tribune serve` (with extra environment `env` and extra arguments `args`); resolves
 * once it answers /healthz.
 */
export async function startServer({ env = {}, args = [] } = {}) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = spawn(BIN, ['serve', '--listen', `127.0.0.1:${port}`, ...args], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      RUST_LOG: process.env.RUST_LOG || 'warn',
      // Recordings go to a fresh temporary directory, never into the source tree.
      TRIBUNE_DATA_DIR: mkdtempSync(join(tmpdir(), 'tribune-browser-')),
      TRIBUNE_API_KEY: API_KEY,
      ...env,
    },
  });
  const deadline = Date.now() + 15000;
  for (;;) {
    try {
      const r = await fetch(`${url}/healthz`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error('tribune serve did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
  return { url, child, stop: () => child.kill('SIGTERM') };
}

/** A 16-bit mono WAV of a sine tone. */
export function toneWav(path, hz, seconds = 30, rate = 48000) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const n = rate * seconds;
  const buf = Buffer.alloc(44 + n * 2);
  buf.write('RIFF', 0);
  buf.writeUInt32LE(36 + n * 2, 4);
  buf.write('WAVEfmt ', 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write('data', 36);
  buf.writeUInt32LE(n * 2, 40);
  for (let i = 0; i < n; i++) {
    buf.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * 0.5 * 32767), 44 + i * 2);
  }
  writeFileSync(path, buf);
  return path;
}

/** Debian's Chromium, headless, with a fake microphone that plays `micWav`. */
export async function launchBrowser(micWav) {
  mkdirSync(ARTIFACTS, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      // WebRTC over loopback only: the node (bound to 127.0.0.1) ignores other candidates.
      '--allow-loopback-in-peer-connection',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      `--use-file-for-fake-audio-capture=${micWav}`,
    ],
  });
}

export async function screenshot(page, name) {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

export async function api(url, method, path, body, token) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const r = await fetch(`${url}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
  const data = await r.json();
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(data)}`);
  return data;
}

/** The hls.js source pinned in web/room.html's <meta name="tribune-hlsjs">: {url, integrity, file}. */
export function pinnedHlsJs() {
  const html = readFileSync(join(ROOT, 'web/room.html'), 'utf8');
  const m = html.match(/<meta name="tribune-hlsjs" content="([^"]+)" data-integrity="([^"]+)">/);
  if (!m) throw new Error('web/room.html has no hls.js <meta>');
  const [, url, integrity] = m;
  return { url, integrity, file: url.split('/').pop(), version: url.match(/hls\.js@([^/]+)/)[1] };
}

/** The bytes of dist/FILE of the hls.js devDependency, and their SRI hash. */
export function localHlsJs(file) {
  const body = readFileSync(join(import.meta.dirname, 'node_modules/hls.js/dist', file));
  return { body, integrity: `sha384-${createHash('sha384').update(body).digest('base64')}` };
}

/**
 * Serves `url` (the CDN, which the tests cannot reach) from the hls.js devDependency, or from
 * `body` if given, to every page of `context`. The page's SRI check then proves the bytes are
 * the pinned ones. Returns a counter of requests served.
 */
export async function routeHlsJs(context, url = pinnedHlsJs().url, body = null) {
  const served = { count: 0 };
  const bytes = body || localHlsJs(url.split('/').pop()).body;
  await context.route(url, (route) => {
    served.count += 1;
    // CORS as jsDelivr answers: a crossorigin="anonymous" script with integrity needs it.
    route.fulfill({
      status: 200,
      contentType: 'application/javascript; charset=utf-8',
      headers: { 'access-control-allow-origin': '*' },
      body: bytes,
    });
  });
  return served;
}
