//! Who may do what in a room: one function over (actor role, action, target role), so every API
//! call is checked against the same matrix, and the matrix is tested exhaustively.
//!
//! Roles rank `Host > CoHost > Speaker > Listener`. A moderator (host or co-host) acts only on
//! roles strictly below its own: a co-host cannot mute, move or remove the host or another
//! co-host; nobody acts on the host. Only the host makes or unmakes co-hosts.

use serde::{Deserialize, Serialize};

use crate::ids::Role;

/// Everything a participant or listener can ask the room to do.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A listener asks to come on stage.
    RequestToSpeak,
    /// A listener withdraws its request.
    CancelRequest,
    /// A moderator brings a requesting listener on stage.
    AcceptRequest,
    /// A moderator turns a request down.
    DeclineRequest,
    /// A moderator invites a listener on stage.
    Invite,
    /// A moderator withdraws an invitation.
    CancelInvite,
    /// An invited listener comes on stage.
    AcceptInvite,
    /// An invited listener turns the invitation down.
    DeclineInvite,
    /// A moderator mints a speaker's stage token.
    AddSpeaker,
    /// The host mints a co-host's stage token.
    AddCoHost,
    /// A moderator mutes someone on stage.
    Mute,
    /// A moderator lifts its mute of someone on stage.
    Unmute,
    /// Someone on stage mutes themself.
    MuteSelf,
    /// Someone on stage unmutes themself (not past a moderator's mute).
    UnmuteSelf,
    /// A moderator moves someone from the stage back to the audience.
    MoveToListener,
    /// The host makes a speaker a co-host.
    PromoteCoHost,
    /// The host makes a co-host a plain speaker.
    DemoteCoHost,
    /// A moderator removes someone from the room (closing their connections).
    Remove,
    /// A moderator removes someone and refuses their credentials from then on.
    Block,
    /// A moderator lifts a block.
    Unblock,
    /// A moderator reads the moderation view (pending requests, blocks).
    ViewModeration,
    /// A moderator ends the room for everyone.
    EndRoom,
    /// The host turns the room's recording on or off.
    SetRecording,
    /// Anyone sends a reaction (aggregated, never relayed one by one).
    React,
    /// Publishes audio into the mix.
    Speak,
}

impl Action {
    /// Every action, for exhaustive checks.
    pub const ALL: [Action; 25] = [
        Action::RequestToSpeak,
        Action::CancelRequest,
        Action::AcceptRequest,
        Action::DeclineRequest,
        Action::Invite,
        Action::CancelInvite,
        Action::AcceptInvite,
        Action::DeclineInvite,
        Action::AddSpeaker,
        Action::AddCoHost,
        Action::Mute,
        Action::Unmute,
        Action::MuteSelf,
        Action::UnmuteSelf,
        Action::MoveToListener,
        Action::PromoteCoHost,
        Action::DemoteCoHost,
        Action::Remove,
        Action::Block,
        Action::Unblock,
        Action::ViewModeration,
        Action::EndRoom,
        Action::SetRecording,
        Action::React,
        Action::Speak,
    ];

    /// Whether the action is aimed at someone else, whose role then matters.
    pub fn is_targeted(self) -> bool {
        matches!(
            self,
            Action::Mute
                | Action::Unmute
                | Action::MoveToListener
                | Action::PromoteCoHost
                | Action::DemoteCoHost
                | Action::Remove
                | Action::Block
        )
    }
}

/// Every role, for exhaustive checks.
pub const ROLES: [Role; 4] = [Role::Host, Role::CoHost, Role::Speaker, Role::Listener];

/// Rank of a role: a moderator acts only on lower ranks.
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Host => 3,
        Role::CoHost => 2,
        Role::Speaker => 1,
        Role::Listener => 0,
    }
}

/// Whether `actor` may perform `action` (on someone holding `target`, for targeted actions).
///
/// A targeted action without a target is refused; the target of an untargeted action is
/// ignored. Acting on oneself goes through the `*Self` actions, not the targeted ones.
pub fn allowed(actor: Role, action: Action, target: Option<Role>) -> bool {
    let moderator = actor.can_moderate();
    let on_stage = actor.can_speak();
    match action {
        Action::RequestToSpeak
        | Action::CancelRequest
        | Action::AcceptInvite
        | Action::DeclineInvite => actor == Role::Listener,
        Action::AcceptRequest
        | Action::DeclineRequest
        | Action::Invite
        | Action::CancelInvite
        | Action::AddSpeaker
        | Action::Unblock
        | Action::ViewModeration
        | Action::EndRoom => moderator,
        Action::AddCoHost | Action::SetRecording => actor == Role::Host,
        Action::MuteSelf | Action::UnmuteSelf | Action::Speak => on_stage,
        Action::React => true,
        Action::Mute | Action::Unmute | Action::MoveToListener => {
            target.is_some_and(|t| moderator && t.can_speak() && rank(actor) > rank(t))
        }
        Action::Remove | Action::Block => {
            target.is_some_and(|t| moderator && rank(actor) > rank(t))
        }
        Action::PromoteCoHost => actor == Role::Host && target == Some(Role::Speaker),
        Action::DemoteCoHost => actor == Role::Host && target == Some(Role::CoHost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Role = Role::Host;
    const C: Role = Role::CoHost;
    const S: Role = Role::Speaker;
    const L: Role = Role::Listener;

    /// The expected matrix, written out by hand: for untargeted actions the roles allowed; for
    /// targeted actions the (actor, target) pairs allowed. Everything not listed is denied.
    fn expected_untargeted(action: Action) -> Option<&'static [Role]> {
        Some(match action {
            Action::RequestToSpeak => &[L],
            Action::CancelRequest => &[L],
            Action::AcceptRequest => &[H, C],
            Action::DeclineRequest => &[H, C],
            Action::Invite => &[H, C],
            Action::CancelInvite => &[H, C],
            Action::AcceptInvite => &[L],
            Action::DeclineInvite => &[L],
            Action::AddSpeaker => &[H, C],
            Action::AddCoHost => &[H],
            Action::MuteSelf => &[H, C, S],
            Action::UnmuteSelf => &[H, C, S],
            Action::Unblock => &[H, C],
            Action::ViewModeration => &[H, C],
            Action::EndRoom => &[H, C],
            Action::SetRecording => &[H],
            Action::React => &[H, C, S, L],
            Action::Speak => &[H, C, S],
            Action::Mute
            | Action::Unmute
            | Action::MoveToListener
            | Action::PromoteCoHost
            | Action::DemoteCoHost
            | Action::Remove
            | Action::Block => return None,
        })
    }

    fn expected_targeted(action: Action) -> &'static [(Role, Role)] {
        match action {
            Action::Mute | Action::Unmute | Action::MoveToListener => &[(H, C), (H, S), (C, S)],
            Action::Remove | Action::Block => &[(H, C), (H, S), (H, L), (C, S), (C, L)],
            Action::PromoteCoHost => &[(H, S)],
            Action::DemoteCoHost => &[(H, C)],
            _ => &[],
        }
    }

    #[test]
    fn every_role_action_and_target_matches_the_expected_matrix() {
        let mut checked = 0;
        let mut allowed_count = 0;
        for action in Action::ALL {
            for actor in ROLES {
                match expected_untargeted(action) {
                    Some(roles) => {
                        assert!(!action.is_targeted(), "{action:?}");
                        let want = roles.contains(&actor);
                        assert_eq!(allowed(actor, action, None), want, "{actor:?} {action:?}");
                        // The target of an untargeted action does not matter.
                        for t in ROLES {
                            assert_eq!(allowed(actor, action, Some(t)), want);
                        }
                        checked += 1;
                        allowed_count += usize::from(want);
                    }
                    None => {
                        assert!(action.is_targeted(), "{action:?}");
                        assert!(
                            !allowed(actor, action, None),
                            "{actor:?} {action:?} no target"
                        );
                        for target in ROLES {
                            let want = expected_targeted(action).contains(&(actor, target));
                            assert_eq!(
                                allowed(actor, action, Some(target)),
                                want,
                                "{actor:?} {action:?} on {target:?}"
                            );
                            checked += 1;
                            allowed_count += usize::from(want);
                        }
                    }
                }
            }
        }
        // 18 untargeted actions × 4 roles + 7 targeted × 4 actors × 4 targets.
        assert_eq!(checked, 18 * 4 + 7 * 16);
        assert_eq!(allowed_count, 35 + 3 * 3 + 2 * 5 + 1 + 1);
    }

    #[test]
    fn all_lists_every_action_once() {
        let mut seen = std::collections::HashSet::new();
        for a in Action::ALL {
            assert!(seen.insert(a), "{a:?} twice");
        }
        assert_eq!(seen.len(), Action::ALL.len());
    }

    #[test]
    fn nobody_acts_on_the_host_and_cohosts_do_not_act_on_cohosts() {
        for action in Action::ALL.into_iter().filter(|a| a.is_targeted()) {
            for actor in ROLES {
                assert!(
                    !allowed(actor, action, Some(H)),
                    "{actor:?} {action:?} host"
                );
            }
            assert!(!allowed(C, action, Some(C)), "{action:?}");
            assert!(!allowed(S, action, Some(S)), "{action:?}");
            assert!(!allowed(L, action, Some(L)), "{action:?}");
        }
    }

    #[test]
    fn actions_serialize_in_snake_case() {
        assert_eq!(
            serde_json::to_string(&Action::MoveToListener).unwrap(),
            "\"move_to_listener\""
        );
        assert_eq!(
            serde_json::from_str::<Action>("\"add_co_host\"").unwrap(),
            Action::AddCoHost
        );
    }
}
