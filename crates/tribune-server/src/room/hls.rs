//! LL-HLS of a room's program: the per-room packaging state fed by the mixer task (its HTTP
//! handlers are in `hls_http`).
//!
//! The mixer task calls [`Hls::push`] with every program frame (one small CMAF fragment is cut
//! per 200 ms, so the tick stays cheap). Each change of the playlist bumps its generation and
//! publishes it on a watch, so blocked playlist and part requests wake up without polling. The
//! rendered playlist is cached per generation: every client waiting for the same change gets
//! the same `Bytes`.
//!
//! Recording: [`Hls::subscribe_segments`] hands out a receiver of every completed
//! [`Segment`] (in order, unbounded, never blocking the mixer); a recorder drains it and writes
//! the segments to disk.

use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::VecDeque;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use tribune_media::cmaf::{
    init_segment, OpusTrackConfig, Packager, PackagerEvent, Segment, SegmentStart,
};
use tribune_media::hls::{
    BlockDecision, BlockingRequest, LiveConfig, LivePlaylist, Lookup, Resource, BLOCKING_TIMEOUT_MS,
};

const BLOCKING_TIMEOUT: Duration = Duration::from_millis(BLOCKING_TIMEOUT_MS as u64);

#[derive(Debug)]
struct HlsState {
    packager: Packager,
    playlist: LivePlaylist,
    /// The playlist rendered at a generation.
    rendered: Option<(u64, Bytes)>,
    /// Receivers of completed segments (recorders).
    recorders: Vec<mpsc::UnboundedSender<Segment>>,
    /// Whether a frame of the segment being cut had a speaker on air (segments of a room
    /// with nobody on stage are served live but not recorded).
    segment_on_air: bool,
    /// Segments left out of the recording because nobody was on air.
    quiet_segments: u64,
    /// Where recent segments started (what a node relaying the program is told), oldest first.
    starts: VecDeque<SegmentStart>,
    /// A relayed program: the discontinuity sequence its upstream's listing had when it last
    /// said hello (a listing started over takes it, as the upstream's did).
    upstream_discontinuity: Option<u64>,
}

/// Segment starts remembered: more than the ring holds (30 s: 15 segments, and a few gaps).
const STARTS_KEPT: usize = 64;

/// The LL-HLS state of one room.
#[derive(Debug)]
pub struct Hls {
    state: Mutex<HlsState>,
    generation: watch::Sender<u64>,
    init: Bytes,
}

impl Default for Hls {
    fn default() -> Self {
        Self::new()
    }
}

impl Hls {
    /// An empty playlist.
    pub fn new() -> Self {
        Self::with_packager(Packager::new())
    }

    /// An empty playlist that goes on after segment `last_msn` of an earlier run (a room back
    /// after a restart): numbers never go back, the first segment is a discontinuity.
    pub fn resuming(last_msn: u64) -> Self {
        Self::with_packager(Packager::resuming(last_msn))
    }

    /// An empty playlist of a relayed program: segments open where the node upstream declares
    /// them ([`Hls::declare`]), so parts and segments are the same bytes as there.
    pub fn following() -> Self {
        Self::with_packager(Packager::following())
    }

    fn with_packager(packager: Packager) -> Self {
        Hls {
            state: Mutex::new(HlsState {
                packager,
                playlist: LivePlaylist::new(LiveConfig::default()),
                rendered: None,
                recorders: Vec::new(),
                segment_on_air: false,
                quiet_segments: 0,
                starts: VecDeque::new(),
                upstream_discontinuity: None,
            }),
            generation: watch::Sender::new(0),
            init: Bytes::from(init_segment(&OpusTrackConfig::default())),
        }
    }

    /// Packages program frame `seq` (called by the mixer task after the ring push); `on_air`
    /// says whether anyone was on stage for it (a segment with no such frame is not recorded).
    /// Answers how many segments were left out of the recording by this frame.
    pub fn push(&self, seq: u64, capture_us: u64, payload: Bytes, on_air: bool) -> u64 {
        let mut st = self.state.lock();
        st.segment_on_air |= on_air;
        let quiet_before = st.quiet_segments;
        match st.packager.push(seq, capture_us, payload) {
            Ok(events) => self.apply(&mut st, events),
            Err(e) => tracing::warn!(seq, "program frame not packaged: {e}"),
        }
        if let Some(start) = st.packager.segment_start() {
            if st.starts.back() != Some(&start) {
                if st.starts.len() == STARTS_KEPT {
                    st.starts.pop_front();
                }
                st.starts.push_back(start);
            }
        }
        st.quiet_segments - quiet_before
    }

    /// Completes the segment being cut (the program pauses: the room went quiet), so its last
    /// parts are whole and a recorder gets it now rather than when the room speaks again.
    /// Answers how many segments were left out of the recording by this.
    pub fn cut(&self) -> u64 {
        let mut st = self.state.lock();
        let quiet_before = st.quiet_segments;
        match st.packager.finish() {
            Ok(events) => self.apply(&mut st, events),
            Err(e) => tracing::warn!("packager cut failed: {e}"),
        }
        st.quiet_segments - quiet_before
    }

    /// Publishes what is left and ends the playlist (`EXT-X-ENDLIST`); waiting requests are
    /// answered at once.
    pub fn finish(&self) {
        let mut st = self.state.lock();
        match st.packager.finish() {
            Ok(events) => self.apply(&mut st, events),
            Err(e) => tracing::warn!("packager finish failed: {e}"),
        }
        st.playlist.end();
        // Recorders see their channel close: the recording is complete.
        st.recorders.clear();
        self.generation.send_replace(st.playlist.generation());
    }

    /// Declares where the followed program's segments start (see [`Hls::following`]).
    pub fn declare(&self, starts: &[SegmentStart]) {
        let mut st = self.state.lock();
        for s in starts {
            st.packager.declare(*s);
        }
    }

    /// The starts of segments beginning at `from` or later, oldest first.
    pub fn starts_from(&self, from: u64) -> Vec<SegmentStart> {
        let st = self.state.lock();
        st.starts
            .iter()
            .filter(|s| s.first_seq >= from)
            .copied()
            .collect()
    }

    /// Where the listing begins: the first listed segment's first frame (or the first
    /// segment's, before any part is out), and the discontinuity sequence there.
    pub fn listing_start(&self) -> Option<(u64, u64)> {
        let st = self.state.lock();
        let start = match st.playlist.media_sequence() {
            Some(msn) => st.starts.iter().find(|s| s.msn == msn)?,
            None => st.starts.front()?,
        };
        Some((start.first_seq, st.playlist.discontinuity_sequence()))
    }

    /// Takes the discontinuity sequence of the node upstream's listing (its hello): an empty
    /// listing starts counting there, as does one that starts over.
    pub fn upstream_discontinuity_sequence(&self, n: u64) {
        let mut st = self.state.lock();
        st.playlist.start_discontinuity_sequence(n);
        st.upstream_discontinuity = Some(n);
    }

    /// The first segment number not used yet.
    pub fn next_msn(&self) -> u64 {
        self.state.lock().packager.next_msn()
    }

    /// Segments left out of the recording so far because nobody was on stage.
    pub fn quiet_segments(&self) -> u64 {
        self.state.lock().quiet_segments
    }

    /// Every segment completed from now on, in order (for a recorder). The channel is
    /// unbounded so the mixer never waits; a dropped receiver is forgotten.
    pub fn subscribe_segments(&self) -> mpsc::UnboundedReceiver<Segment> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.state.lock().recorders.push(tx);
        rx
    }

    fn apply(&self, st: &mut HlsState, events: Vec<PackagerEvent>) {
        if events.is_empty() {
            return;
        }
        for event in &events {
            if let Err(e) = st.playlist.apply(event) {
                match (event, st.upstream_discontinuity) {
                    // A relayed program whose numbers jumped (its origin restarted, or a break
                    // outlasted the ring): the listing starts over at the upstream's numbers,
                    // as the upstream's own did.
                    (PackagerEvent::Part(p), Some(d)) if p.index == 0 => {
                        st.playlist = LivePlaylist::new(LiveConfig::default());
                        st.playlist.start_discontinuity_sequence(d);
                        if let Err(e) = st.playlist.apply(event) {
                            tracing::warn!("playlist refused a packager event: {e}");
                        }
                    }
                    _ => tracing::warn!("playlist refused a packager event: {e}"),
                }
            }
            if let PackagerEvent::Segment(s) = event {
                if std::mem::take(&mut st.segment_on_air) {
                    st.recorders.retain(|tx| tx.send(s.clone()).is_ok());
                } else {
                    st.quiet_segments += 1;
                }
            }
        }
        self.generation.send_replace(st.playlist.generation());
    }

    /// The rendered playlist and its generation, if `req` (or, for a plain request, anything at
    /// all) is there; `Err(())` if the request is invalid (400).
    pub(crate) fn ready_playlist(
        &self,
        req: Option<&BlockingRequest>,
    ) -> Result<Option<(u64, Bytes)>, ()> {
        let mut st = self.state.lock();
        let decision = match req {
            Some(r) => st.playlist.decide(r),
            None if st.playlist.is_empty() && !st.playlist.is_ended() => BlockDecision::Wait,
            None => BlockDecision::Ready,
        };
        match decision {
            BlockDecision::Invalid => Err(()),
            BlockDecision::Wait => Ok(None),
            BlockDecision::Ready => {
                let generation = st.playlist.generation();
                if let Some((g, bytes)) = &st.rendered {
                    if *g == generation {
                        return Ok(Some((generation, bytes.clone())));
                    }
                }
                let bytes = Bytes::from(st.playlist.render());
                st.rendered = Some((generation, bytes.clone()));
                Ok(Some((generation, bytes)))
            }
        }
    }

    /// Waits (bounded) until `req` can be answered: `Ok(None)` on timeout or shutdown.
    pub(crate) async fn playlist(
        &self,
        req: Option<BlockingRequest>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<Option<(u64, Bytes)>, ()> {
        let deadline = Instant::now() + BLOCKING_TIMEOUT;
        let mut rx = self.generation.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(ready) = self.ready_playlist(req.as_ref())? {
                return Ok(Some(ready));
            }
            if !changed_before(&mut rx, &mut shutdown, deadline).await {
                return Ok(None);
            }
        }
    }

    /// The bytes of a resource, holding a request for the hinted part (bounded): `Pending`
    /// after the timeout.
    pub(crate) async fn resource(
        &self,
        resource: Resource,
        mut shutdown: watch::Receiver<bool>,
    ) -> Lookup {
        let deadline = Instant::now() + BLOCKING_TIMEOUT;
        let mut rx = self.generation.subscribe();
        loop {
            rx.borrow_and_update();
            let found = {
                let st = self.state.lock();
                match resource {
                    Resource::Init => Lookup::Ready(self.init.clone()),
                    Resource::Segment(msn) => st.playlist.segment(msn),
                    Resource::Part { msn, index } => st.playlist.part(msn, index),
                }
            };
            if found != Lookup::Pending {
                return found;
            }
            if !changed_before(&mut rx, &mut shutdown, deadline).await {
                return Lookup::Pending;
            }
        }
    }
}

/// Waits for the next generation; false on the deadline, shutdown, or a dropped room.
async fn changed_before(
    rx: &mut watch::Receiver<u64>,
    shutdown: &mut watch::Receiver<bool>,
    deadline: Instant,
) -> bool {
    if *shutdown.borrow_and_update() {
        return false;
    }
    tokio::select! {
        r = tokio::time::timeout_at(deadline, rx.changed()) => matches!(r, Ok(Ok(()))),
        Ok(()) = shutdown.changed() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn silence() -> Bytes {
        let mut enc = tribune_media::Encoder::new(32_000).unwrap();
        Bytes::from(
            enc.encode_vec(&[0i16; tribune_media::FRAME_SAMPLES])
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn segments_reach_recorders_old_parts_expire_and_the_end_is_listed() {
        let hls = Hls::new();
        let mut recorder = hls.subscribe_segments();
        let (_tx, shutdown) = watch::channel(false);
        let packet = silence();
        // 20 s of program: 10 segments, more than the 12 s window.
        for seq in 0..1000u64 {
            hls.push(
                seq,
                1_700_000_000_000_000 + seq * 20_000,
                packet.clone(),
                true,
            );
        }
        for msn in 0..10 {
            let s = recorder.try_recv().expect("a segment");
            assert_eq!((s.msn, s.frames, s.parts), (msn, 100, 10));
        }
        assert!(recorder.try_recv().is_err());
        // Far in the past: gone.
        let old = Resource::Part { msn: 0, index: 0 };
        assert_eq!(hls.resource(old, shutdown.clone()).await, Lookup::NotFound);
        assert!(matches!(
            hls.resource(Resource::Segment(9), shutdown.clone()).await,
            Lookup::Ready(_)
        ));
        // One rendering per generation, shared by every request.
        let (g1, a) = hls.playlist(None, shutdown.clone()).await.unwrap().unwrap();
        let (g2, b) = hls.playlist(None, shutdown.clone()).await.unwrap().unwrap();
        assert_eq!(g1, g2);
        assert_eq!(a.as_ptr(), b.as_ptr());
        // Too far ahead: invalid at once.
        let far = BlockingRequest {
            msn: 50,
            part: None,
        };
        assert_eq!(hls.playlist(Some(far), shutdown.clone()).await, Err(()));
        // A blocked request is answered by the end.
        let waiting = BlockingRequest {
            msn: 10,
            part: Some(3),
        };
        let (ended, ()) = tokio::join!(hls.playlist(Some(waiting), shutdown.clone()), async {
            tokio::task::yield_now().await;
            hls.finish();
        });
        let (_, text) = ended.unwrap().unwrap();
        assert!(std::str::from_utf8(&text)
            .unwrap()
            .contains("#EXT-X-ENDLIST"));
    }

    #[tokio::test]
    async fn shutdown_releases_waiting_requests() {
        let hls = Hls::new();
        let (tx, shutdown) = watch::channel(false);
        let started = std::time::Instant::now();
        let (answer, ()) = tokio::join!(hls.playlist(None, shutdown), async {
            tokio::task::yield_now().await;
            tx.send_replace(true);
        });
        assert_eq!(answer, Ok(None));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
