//! Mix-minus: each receiving participant's feed is the tick's mix without their own voice.

use bytes::Bytes;

use super::Mixer;
use crate::opus::Encoder;
use crate::softclip::soft_clip;
use crate::FRAME_SAMPLES;

/// One receiver's return feed for a tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixMinus {
    /// The receiver it is for.
    pub id: u64,
    /// The encoded 20 ms Opus frame.
    pub payload: Bytes,
    /// Oldest capture time among the other speakers' frames in it, or the tick time if none.
    pub capture_us: u64,
    /// Earliest arrival at the node among those frames (`None` if it holds none): the stage
    /// path's delay runs from here to the moment the packet leaves.
    pub arrived_us: Option<u64>,
    /// Whether it was encoded for this participant; `false` means it is the program frame
    /// itself (they contributed nothing this tick).
    pub own: bool,
}

/// Buffers reused every tick so the mix-minus path allocates once per tick, not per receiver.
pub(super) struct Scratch {
    /// One receiver's feed, soft-clipped, as fractions of full scale.
    pcm: Box<[f32; FRAME_SAMPLES]>,
    /// This tick's encoded feeds back to back, and where each lies.
    packets: Vec<u8>,
    spans: Vec<Span>,
    /// (id, capture, arrival) of every speaker heard this tick.
    voices: Vec<(u64, Option<(u64, u64)>)>,
}

struct Span {
    id: u64,
    encoded: Option<std::ops::Range<usize>>,
    capture_us: u64,
    arrived_us: Option<u64>,
}

impl Default for Scratch {
    fn default() -> Self {
        Scratch {
            pcm: Box::new([0.0; FRAME_SAMPLES]),
            packets: Vec::new(),
            spans: Vec::new(),
            voices: Vec::new(),
        }
    }
}

impl Mixer {
    /// Builds this tick's feeds from the summed mix; `program` is the tick's program frame.
    pub(super) fn mix_minus(&mut self, program: &Bytes, now_us: u64) -> Vec<MixMinus> {
        let Mixer {
            cfg,
            speakers,
            receivers,
            mix,
            packet,
            minus,
            minus_encodes,
            ..
        } = self;
        if receivers.is_empty() {
            return Vec::new();
        }
        minus.voices.clear();
        minus.voices.extend(
            speakers
                .iter()
                .filter(|(_, s)| s.voiced)
                .map(|(&id, s)| (id, s.heard)),
        );
        minus.packets.clear();
        minus.spans.clear();
        for (&id, receiver) in receivers.iter_mut() {
            let mut capture_us: Option<u64> = None;
            let mut arrived_us: Option<u64> = None;
            let others = minus.voices.iter().filter(|v| !receiver.own.contains(&v.0));
            for (c, a) in others.filter_map(|v| v.1) {
                capture_us = Some(capture_us.map_or(c, |o| o.min(c)));
                arrived_us = Some(arrived_us.map_or(a, |o| o.min(a)));
            }
            let mut span = Span {
                id,
                encoded: None,
                capture_us: capture_us.unwrap_or(now_us),
                arrived_us,
            };
            // Their own audio is taken out while it is audible (see `minus_gate_rms`) and for a
            // while after (`minus_hold_ticks`), so the feed does not flap between their encoder
            // and the program's at every breath.
            let audible = receiver
                .own
                .iter()
                .filter_map(|o| speakers.get(o))
                .any(|s| s.voiced && s.audible);
            if audible {
                receiver.hold = cfg.minus_hold_ticks.max(1);
            }
            if receiver.hold > 0 {
                receiver.hold -= 1;
                minus.pcm.copy_from_slice(&mix[..]);
                let own = receiver.own.iter().filter_map(|o| speakers.get(o));
                for s in own.filter(|s| s.voiced) {
                    for (out, &own) in minus.pcm.iter_mut().zip(s.pcm.iter()) {
                        *out -= own;
                    }
                }
                for out in minus.pcm.iter_mut() {
                    *out = soft_clip(*out);
                }
                let encoded = match receiver.encoder.as_mut() {
                    Some(e) => Ok(e),
                    None => Encoder::low_delay(cfg.minus_bitrate_bps)
                        .and_then(|mut e| e.set_complexity(cfg.minus_complexity).map(|()| e))
                        .map(|e| receiver.encoder.insert(e)),
                }
                .and_then(|e| e.encode(&minus.pcm[..], &mut packet[..]));
                // An encoder failing (it does not, on 960 valid samples) costs that receiver
                // their own feed for a tick, never the room its program.
                if let Ok(n) = encoded {
                    let start = minus.packets.len();
                    minus.packets.extend_from_slice(&packet[..n]);
                    span.encoded = Some(start..start + n);
                    *minus_encodes += 1;
                }
            }
            minus.spans.push(span);
        }
        let all = Bytes::copy_from_slice(&minus.packets);
        minus
            .spans
            .iter()
            .map(|s| MixMinus {
                id: s.id,
                payload: s
                    .encoded
                    .clone()
                    .map_or_else(|| program.clone(), |r| all.slice(r)),
                capture_us: s.capture_us,
                arrived_us: s.arrived_us,
                own: s.encoded.is_some(),
            })
            .collect()
    }
}
