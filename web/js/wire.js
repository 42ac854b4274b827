// Tribune wire format v1 (docs/PROTOCOL.md): a binary message is a batch of audio records.
// [version=1][kind=1] then records of [seq u64][capture_us u64][len u16][payload].

export const WIRE_VERSION = 1;
const KIND_AUDIO = 1;
const RECORD_HEADER = 18;

/** Parses one binary message into records; throws Error on a malformed message. */
export function parseBatch(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength < 2) throw new Error('message too short');
  if (view.getUint8(0) !== WIRE_VERSION) throw new Error(`unsupported version ${view.getUint8(0)}`);
  if (view.getUint8(1) !== KIND_AUDIO) throw new Error(`unknown kind ${view.getUint8(1)}`);
  const records = [];
  let at = 2;
  while (at < buffer.byteLength) {
    if (at + RECORD_HEADER > buffer.byteLength) throw new Error('truncated record');
    // Sequence numbers and microsecond timestamps fit in a double's 53 bits for centuries.
    const seq = Number(view.getBigUint64(at));
    const captureUs = Number(view.getBigUint64(at + 8));
    const len = view.getUint16(at + 16);
    const start = at + RECORD_HEADER;
    if (len === 0 || start + len > buffer.byteLength) throw new Error('bad record length');
    records.push({ seq, captureUs, payload: new Uint8Array(buffer, start, len) });
    at = start + len;
  }
  if (records.length === 0) throw new Error('empty batch');
  return records;
}
