//! Relays: a room's program pulled from the node upstream, and the audience of the nodes that
//! pull it from this one.
//!
//! An edge pulls each room over one WebSocket (`GET /api/rooms/{id}/relay?from=N`, served by
//! `ws::relay`): the upstream sends a hello (the room, its roster, its latest event, its head),
//! then its program as the listeners' binary messages, and every change of its event and of its
//! blocks and removals as text. The edge feeds the frames to [`Program::push`] as a mixer would,
//! so its ring, LL-HLS and fan-out work as on the origin. After any break (the upstream gone,
//! stalled, restarted) it connects again with `from` = its ring's head and the upstream serves
//! what it missed from its own ring; its listeners stay connected meanwhile. Once a second it
//! reports its audience (its listeners and those of the nodes pulling from it) upstream, so the
//! origin's room event, which every node forwards as it is, counts the whole cluster.
//! A room nobody on the edge listens to for the grace period is let go (retired).

mod pull;
mod upstream;

pub(super) use pull::run;
pub use upstream::{Pull, PullError, Source, Upstream};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tribune_core::event::RoomEvent;
use tribune_core::{
    unix_micros, ListenerId, ReactionKind, Reactor, RoomInfo, RoomState, RosterRecord,
};
use tribune_media::cmaf::SegmentStart;

use super::LiveRoom;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// Text messages a node sends down a relay connection (audio goes as the listeners' binary
/// wire messages).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Down {
    /// First message: the room as it stands.
    Hello {
        /// Its info.
        info: RoomInfo,
        /// The sequence number of its next program frame.
        head: u64,
        /// Its latest room event (the text listeners get).
        event: String,
        /// Its roster's lasting state.
        roster: RosterRecord,
        /// Its LL-HLS listing's discontinuity sequence where the program sent begins.
        discontinuity_sequence: u64,
    },
    /// Where segments of the program sent next begin (sent ahead of their frames).
    Segments {
        /// Oldest first.
        starts: Vec<Start>,
    },
    /// The room event changed.
    Event {
        /// The text listeners get, as it is.
        event: String,
    },
    /// Blocks or removals changed: the roster's lasting state and who was removed since.
    Roster {
        /// The roster's lasting state.
        roster: RosterRecord,
        /// Listeners removed since the last roster message.
        kicked: Vec<ListenerId>,
    },
}

/// Where an LL-HLS segment begins, and how it is numbered and dated (see
/// [`SegmentStart`]): a pulling node cuts the same parts and segments from it.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Start {
    /// Media sequence number.
    pub msn: u64,
    /// Its first frame.
    pub first_seq: u64,
    /// Whether it follows a gap.
    pub discontinuity: bool,
    /// Wall-clock time of its first frame, µs since the Unix epoch.
    pub program_date_us: u64,
}

impl From<SegmentStart> for Start {
    fn from(s: SegmentStart) -> Self {
        Start {
            msn: s.msn,
            first_seq: s.first_seq,
            discontinuity: s.discontinuity,
            program_date_us: s.program_date_us,
        }
    }
}

impl From<Start> for SegmentStart {
    fn from(s: Start) -> Self {
        SegmentStart {
            msn: s.msn,
            first_seq: s.first_seq,
            discontinuity: s.discontinuity,
            program_date_us: s.program_date_us,
        }
    }
}

/// Text messages a pulling node sends up.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Up {
    /// Listeners on the pulling node and on the nodes pulling from it.
    Audience {
        /// How many.
        listeners: u64,
    },
    /// Reactions of listeners there since the last (each within that node's limits).
    Reactions {
        /// (listener id, kind), oldest first.
        items: Vec<(u64, ReactionKind)>,
    },
}

/// Most reactions one node sends up a second (the origin's own per-window limits apply too).
pub const REACTIONS_UP_MAX: usize = 1_000;

/// A room's relay bookkeeping: the audience of the nodes pulling it, or, on a room this node
/// pulls, what its upstream counts.
#[derive(Debug, Default)]
pub(crate) struct Relaying {
    /// Whether this node pulls the room (rather than mixing it).
    relayed: bool,
    /// A pulled room let go (nobody listened): lookups ignore it and pull again.
    retired: AtomicBool,
    /// Open relay connections of nodes pulling this room, with each one's audience.
    downstream: Mutex<HashMap<u64, u64>>,
    /// Their sum.
    downstream_total: AtomicU64,
    /// On a pulled room: the whole audience, as the upstream's last event counted it.
    upstream_total: AtomicU64,
    /// On a pulled room: reactions counted here, for the next report to the upstream.
    reactions_up: Mutex<Vec<(u64, ReactionKind)>>,
}

impl Relaying {
    pub(crate) fn new(relayed: bool) -> Self {
        Relaying {
            relayed,
            ..Relaying::default()
        }
    }

    /// Keeps a listener's reaction for the upstream (past a second's worth, dropped).
    pub(crate) fn send_up(&self, who: Reactor, kind: ReactionKind) {
        let Reactor::Listener(l) = who else { return };
        let mut up = self.reactions_up.lock();
        if up.len() < REACTIONS_UP_MAX {
            up.push((l.0, kind));
        }
    }

    /// The reactions kept for the upstream since the last call.
    pub(crate) fn take_up(&self) -> Vec<(u64, ReactionKind)> {
        std::mem::take(&mut *self.reactions_up.lock())
    }

    /// Whether a node pulls this room from this one.
    pub(crate) fn pulled(&self) -> bool {
        !self.downstream.lock().is_empty()
    }

    fn set(&self, conn: u64, listeners: Option<u64>) {
        let mut d = self.downstream.lock();
        match listeners {
            Some(n) => d.insert(conn, n),
            None => d.remove(&conn),
        };
        self.downstream_total
            .store(d.values().sum(), Ordering::Relaxed);
    }
}

/// A node pulling a room from this one: counted while it is held.
pub struct Downstream {
    room: Arc<LiveRoom>,
    conn: u64,
    metrics: Arc<Metrics>,
}

impl Downstream {
    /// The pulling node's audience (its listeners and those below it).
    pub fn report(&self, listeners: u64) {
        self.room.relay.set(self.conn, Some(listeners));
    }
}

impl Drop for Downstream {
    fn drop(&mut self) {
        self.room.relay.set(self.conn, None);
        self.metrics.relays_out.dec();
    }
}

impl LiveRoom {
    /// Whether this node pulls the room from another (stage actions belong to its origin).
    pub fn is_relayed(&self) -> bool {
        self.relay.relayed
    }

    /// Whether this pulled room was let go (a lookup pulls it again).
    pub fn is_retired(&self) -> bool {
        self.relay.retired.load(Ordering::Acquire)
    }

    /// Refuses stage actions on a room this node only relays.
    pub fn ensure_origin(&self) -> Result<(), ApiError> {
        if self.is_relayed() {
            return Err(ApiError::Misdirected(
                "this node relays the room; the stage and its moderation are on its origin".into(),
            ));
        }
        Ok(())
    }

    /// The room's listeners across the cluster: on a pulled room, as its upstream last counted
    /// them; otherwise this node's and those of the nodes pulling from it.
    pub fn audience(&self) -> u64 {
        if self.relay.relayed {
            self.relay.upstream_total.load(Ordering::Relaxed)
        } else {
            self.audience_below()
        }
    }

    /// Listeners on this node and on the nodes pulling the room from it.
    pub fn audience_below(&self) -> u64 {
        self.listener_count() + self.relay.downstream_total.load(Ordering::Relaxed)
    }

    /// Counts a node pulling this room in (until the guard drops); it keeps the room producing.
    pub fn downstream(self: &Arc<Self>, metrics: Arc<Metrics>) -> Downstream {
        let conn = tribune_core::ParticipantId::random().0;
        self.relay.set(conn, Some(0));
        metrics.relays_out.inc();
        self.wake();
        Downstream {
            room: self.clone(),
            conn,
            metrics,
        }
    }

    /// Takes the upstream's room event: forwarded as it is (its counts are the cluster's),
    /// except the end, which waits for the last audio ([`LiveRoom::end_relayed`]). Answers
    /// the room's state and, when it ended, the event to publish then.
    pub(in crate::room) fn take_event(&self, text: String) -> Option<(RoomState, String)> {
        let event = RoomEvent::parse(&text)?;
        self.relay
            .upstream_total
            .store(event.listeners, Ordering::Relaxed);
        if event.state == RoomState::Ended {
            return Some((RoomState::Ended, text));
        }
        {
            let mut info = self.info.lock();
            if event.state == RoomState::Live {
                let _ = info.go_live(unix_micros() / 1_000_000);
            }
            info.title = event.title;
        }
        let eject_rev = self.roster.lock().eject_rev();
        self.publish_text(event.state, text, eject_rev);
        Some((event.state, String::new()))
    }

    /// The room ended upstream: published here once its last audio went out.
    pub(in crate::room) fn end_relayed(&self, last: Option<(String, tokio::time::Instant)>) {
        self.info.lock().end(unix_micros() / 1_000_000);
        let text = match last {
            Some((text, _)) => text,
            None => {
                let current = self.snapshot.borrow().text.as_str().to_owned();
                match RoomEvent::parse(&current) {
                    Some(mut e) => {
                        e.state = RoomState::Ended;
                        e.to_text()
                    }
                    None => current,
                }
            }
        };
        let eject_rev = self.roster.lock().eject_rev();
        self.publish_text(RoomState::Ended, text, eject_rev);
    }

    /// Lets this pulled room go: lookups pull it again, and its connections are told to
    /// reconnect (they find the new one).
    pub(in crate::room) fn retire(&self) {
        self.relay.retired.store(true, Ordering::Release);
        self.control.send_modify(|c| c.retired = true);
    }

    /// Takes the upstream's blocks and removals: open connections look themselves up again.
    pub(in crate::room) fn take_roster(&self, roster: RosterRecord, kicked: &[ListenerId]) {
        let eject_rev = {
            let mut r = self.roster.lock();
            r.mirror(roster, kicked);
            r.eject_rev()
        };
        let (state, text) = {
            let s = self.snapshot.borrow();
            (s.state, s.text.as_str().to_owned())
        };
        self.publish_text(state, text, eject_rev);
    }
}
