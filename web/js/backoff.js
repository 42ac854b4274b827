// Capped full-jitter exponential backoff, honouring a server's Retry-After when given.

export class Backoff {
  constructor({ baseMs = 250, capMs = 10000 } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.attempt = 0;
  }

  /**
   * Milliseconds to wait before the next attempt: a random time up to the (capped, doubling)
   * ceiling, so a crowd of clients spreads out instead of coming back together. With a
   * Retry-After, never sooner than the server asked: that time plus the jitter.
   */
  next(retryAfterSeconds) {
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    this.attempt += 1;
    const jitter = Math.random() * ceiling;
    if (retryAfterSeconds > 0 && Number.isFinite(retryAfterSeconds)) return retryAfterSeconds * 1000 + jitter;
    return jitter;
  }

  reset() {
    this.attempt = 0;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
