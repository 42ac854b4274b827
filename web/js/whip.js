// Publishing over WHIP (RFC 9725): one sendonly audio transceiver, the offer POSTed once ICE
// gathering is complete (no trickle), the resource DELETEd on stop.

export class WhipPublisher {
  constructor(roomId, token) {
    this.roomId = roomId;
    this.token = token;
    this.pc = null;
    this.location = null;
  }

  /** Publishes the first audio track of `stream`. */
  async start(stream) {
    const track = stream.getAudioTracks()[0];
    if (!track) throw new Error('no microphone track');
    this.track = track;
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    await gatheringComplete(pc, 3000);
    const resp = await fetch(`/api/rooms/${this.roomId}/whip`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${this.token}` },
      body: pc.localDescription.sdp,
    });
    if (resp.status !== 201) {
      let message = `WHIP ${resp.status}`;
      try {
        message = (await resp.json()).message || message;
      } catch {
        /* keep the status */
      }
      pc.close();
      throw new Error(message);
    }
    const location = resp.headers.get('Location');
    this.location = location ? new URL(location, window.location.href).toString() : null;
    await pc.setRemoteDescription({ type: 'answer', sdp: await resp.text() });
    return pc;
  }

  /** Mutes locally: the track sends silence, so the mix hears nothing. */
  setMuted(muted) {
    if (this.track) this.track.enabled = !muted;
  }

  async stop() {
    if (this.location) {
      try {
        await fetch(this.location, { method: 'DELETE', headers: { Authorization: `Bearer ${this.token}` } });
      } catch {
        /* the session times out on the server anyway */
      }
    }
    if (this.pc) this.pc.close();
    if (this.track) this.track.stop();
    this.pc = null;
    this.location = null;
  }
}

/** Resolves when ICE gathering is complete (or after `timeoutMs`). */
export function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === 'complete') {
        pc.removeEventListener('icegatheringstatechange', done);
        resolve();
      }
    };
    pc.addEventListener('icegatheringstatechange', done);
    setTimeout(resolve, timeoutMs);
  });
}

/** A level meter (0..1) for a microphone stream. */
export function levelMeter(stream, onLevel) {
  const ctx = new AudioContext();
  const src = ctx.createMediaStreamSource(stream);
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  src.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (const s of buf) sum += s * s;
    onLevel(Math.sqrt(sum / buf.length));
  }, 100);
  return () => {
    clearInterval(timer);
    ctx.close();
  };
}
