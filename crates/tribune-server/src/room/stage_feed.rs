//! The stage's return audio: every tick, the program frame and each hearing participant's
//! mix-minus, published once (one `Arc` per tick) for all the connections that play it.
//!
//! A connection follows the feed with a [`StageEar`]: a participant's ear picks their own
//! mix-minus (the room hears that they are listening and asks the mixer for it), anyone else's
//! the program. An ear that falls behind skips to the latest tick (the player conceals the
//! gap): the stage never waits for a slow reader.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::watch;
use tribune_core::ParticipantId;
use tribune_media::MixMinus;

use super::{Ingress, LiveRoom};

/// One tick of the stage as heard on it.
#[derive(Debug)]
pub struct StageTick {
    /// The room's frame number (the program's sequence number).
    pub seq: u64,
    /// The program frame.
    pub program: Bytes,
    /// Capture time of the program's oldest frame (or the tick time).
    pub capture_us: u64,
    /// One mix-minus per hearing participant (receiver id = participant id).
    pub feeds: Vec<MixMinus>,
    /// The program and each feed's packet (same order as `feeds`) as shared slices, made once
    /// per tick for the WebRTC sessions, whose stack takes `Arc<[u8]>`: no copy per session.
    pub program_rtp: Arc<[u8]>,
    /// Each feed's packet as a shared slice, same order as `feeds`.
    pub feeds_rtp: Vec<Arc<[u8]>>,
}

/// What one connection plays for a tick.
#[derive(Debug, Clone, Copy)]
pub struct Heard<'a> {
    /// The Opus packet.
    pub payload: &'a Bytes,
    /// The same packet, shared for WebRTC sessions.
    pub rtp: &'a Arc<[u8]>,
    /// Capture time of its oldest frame.
    pub capture_us: u64,
    /// When its oldest speaker frame reached the node (`None`: no speaker frame in it).
    pub arrived_us: Option<u64>,
}

impl StageTick {
    /// What `who` hears: their mix-minus, or the program (an audience member, or a participant
    /// the mixer has no feed for yet).
    pub fn heard_by(&self, who: Option<ParticipantId>) -> Heard<'_> {
        let feed = who.and_then(|p| self.feeds.iter().position(|f| f.id == p.0));
        match feed {
            Some(i) => Heard {
                payload: &self.feeds[i].payload,
                rtp: &self.feeds_rtp[i],
                capture_us: self.feeds[i].capture_us,
                arrived_us: self.feeds[i].arrived_us,
            },
            None => Heard {
                payload: &self.program,
                rtp: &self.program_rtp,
                capture_us: self.capture_us,
                arrived_us: None,
            },
        }
    }
}

/// The latest tick (`None` before the first).
pub(super) type Feed = watch::Sender<Option<Arc<StageTick>>>;

/// A connection playing the stage: a participant's mix-minus or the program.
#[derive(Debug)]
pub struct StageEar {
    rx: watch::Receiver<Option<Arc<StageTick>>>,
    who: Option<ParticipantId>,
    last_seq: Option<u64>,
    _hearing: Option<Hearing>,
}

impl StageEar {
    /// Waits for the next tick; `None` once the room's task is gone. Also returns how many
    /// ticks were missed since the previous one (the reader was behind).
    pub async fn next(&mut self) -> Option<(Arc<StageTick>, u64)> {
        loop {
            self.rx.changed().await.ok()?;
            let Some(tick) = self.rx.borrow_and_update().clone() else {
                continue;
            };
            let missed = self
                .last_seq
                .map_or(0, |last| tick.seq.saturating_sub(last + 1));
            self.last_seq = Some(tick.seq);
            return Some((tick, missed));
        }
    }

    /// The participant whose mix-minus this ear plays (`None`: the program).
    pub fn who(&self) -> Option<ParticipantId> {
        self.who
    }
}

/// Keeps a participant's mix-minus in the mixer while held.
#[derive(Debug)]
struct Hearing {
    room: Arc<LiveRoom>,
    participant: ParticipantId,
}

impl Drop for Hearing {
    fn drop(&mut self) {
        let msg = Ingress::Hear(self.participant, false);
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(msg)) =
            self.room.ingress.try_send(msg)
        {
            // Queue full: tell it from a task so the mixer never keeps a feed nobody plays.
            let room = self.room.clone();
            tokio::spawn(async move {
                let _ = room.ingress.send(msg).await;
            });
        }
    }
}

impl LiveRoom {
    /// Follows the stage as `participant` hears it (their mix-minus), or as the audience does
    /// (`None`: the program). The room produces while anyone follows it.
    pub async fn stage_ear(self: &Arc<Self>, participant: Option<ParticipantId>) -> StageEar {
        let rx = self.stage_feed.subscribe();
        let mut hearing = None;
        if let Some(p) = participant {
            // A closed queue means the room ended; the ear then ends at its first `next`.
            if self.ingress.send(Ingress::Hear(p, true)).await.is_ok() {
                hearing = Some(Hearing {
                    room: self.clone(),
                    participant: p,
                });
            }
        }
        self.wake();
        StageEar {
            rx,
            who: participant,
            last_seq: None,
            _hearing: hearing,
        }
    }

    /// Whether any connection plays the stage (WHEP sessions, speak sockets).
    pub(super) fn has_stage_ears(&self) -> bool {
        self.stage_feed.receiver_count() > 0
    }
}
