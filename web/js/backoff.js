// Capped full-jitter exponential backoff, honouring a server's Retry-After when given.

export class Backoff {
  constructor({ baseMs = 250, capMs = 10000 } = {}) {
    this.baseMs = baseMs;
    this.capMs = capMs;
    this.attempt = 0;
  }

  /** Milliseconds to wait before the next attempt. */
  next(retryAfterSeconds) {
    if (retryAfterSeconds && Number.isFinite(retryAfterSeconds)) {
      this.attempt += 1;
      return Math.min(this.capMs, retryAfterSeconds * 1000) * (0.8 + Math.random() * 0.4);
    }
    const ceiling = Math.min(this.capMs, this.baseMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.random() * ceiling;
  }

  reset() {
    this.attempt = 0;
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
