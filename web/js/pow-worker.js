// Solves a join's proof-of-work challenge off the main thread, so the page stays responsive
// (and audio of an earlier session keeps playing) while a phone spends seconds hashing.
//
// In: {challenge, bits}. Out: {type: 'progress', tried} about every 100 ms, then
// {type: 'solved', nonce, tried, ms}. The page terminates the worker to cancel.

import { PrefixHasher, search } from './pow.js';

// Nonces per slice between progress reports and checks of the clock: small enough to report
// often on a slow phone, large enough that the clock costs nothing.
const SLICE = 4096;

self.onmessage = (e) => {
  const { challenge, bits } = e.data;
  const hasher = new PrefixHasher(`${challenge}:`);
  const t0 = performance.now();
  let lastReport = t0;
  for (let from = 0; ; from += SLICE) {
    const nonce = search(hasher, bits, from, SLICE);
    if (nonce !== null) {
      self.postMessage({ type: 'solved', nonce, tried: nonce + 1, ms: performance.now() - t0 });
      return;
    }
    const now = performance.now();
    if (now - lastReport >= 100) {
      lastReport = now;
      self.postMessage({ type: 'progress', tried: from + SLICE });
    }
  }
};
