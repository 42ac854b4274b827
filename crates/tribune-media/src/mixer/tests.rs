//! Program mixing: tones in, spectrum of the decoded program out.

use super::*;
use crate::analysis::{band_energy_ratio, dominant_frequency, peaks, rms};
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
            // As 16-bit samples, the way a listener's decoder hands them out.
            program.extend(
                mixer
                    .program_pcm()
                    .iter()
                    .map(|&x| (x * 32767.0).round() as i16),
            );
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

/// Decodes each receiver's mix-minus stream separately.
struct Ears {
    decoders: BTreeMap<u64, (Decoder, Vec<i16>)>,
}

impl Ears {
    fn new(ids: &[u64]) -> Self {
        let decoders = ids
            .iter()
            .map(|&id| (id, (Decoder::new().unwrap(), Vec::new())))
            .collect();
        Ears { decoders }
    }

    fn hear(&mut self, frame: &ProgramFrame, keep: bool) {
        let mut pcm = [0i16; MAX_PACKET_SAMPLES];
        for m in &frame.minus {
            let (dec, audio) = self.decoders.get_mut(&m.id).expect("a feed for a receiver");
            assert_eq!(dec.decode(&m.payload, &mut pcm), Ok(FRAME_SAMPLES));
            if keep {
                audio.extend_from_slice(&pcm[..FRAME_SAMPLES]);
            }
        }
    }

    fn audio(&self, id: u64) -> &[i16] {
        &self.decoders[&id].1
    }
}

/// Energy of `f` over energy of `g` in `audio`, in dB.
fn db(audio: &[i16], f: f32, g: f32) -> f32 {
    let ef = band_energy_ratio(audio, SAMPLE_RATE, f, 25.0);
    let eg = band_energy_ratio(audio, SAMPLE_RATE, g, 25.0);
    10.0 * (ef.max(1e-12) / eg.max(1e-12)).log10()
}

#[test]
fn each_receiver_hears_the_others_and_not_itself() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    let ids = [1, 2, 3];
    for id in ids {
        mixer.add_speaker(id).unwrap();
        mixer.set_receiver(id, &[id]);
    }
    let mut sources = [
        (1, Source::new(440.0, 0.3)),
        (2, Source::new(660.0, 0.3)),
        (3, Source::new(550.0, 0.3)),
    ];
    let mut ears = Ears::new(&ids);
    for t in 0..100u64 {
        for (id, src) in sources.iter_mut() {
            src.push_to(&mut mixer, *id, t * 20_000);
        }
        let frame = mixer.tick(t * 20_000).unwrap();
        assert_eq!(frame.minus.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        // Encoded per receiver once the jitter buffers play (from the third tick).
        assert!(frame.minus.iter().all(|m| m.own == (t >= 2)));
        ears.hear(&frame, t >= 10);
    }
    let tones = [(1, 440.0), (2, 660.0), (3, 550.0)];
    for &(id, own) in &tones {
        let audio = ears.audio(id);
        for &(_, other) in tones.iter().filter(|t| t.0 != id) {
            let down = db(audio, other, own);
            assert!(
                down > 30.0,
                "speaker {id}: own {own} Hz only {down:.1} dB under {other}"
            );
            assert!(band_energy_ratio(audio, SAMPLE_RATE, other, 25.0) > 0.3);
        }
    }
    // Three encodes per playing tick beside the program, none shared.
    assert_eq!(mixer.minus_encodes(), 3 * 98);
}

#[test]
fn a_receiver_who_contributed_nothing_gets_the_program_frame_itself() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    for id in [1, 2] {
        mixer.add_speaker(id).unwrap();
        mixer.set_receiver(id, &[id]);
    }
    // 1 publishes, 2 publishes but is muted, 3 is on stage without publishing (no seat).
    mixer.set_receiver(3, &[]);
    mixer.set_muted(2, true);
    let mut sources = [(1, Source::new(440.0, 0.3)), (2, Source::new(660.0, 0.3))];
    let mut ears = Ears::new(&[1, 2, 3]);
    for t in 0..60u64 {
        for (id, src) in sources.iter_mut() {
            src.push_to(&mut mixer, *id, t * 20_000);
        }
        let frame = mixer.tick(t * 20_000).unwrap();
        for m in frame.minus.iter().filter(|m| m.id != 1) {
            assert!(!m.own);
            // The same bytes as the program, not a copy.
            assert_eq!(m.payload.as_ptr(), frame.payload.as_ptr());
            assert_eq!(m.payload.len(), frame.payload.len());
        }
        ears.hear(&frame, t >= 10);
    }
    // Only speaker 1's feed was encoded (and it was silence once its jitter buffer played).
    assert_eq!(mixer.minus_encodes(), 58);
    // The muted speaker still hears the stage.
    let f = dominant_frequency(ears.audio(2), SAMPLE_RATE).unwrap();
    assert!((f - 440.0).abs() < 5.0, "{f}");
    assert!(band_energy_ratio(ears.audio(3), SAMPLE_RATE, 440.0, 25.0) > 0.9);
    // Speaker 1 hears silence: nobody else is in the mix.
    assert!(rms(ears.audio(1)) < 1e-3, "{}", rms(ears.audio(1)));
}

#[test]
fn feeds_carry_the_others_capture_and_arrival_times_and_stop_when_not_receiving() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    for id in [1, 2] {
        mixer.add_speaker(id).unwrap();
    }
    // Receiver 100 is the participant whose seat is speaker 1.
    mixer.set_receiver(100, &[1]);
    assert_eq!(mixer.receiver(100), Some(&[1][..]));
    assert_eq!(mixer.receiver(2), None);
    let (mut a, mut b) = (Source::new(440.0, 0.2), Source::new(660.0, 0.2));
    let enc = |src: &mut Source| {
        let p = src.enc.encode_vec(&src.tone.next_frame()).unwrap();
        src.seq += 1;
        Bytes::from(p)
    };
    for i in 0..3u64 {
        let pa = enc(&mut a);
        let pb = enc(&mut b);
        mixer
            .push_arrived(1, i, 1_000_000 + i, 1_500_000 + i, pa)
            .unwrap();
        mixer
            .push_arrived(2, i, 900_000 + i, 1_400_000 + i, pb)
            .unwrap();
    }
    let frame = mixer.tick(2_000_000).unwrap();
    assert_eq!(frame.minus.len(), 1);
    let m = &frame.minus[0];
    // Speaker 1 hears speaker 2's first frame.
    assert_eq!(
        (m.id, m.capture_us, m.arrived_us, m.own),
        (100, 900_000, Some(1_400_000), true)
    );
    mixer.remove_receiver(100);
    assert!(mixer.tick(2_020_000).unwrap().minus.is_empty());
}

#[test]
fn a_speaker_sending_only_a_noise_floor_gets_the_program_frame() {
    let mut mixer = Mixer::new(MixerConfig::default()).unwrap();
    for id in [1, 2] {
        mixer.add_speaker(id).unwrap();
        mixer.set_receiver(id, &[id]);
    }
    // Speaker 2's microphone is open but quiet: a tone at -70 dBFS.
    let mut sources = [
        (1, Source::new(440.0, 0.3)),
        (2, Source::new(660.0, 0.0003)),
    ];
    let mut ears = Ears::new(&[1, 2]);
    for t in 0..60u64 {
        for (id, src) in sources.iter_mut() {
            src.push_to(&mut mixer, *id, t * 20_000);
        }
        let frame = mixer.tick(t * 20_000).unwrap();
        if t >= 2 {
            let quiet = frame.minus.iter().find(|m| m.id == 2).unwrap();
            assert!(!quiet.own, "tick {t}");
            assert_eq!(quiet.payload.as_ptr(), frame.payload.as_ptr());
        }
        ears.hear(&frame, t >= 10);
    }
    // One encode per tick (the talker's), not two.
    assert_eq!(mixer.minus_encodes(), 58);
    assert!(band_energy_ratio(ears.audio(2), SAMPLE_RATE, 440.0, 25.0) > 0.9);
    // The talker hears nothing of its own tone, and the quiet one's floor is all that is left.
    assert!(rms(ears.audio(1)) < 0.002, "{}", rms(ears.audio(1)));
}

#[test]
fn a_pause_keeps_the_own_feed_for_the_hold_then_shares_the_program() {
    let cfg = MixerConfig::default();
    let mut mixer = Mixer::new(cfg).unwrap();
    mixer.add_speaker(1).unwrap();
    mixer.set_receiver(1, &[1]);
    let mut talk = Source::new(440.0, 0.3);
    let mut quiet = Source::new(440.0, 0.0003);
    let mut own = Vec::new();
    for t in 0..200u64 {
        // Talks for 40 ticks, then pauses (a noise floor under the gate).
        let src = if t < 40 { &mut talk } else { &mut quiet };
        let packet = src.enc.encode_vec(&src.tone.next_frame()).unwrap();
        mixer.push(1, t, t * 20_000, Bytes::from(packet)).unwrap();
        let frame = mixer.tick(t * 20_000).unwrap();
        own.push(frame.minus[0].own);
    }
    // Its own feed from the first played tick through the pause's first second (the buffer
    // plays two ticks behind), then the program frame.
    let first_shared = own.iter().rposition(|&o| o).map_or(0, |i| i + 1);
    assert!(own[2..first_shared].iter().all(|&o| o), "{own:?}");
    let hold = cfg.minus_hold_ticks as usize;
    assert!(
        (40 + hold..=42 + hold + 2).contains(&first_shared),
        "switched at {first_shared}"
    );
    assert!(own[first_shared..].iter().all(|&o| !o));
}
