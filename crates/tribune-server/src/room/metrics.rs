//! Per-room figures: what each live room's speakers' jitter buffers did and hold.

use std::fmt::Write as _;
use std::sync::Arc;

use crate::room::LiveRoom;

/// Appends each live room's jitter figures: frames concealed and refused as late (counters),
/// and every speaker's reserve against its target (gauges).
pub fn render_rooms(out: &mut String, rooms: &[Arc<LiveRoom>]) {
    let figures: Vec<_> = rooms.iter().map(|r| (r, r.jitter_figures())).collect();
    family(
        out,
        "room_concealed_frames_total",
        "counter",
        "Speaker frames concealed (missing when due) in a live room's mix.",
    );
    for (room, (concealed, _)) in &figures {
        let _ = writeln!(
            out,
            "tribune_room_concealed_frames_total{{room=\"{}\"}} {concealed}",
            room.id
        );
    }
    family(
        out,
        "room_late_frames_total",
        "counter",
        "Speaker frames that arrived after their slot was played, in a live room.",
    );
    for (room, (_, late)) in &figures {
        let _ = writeln!(
            out,
            "tribune_room_late_frames_total{{room=\"{}\"}} {late}",
            room.id
        );
    }
    family(
        out,
        "speaker_jitter_depth_frames",
        "gauge",
        "Frames a speaker's jitter buffer held in reserve at its low point over the last 0.5 s \
         (target: tribune_speaker_jitter_target_frames).",
    );
    let depths: Vec<_> = rooms.iter().map(|r| (r, r.jitter_depths())).collect();
    for (room, list) in &depths {
        for d in list.iter() {
            if let Some(depth) = d.depth {
                let _ = writeln!(
                    out,
                    "tribune_speaker_jitter_depth_frames{{room=\"{}\",slot=\"{}\"}} {depth}",
                    room.id, d.slot
                );
            }
        }
    }
    family(
        out,
        "speaker_jitter_target_frames",
        "gauge",
        "The reserve each speaker's jitter buffer keeps.",
    );
    for (room, list) in &depths {
        for d in list.iter() {
            let _ = writeln!(
                out,
                "tribune_speaker_jitter_target_frames{{room=\"{}\",slot=\"{}\"}} {}",
                room.id, d.slot, d.target
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP tribune_{name} {help}");
    let _ = writeln!(out, "# TYPE tribune_{name} {kind}");
}
