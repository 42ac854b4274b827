//! Counters and gauges of one server instance, rendered in the Prometheus text format.
//!
//! Plain atomics owned by the server (not a process-global recorder), so several servers in one
//! test process keep separate figures and tests can assert on them.

mod histogram;
mod process;
mod stage;

pub use histogram::Histogram;
pub use stage::StageMetrics;

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Appends one figure; an empty `kind` adds a labelled sample to the figure written before it.
fn put(out: &mut String, name: &str, kind: &str, help: &str, v: u64) {
    if !kind.is_empty() {
        let family = name.split('{').next().unwrap_or(name);
        let _ = writeln!(out, "# HELP tribune_{family} {help}");
        let _ = writeln!(out, "# TYPE tribune_{family} {kind}");
    }
    let _ = writeln!(out, "tribune_{name} {v}");
}

/// A monotonically increasing count.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Default, Debug)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Subtracts one.
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
}

/// Everything `/metrics` reports.
#[derive(Default, Debug)]
pub struct Metrics {
    /// Open listener WebSocket connections.
    pub listeners: Gauge,
    /// Open speaker connections.
    pub speakers: Gauge,
    /// The batch interval live rooms write listeners at now, ms (it grows with listeners).
    pub batch_interval_ms: Gauge,
    /// Open TCP connections (HTTP and WebSocket).
    pub connections_open: Gauge,
    /// Connections closed at once for exceeding the per-address cap.
    pub connections_refused: Counter,
    /// Connections closed for not sending a complete request head in time (or idling).
    pub header_timeouts: Counter,
    /// Joins refused with 429 by the per-address or per-subnet join rate.
    pub joins_rate_limited: Counter,
    /// Rooms that are live.
    pub rooms_live: Gauge,
    /// Rooms created since start.
    pub rooms_created: Counter,
    /// Join requests answered with a ticket.
    pub joins_admitted: Counter,
    /// Join requests refused (unknown room, ended room, bad body, bad ticket or proof).
    pub joins_refused: Counter,
    /// Join requests answered with a place in the waiting room (202).
    pub joins_queued: Counter,
    /// Proof-of-work challenges handed out.
    pub pow_challenges: Counter,
    /// Solved challenges accepted.
    pub pow_accepted: Counter,
    /// Wrong, replayed, forged or expired solutions.
    pub pow_refused: Counter,
    /// Audio frames written to listeners (summed over listeners).
    pub frames_sent: Counter,
    /// WebSocket messages (writes) sent to listeners.
    pub batches_sent: Counter,
    /// Of those, written by a phase group's writer (listeners at the live edge).
    pub direct_writes: Counter,
    /// Room events written ahead of a batch by a phase group's writer (no listener task woke).
    pub direct_events: Counter,
    /// Times a listener fell behind the ring and skipped to the live edge.
    pub skips: Counter,
    /// Frames listeners missed through skips.
    pub skipped_frames: Counter,
    /// Audio frames accepted from speakers.
    pub speak_frames: Counter,
    /// Connections closed because of malformed input.
    pub bad_input_closes: Counter,
    /// Speaker frames dropped because the room's ingress queue was full.
    pub ingress_dropped: Counter,
    /// Mixer ticks run.
    pub mixer_ticks: Counter,
    /// Total time spent in mixer ticks, microseconds.
    pub mixer_busy_us: Counter,
    /// Program frames produced.
    pub program_frames: Counter,
    /// Requests for a live playlist (`live.m3u8`).
    pub hls_playlist_requests: Counter,
    /// Playlist requests that had to wait (blocking reload, or nothing published yet).
    pub hls_blocking_waits: Counter,
    /// Requests for the init segment, segments and parts.
    pub hls_media_requests: Counter,
    /// Segments written to recordings.
    pub recording_segments: Counter,
    /// Bytes of segments written to recordings.
    pub recording_bytes: Counter,
    /// Segments not recorded because the host turned recording off.
    pub recording_segments_skipped: Counter,
    /// Recording writes that failed (disk full, permissions).
    pub recording_write_errors: Counter,
    /// Clips made.
    pub clips_created: Counter,
    /// Moderation changes applied (accept, invite, mute, move, remove, block, ...).
    pub moderation_actions: Counter,
    /// Reactions counted.
    pub reactions: Counter,
    /// Reactions refused by the per-reactor or per-room limit.
    pub reactions_refused: Counter,
    /// Open WHIP sessions.
    pub whip_sessions: Gauge,
    /// WHIP sessions opened since start.
    pub whip_sessions_total: Counter,
    /// WHIP offers refused (bad SDP, credentials, room).
    pub whip_refused: Counter,
    /// Opus frames accepted from WHIP sessions (also counted in `speak_frames`).
    pub whip_frames: Counter,
    /// WHIP media dropped for not being a 20 ms Opus packet.
    pub whip_frames_invalid: Counter,
    /// Datagrams read from the WebRTC UDP socket.
    pub udp_datagrams: Counter,
    /// Datagrams dropped: unroutable, malformed, or a session's queue was full.
    pub udp_dropped: Counter,
    /// Rooms this node holds in memory (live, scheduled, and ended ones not yet let go).
    pub rooms: Gauge,
    /// Room creations refused (no or wrong operator key, per-address or node limits).
    pub rooms_refused: Counter,
    /// Rooms that ended by themselves: nobody on stage for the idle limit.
    pub rooms_idle_ended: Counter,
    /// Listen connections closed because a newer one used the same ticket.
    pub listeners_replaced: Counter,
    /// Relay connections open from nodes pulling rooms from this one.
    pub relays_out: Gauge,
    /// Whether the cluster registry answered the last beat (1) or not (0).
    pub registry_up: Gauge,
    /// Beats that did not reach the cluster registry.
    pub registry_errors: Counter,
    /// Joins decided by this node's own gate because the cluster's did not answer.
    pub admission_fallbacks: Counter,
    /// Rooms this origin took over from an origin that stopped renewing them.
    pub rooms_taken_over: Counter,
    /// Rooms this origin let go because another origin took them over.
    pub rooms_handed_over: Counter,
    /// Stage requests this edge sent on to the room's upstream.
    pub forwarded: Counter,
    /// Of those, the ones the upstream did not answer.
    pub forward_errors: Counter,
    /// Rooms this node pulls from its upstream.
    pub rooms_pulled: Gauge,
    /// Pull connections made again after a break (the upstream went away or stalled).
    pub pull_reconnects: Counter,
    /// Program frames received from the upstream.
    pub pull_frames: Counter,
    /// Program frames missing between what the upstream sent before and after a break.
    pub pull_gap_frames: Counter,
    /// Publishing seats closed because the same participant opened a newer one.
    pub seats_replaced: Counter,
    /// Speaker frames dropped for exceeding their seat's real-time rate.
    pub ingress_over_rate: Counter,
    /// WebSockets closed for sending messages faster than allowed.
    pub message_rate_closes: Counter,
    /// Requests answered 408 because their body did not arrive in time.
    pub body_timeouts: Counter,
    /// WHIP sessions dropped for not completing ICE in time.
    pub whip_connect_timeouts: Counter,
    /// Requests to speak refused by the per-address rate or a decline.
    pub hand_raises_limited: Counter,
    /// Segments not recorded because nobody was on stage.
    pub recording_segments_quiet: Counter,
    /// The stage's return audio (WHEP, mix-minus).
    pub stage: StageMetrics,
}

impl Metrics {
    /// The Prometheus text exposition of all figures.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut put =
            |name: &str, kind: &str, help: &str, v: u64| put(&mut out, name, kind, help, v);
        put(
            "listeners",
            "gauge",
            "Open listener connections.",
            self.listeners.get(),
        );
        put(
            "speakers",
            "gauge",
            "Open speaker connections.",
            self.speakers.get(),
        );
        put(
            "batch_interval_ms",
            "gauge",
            "Interval between a listener's audio writes, ms (grows with the node's listeners).",
            self.batch_interval_ms.get(),
        );
        put(
            "connections_open",
            "gauge",
            "Open TCP connections (HTTP and WebSocket).",
            self.connections_open.get(),
        );
        put(
            "connections_refused_total",
            "counter",
            "Connections closed at once by the per-address connection cap.",
            self.connections_refused.get(),
        );
        put(
            "header_timeouts_total",
            "counter",
            "Connections closed for not completing a request head in time.",
            self.header_timeouts.get(),
        );
        put(
            "joins_rate_limited_total",
            "counter",
            "Joins refused by the per-address or per-subnet join rate.",
            self.joins_rate_limited.get(),
        );
        put(
            "rooms_live",
            "gauge",
            "Rooms on air.",
            self.rooms_live.get(),
        );
        put(
            "rooms_created_total",
            "counter",
            "Rooms created.",
            self.rooms_created.get(),
        );
        put(
            "joins_admitted_total",
            "counter",
            "Joins answered with a ticket.",
            self.joins_admitted.get(),
        );
        put(
            "joins_refused_total",
            "counter",
            "Joins refused.",
            self.joins_refused.get(),
        );
        put(
            "joins_queued_total",
            "counter",
            "Joins answered with a place in the waiting room.",
            self.joins_queued.get(),
        );
        put(
            "pow_challenges_total",
            "counter",
            "Proof-of-work challenges handed out.",
            self.pow_challenges.get(),
        );
        put(
            "pow_accepted_total",
            "counter",
            "Solved proof-of-work challenges accepted.",
            self.pow_accepted.get(),
        );
        put(
            "pow_refused_total",
            "counter",
            "Proof-of-work solutions refused.",
            self.pow_refused.get(),
        );
        put(
            "frames_sent_total",
            "counter",
            "Audio frames sent to listeners.",
            self.frames_sent.get(),
        );
        put(
            "batches_sent_total",
            "counter",
            "Audio messages (writes) sent to listeners.",
            self.batches_sent.get(),
        );
        put(
            "direct_writes_total",
            "counter",
            "Audio messages written by phase-group writers (no listener task woke).",
            self.direct_writes.get(),
        );
        put(
            "direct_events_total",
            "counter",
            "Room events written by phase-group writers, ahead of an audio batch or on their own (no listener task woke).",
            self.direct_events.get(),
        );
        put(
            "skips_total",
            "counter",
            "Listener skips to the live edge.",
            self.skips.get(),
        );
        put(
            "skipped_frames_total",
            "counter",
            "Frames missed through skips.",
            self.skipped_frames.get(),
        );
        put(
            "speak_frames_total",
            "counter",
            "Speaker frames accepted.",
            self.speak_frames.get(),
        );
        put(
            "bad_input_closes_total",
            "counter",
            "Connections closed for malformed input.",
            self.bad_input_closes.get(),
        );
        put(
            "ingress_dropped_total",
            "counter",
            "Speaker frames dropped at a full room queue.",
            self.ingress_dropped.get(),
        );
        put(
            "mixer_ticks_total",
            "counter",
            "Mixer ticks.",
            self.mixer_ticks.get(),
        );
        put(
            "mixer_busy_microseconds_total",
            "counter",
            "Time spent mixing.",
            self.mixer_busy_us.get(),
        );
        put(
            "program_frames_total",
            "counter",
            "Program frames produced.",
            self.program_frames.get(),
        );
        put(
            "hls_playlist_requests_total",
            "counter",
            "LL-HLS playlist requests.",
            self.hls_playlist_requests.get(),
        );
        put(
            "hls_blocking_waits_total",
            "counter",
            "LL-HLS playlist requests that waited for a change.",
            self.hls_blocking_waits.get(),
        );
        put(
            "hls_media_requests_total",
            "counter",
            "LL-HLS init, segment and part requests.",
            self.hls_media_requests.get(),
        );
        put(
            "recording_segments_total",
            "counter",
            "Segments written to recordings.",
            self.recording_segments.get(),
        );
        put(
            "recording_bytes_total",
            "counter",
            "Bytes of segments written to recordings.",
            self.recording_bytes.get(),
        );
        put(
            "recording_segments_skipped_total",
            "counter",
            "Segments not recorded because recording was turned off.",
            self.recording_segments_skipped.get(),
        );
        put(
            "recording_write_errors_total",
            "counter",
            "Recording writes that failed.",
            self.recording_write_errors.get(),
        );
        put(
            "clips_created_total",
            "counter",
            "Clips made from recordings.",
            self.clips_created.get(),
        );
        put(
            "moderation_actions_total",
            "counter",
            "Moderation changes applied.",
            self.moderation_actions.get(),
        );
        put(
            "reactions_total",
            "counter",
            "Reactions counted.",
            self.reactions.get(),
        );
        put(
            "reactions_refused_total",
            "counter",
            "Reactions refused by rate limits.",
            self.reactions_refused.get(),
        );
        put(
            "whip_sessions",
            "gauge",
            "Open WHIP sessions.",
            self.whip_sessions.get(),
        );
        put(
            "whip_sessions_total",
            "counter",
            "WHIP sessions opened.",
            self.whip_sessions_total.get(),
        );
        put(
            "whip_refused_total",
            "counter",
            "WHIP offers refused.",
            self.whip_refused.get(),
        );
        put(
            "whip_frames_total",
            "counter",
            "Opus frames accepted from WHIP sessions.",
            self.whip_frames.get(),
        );
        put(
            "whip_frames_invalid_total",
            "counter",
            "WHIP media dropped for not being 20 ms Opus.",
            self.whip_frames_invalid.get(),
        );
        put(
            "udp_datagrams_total",
            "counter",
            "Datagrams read from the WebRTC UDP socket.",
            self.udp_datagrams.get(),
        );
        put(
            "udp_dropped_total",
            "counter",
            "WebRTC datagrams dropped (unroutable, malformed, queue full).",
            self.udp_dropped.get(),
        );
        put(
            "rooms",
            "gauge",
            "Rooms this node holds in memory (live, scheduled, and ended ones not yet let go).",
            self.rooms.get(),
        );
        put(
            "rooms_refused_total",
            "counter",
            "Room creations refused (no or wrong operator key, per-address or node limits).",
            self.rooms_refused.get(),
        );
        put(
            "rooms_idle_ended_total",
            "counter",
            "Rooms that ended by themselves: nobody on stage for the idle limit.",
            self.rooms_idle_ended.get(),
        );
        put(
            "listeners_replaced_total",
            "counter",
            "Listen connections closed because a newer one used the same ticket.",
            self.listeners_replaced.get(),
        );
        put(
            "relays_out",
            "gauge",
            "Relay connections open from nodes pulling rooms from this one.",
            self.relays_out.get(),
        );
        put(
            "registry_up",
            "gauge",
            "Whether the cluster registry answered the last beat.",
            self.registry_up.get(),
        );
        put(
            "registry_errors_total",
            "counter",
            "Beats that did not reach the cluster registry.",
            self.registry_errors.get(),
        );
        put(
            "admission_fallbacks_total",
            "counter",
            "Joins decided by this node's own gate because the cluster's did not answer.",
            self.admission_fallbacks.get(),
        );
        put(
            "rooms_taken_over_total",
            "counter",
            "Rooms this origin took over from an origin that stopped renewing them.",
            self.rooms_taken_over.get(),
        );
        put(
            "rooms_handed_over_total",
            "counter",
            "Rooms this origin let go because another origin took them over.",
            self.rooms_handed_over.get(),
        );
        put(
            "forwarded_total",
            "counter",
            "Stage requests this edge sent on to the room's upstream.",
            self.forwarded.get(),
        );
        put(
            "forward_errors_total",
            "counter",
            "Stage requests sent upstream that were not answered.",
            self.forward_errors.get(),
        );
        put(
            "rooms_pulled",
            "gauge",
            "Rooms this node pulls from its upstream.",
            self.rooms_pulled.get(),
        );
        put(
            "pull_reconnects_total",
            "counter",
            "Pull connections made again after a break.",
            self.pull_reconnects.get(),
        );
        put(
            "pull_frames_total",
            "counter",
            "Program frames received from the upstream.",
            self.pull_frames.get(),
        );
        put(
            "pull_gap_frames_total",
            "counter",
            "Program frames missing between what the upstream sent before and after a break.",
            self.pull_gap_frames.get(),
        );
        put(
            "seats_replaced_total",
            "counter",
            "Publishing seats closed because the same participant opened a newer one.",
            self.seats_replaced.get(),
        );
        put(
            "ingress_over_rate_total",
            "counter",
            "Speaker frames dropped for exceeding their seat's real-time rate.",
            self.ingress_over_rate.get(),
        );
        put(
            "message_rate_closes_total",
            "counter",
            "WebSockets closed for sending messages faster than allowed.",
            self.message_rate_closes.get(),
        );
        put(
            "body_timeouts_total",
            "counter",
            "Requests answered 408 because their body did not arrive in time.",
            self.body_timeouts.get(),
        );
        put(
            "whip_connect_timeouts_total",
            "counter",
            "WHIP sessions dropped for not completing ICE in time.",
            self.whip_connect_timeouts.get(),
        );
        put(
            "hand_raises_limited_total",
            "counter",
            "Requests to speak refused by the per-address rate or a decline.",
            self.hand_raises_limited.get(),
        );
        put(
            "recording_segments_quiet_total",
            "counter",
            "Segments not recorded because nobody was on stage.",
            self.recording_segments_quiet.get(),
        );
        self.stage.render(&mut out);
        if let Some(p) = process::current() {
            let _ = write!(
                out,
                "# HELP process_cpu_seconds_total User and system CPU time of the node.\n\
                 # TYPE process_cpu_seconds_total counter\n\
                 process_cpu_seconds_total {:.2}\n\
                 # HELP process_resident_memory_bytes Resident memory of the node.\n\
                 # TYPE process_resident_memory_bytes gauge\n\
                 process_resident_memory_bytes {}\n\
                 # HELP process_open_fds Open file descriptors of the node.\n\
                 # TYPE process_open_fds gauge\n\
                 process_open_fds {}\n",
                p.cpu_seconds, p.resident_bytes, p.open_fds
            );
        }
        out
    }
}
