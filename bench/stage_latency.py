#!/usr/bin/env python3
"""Speaker-to-speaker delay on a Tribune stage, between two WebRTC clients (aiortc) on loopback.

    stage_latency.py BASE_URL ROOM HOST_TOKEN GUEST_TOKEN [--seconds 30]

The host publishes over WHIP a 880 Hz beep every 300 ms and notes when it produced each beep's
first frame (its capture). The guest publishes a steady 300 Hz tone over WHIP (so its own voice
is in the mix and its mix-minus is really encoded) and plays its mix-minus over WHEP; it notes
when each beep's first frame comes out of its decoder. Both run in this one process on this
host's clock. Prints the delay percentiles as JSON: {"beeps", "heard", "p50_ms", "p99_ms", ...}.
"""

import argparse
import asyncio
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "whip"))
import publish  # noqa: E402  (aiortc set up for loopback only)
import aiortc.rtcrtpreceiver as receiver  # noqa: E402
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.jitterbuffer import JitterBuffer  # noqa: E402

# aiortc holds 4 audio frames (80 ms) before decoding, whatever the network does; browsers adapt
# theirs to the jitter they see (a few tens of ms on loopback). Without --client-buffer, decode
# as packets arrive, so the figure is the path through the node, not aiortc's fixed choice.
if "--client-buffer" not in sys.argv:
    receiver.JitterBuffer = lambda capacity, prefetch=0, is_video=False: JitterBuffer(
        capacity, 0 if not is_video else prefetch, is_video
    )

import numpy as np  # noqa: E402


class Args:
    pass


async def publisher(url, token, hz, bursts, seconds, emitted):
    """Runs publish.publish() with its JSON lines captured into `emitted`."""
    args = Args()
    args.url, args.token, args.tone, args.seconds = url, token, hz, seconds
    args.bursts, args.period_ms, args.no_delete = bursts, 300, False
    return await publish.publish(args, 0, asyncio.Event())


async def player(url, token, seconds, onsets):
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    got = asyncio.Event()
    tracks = []

    @pc.on("track")
    def on_track(track):
        tracks.append(track)
        got.set()

    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, headers, body = await asyncio.to_thread(
        publish.http, "POST", url, token, pc.localDescription.sdp.encode(), "application/sdp"
    )
    if status != 201:
        raise SystemExit(f"WHEP {status}: {body[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))
    await asyncio.wait_for(got.wait(), timeout=10)
    quiet = True
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = await asyncio.wait_for(tracks[0].recv(), timeout=2)
        except asyncio.TimeoutError:
            break
        now = time.time()
        pcm = frame.to_ndarray().astype(np.float32).reshape(-1) / 32768.0
        level = math.sqrt(float(np.mean(pcm * pcm))) if pcm.size else 0.0
        if quiet and level > 0.05:
            onsets.append(int(now * 1e6))
        quiet = level < 0.01
    await pc.close()


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("base")
    p.add_argument("room")
    p.add_argument("host_token")
    p.add_argument("guest_token")
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--client-buffer", action="store_true", help="keep aiortc's 80 ms prefetch")
    a = p.parse_args()
    whip = f"{a.base}/api/rooms/{a.room}/whip"
    whep = f"{a.base}/api/rooms/{a.room}/whep"
    beeps = []
    onsets = []
    real_emit = publish.emit

    def emit(**fields):
        if fields.get("event") == "burst":
            beeps.append(fields["unix_us"])

    publish.emit = emit
    guest_voice = asyncio.create_task(publisher(whip, a.guest_token, 300.0, False, a.seconds + 4, []))
    await asyncio.sleep(1.0)
    host = asyncio.create_task(publisher(whip, a.host_token, 880.0, True, a.seconds + 2, []))
    await asyncio.sleep(1.0)
    await player(whep, a.guest_token, a.seconds, onsets)
    await host
    await guest_voice
    publish.emit = real_emit
    delays = []
    for ear in onsets:
        produced = [b for b in beeps if b <= ear]
        if produced and ear - produced[-1] < 300_000:
            delays.append((ear - produced[-1]) / 1000.0)
    delays.sort()

    def pct(q):
        return delays[min(len(delays) - 1, max(0, math.ceil(q / 100 * len(delays)) - 1))] if delays else None

    print(json.dumps({
        "beeps": len(beeps), "heard": len(delays), "p50_ms": pct(50), "p99_ms": pct(99),
        "max_ms": delays[-1] if delays else None,
    }), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
