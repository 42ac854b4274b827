//! Unit tests of the stage roster.

use super::*;

const HOST: ParticipantId = ParticipantId(1);

fn roster() -> Roster {
    let mut r = Roster::new(StageLimits::default());
    r.add(HOST, Role::Host, None, None).unwrap();
    r
}

fn l(n: u64) -> ListenerId {
    ListenerId(1000 + n)
}

#[test]
fn one_host_two_cohosts_ten_speakers_by_default() {
    let mut r = roster();
    assert_eq!(
        r.add(ParticipantId(2), Role::Host, None, None),
        Err(StageError::HostTaken)
    );
    for i in 0..2 {
        r.add(ParticipantId(10 + i), Role::CoHost, None, None)
            .unwrap();
    }
    assert_eq!(
        r.add(ParticipantId(12), Role::CoHost, None, None),
        Err(StageError::CoHostsFull(2))
    );
    for i in 0..10 {
        r.add(ParticipantId(20 + i), Role::Speaker, None, None)
            .unwrap();
    }
    assert_eq!(
        r.add(ParticipantId(30), Role::Speaker, None, None),
        Err(StageError::SpeakersFull(10))
    );
    assert_eq!(
        r.add(ParticipantId(31), Role::Listener, None, None),
        Err(StageError::NotAStageRole(Role::Listener))
    );
    assert_eq!(
        r.add(ParticipantId(20), Role::CoHost, None, None),
        Err(StageError::AlreadyOnStage)
    );
    assert_eq!(r.count(Role::Host), 1);
    assert_eq!(r.count(Role::CoHost), 2);
    assert_eq!(r.count(Role::Speaker), 10);
    // Host first, then co-hosts, then speakers, each in arrival order.
    let ids: Vec<u64> = r.members().iter().map(|m| m.id.0).collect();
    let mut want = vec![1, 10, 11];
    want.extend(20..30);
    assert_eq!(ids, want);
    // 1 host + 2 co-hosts + 10 speakers, one revision each.
    assert_eq!(r.rev(), 13);
}

#[test]
fn limits_are_configurable() {
    let mut r = Roster::new(StageLimits {
        max_cohosts: 0,
        max_speakers: 1,
        ..StageLimits::default()
    });
    r.add(HOST, Role::Host, None, None).unwrap();
    assert_eq!(
        r.add(ParticipantId(2), Role::CoHost, None, None),
        Err(StageError::CoHostsFull(0))
    );
    r.add(ParticipantId(3), Role::Speaker, None, None).unwrap();
    assert_eq!(r.request(l(1), None), Ok(1));
    assert_eq!(r.accept_request(l(1)), Err(StageError::SpeakersFull(1)));
    // Still pending, at the head of the queue.
    assert_eq!(r.status(l(1)), ListenerStatus::Pending { position: 1 });
}

#[test]
fn request_accept_puts_the_listener_on_stage_as_its_own_participant() {
    let mut r = roster();
    assert_eq!(r.status(l(1)), ListenerStatus::None);
    assert_eq!(r.request(l(1), Some("Ada".into())), Ok(1));
    assert_eq!(r.request(l(2), None), Ok(2));
    // Asking again keeps the place.
    assert_eq!(r.request(l(1), None), Ok(1));
    assert_eq!(r.status(l(2)), ListenerStatus::Pending { position: 2 });
    let rev = r.rev();
    let id = r.accept_request(l(1)).unwrap();
    assert_eq!(id, participant_for(l(1)));
    assert_eq!(id, ParticipantId(1001));
    assert_eq!(r.rev(), rev + 1);
    let m = r.member(id).unwrap();
    assert_eq!(m.role, Role::Speaker);
    assert_eq!(m.name.as_deref(), Some("Ada"));
    assert_eq!(m.listener, Some(l(1)));
    assert_eq!(
        r.status(l(1)),
        ListenerStatus::OnStage {
            participant: id,
            role: Role::Speaker
        }
    );
    // The queue moved up; an on-stage listener cannot ask again.
    assert_eq!(r.status(l(2)), ListenerStatus::Pending { position: 1 });
    assert_eq!(r.request(l(1), None), Err(StageError::AlreadyOnStage));
    assert_eq!(r.admit(id), Ok(Role::Speaker));
    assert_eq!(r.accept_request(l(9)), Err(StageError::NoRequest));
}

#[test]
fn decline_and_cancel() {
    let mut r = roster();
    r.request(l(1), None).unwrap();
    r.request(l(2), None).unwrap();
    r.decline_request(l(1)).unwrap();
    assert_eq!(r.status(l(1)), ListenerStatus::Declined);
    assert_eq!(r.decline_request(l(1)), Err(StageError::NoRequest));
    r.cancel_request(l(2)).unwrap();
    assert_eq!(r.status(l(2)), ListenerStatus::None);
    assert_eq!(r.cancel_request(l(2)), Err(StageError::NoRequest));
    // A declined listener may not ask again in this room.
    assert_eq!(r.request(l(1), None), Err(StageError::Declined));
    assert_eq!(r.status(l(1)), ListenerStatus::Declined);
    assert_eq!(r.requests().count(), 0);
}

#[test]
fn requests_are_bounded() {
    let mut r = Roster::new(StageLimits {
        max_requests: 3,
        ..StageLimits::default()
    });
    for i in 0..3 {
        assert_eq!(r.request(l(i), None), Ok(i as usize + 1));
    }
    // Past the bound the oldest request goes: a flood pushes itself out, not the newcomer.
    assert_eq!(r.request(l(3), None), Ok(3));
    let order: Vec<ListenerId> = r.requests().map(|q| q.listener).collect();
    assert_eq!(order, vec![l(1), l(2), l(3)]);
    assert_eq!(r.status(l(0)), ListenerStatus::None);
    r.cancel_request(l(1)).unwrap();
    assert_eq!(r.request(l(4), None), Ok(3));
    assert_eq!(r.requests().count(), 3);
}

#[test]
fn invitations() {
    let mut r = Roster::new(StageLimits {
        max_invites: 2,
        ..StageLimits::default()
    });
    r.add(HOST, Role::Host, None, None).unwrap();
    r.invite(l(1)).unwrap();
    r.invite(l(1)).unwrap();
    r.invite(l(2)).unwrap();
    assert_eq!(r.invites(), &[l(1), l(2)]);
    assert_eq!(r.invite(l(3)), Err(StageError::InvitesFull(2)));
    assert_eq!(r.status(l(1)), ListenerStatus::Invited);
    assert_eq!(r.accept_invite(l(3), None), Err(StageError::NoInvite));
    let id = r.accept_invite(l(1), Some("Bo".into())).unwrap();
    assert_eq!(r.member(id).unwrap().name.as_deref(), Some("Bo"));
    assert_eq!(r.invites(), &[l(2)]);
    r.decline_invite(l(2)).unwrap();
    assert_eq!(r.invites(), &[] as &[ListenerId]);
    assert_eq!(r.cancel_invite(l(2)), Err(StageError::NoInvite));
    assert_eq!(r.invite(l(1)), Err(StageError::AlreadyOnStage));
}

#[test]
fn an_accepted_invitation_answers_a_pending_request_too() {
    let mut r = roster();
    r.request(l(1), Some("Cy".into())).unwrap();
    r.invite(l(1)).unwrap();
    let id = r.accept_invite(l(1), None).unwrap();
    assert_eq!(r.member(id).unwrap().name.as_deref(), Some("Cy"));
    assert_eq!(r.requests().count(), 0);
}

#[test]
fn self_and_moderator_mutes_are_separate() {
    let mut r = roster();
    let s = ParticipantId(5);
    r.add(s, Role::Speaker, None, None).unwrap();
    assert!(!r.is_muted(s));
    assert_eq!(r.set_muted(s, Muter::Participant, true), Ok(true));
    assert_eq!(r.set_muted(s, Muter::Participant, true), Ok(false));
    assert!(r.is_muted(s));
    assert_eq!(r.set_muted(s, Muter::Moderator, true), Ok(true));
    assert_eq!(
        r.set_muted(s, Muter::Participant, false),
        Err(StageError::MutedByModerator)
    );
    // The moderator lifts its own mute; the speaker's own mute stays.
    assert_eq!(r.set_muted(s, Muter::Moderator, false), Ok(true));
    assert!(r.is_muted(s));
    assert_eq!(r.set_muted(s, Muter::Participant, false), Ok(true));
    assert!(!r.is_muted(s));
    let m = r.member(s).unwrap();
    assert!(!m.self_muted && !m.moderator_muted);
    assert_eq!(
        r.set_muted(ParticipantId(99), Muter::Moderator, true),
        Err(StageError::NotOnStage)
    );
    assert!(!r.is_muted(ParticipantId(99)));
}

#[test]
fn leaving_the_stage_revokes_the_credential() {
    let mut r = roster();
    let s = ParticipantId(5);
    r.add(s, Role::Speaker, Some("Di".into()), None).unwrap();
    assert_eq!(r.admit(s), Ok(Role::Speaker));
    let m = r.leave_stage(s).unwrap();
    assert_eq!(m.name.as_deref(), Some("Di"));
    assert_eq!(r.admit(s), Err(StageError::NotOnStage));
    assert_eq!(r.leave_stage(s), Err(StageError::NotOnStage));
    assert_eq!(r.leave_stage(HOST), Err(StageError::HostStays));
    assert_eq!(r.admit(HOST), Ok(Role::Host));
    // Leaving frees the seat for someone else.
    r.add(ParticipantId(6), Role::Speaker, None, None).unwrap();
}

#[test]
fn promotion_and_demotion_respect_the_limits() {
    let mut r = Roster::new(StageLimits {
        max_cohosts: 1,
        max_speakers: 1,
        ..StageLimits::default()
    });
    r.add(HOST, Role::Host, None, None).unwrap();
    let (a, b) = (ParticipantId(2), ParticipantId(3));
    r.add(a, Role::Speaker, None, None).unwrap();
    assert_eq!(r.set_role(a, Role::CoHost), Ok(true));
    assert_eq!(r.set_role(a, Role::CoHost), Ok(false));
    assert_eq!(r.admit(a), Ok(Role::CoHost));
    r.add(b, Role::Speaker, None, None).unwrap();
    assert_eq!(r.set_role(b, Role::CoHost), Err(StageError::CoHostsFull(1)));
    assert_eq!(
        r.set_role(a, Role::Speaker),
        Err(StageError::SpeakersFull(1))
    );
    assert_eq!(r.set_role(HOST, Role::Speaker), Err(StageError::HostStays));
    assert_eq!(
        r.set_role(b, Role::Host),
        Err(StageError::NotAStageRole(Role::Host))
    );
    assert_eq!(
        r.set_role(ParticipantId(9), Role::Speaker),
        Err(StageError::NotOnStage)
    );
}

#[test]
fn blocking_a_listener_refuses_it_everywhere_until_unblocked() {
    let mut r = roster();
    r.request(l(1), None).unwrap();
    r.invite(l(1)).unwrap();
    let eject = r.eject_rev();
    assert_eq!(r.block_listener(l(1)), Ok(None));
    assert_eq!(r.eject_rev(), eject + 1);
    assert_eq!(r.requests().count(), 0);
    assert!(r.invites().is_empty());
    assert_eq!(r.status(l(1)), ListenerStatus::Blocked);
    assert_eq!(r.request(l(1), None), Err(StageError::Blocked));
    assert_eq!(r.invite(l(1)), Err(StageError::Blocked));
    assert_eq!(r.eject_check(l(1), eject + 1), Some(Ejection::Blocked));
    assert_eq!(r.eject_check(l(2), eject), None);
    // Blocking twice changes nothing.
    assert_eq!(r.block_listener(l(1)), Ok(None));
    assert_eq!(r.eject_rev(), eject + 1);
    assert!(r.unblock_listener(l(1)));
    assert!(!r.unblock_listener(l(1)));
    assert_eq!(r.eject_check(l(1), 0), None);
    assert_eq!(r.request(l(1), None), Ok(1));
}

#[test]
fn blocking_an_onstage_listener_blocks_both_ids() {
    let mut r = roster();
    r.request(l(1), None).unwrap();
    let id = r.accept_request(l(1)).unwrap();
    let m = r.block_listener(l(1)).unwrap().unwrap();
    assert_eq!(m.id, id);
    assert_eq!(r.admit(id), Err(StageError::Blocked));
    assert!(r.is_participant_blocked(id));
    // And the other way round: blocking the participant blocks the listener it came from.
    r.request(l(2), None).unwrap();
    let id2 = r.accept_request(l(2)).unwrap();
    assert_eq!(r.block_participant(id2).unwrap().unwrap().id, id2);
    assert!(r.is_listener_blocked(l(2)));
    assert_eq!(r.eject_check(l(2), 0), Some(Ejection::Blocked));
    assert_eq!(r.block_participant(HOST), Err(StageError::HostStays));
    assert_eq!(
        r.add(id2, Role::Speaker, None, None),
        Err(StageError::Blocked)
    );
    assert!(r.unblock_participant(id2));
    assert!(r.unblock_listener(l(2)));
    assert_eq!(r.admit(id2), Err(StageError::NotOnStage));
}

#[test]
fn block_list_is_bounded() {
    let mut r = Roster::new(StageLimits {
        max_blocked: 2,
        ..StageLimits::default()
    });
    r.block_listener(l(1)).unwrap();
    r.block_listener(l(2)).unwrap();
    assert_eq!(r.block_listener(l(3)), Err(StageError::BlockListFull(2)));
    r.block_participant(ParticipantId(7)).unwrap();
    r.block_participant(ParticipantId(8)).unwrap();
    assert_eq!(
        r.block_participant(ParticipantId(9)),
        Err(StageError::BlockListFull(2))
    );
    assert_eq!(r.blocked_listeners().count(), 2);
    assert_eq!(r.blocked_participants().count(), 2);
}

#[test]
fn a_kick_closes_connections_open_before_it_only() {
    let mut r = roster();
    let before = r.eject_rev();
    r.kick_listener(l(1));
    assert_eq!(r.eject_rev(), before + 1);
    assert_eq!(r.eject_check(l(1), before), Some(Ejection::Removed));
    // A connection opened after the kick (it saw the new revision) stays.
    assert_eq!(r.eject_check(l(1), before + 1), None);
    assert_eq!(r.eject_check(l(2), before), None);
    // A later kick of someone else does not hide the earlier one.
    r.kick_listener(l(2));
    assert_eq!(r.eject_check(l(1), before), Some(Ejection::Removed));
    assert_eq!(r.eject_check(l(2), before + 1), Some(Ejection::Removed));
    assert_eq!(r.eject_check(l(1), before + 1), None);
    // Old kicks are forgotten once enough newer ones happened.
    for i in 0..KICKS_KEPT as u64 {
        r.kick_listener(l(100 + i));
    }
    assert_eq!(r.eject_check(l(1), before), None);
}

#[test]
fn names_are_checked() {
    assert_eq!(clean_name("  Ada  "), Ok("Ada".to_owned()));
    assert!(clean_name("").is_err());
    assert!(clean_name("   ").is_err());
    assert!(clean_name(&"x".repeat(MAX_NAME_CHARS + 1)).is_err());
    assert_eq!(
        clean_name(&"é".repeat(MAX_NAME_CHARS)).map(|s| s.chars().count()),
        Ok(40)
    );
    assert!(clean_name("a\nb").is_err());
}

#[test]
fn a_mirror_takes_blocks_and_removals_from_another_roster() {
    let mut origin = roster();
    let mut edge = roster();
    let seen = edge.eject_rev();
    origin.block_listener(l(1)).unwrap();
    let before = origin.eject_rev();
    origin.kick_listener(l(2));
    edge.mirror(origin.to_record(), &origin.kicked_since(before));
    // Both look themselves up again: the blocked one by its block, the removed one by its kick.
    assert!(edge.eject_rev() > seen);
    assert_eq!(edge.eject_check(l(1), seen), Some(Ejection::Blocked));
    assert_eq!(edge.eject_check(l(2), seen), Some(Ejection::Removed));
    assert_eq!(edge.eject_check(l(3), seen), None);
    assert!(edge.is_listener_blocked(l(1)));
    // A later mirror without kicks keeps the earlier removal for connections that missed it,
    // and a connection that saw it is not removed again.
    let after = edge.eject_rev();
    assert!(origin.unblock_listener(l(1)));
    edge.mirror(origin.to_record(), &[]);
    assert_eq!(edge.eject_check(l(2), seen), Some(Ejection::Removed));
    assert_eq!(edge.eject_check(l(2), after), None);
    assert_eq!(edge.eject_check(l(1), after), None);
    assert_eq!(origin.kicked_since(before), vec![l(2)]);
    assert!(origin.kicked_since(origin.eject_rev()).is_empty());
}
