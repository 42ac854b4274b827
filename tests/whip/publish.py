#!/usr/bin/env python3
"""Publish audio to a Tribune room over WHIP (RFC 9725) with aiortc, a real WebRTC stack.

    publish.py URL TOKEN [--tone 440] [--seconds 5] [--sessions 1] [--bursts [--period-ms 300]]

URL is the WHIP endpoint (http://HOST:PORT/api/rooms/ID/whip), TOKEN a stage token. The script
POSTs an SDP offer (after ICE gathering completes, so no trickle), applies the answer, streams a
sine tone for SECONDS, then DELETEs the session. With --sessions K it opens K peer connections
at once (one process, one event loop) for load tests. With --bursts the tone is cut into 100 ms
beeps, one every --period-ms (a multiple of 20) after the first second, and each beep's first
frame is reported with the wall-clock time it was produced (the "glass" of glass-to-ear).

Prints one JSON object per line on stdout: {"event": "answer" | "connected" | "burst" | "done",
...}. Exits non-zero if any session fails to be created or to connect.

All traffic stays on 127.0.0.1: host candidates are limited to loopback and no STUN server is
used (aiortc's default would be a public one).
"""

import argparse
import asyncio
import fractions
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

RATE = 48_000
FRAME = 960  # 20 ms
BURST_SAMPLES = RATE // 10  # 100 ms beeps


def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list:
    return ["127.0.0.1"] if use_ipv4 else []


# aioice leaves loopback out of its host candidates; here it is the only one we want.
aioice.ice.get_host_addresses = loopback_only


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


class Tone(MediaStreamTrack):
    """A real-time mono 48 kHz s16 sine, 20 ms per frame, optionally cut into beeps."""

    kind = "audio"

    def __init__(self, hz: float, bursts: bool, index: int, period_ms: int = 1000) -> None:
        super().__init__()
        self.hz = hz
        self.bursts = bursts
        self.period = RATE * period_ms // 1000
        self.index = index
        self.samples = 0
        self.start = None

    async def recv(self) -> av.AudioFrame:
        if self.start is None:
            self.start = time.time()
        due = self.start + self.samples / RATE
        delay = due - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        n = np.arange(self.samples, self.samples + FRAME)
        pcm = 0.5 * np.sin(2 * math.pi * self.hz * n / RATE)
        if self.bursts:
            # Beep during the first 100 ms of every period after the first second.
            phase = n % self.period
            gate = (phase < BURST_SAMPLES) & (n >= RATE)
            pcm = pcm * gate
            onset = self.samples % self.period == 0 and self.samples >= RATE
            if self.index == 0 and onset:
                emit(event="burst", sample=self.samples, unix_us=int(time.time() * 1e6))
        data = (pcm * 32767).astype("<i2").reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, RATE)
        self.samples += FRAME
        return frame


def http(method: str, url: str, token: str, body: bytes = None, ctype: str = None):
    req = urllib.request.Request(url, data=body, method=method)
    req.add_header("Authorization", f"Bearer {token}")
    if ctype:
        req.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


async def publish(args, index: int, connected: asyncio.Event) -> dict:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    up = asyncio.Event()

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState == "connected":
            up.set()
        elif pc.connectionState in ("failed", "closed"):
            up.set()

    track = Tone(args.tone, args.bursts, index, args.period_ms)
    pc.addTransceiver(track, direction="sendonly")
    # aiortc gathers every candidate inside setLocalDescription: the offer is complete.
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await asyncio.to_thread(
        http, "POST", args.url, args.token, pc.localDescription.sdp.encode(), "application/sdp"
    )
    location = headers.get("Location") or headers.get("location")
    emit(event="answer", session=index, status=status, location=location)
    if status != 201 or not location:
        await pc.close()
        return {"session": index, "status": status, "error": body[:300]}
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    try:
        await asyncio.wait_for(up.wait(), timeout=10)
    except asyncio.TimeoutError:
        pass
    ok = pc.connectionState == "connected"
    emit(event="connected", session=index, ok=ok, state=pc.connectionState)
    if ok:
        connected.set()
        await asyncio.sleep(args.seconds)
    resource = urllib.parse.urljoin(args.url, location)
    del_status = None
    if not args.no_delete:
        del_status, _, _ = await asyncio.to_thread(http, "DELETE", resource, args.token)
    frames = track.samples // FRAME
    await pc.close()
    return {
        "session": index,
        "status": status,
        "connected": ok,
        "frames_sent": frames,
        "delete_status": del_status,
        "location": location,
    }


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--tone", type=float, default=440.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--sessions", type=int, default=1)
    p.add_argument("--bursts", action="store_true")
    p.add_argument("--period-ms", type=int, default=1000, help="burst period (multiple of 20)")
    p.add_argument("--no-delete", action="store_true", help="leave the sessions to time out")
    args = p.parse_args()
    connected = asyncio.Event()
    results = await asyncio.gather(
        *(publish(args, i, connected) for i in range(args.sessions))
    )
    ok = all(r.get("connected") for r in results)
    emit(event="done", ok=ok, sessions=results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
