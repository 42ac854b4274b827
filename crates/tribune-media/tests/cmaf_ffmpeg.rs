//! Cross-checks the CMAF packager and the HLS playlists against an independent player: ffmpeg
//! reads the playlists we write, demuxes our fMP4 and decodes the Opus back to PCM.
//!
//! ffmpeg and ffprobe must be installed (Debian: `apt-get install ffmpeg`). Without them the
//! tests fail, unless `TRIBUNE_SKIP_FFMPEG=1` says to skip them.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tribune_media::analysis::dominant_frequency;
use tribune_media::cmaf::{init_segment, OpusTrackConfig, Packager, PackagerEvent};
use tribune_media::hls::{render_replay, LiveConfig, LivePlaylist, ReplaySegment, Resource};
use tribune_media::{Encoder, ToneGenerator, FRAME_SAMPLES, SAMPLE_RATE};

/// How long one ffmpeg run may take before the test gives up on it.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Whether to run: true with ffmpeg present; false (skip) only when explicitly allowed.
fn ffmpeg_present() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ok("ffmpeg") && ok("ffprobe") {
        return true;
    }
    if std::env::var("TRIBUNE_SKIP_FFMPEG").as_deref() == Ok("1") {
        eprintln!("SKIPPED: ffmpeg/ffprobe not found and TRIBUNE_SKIP_FFMPEG=1");
        return false;
    }
    panic!(
        "ffmpeg and ffprobe are required (apt-get install ffmpeg), or set TRIBUNE_SKIP_FFMPEG=1"
    );
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "tribune-cmaf-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(dir.join("seg")).unwrap();
        std::fs::create_dir_all(dir.join("part")).unwrap();
        TempDir(dir)
    }

    fn write(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let path = self.0.join(rel);
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // TRIBUNE_KEEP_TMP=1 keeps the files to replay a failure by hand.
        if std::env::var("TRIBUNE_KEEP_TMP").as_deref() == Ok("1") {
            eprintln!("kept {}", self.0.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command with a deadline; returns (success, stdout, stderr).
fn run(cmd: &mut Command) -> (bool, Vec<u8>, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = stdout.read_to_end(&mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    (status.success(), out.join().unwrap(), err.join().unwrap())
}

/// Decodes `input` with ffmpeg to mono 48 kHz s16 PCM.
fn decode(input: &Path, before_input: &[&str], after_input: &[&str]) -> Vec<i16> {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-nostdin", "-hide_banner", "-v", "error"])
        .args(before_input)
        .arg("-i")
        .arg(input)
        .args(after_input)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"]);
    let (ok, pcm, err) = run(&mut cmd);
    assert!(ok, "ffmpeg failed on {}: {err}", input.display());
    assert!(err.trim().is_empty(), "ffmpeg reported errors: {err}");
    pcm.chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// One ffprobe entry, such as `format=duration`, as text.
fn probe(input: &Path, entries: &str) -> String {
    let (ok, out, err) = run(Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", entries])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(input));
    assert!(ok, "ffprobe failed: {err}");
    String::from_utf8(out).unwrap()
}

/// `seconds` of a 440 Hz tone as 20 ms Opus packets.
fn tone_packets(seconds: u32) -> Vec<Bytes> {
    let mut enc = Encoder::new(48_000).unwrap();
    let mut tone = ToneGenerator::new(440.0, 0.5);
    (0..seconds * 50)
        .map(|_| Bytes::from(enc.encode_vec(&tone.next_frame()).unwrap()))
        .collect()
}

/// Packages `packets` with the given sequence numbers (capture clock: now, 20 ms apart).
fn package(seqs: impl IntoIterator<Item = u64>, packets: &[Bytes]) -> Vec<PackagerEvent> {
    let t0 = 1_700_000_000_000_000;
    let mut p = Packager::new();
    let mut events = Vec::new();
    for (i, seq) in seqs.into_iter().enumerate() {
        events.extend(
            p.push(seq, t0 + 20_000 * i as u64, packets[i].clone())
                .unwrap(),
        );
    }
    events.extend(p.finish().unwrap());
    events
}

/// Writes init, segments and parts under `dir` with the playlist's relative names.
fn write_media(dir: &TempDir, events: &[PackagerEvent]) {
    dir.write("init.mp4", &init_segment(&OpusTrackConfig::default()));
    for e in events {
        match e {
            PackagerEvent::Part(p) => {
                let uri = Resource::Part {
                    msn: p.msn,
                    index: p.index,
                }
                .uri();
                dir.write(&uri, &p.bytes);
            }
            PackagerEvent::Segment(s) => {
                dir.write(&Resource::Segment(s.msn).uri(), &s.bytes);
            }
        }
    }
}

fn segments(events: &[PackagerEvent]) -> Vec<ReplaySegment> {
    events
        .iter()
        .filter_map(|e| match e {
            PackagerEvent::Segment(s) => Some(ReplaySegment::from(s)),
            PackagerEvent::Part(_) => None,
        })
        .collect()
}

fn seconds_of(pcm: &[i16]) -> f64 {
    pcm.len() as f64 / f64::from(SAMPLE_RATE)
}

/// Asserts a 440 ± 5 Hz tone, ignoring the first `skip_ms` (codec start-up without pre-roll).
fn assert_tone(pcm: &[i16], skip_ms: u32) -> f32 {
    let skip = (SAMPLE_RATE / 1000 * skip_ms) as usize;
    assert!(pcm.len() > skip * 2, "only {} samples", pcm.len());
    let f = dominant_frequency(&pcm[skip..], SAMPLE_RATE).unwrap();
    assert!((f - 440.0).abs() <= 5.0, "dominant frequency {f} Hz");
    f
}

#[test]
fn vod_playlist_decodes_to_the_tone() {
    if !ffmpeg_present() {
        return;
    }
    let dir = TempDir::new("vod");
    let packets = tone_packets(5);
    // An unaligned start: the first segment is short (seq ..567 to ..599).
    let events = package(1_234_567..1_234_817, &packets);
    write_media(&dir, &events);
    let segs = segments(&events);
    assert_eq!(segs.len(), 4);
    let playlist = dir.write(
        "replay.m3u8",
        render_replay(&segs, true).unwrap().as_bytes(),
    );

    let stream = probe(&playlist, "stream=codec_name,sample_rate,channels");
    assert!(stream.contains("codec_name=opus"), "{stream}");
    assert!(stream.contains("sample_rate=48000"), "{stream}");
    assert!(stream.contains("channels=1"), "{stream}");
    let duration: f64 = probe(&playlist, "format=duration")
        .trim()
        .trim_start_matches("duration=")
        .parse()
        .unwrap();
    assert!((duration - 5.0).abs() <= 0.1, "ffprobe duration {duration}");

    let pcm = decode(&playlist, &[], &[]);
    let secs = seconds_of(&pcm);
    assert!((secs - 5.0).abs() <= 0.1, "decoded {secs} s");
    let f = assert_tone(&pcm, 100);
    eprintln!("VOD: ffprobe {duration} s, decoded {secs} s, {f} Hz");
}

#[test]
fn live_playlist_and_its_parts_decode() {
    if !ffmpeg_present() {
        return;
    }
    let dir = TempDir::new("live");
    let packets = tone_packets(5);
    let mut playlist = LivePlaylist::new(LiveConfig::default());
    let mut p = Packager::new();
    let mut events = Vec::new();
    // No finish: the stream is live; segments 3 and 4 are complete, 5 has 5 parts so far.
    for (i, seq) in (300..550).enumerate() {
        let new = p
            .push(
                seq,
                1_700_000_000_000_000 + 20_000 * i as u64,
                packets[i].clone(),
            )
            .unwrap();
        for e in &new {
            playlist.apply(e).unwrap();
        }
        events.extend(new);
    }
    write_media(&dir, &events);
    let text = playlist.render();
    assert!(
        text.contains("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/5.5.m4s\""),
        "{text}"
    );
    let path = dir.write("live.m3u8", text.as_bytes());

    // ffmpeg plays the segments of a live playlist (it ignores the LL-HLS tags); stop before
    // the live edge so it does not wait for segments that will never come.
    let pcm = decode(&path, &["-live_start_index", "0"], &["-t", "3.5"]);
    let secs = seconds_of(&pcm);
    assert!((secs - 3.5).abs() <= 0.07, "decoded {secs} s");
    let f = assert_tone(&pcm, 100);
    eprintln!("live: decoded {secs} s, {f} Hz");

    // Every listed part is a playable fragment on its own behind the init segment.
    let init = init_segment(&OpusTrackConfig::default());
    let uris: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(uris.len(), 25, "parts of segments 3, 4 and 5");
    for uri in uris {
        let part = std::fs::read(dir.0.join(uri)).unwrap();
        let file = dir.write("one-part.mp4", &[init.as_slice(), &part].concat());
        let pcm = decode(&file, &[], &[]);
        // 10 frames; the decoder may drop the 312-sample pre-skip at the start.
        let full = 10 * FRAME_SAMPLES;
        assert!(
            pcm.len() <= full && pcm.len() + 312 >= full,
            "{uri}: {} samples",
            pcm.len()
        );
        assert_tone(&pcm, 40);
    }
}

/// Packages two 2 s runs with a jump in sequence numbers between them; returns the directory,
/// the replay playlist and the decoded PCM.
fn two_runs(name: &str, seqs: impl IntoIterator<Item = u64>) -> (TempDir, PathBuf, Vec<i16>) {
    let dir = TempDir::new(name);
    let packets = tone_packets(4);
    let events = package(seqs, &packets);
    write_media(&dir, &events);
    let segs = segments(&events);
    assert_eq!(segs.iter().filter(|s| s.discontinuity).count(), 1);
    let text = render_replay(&segs, true).unwrap();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    let playlist = dir.write("replay.m3u8", text.as_bytes());
    let pcm = decode(&playlist, &[], &[]);
    let f = assert_tone(&pcm, 100);
    eprintln!("{name}: decoded {} s, {f} Hz", seconds_of(&pcm));
    (dir, playlist, pcm)
}

#[test]
fn replay_across_a_gap_decodes_both_runs() {
    if !ffmpeg_present() {
        return;
    }
    // Two seconds, a jump of 100 s forward, two more seconds.
    let (_dir, _, pcm) = two_runs("gap", (0..100).chain(5_000..5_100));
    let secs = seconds_of(&pcm);
    assert!((secs - 4.0).abs() <= 0.08, "decoded {secs} s");
}

#[test]
fn replay_across_a_restart_keeps_every_packet() {
    if !ffmpeg_present() {
        return;
    }
    // Timestamps go back to zero after a restart.
    let (_dir, playlist, pcm) = two_runs("restart", (700..800).chain(0..100));
    // The demuxer sees all 200 packets, the second run starting again at time 0.
    let pts = probe(&playlist, "packet=pts");
    let pts: Vec<&str> = pts.lines().collect();
    assert_eq!(pts.len(), 200);
    assert_eq!(
        (pts[0], pts[99], pts[100]),
        ("pts=672000", "pts=767040", "pts=0")
    );
    // ffmpeg ignores EXT-X-DISCONTINUITY and repairs the backwards jump heuristically, dropping
    // up to one part's worth of decoded audio while it does (5.1 drops 10 frames).
    let secs = seconds_of(&pcm);
    assert!((3.7..=4.02).contains(&secs), "decoded {secs} s");
}
