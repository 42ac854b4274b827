//! Mixer cost per room: microseconds of one 20 ms `Mixer::tick` with 0, 1, 3 and 13 speakers,
//! program only, and with every speaker receiving its mix-minus (an encode each per tick).
//!
//! `cargo bench -p tribune-media --bench mixer [-- --ticks N --rounds R --minus-complexity C]`
//!
//! Each speaker gets a few seconds of its own tone, pre-encoded with `Encoder` (48 kb/s, the
//! `tribune speak` default) so encoding the sources is not timed. Every tick pushes one frame per
//! speaker (as the room task does with what arrived in the last 20 ms) and then runs
//! `Mixer::tick`; only the tick is timed, with `std::time::Instant`. The configurations are run
//! in interleaved rounds so that drift in machine speed hits them all alike; the table reports
//! all ticks of all rounds. Plain `harness = false` bench: no criterion.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tribune_media::{Encoder, Mixer, MixerConfig, ToneGenerator, FRAME_MS};

/// Seconds of audio pre-encoded per speaker (looped).
const SOURCE_SECONDS: usize = 4;
/// Bitrate of the speakers' frames (the `tribune speak` default).
const SPEAKER_BITRATE: u32 = 48_000;
/// Ticks run before timing so the jitter buffers are playing and the codecs are warm.
const WARMUP_TICKS: usize = 200;
/// The configurations measured, (speakers, all receiving their mix-minus, how many of them
/// talk); 13 is a full stage (host, co-hosts and speakers). The others send a microphone's
/// noise floor (-70 dBFS), as open microphones under noise suppression do.
const CONFIGS: [(usize, bool, usize); 8] = [
    (0, false, 0),
    (1, false, 1),
    (1, true, 1),
    (3, false, 3),
    (3, true, 3),
    (13, false, 13),
    (13, true, 13),
    (13, true, 2),
];
/// Wall-clock budget of one configuration in one round: the bench always stops by itself.
const ROUND_BUDGET: Duration = Duration::from_secs(60);

struct Args {
    ticks: usize,
    rounds: usize,
    minus_complexity: u8,
}

fn parse_args() -> Args {
    let mut args = Args {
        ticks: 2_000,
        rounds: 3,
        minus_complexity: MixerConfig::default().minus_complexity,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        // `cargo bench` passes `--bench`; anything unknown is ignored.
        let mut value = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a positive number"))
        };
        match a.as_str() {
            "--ticks" => args.ticks = value("--ticks").clamp(10, 1_000_000),
            "--rounds" => args.rounds = value("--rounds").clamp(1, 100),
            "--minus-complexity" => {
                args.minus_complexity = value("--minus-complexity").min(10) as u8
            }
            _ => {}
        }
    }
    args
}

/// `frames` 20 ms Opus packets of a tone at `freq` Hz.
fn encode_tone(freq: f32, amplitude: f32, frames: usize) -> Vec<Bytes> {
    let mut enc = Encoder::new(SPEAKER_BITRATE).expect("encoder");
    let mut tone = ToneGenerator::new(freq, amplitude);
    (0..frames)
        .map(|_| Bytes::from(enc.encode_vec(&tone.next_frame()).expect("encode")))
        .collect()
}

/// One room: a mixer, its speakers' packets, and where each speaker is in its loop.
struct Room {
    mixer: Mixer,
    sources: Vec<Vec<Bytes>>,
    talking: usize,
    seq: u64,
}

impl Room {
    fn new(speakers: usize, receiving: bool, talking: usize, minus_complexity: u8) -> Room {
        let cfg = MixerConfig {
            minus_complexity,
            ..MixerConfig::default()
        };
        let mut mixer = Mixer::new(cfg).expect("mixer");
        let frames = SOURCE_SECONDS * 1000 / FRAME_MS as usize;
        let sources = (0..speakers)
            .map(|i| {
                let id = i as u64 + 1;
                mixer.add_speaker(id).expect("speaker");
                if receiving {
                    mixer.set_receiver(id, &[id]);
                }
                // Distinct tones, spread over the voice band.
                let amplitude = if i < talking { 0.3 } else { 0.0003 };
                encode_tone(180.0 + 97.0 * i as f32, amplitude, frames)
            })
            .collect();
        Room {
            mixer,
            sources,
            talking,
            seq: 0,
        }
    }

    /// Pushes one frame per speaker, then times one tick; returns the tick's duration.
    fn step(&mut self) -> Duration {
        let now_us = self.seq * 20_000;
        for (i, src) in self.sources.iter().enumerate() {
            let payload = src[self.seq as usize % src.len()].clone();
            self.mixer
                .push(i as u64 + 1, self.seq, now_us, payload)
                .expect("push");
        }
        self.seq += 1;
        let start = Instant::now();
        let frame = self.mixer.tick(black_box(now_us)).expect("tick");
        let took = start.elapsed();
        black_box(&frame);
        took
    }

    /// Checks the room is in steady state: every speaker is heard in every tick.
    fn check_steady(&mut self) {
        let now_us = self.seq * 20_000;
        for (i, src) in self.sources.iter().enumerate() {
            let payload = src[self.seq as usize % src.len()].clone();
            self.mixer
                .push(i as u64 + 1, self.seq, now_us, payload)
                .expect("push");
        }
        self.seq += 1;
        let frame = self.mixer.tick(now_us).expect("tick");
        assert_eq!(frame.levels.len(), self.sources.len(), "all speakers mixed");
        assert!(!frame.payload.is_empty());
        // Talkers each got a feed of their own; the quiet ones the program.
        let own = frame.minus.iter().filter(|m| m.own).count();
        assert_eq!(
            own,
            if frame.minus.is_empty() {
                0
            } else {
                self.talking
            }
        );
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

struct Summary {
    speakers: usize,
    receiving: bool,
    talking: usize,
    ticks: usize,
    mean: f64,
    p50: f64,
    p99: f64,
    max: f64,
    /// On-CPU µs per step (push + tick), from the thread's schedstat.
    cpu: Option<f64>,
}

fn summarize(
    (speakers, receiving, talking): (usize, bool, usize),
    mut us: Vec<f64>,
    cpu_ns: Option<u64>,
) -> Summary {
    us.sort_by(f64::total_cmp);
    Summary {
        receiving,
        talking,
        cpu: cpu_ns.map(|ns| ns as f64 / 1000.0 / us.len() as f64),
        speakers,
        ticks: us.len(),
        mean: us.iter().sum::<f64>() / us.len() as f64,
        p50: percentile(&us, 50.0),
        p99: percentile(&us, 99.0),
        max: us[us.len() - 1],
    }
}

/// Time this thread has spent on a CPU, in nanoseconds (first field of
/// /proc/thread-self/schedstat): unlike wall-clock time it excludes time the thread was
/// preempted by other work on a busy machine.
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The 1, 5 and 15 minute load averages (other work on the machine skews the figures).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let args = parse_args();
    let tick_budget_us = f64::from(FRAME_MS) * 1000.0;
    println!(
        "mixer bench: {} timed ticks x {} rounds per configuration, {} warm-up ticks, \
         speakers at {} b/s, program and mix-minus at {} b/s, mix-minus complexity {}",
        args.ticks,
        args.rounds,
        WARMUP_TICKS,
        SPEAKER_BITRATE,
        MixerConfig::default().bitrate_bps,
        args.minus_complexity
    );
    let before_load = loadavg();
    let mut rooms: Vec<Room> = CONFIGS
        .iter()
        .map(|&(n, r, t)| Room::new(n, r, t, args.minus_complexity))
        .collect();
    for room in rooms.iter_mut() {
        for _ in 0..WARMUP_TICKS {
            room.step();
        }
        room.check_steady();
    }
    // On-CPU time of whole rounds (push + tick + timing overhead), per configuration.
    let mut cpu_ns: Vec<Option<u64>> = vec![Some(0); rooms.len()];
    let mut samples: Vec<Vec<f64>> =
        vec![Vec::with_capacity(args.ticks * args.rounds); rooms.len()];
    for round in 0..args.rounds {
        for ((room, out), cpu) in rooms
            .iter_mut()
            .zip(samples.iter_mut())
            .zip(cpu_ns.iter_mut())
        {
            let started = Instant::now();
            let cpu_start = thread_cpu_ns();
            for _ in 0..args.ticks {
                out.push(room.step().as_secs_f64() * 1e6);
                if started.elapsed() > ROUND_BUDGET {
                    eprintln!("round {round}: time budget reached, stopping early");
                    break;
                }
            }
            *cpu = match (*cpu, cpu_start, thread_cpu_ns()) {
                (Some(total), Some(a), Some(b)) => Some(total + (b - a)),
                _ => None,
            };
        }
    }
    for room in rooms.iter_mut() {
        room.check_steady();
    }
    let summaries: Vec<Summary> = CONFIGS
        .iter()
        .zip(samples)
        .zip(&cpu_ns)
        .map(|((&c, us), &cpu)| summarize(c, us, cpu))
        .collect();
    println!("load average before: {before_load}, after: {}", loadavg());
    println!();
    println!(
        "| speakers | talking | mix-minus | ticks | mean µs | p50 µs | p99 µs | max µs | share of one core (mean / 20 000 µs) \
         | on-CPU µs per tick incl. push (schedstat) | share of one core (on-CPU) |"
    );
    println!("|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &summaries {
        let cpu = s.cpu.map_or("n/a".into(), |c| format!("{c:.1}"));
        let cpu_share = s.cpu.map_or("n/a".into(), |c| {
            format!("{:.2} %", 100.0 * c / tick_budget_us)
        });
        println!(
            "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} % | {cpu} | {cpu_share} |",
            s.speakers,
            s.talking,
            if s.receiving { "all" } else { "none" },
            s.ticks,
            s.mean,
            s.p50,
            s.p99,
            s.max,
            100.0 * s.mean / tick_budget_us
        );
    }
    let by_minus = |n: usize, r: bool| {
        summaries
            .iter()
            .find(|s| s.speakers == n && s.receiving == r && s.talking == n)
            .expect("measured")
    };
    let by = |n: usize| by_minus(n, false);
    let (one, three, full, none) = (by(1), by(3), by(13), by(0));
    println!();
    println!(
        "ratio 13 speakers / 1 speaker: mean {:.2}x, p50 {:.2}x",
        full.mean / one.mean,
        full.p50 / one.p50
    );
    if let (Some(a), Some(b)) = (full.cpu, one.cpu) {
        println!("ratio 13 speakers / 1 speaker: on-CPU {:.2}x", a / b);
    }
    println!(
        "ratio 3 speakers / 1 speaker:  mean {:.2}x, p50 {:.2}x",
        three.mean / one.mean,
        three.p50 / one.p50
    );
    println!(
        "marginal cost of a speaker (13 vs 1, mean): {:.1} µs; fixed cost (0 speakers: \
         silence encode): {:.1} µs",
        (full.mean - one.mean) / 12.0,
        none.mean
    );
    println!(
        "rooms per core at 13 speakers (mixing only): {:.0}; at 1 speaker: {:.0}",
        tick_budget_us / full.mean,
        tick_budget_us / one.mean
    );
    let conversation = summaries
        .iter()
        .find(|s| s.speakers == 13 && s.talking == 2)
        .expect("measured");
    let full_minus = by_minus(13, true);
    println!(
        "13 on stage all receiving, 2 talking / all 13 talking: p50 {:.2}x; {:.2} % of one core \
         (p50)",
        conversation.p50 / full_minus.p50,
        100.0 * conversation.p50 / tick_budget_us
    );
    for n in [1, 3, 13] {
        let (with, without) = (by_minus(n, true), by_minus(n, false));
        let cpu = match (with.cpu, without.cpu) {
            (Some(a), Some(b)) => format!(
                ", on-CPU {:.2}x ({:.2} % of one core with mix-minus)",
                a / b,
                100.0 * a / tick_budget_us
            ),
            _ => String::new(),
        };
        println!(
            "mix-minus / program only at {n} speakers: p50 {:.2}x, mean {:.2}x{cpu}; \
             per receiver {:.1} µs (p50)",
            with.p50 / without.p50,
            with.mean / without.mean,
            (with.p50 - without.p50) / n as f64
        );
    }
}
