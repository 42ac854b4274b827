//! The program mixer: one jitter buffer and decoder per speaker, summed every 20 ms tick,
//! soft-clipped and encoded as one Opus frame for all listeners, plus a mix-minus for every
//! participant on stage who is receiving: everyone else, without their own voice.
//!
//! A mix-minus costs an encode only when its receiver's voice was in this tick's mix; a
//! receiver who contributed nothing (muted, silent, not publishing) gets the program frame
//! itself, shared. The mix-minus packets of one tick share one allocation.

use std::collections::BTreeMap;

use bytes::Bytes;

mod minus;

pub use minus::MixMinus;

use crate::analysis::rms_f32;
use crate::error::MediaError;
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
use crate::opus::{validate_packet, Decoder, Encoder, MAX_ENCODED_BYTES, MAX_PACKET_SAMPLES};
use crate::softclip::soft_clip;
use crate::FRAME_SAMPLES;

/// Tuning of a [`Mixer`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MixerConfig {
    /// Bitrate of the program stream.
    pub bitrate_bps: u32,
    /// Jitter buffer settings used for every speaker.
    pub jitter: JitterConfig,
    /// Opus complexity of the mix-minus encoders (CELT-only, low delay; one per speaking
    /// receiver: the stage's cost grows with it, while a return feed needs intelligibility and
    /// speed more than polish).
    pub minus_complexity: u8,
    /// Bitrate of the mix-minus feeds: 24 kb/s carries voices clearly at full band, and
    /// costs each speaking receiver's encode 7 % less than the program's 32 kb/s (fewer pulses
    /// to search).
    pub minus_bitrate_bps: u32,
    /// A speaker's frame quieter than this (linear RMS, 0..1) is mixed but does not earn its
    /// speaker a feed of their own that tick: taking out a noise floor 60 dB down changes
    /// nothing anyone hears, and a stage where one person talks then costs one encode, not one
    /// per participant.
    pub minus_gate_rms: f32,
    /// Ticks a participant's own feed is still encoded after their voice was last audible (a
    /// pause between words does not switch them to the program frame and back).
    pub minus_hold_ticks: u32,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            bitrate_bps: 32_000,
            jitter: JitterConfig::default(),
            minus_complexity: 0,
            minus_bitrate_bps: 24_000,
            // -60 dBFS.
            minus_gate_rms: 0.001,
            // 1 s.
            minus_hold_ticks: 50,
        }
    }
}

/// One tick of program audio.
#[derive(Debug, Clone, PartialEq)]
pub struct ProgramFrame {
    /// The encoded 20 ms Opus frame.
    pub payload: Bytes,
    /// Oldest capture time among the speaker frames mixed in, or the tick time if none, so
    /// end-to-end latency measured from it includes the jitter buffer delay.
    pub capture_us: u64,
    /// Linear RMS level (0..=1) of each speaker heard in this frame, by speaker id.
    pub levels: Vec<(u64, f32)>,
    /// One return feed per receiver, by receiver id (see [`Mixer::set_receiver`]).
    pub minus: Vec<MixMinus>,
}

struct Speaker {
    jitter: JitterBuffer,
    decoder: Decoder,
    muted: bool,
    /// Packets that failed to decode and were concealed instead.
    decode_errors: u64,
    /// Whether this speaker's audio (a frame or its concealment) is in the current tick's mix.
    voiced: bool,
    /// Whether it is loud enough there to be taken out of this speaker's own feed.
    audible: bool,
    /// Capture and arrival time of the frame this speaker played this tick, if a real one.
    heard: Option<(u64, u64)>,
    /// This tick's decoded PCM (fractions of full scale), valid while `voiced` and anyone
    /// receives.
    pcm: Box<[f32; FRAME_SAMPLES]>,
}

/// A participant receiving a mix-minus.
struct Receiver {
    /// The speakers whose voice is theirs (their seats), taken out of their feed.
    own: Vec<u64>,
    /// Created the first time their voice is in a mix.
    encoder: Option<Encoder>,
    /// Ticks their own feed is still encoded after their voice was last audible.
    hold: u32,
}

/// Mixes any number of speakers into one program stream.
pub struct Mixer {
    cfg: MixerConfig,
    // Ordered by id so `levels` come out in a stable order.
    speakers: BTreeMap<u64, Speaker>,
    receivers: BTreeMap<u64, Receiver>,
    /// Jitter figures of speakers that left.
    retired: JitterStats,
    encoder: Encoder,
    // Scratch buffers reused every tick to keep the hot path allocation-light. Audio stays in
    // the codec's own format (f32, fractions of full scale) from decoder to encoder: no
    // rounding to 16 bits and back, which cost a libm call per sample and stream.
    decoded: Box<[f32; MAX_PACKET_SAMPLES]>,
    mix: Box<[f32; FRAME_SAMPLES]>,
    program: Box<[f32; FRAME_SAMPLES]>,
    packet: Box<[u8; MAX_ENCODED_BYTES]>,
    minus: minus::Scratch,
    /// Mix-minus frames encoded (not shared from the program) since creation.
    minus_encodes: u64,
}

impl Mixer {
    /// Creates a mixer with no speakers.
    pub fn new(cfg: MixerConfig) -> Result<Self, MediaError> {
        Ok(Mixer {
            cfg,
            speakers: BTreeMap::new(),
            receivers: BTreeMap::new(),
            retired: JitterStats::default(),
            encoder: Encoder::new(cfg.bitrate_bps)?,
            decoded: Box::new([0.0; MAX_PACKET_SAMPLES]),
            mix: Box::new([0.0; FRAME_SAMPLES]),
            program: Box::new([0.0; FRAME_SAMPLES]),
            packet: Box::new([0; MAX_ENCODED_BYTES]),
            minus: minus::Scratch::default(),
            minus_encodes: 0,
        })
    }

    /// The configuration the mixer was built with.
    pub fn config(&self) -> MixerConfig {
        self.cfg
    }

    /// Adds a speaker; adding one that is already present keeps its current state.
    pub fn add_speaker(&mut self, id: u64) -> Result<(), MediaError> {
        if self.speakers.contains_key(&id) {
            return Ok(());
        }
        let speaker = Speaker {
            jitter: JitterBuffer::new(self.cfg.jitter),
            decoder: Decoder::new()?,
            muted: false,
            decode_errors: 0,
            voiced: false,
            audible: false,
            heard: None,
            pcm: Box::new([0.0; FRAME_SAMPLES]),
        };
        self.speakers.insert(id, speaker);
        Ok(())
    }

    /// Removes a speaker and its queued audio (no-op if absent).
    pub fn remove_speaker(&mut self, id: u64) {
        if let Some(s) = self.speakers.remove(&id) {
            self.retired += s.jitter.stats();
        }
    }

    /// Jitter buffer counters summed over every speaker this mixer has had.
    pub fn jitter_totals(&self) -> JitterStats {
        let mut total = self.retired;
        for s in self.speakers.values() {
            total += s.jitter.stats();
        }
        total
    }

    /// Mutes or unmutes a speaker (no-op if absent). Muted speakers keep draining their buffer.
    pub fn set_muted(&mut self, id: u64, muted: bool) {
        if let Some(s) = self.speakers.get_mut(&id) {
            s.muted = muted;
        }
    }

    /// Starts (or updates) a receiver's mix-minus: the mix without the speakers in `own` (the
    /// receiver's own seats; none for someone on stage who does not publish).
    pub fn set_receiver(&mut self, id: u64, own: &[u64]) {
        let r = self.receivers.entry(id).or_insert_with(|| Receiver {
            own: Vec::new(),
            encoder: None,
            hold: 0,
        });
        r.own.clear();
        r.own.extend_from_slice(own);
    }

    /// Stops a receiver's mix-minus (no-op if absent).
    pub fn remove_receiver(&mut self, id: u64) {
        self.receivers.remove(&id);
    }

    /// The receivers' ids.
    pub fn receiver_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.receivers.keys().copied()
    }

    /// The speakers taken out of a receiver's feed (`None` if not receiving).
    pub fn receiver(&self, id: u64) -> Option<&[u64]> {
        self.receivers.get(&id).map(|r| &r.own[..])
    }

    /// Mix-minus frames encoded since creation (those shared from the program not counted).
    pub fn minus_encodes(&self) -> u64 {
        self.minus_encodes
    }

    /// Whether a speaker is muted (`None` if absent).
    pub fn is_muted(&self, id: u64) -> Option<bool> {
        self.speakers.get(&id).map(|s| s.muted)
    }

    /// Number of speakers.
    pub fn speaker_count(&self) -> usize {
        self.speakers.len()
    }

    /// Whether a speaker with this id is present.
    pub fn has_speaker(&self, id: u64) -> bool {
        self.speakers.contains_key(&id)
    }

    /// Jitter buffer counters of a speaker.
    pub fn jitter_stats(&self, id: u64) -> Option<JitterStats> {
        self.speakers.get(&id).map(|s| s.jitter.stats())
    }

    /// The reserve a speaker's jitter buffer held over its last measuring window (`None` while
    /// it has not completed one), and the target it keeps.
    pub fn jitter_depth(&self, id: u64) -> Option<(Option<usize>, usize)> {
        self.speakers
            .get(&id)
            .map(|s| (s.jitter.depth(), s.jitter.target_depth()))
    }

    /// Packets of a speaker that failed to decode and were concealed instead.
    pub fn decode_errors(&self, id: u64) -> Option<u64> {
        self.speakers.get(&id).map(|s| s.decode_errors)
    }

    /// Queues a speaker's frame after checking it is a 20 ms Opus packet.
    pub fn push(
        &mut self,
        id: u64,
        seq: u64,
        capture_us: u64,
        payload: Bytes,
    ) -> Result<PushOutcome, MediaError> {
        // No arrival time: the capture clock may not be the tick's, so the speaker's reserve
        // is counted in frames.
        let speaker = self
            .speakers
            .get_mut(&id)
            .ok_or(MediaError::UnknownSpeaker(id))?;
        validate_packet(&payload)?;
        Ok(speaker.jitter.push(seq, capture_us, payload))
    }

    /// Like [`Mixer::push`], noting when the frame reached the node (`arrived_us`, the caller's
    /// clock), from which the stage path's delay is measured.
    pub fn push_arrived(
        &mut self,
        id: u64,
        seq: u64,
        capture_us: u64,
        arrived_us: u64,
        payload: Bytes,
    ) -> Result<PushOutcome, MediaError> {
        let speaker = self
            .speakers
            .get_mut(&id)
            .ok_or(MediaError::UnknownSpeaker(id))?;
        validate_packet(&payload)?;
        Ok(speaker
            .jitter
            .push_arrived(seq, capture_us, arrived_us, payload))
    }

    /// Produces the next 20 ms program frame and the mix-minus feeds; call once per tick with
    /// the current time.
    ///
    /// Each speaker yields one playout; frames are decoded, gaps concealed, idle and muted
    /// speakers skipped. The sum is soft-clipped (see [`crate::softclip`]) and encoded; with
    /// nobody active the frame is silence, so the program timeline never has holes.
    pub fn tick(&mut self, now_us: u64) -> Result<ProgramFrame, MediaError> {
        self.mix.fill(0.0);
        let mut oldest: Option<u64> = None;
        let mut levels = Vec::with_capacity(self.speakers.len());
        for (&id, speaker) in self.speakers.iter_mut() {
            speaker.voiced = false;
            speaker.audible = false;
            speaker.heard = None;
            // Muted speakers are still popped so their buffer keeps pace with real time.
            let playout = speaker.jitter.pop_at(now_us);
            if speaker.muted {
                continue;
            }
            let (decoded, times) = match playout {
                Playout::Idle => continue,
                Playout::Frame {
                    capture_us,
                    arrived_us,
                    payload,
                    ..
                } => match speaker.decoder.decode(&payload, &mut self.decoded[..]) {
                    Ok(FRAME_SAMPLES) => {
                        oldest = Some(oldest.map_or(capture_us, |o| o.min(capture_us)));
                        (FRAME_SAMPLES, Some((capture_us, arrived_us)))
                    }
                    // A corrupt packet passed validation: conceal rather than drop the tick.
                    _ => {
                        speaker.decode_errors += 1;
                        let n = speaker.decoder.conceal(&mut self.decoded[..])?;
                        (n, None)
                    }
                },
                Playout::Conceal { .. } => (speaker.decoder.conceal(&mut self.decoded[..])?, None),
            };
            let pcm = &self.decoded[..decoded.min(FRAME_SAMPLES)];
            for (m, &s) in self.mix.iter_mut().zip(pcm) {
                *m += s;
            }
            let level = rms_f32(pcm);
            levels.push((id, level));
            speaker.audible = level >= self.cfg.minus_gate_rms;
            if !self.receivers.is_empty() {
                // Kept to take back out of this speaker's own feed.
                speaker.pcm[..pcm.len()].copy_from_slice(pcm);
                speaker.pcm[pcm.len()..].fill(0.0);
            }
            speaker.voiced = true;
            speaker.heard = times;
        }
        for (out, &m) in self.program.iter_mut().zip(self.mix.iter()) {
            *out = soft_clip(m);
        }
        let n = self
            .encoder
            .encode(&self.program[..], &mut self.packet[..])?;
        let payload = Bytes::copy_from_slice(&self.packet[..n]);
        let minus = self.mix_minus(&payload, now_us);
        Ok(ProgramFrame {
            payload,
            capture_us: oldest.unwrap_or(now_us),
            levels,
            minus,
        })
    }

    /// The PCM of the last program frame before encoding, as fractions of full scale (silence
    /// before the first tick).
    pub fn program_pcm(&self) -> &[f32] {
        &self.program[..]
    }
}

#[cfg(test)]
mod tests;
