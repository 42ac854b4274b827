//! The program mixer: one jitter buffer and decoder per speaker, summed every 20 ms tick,
//! soft-clipped and encoded as one Opus frame for all listeners.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::analysis::rms;
use crate::error::MediaError;
use crate::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout, PushOutcome};
use crate::opus::{validate_packet, Decoder, Encoder, MAX_ENCODED_BYTES, MAX_PACKET_SAMPLES};
use crate::softclip::clip_to_i16;
use crate::FRAME_SAMPLES;

/// Tuning of a [`Mixer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MixerConfig {
    /// Bitrate of the program stream.
    pub bitrate_bps: u32,
    /// Jitter buffer settings used for every speaker.
    pub jitter: JitterConfig,
}

impl Default for MixerConfig {
    fn default() -> Self {
        MixerConfig {
            bitrate_bps: 32_000,
            jitter: JitterConfig::default(),
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
}

struct Speaker {
    jitter: JitterBuffer,
    decoder: Decoder,
    muted: bool,
    /// Packets that failed to decode and were concealed instead.
    decode_errors: u64,
}

/// Mixes any number of speakers into one program stream.
pub struct Mixer {
    cfg: MixerConfig,
    // Ordered by id so `levels` come out in a stable order.
    speakers: BTreeMap<u64, Speaker>,
    encoder: Encoder,
    // Scratch buffers reused every tick to keep the hot path allocation-light.
    decoded: Box<[i16; MAX_PACKET_SAMPLES]>,
    mix: Box<[f32; FRAME_SAMPLES]>,
    program: Box<[i16; FRAME_SAMPLES]>,
    packet: Box<[u8; MAX_ENCODED_BYTES]>,
}

impl Mixer {
    /// Creates a mixer with no speakers.
    pub fn new(cfg: MixerConfig) -> Result<Self, MediaError> {
        Ok(Mixer {
            cfg,
            speakers: BTreeMap::new(),
            encoder: Encoder::new(cfg.bitrate_bps)?,
            decoded: Box::new([0; MAX_PACKET_SAMPLES]),
            mix: Box::new([0.0; FRAME_SAMPLES]),
            program: Box::new([0; FRAME_SAMPLES]),
            packet: Box::new([0; MAX_ENCODED_BYTES]),
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
        };
        self.speakers.insert(id, speaker);
        Ok(())
    }

    /// Removes a speaker and its queued audio (no-op if absent).
    pub fn remove_speaker(&mut self, id: u64) {
        self.speakers.remove(&id);
    }

    /// Mutes or unmutes a speaker (no-op if absent). Muted speakers keep draining their buffer.
    pub fn set_muted(&mut self, id: u64, muted: bool) {
        if let Some(s) = self.speakers.get_mut(&id) {
            s.muted = muted;
        }
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
        let speaker = self
            .speakers
            .get_mut(&id)
            .ok_or(MediaError::UnknownSpeaker(id))?;
        validate_packet(&payload)?;
        Ok(speaker.jitter.push(seq, capture_us, payload))
    }

    /// Produces the next 20 ms program frame; call once per tick with the current time.
    ///
    /// Each speaker yields one playout; frames are decoded, gaps concealed, idle and muted
    /// speakers skipped. The sum is soft-clipped (see [`crate::softclip`]) and encoded; with
    /// nobody active the frame is silence, so the program timeline never has holes.
    pub fn tick(&mut self, now_us: u64) -> Result<ProgramFrame, MediaError> {
        self.mix.fill(0.0);
        let mut oldest: Option<u64> = None;
        let mut levels = Vec::with_capacity(self.speakers.len());
        for (&id, speaker) in self.speakers.iter_mut() {
            // Muted speakers are still popped so their buffer keeps pace with real time.
            let playout = speaker.jitter.pop();
            if speaker.muted {
                continue;
            }
            let decoded = match playout {
                Playout::Idle => continue,
                Playout::Frame {
                    capture_us,
                    payload,
                    ..
                } => match speaker.decoder.decode(&payload, &mut self.decoded[..]) {
                    Ok(FRAME_SAMPLES) => {
                        oldest = Some(oldest.map_or(capture_us, |o| o.min(capture_us)));
                        FRAME_SAMPLES
                    }
                    // A corrupt packet passed validation: conceal rather than drop the tick.
                    _ => {
                        speaker.decode_errors += 1;
                        speaker.decoder.conceal(&mut self.decoded[..])?
                    }
                },
                Playout::Conceal { .. } => speaker.decoder.conceal(&mut self.decoded[..])?,
            };
            let pcm = &self.decoded[..decoded.min(FRAME_SAMPLES)];
            for (m, &s) in self.mix.iter_mut().zip(pcm) {
                *m += f32::from(s);
            }
            levels.push((id, rms(pcm)));
        }
        for m in self.mix.iter_mut() {
            *m *= 1.0 / 32768.0;
        }
        clip_to_i16(&self.mix[..], &mut self.program[..]);
        let n = self
            .encoder
            .encode(&self.program[..], &mut self.packet[..])?;
        Ok(ProgramFrame {
            payload: Bytes::copy_from_slice(&self.packet[..n]),
            capture_us: oldest.unwrap_or(now_us),
            levels,
        })
    }

    /// The PCM of the last program frame, before encoding (silence before the first tick).
    pub fn program_pcm(&self) -> &[i16] {
        &self.program[..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{band_energy_ratio, dominant_frequency, peaks};
    use crate::opus::Decoder;
    use crate::tone::ToneGenerator;
    use crate::SAMPLE_RATE;

    /// A speaker source: a tone encoded frame by frame.
    struct Source {
        tone: ToneGenerator,
        enc: Encoder,
        seq: u64,
    }

    impl Source {
        fn new(freq: f32, amplitude: f32) -> Self {
            Source {
                tone: ToneGenerator::new(freq, amplitude),
                enc: Encoder::new(48_000).unwrap(),
                seq: 0,
            }
        }

        fn push_to(&mut self, mixer: &mut Mixer, id: u64, capture_us: u64) {
            let packet = self.enc.encode_vec(&self.tone.next_frame()).unwrap();
            let out = mixer
                .push(id, self.seq, capture_us, Bytes::from(packet))
                .unwrap();
            assert_eq!(out, PushOutcome::Accepted);
            self.seq += 1;
        }
    }

    /// Runs `ticks` ticks with the given sources pushing one frame each per tick and returns
    /// the decoded program (skipping the start-up) plus the program frames.
    fn run(
        mixer: &mut Mixer,
        sources: &mut [(u64, Source)],
        ticks: usize,
    ) -> (Vec<i16>, Vec<ProgramFrame>) {
        let mut dec = Decoder::new().unwrap();
        let mut pcm = vec![0i16; MAX_PACKET_SAMPLES];
        let mut audio = Vec::new();
        let mut frames = Vec::new();
        for t in 0..ticks {
            let now = t as u64 * 20_000;
            for (id, src) in sources.iter_mut() {
                src.push_to(mixer, *id, now);
            }
            let frame = mixer.tick(now).unwrap();
            let n = dec.decode(&frame.payload, &mut pcm).unwrap();
            assert_eq!(n, FRAME_SAMPLES);
            if t >= 10 {
                audio.extend_from_slice(&pcm[..n]);
            }
            frames.push(frame);
        }
        (audio, frames)
    }

    fn near(freqs: &[f32], f: f32) -> bool {
        freqs.iter().any(|&x| (x - f).abs() < 5.0)
    }

    #[test]
    fn mixes_two_speakers_into_both_tones() {
        let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
        mixer.add_speaker(1).unwrap();
        mixer.add_speaker(2).unwrap();
        assert_eq!(mixer.speaker_count(), 2);
        let mut sources = [(1, Source::new(440.0, 0.3)), (2, Source::new(660.0, 0.3))];
        let (audio, frames) = run(&mut mixer, &mut sources, 100);
        let top = peaks(&audio, SAMPLE_RATE, 3);
        assert!(near(&top[..2], 440.0) && near(&top[..2], 660.0), "{top:?}");
        let ra = band_energy_ratio(&audio, SAMPLE_RATE, 440.0, 25.0);
        let rb = band_energy_ratio(&audio, SAMPLE_RATE, 660.0, 25.0);
        assert!(ra > 0.3 && rb > 0.3, "ra {ra} rb {rb}");
        assert!(
            (ra / rb - 1.0).abs() < 0.3,
            "comparable energy: ra {ra} rb {rb}"
        );
        // No third strong component: everything else is a few percent at most.
        assert!(ra + rb > 0.95, "residual {}", 1.0 - ra - rb);
        let third = band_energy_ratio(&audio, SAMPLE_RATE, top[2], 5.0);
        assert!(third < 0.02, "third peak {} holds {third}", top[2]);
        // Both speakers are reported with a level near the tone's RMS (0.3 / sqrt 2).
        let levels = &frames.last().unwrap().levels;
        assert_eq!(levels.iter().map(|l| l.0).collect::<Vec<_>>(), [1, 2]);
        for &(_, level) in levels {
            assert!((level - 0.212).abs() < 0.04, "level {level}");
        }
    }

    #[test]
    fn muted_speaker_disappears_from_program() {
        let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
        mixer.add_speaker(1).unwrap();
        mixer.add_speaker(2).unwrap();
        mixer.set_muted(2, true);
        assert_eq!(mixer.is_muted(2), Some(true));
        let mut sources = [(1, Source::new(440.0, 0.3)), (2, Source::new(660.0, 0.3))];
        let (audio, frames) = run(&mut mixer, &mut sources, 60);
        let f = dominant_frequency(&audio, SAMPLE_RATE).unwrap();
        assert!((f - 440.0).abs() < 5.0, "{f}");
        assert!(band_energy_ratio(&audio, SAMPLE_RATE, 660.0, 25.0) < 0.01);
        assert!(frames.last().unwrap().levels.iter().all(|l| l.0 == 1));
        // The muted speaker's buffer is drained at the normal pace.
        assert!(mixer.speakers[&2].jitter.len() <= 3);
        mixer.set_muted(2, false);
        let (audio, _) = run(&mut mixer, &mut sources, 60);
        assert!(band_energy_ratio(&audio, SAMPLE_RATE, 660.0, 25.0) > 0.3);
    }

    #[test]
    fn silence_still_produces_frames() {
        let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
        mixer.add_speaker(7).unwrap();
        let mut dec = Decoder::new().unwrap();
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        for t in 0..20u64 {
            let frame = mixer.tick(t * 20_000).unwrap();
            assert_eq!(frame.capture_us, t * 20_000);
            assert!(frame.levels.is_empty());
            assert_eq!(dec.decode(&frame.payload, &mut pcm), Ok(FRAME_SAMPLES));
            assert!(rms(&pcm[..FRAME_SAMPLES]) < 1e-3);
        }
        let mut empty = Mixer::new(MixerConfig::default()).unwrap();
        assert!(!empty.tick(0).unwrap().payload.is_empty());
    }

    #[test]
    fn capture_time_is_the_oldest_mixed_frame() {
        let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
        mixer.add_speaker(1).unwrap();
        mixer.add_speaker(2).unwrap();
        let (mut a, mut b) = (Source::new(440.0, 0.2), Source::new(660.0, 0.2));
        for i in 0..3u64 {
            a.push_to(&mut mixer, 1, 1_000_000 + i * 20_000);
            b.push_to(&mut mixer, 2, 900_000 + i * 20_000);
        }
        assert_eq!(mixer.tick(2_000_000).unwrap().capture_us, 900_000);
        // Speaker 2 muted: only speaker 1's frame counts.
        mixer.set_muted(2, true);
        assert_eq!(mixer.tick(2_020_000).unwrap().capture_us, 1_020_000);
        // Nothing buffered beyond concealment: falls back to the tick time.
        mixer.set_muted(2, false);
        mixer.tick(2_040_000).unwrap();
        let f = mixer.tick(2_060_000).unwrap();
        assert_eq!(f.capture_us, 2_060_000);
        assert_eq!(f.levels.len(), 2, "concealed speakers still show a level");
    }

    #[test]
    fn loud_speakers_are_soft_clipped_not_wrapped() {
        let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
        mixer.add_speaker(1).unwrap();
        mixer.add_speaker(2).unwrap();
        // Two in-phase full-scale tones sum to twice full scale at every crest.
        let mut sources = [(1, Source::new(440.0, 1.0)), (2, Source::new(440.0, 1.0))];
        let mut program = Vec::new();
        for t in 0..50u64 {
            for (id, src) in sources.iter_mut() {
                src.push_to(&mut mixer, *id, t);
            }
            mixer.tick(t).unwrap();
            if t >= 5 {
                program.extend_from_slice(mixer.program_pcm());
            }
        }
        let peak = program.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        assert!(peak <= i16::MAX as u16 && peak > 31_000, "peak {peak}");
        let f = dominant_frequency(&program, SAMPLE_RATE).unwrap();
        assert!((f - 440.0).abs() < 5.0, "{f}");
        assert!(band_energy_ratio(&program, SAMPLE_RATE, 440.0, 25.0) > 0.9);
        let crest_flips = program
            .windows(2)
            .filter(|w| (i32::from(w[0]) - i32::from(w[1])).abs() > 20_000)
            .count();
        // A wrapped sum flips sign at every crest: a jump of tens of thousands in one sample.
        assert_eq!(crest_flips, 0);
    }

    #[test]
    fn mixer_can_move_between_threads() {
        fn assert_send<T: Send>() {}
        assert_send::<Mixer>();
        assert_send::<Encoder>();
        assert_send::<Decoder>();
    }

    #[test]
    fn push_checks_speaker_and_packet() {
        let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
        assert_eq!(
            mixer.push(9, 0, 0, Bytes::from_static(&[0xF8, 1])),
            Err(MediaError::UnknownSpeaker(9))
        );
        mixer.add_speaker(9).unwrap();
        assert!(matches!(
            mixer.push(9, 0, 0, Bytes::from_static(&[0xE8, 1])),
            Err(MediaError::Opus(_))
        ));
        assert_eq!(
            mixer.push(9, 0, 0, Bytes::from_static(&[0xF8, 0xFF, 0xFE])),
            Ok(PushOutcome::Accepted)
        );
        mixer.remove_speaker(9);
        assert!(!mixer.has_speaker(9));
        assert_eq!(mixer.speaker_count(), 0);
    }
}
