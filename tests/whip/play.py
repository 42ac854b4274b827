#!/usr/bin/env python3
"""Play a Tribune room over WHEP (draft-ietf-wish-whep) with aiortc, a real WebRTC stack.

    play.py URL TOKEN [--seconds 5] [--wav OUT.wav] [--sessions 1]

URL is the WHEP endpoint (http://HOST:PORT/api/rooms/ID/whep), TOKEN a stage token (plays that
participant's mix-minus) or a listener ticket (plays the program). The script POSTs a recvonly
Opus offer (after ICE gathering, so no trickle), applies the answer, records what it hears for
SECONDS (mono 48 kHz, written to --wav), then DELETEs the session. With --sessions K it opens K
players at once in one event loop (load tests; nothing is recorded).

Prints one JSON object per line on stdout: {"event": "answer" | "connected" | "done", ...}.
Exits non-zero if any session fails to be created or to connect. All traffic stays on
127.0.0.1: host candidates are limited to loopback and no STUN server is used.
"""

import argparse
import asyncio
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import wave

import aioice.ice
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError


def loopback_only(use_ipv4: bool, use_ipv6: bool) -> list:
    return ["127.0.0.1"] if use_ipv4 else []


aioice.ice.get_host_addresses = loopback_only


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


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


def mono(frame) -> np.ndarray:
    """The first channel of a decoded frame as int16."""
    arr = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return arr[0].astype(np.int16)
    return arr.reshape(-1, channels)[:, 0].astype(np.int16)


async def play(args, index: int) -> dict:
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    up = asyncio.Event()
    got_track = asyncio.Event()
    tracks = []

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        if pc.connectionState in ("connected", "failed", "closed"):
            up.set()

    @pc.on("track")
    def on_track(track) -> None:
        tracks.append(track)
        got_track.set()

    pc.addTransceiver("audio", direction="recvonly")
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
        await asyncio.wait_for(got_track.wait(), timeout=5)
    except asyncio.TimeoutError:
        pass
    ok = pc.connectionState == "connected" and bool(tracks)
    emit(event="connected", session=index, ok=ok, state=pc.connectionState)
    pcm = []
    frames = 0
    if ok:
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            try:
                frame = await asyncio.wait_for(tracks[0].recv(), timeout=2)
            except (asyncio.TimeoutError, MediaStreamError):
                break
            frames += 1
            if args.wav and index == 0:
                pcm.append(mono(frame))
    if args.wav and index == 0:
        with wave.open(args.wav, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(48_000)
            w.writeframes(np.concatenate(pcm).tobytes() if pcm else b"")
    resource = urllib.parse.urljoin(args.url, location)
    del_status, _, _ = await asyncio.to_thread(http, "DELETE", resource, args.token)
    await pc.close()
    return {
        "session": index,
        "status": status,
        "connected": ok,
        "frames": frames,
        "delete_status": del_status,
    }


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--wav")
    p.add_argument("--sessions", type=int, default=1)
    args = p.parse_args()
    results = await asyncio.gather(*(play(args, i) for i in range(args.sessions)))
    ok = all(r.get("connected") for r in results)
    emit(event="done", ok=ok, sessions=results)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
