// Which way the listener page plays a room, and loading hls.js for the LL-HLS fallback.
//
// Transports: 'ws' (listen WebSocket + WebCodecs, lowest latency), 'hlsjs' (LL-HLS through
// hls.js and Media Source Extensions), 'native' (LL-HLS handed to the browser's own player,
// Safari's). hls.js is another project's code, so it never enters our repository: the page
// loads one pinned build at run time, checked by its Subresource Integrity hash. Its URL and
// hash come from <meta name="tribune-hlsjs"> in room.html, which the server rewrites when an
// operator self-hosts hls.js (TRIBUNE_HLSJS_URL, TRIBUNE_HLSJS_INTEGRITY).

/** What this browser can do, as plain booleans (so chooseTransport is testable outside one). */
export function capabilities(g = globalThis) {
  const ms = g.MediaSource || g.ManagedMediaSource;
  const audio = g.document ? g.document.createElement('audio') : null;
  return {
    webCodecs: typeof g.AudioDecoder !== 'undefined' && typeof g.EncodedAudioChunk !== 'undefined',
    // Our LL-HLS carries Opus in fMP4; hls.js can play it only if MSE takes that type.
    mseOpus: Boolean(ms && ms.isTypeSupported && ms.isTypeSupported('audio/mp4; codecs="opus"')),
    // Only ManagedMediaSource (iPhone Safari) and no classic MediaSource.
    managedOnly: Boolean(g.ManagedMediaSource && !g.MediaSource),
    nativeHls: Boolean(audio && audio.canPlayType('application/vnd.apple.mpegurl')),
  };
}

/**
 * The transport to use: `?transport=ws|hls|hlsjs|native` forces one (`hls` lets the page pick
 * the HLS player); otherwise WebCodecs when present, then LL-HLS. Returns null when nothing can
 * play the room.
 *
 * canPlayType alone does not mean Safari: Chromium 156 answers "maybe" for HLS too, and its
 * native player is not the one we test. So native HLS is preferred only where there is no
 * classic MediaSource (iPhone Safari, whose native player also keeps playing on the lock
 * screen), and is otherwise the last resort after hls.js.
 */
export function chooseTransport(search, caps) {
  const asked = new URLSearchParams(search).get('transport');
  if (asked === 'ws' || asked === 'hlsjs' || asked === 'native') return asked;
  const hls = () => {
    if (caps.nativeHls && caps.managedOnly) return 'native';
    if (caps.mseOpus) return 'hlsjs';
    if (caps.nativeHls) return 'native';
    return null;
  };
  if (asked === 'hls') return hls();
  return caps.webCodecs ? 'ws' : hls();
}

export const TRANSPORT_NAMES = {
  ws: 'WebSocket',
  hlsjs: 'LL-HLS (hls.js)',
  native: 'LL-HLS (native)',
};

/** Where to load hls.js from: {url, integrity} from the page's <meta name="tribune-hlsjs">. */
export function hlsjsSource(doc = document) {
  const meta = doc.querySelector('meta[name="tribune-hlsjs"]');
  return { url: meta ? meta.content : '', integrity: meta ? meta.dataset.integrity || '' : '' };
}

let loading = null;

/**
 * Loads hls.js once as a classic script (dynamic import() cannot carry an integrity hash) and
 * resolves its global `Hls`. A hash mismatch makes the browser refuse the script: that arrives
 * here as the script's error event, like a network failure.
 */
export function loadHlsJs(src = hlsjsSource()) {
  if (globalThis.Hls) return Promise.resolve(globalThis.Hls);
  if (!src.url) return Promise.reject(new Error('no hls.js URL configured'));
  loading ??= new Promise((resolve, reject) => {
    const s = document.createElement('script');
    if (src.integrity) s.integrity = src.integrity;
    // SRI on a cross-origin script needs a CORS fetch; jsDelivr answers with ACAO: *.
    s.crossOrigin = 'anonymous';
    s.src = src.url;
    s.onload = () => (globalThis.Hls ? resolve(globalThis.Hls) : reject(new Error('hls.js loaded but defined no Hls')));
    s.onerror = () => {
      loading = null;
      s.remove();
      reject(new Error(`could not load hls.js from ${src.url} (offline, blocked, or not the pinned build)`));
    };
    document.head.append(s);
  });
  return loading;
}
