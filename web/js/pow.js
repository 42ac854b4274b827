// Proof of work for joins under attack (the node's side: tribune-core admission/pow.rs): find a
// nonce such that SHA-256 of the UTF-8 text `challenge + ":" + nonce` (nonce in decimal) starts
// with `bits` zero bits.
//
// Why our own SHA-256 and not crypto.subtle.digest: every subtle call is a promise round trip
// with a fresh copy of the whole message (measured with 256 calls in flight and a 150-byte
// challenge: Chromium 0.19 M hashes/s against 1.7 M/s for this code, Node 20 0.08 against 2.2),
// while every attempt here differs only in its last few bytes. So the blocks made of the
// challenge alone are hashed once (the "midstate") and each nonce costs one or two compressions
// of the tail. The tests check this code against node:crypto's SHA-256.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

const W = new Int32Array(64);

/** One SHA-256 compression of the 64 bytes at `bytes[off..]` into `state` (8 words, in place). */
function compress(state, bytes, off) {
  for (let i = 0; i < 16; i++) {
    const j = off + i * 4;
    W[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
  }
  for (let i = 16; i < 64; i++) {
    const a = W[i - 15];
    const b = W[i - 2];
    const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
    const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
    W[i] = (W[i - 16] + s0 + W[i - 7] + s1) | 0;
  }
  let a = state[0];
  let b = state[1];
  let c = state[2];
  let d = state[3];
  let e = state[4];
  let f = state[5];
  let g = state[6];
  let h = state[7];
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0] + a) | 0;
  state[1] = (state[1] + b) | 0;
  state[2] = (state[2] + c) | 0;
  state[3] = (state[3] + d) | 0;
  state[4] = (state[4] + e) | 0;
  state[5] = (state[5] + f) | 0;
  state[6] = (state[6] + g) | 0;
  state[7] = (state[7] + h) | 0;
}

/** Leading zero bits of a digest given as 8 big-endian 32-bit words. */
export function zeroBits(state) {
  let bits = 0;
  for (let i = 0; i < 8; i++) {
    const z = Math.clz32(state[i]);
    bits += z;
    if (z < 32) break;
  }
  return bits;
}

/** The digest words as lowercase hex (for tests). */
export function hex(state) {
  return Array.from(state, (w) => (w >>> 0).toString(16).padStart(8, '0')).join('');
}

/**
 * Hashes `prefix + suffix` for many suffixes: the prefix's whole blocks are compressed once.
 * `digest(suffixBytes, n)` hashes the first `n` bytes of `suffixBytes` after the prefix and
 * returns the state (reused between calls: read it before the next call).
 */
export class PrefixHasher {
  constructor(prefix) {
    const bytes = prefix instanceof Uint8Array ? prefix : new TextEncoder().encode(prefix);
    this.mid = Int32Array.from(IV);
    const whole = bytes.length - (bytes.length % 64);
    for (let off = 0; off < whole; off += 64) compress(this.mid, bytes, off);
    this.totalPrefix = bytes.length;
    this.tailLen = bytes.length - whole;
    // Room for the tail, a suffix of up to 55 bytes and the padding: at most two blocks.
    this.buf = new Uint8Array(128);
    this.buf.set(bytes.subarray(whole));
    this.state = new Int32Array(8);
  }

  digest(suffix, n) {
    const buf = this.buf;
    let len = this.tailLen;
    for (let i = 0; i < n; i++) buf[len++] = suffix[i];
    const bitLen = (this.totalPrefix + n) * 8;
    buf[len++] = 0x80;
    const blocks = len + 8 <= 64 ? 1 : 2;
    const end = blocks * 64;
    buf.fill(0, len, end - 4);
    // Messages here are far below 2^32 bits: the high word of the length stays zero.
    buf[end - 4] = bitLen >>> 24;
    buf[end - 3] = bitLen >>> 16;
    buf[end - 2] = bitLen >>> 8;
    buf[end - 1] = bitLen;
    this.state.set(this.mid);
    compress(this.state, buf, 0);
    if (blocks === 2) compress(this.state, buf, 64);
    return this.state;
  }
}

/** Writes `n` (a non-negative integer) in decimal ASCII into `out`; returns the byte count. */
function decimal(n, out) {
  const s = String(n);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return s.length;
}

/** Leading zero bits of SHA-256(`challenge:nonce`), the node's work_bits. */
export function workBits(challenge, nonce) {
  const digits = new Uint8Array(24);
  return zeroBits(new PrefixHasher(`${challenge}:`).digest(digits, decimal(nonce, digits)));
}

/**
 * Tries nonces `from`, `from + 1`, … (at most `count`) and returns the first that gives `bits`
 * zero bits, or null. The caller slices the search so it can report progress in between.
 */
export function search(hasher, bits, from, count) {
  const digits = new Uint8Array(24);
  for (let nonce = from; nonce < from + count; nonce++) {
    if (zeroBits(hasher.digest(digits, decimal(nonce, digits))) >= bits) return nonce;
  }
  return null;
}
