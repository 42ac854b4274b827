// How the listener page picks its transport (web/js/transport.js), and that the hls.js build it
// pins is the one in our devDependencies, byte for byte. No browser needed.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { localHlsJs, pinnedHlsJs, ROOT } from './harness.mjs';
import { chooseTransport } from '../../web/js/transport.js';

const chrome = { webCodecs: true, mseOpus: true, managedOnly: false, nativeHls: true };
const chromeNoWebCodecs = { ...chrome, webCodecs: false };
const oldMacSafari = { webCodecs: false, mseOpus: false, managedOnly: false, nativeHls: true };
const iphoneSafari = { webCodecs: false, mseOpus: true, managedOnly: true, nativeHls: true };
const nothing = { webCodecs: false, mseOpus: false, managedOnly: false, nativeHls: false };

test('WebCodecs first, then hls.js, native HLS where only it or Managed MSE exists', () => {
  assert.equal(chooseTransport('', chrome), 'ws');
  // Chromium 156 answers canPlayType(HLS) "maybe" too: it must still get hls.js.
  assert.equal(chooseTransport('', chromeNoWebCodecs), 'hlsjs');
  assert.equal(chooseTransport('', oldMacSafari), 'native');
  assert.equal(chooseTransport('', iphoneSafari), 'native');
  assert.equal(chooseTransport('', nothing), null);
});

test('?transport= forces a transport', () => {
  assert.equal(chooseTransport('?transport=hls', chrome), 'hlsjs');
  assert.equal(chooseTransport('?transport=hls', oldMacSafari), 'native');
  assert.equal(chooseTransport('?transport=hls', nothing), null);
  assert.equal(chooseTransport('?transport=native', chrome), 'native');
  assert.equal(chooseTransport('?transport=hlsjs', oldMacSafari), 'hlsjs');
  assert.equal(chooseTransport('?x=1&transport=ws', chromeNoWebCodecs), 'ws');
  assert.equal(chooseTransport('?transport=carrier-pigeon', chrome), 'ws');
});

test('the pinned hls.js URL, version and SRI hash match the devDependency', () => {
  const pinned = pinnedHlsJs();
  const pkg = JSON.parse(readFileSync(join(ROOT, 'tests/browser/package.json'), 'utf8'));
  assert.equal(pkg.devDependencies['hls.js'], pinned.version);
  assert.match(pinned.version, /^\d+\.\d+\.\d+$/, 'an exact version, never a range');
  assert.equal(pinned.url, `https://cdn.jsdelivr.net/npm/hls.js@${pinned.version}/dist/${pinned.file}`);
  assert.equal(localHlsJs(pinned.file).integrity, pinned.integrity);
});
