//! Reactions as commands on the room: counted per window, refused past the limits, and the
//! last window as the room event shows it.

use tribune_core::event::ReactionWindow;
use tribune_core::{ReactionKind, Reactor};

use super::LiveRoom;
use crate::error::ApiError;
use crate::metrics::Metrics;

impl LiveRoom {
    /// Counts one reaction in the current window, or refuses it (429) past the limits.
    pub fn react(
        &self,
        who: Reactor,
        kind: ReactionKind,
        metrics: &Metrics,
    ) -> Result<(), ApiError> {
        match self.reactions.lock().record(who, kind) {
            Ok(()) => {
                metrics.reactions.inc();
                // A pulled room's reactions count at its origin (this node's limits applied).
                if self.is_relayed() {
                    self.relay.send_up(who, kind);
                }
                Ok(())
            }
            Err(e) => {
                metrics.reactions_refused.inc();
                Err(e.into())
            }
        }
    }

    /// The last complete reactions window, as the room event shows it.
    pub(crate) fn reaction_window(&self) -> Option<ReactionWindow> {
        self.reactions.lock().last().map(ReactionWindow::from)
    }
}
