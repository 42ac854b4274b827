//! Relay messages (what an upstream node sends down, what a pulling node sends up): arbitrary
//! text is refused or taken whole, and what is taken (a roster to mirror, segment starts to
//! follow) is applied without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tribune_core::{ListenerId, Roster, StageLimits};
use tribune_media::cmaf::{Packager, SegmentStart};
use tribune_server::relay::{Down, Up};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = serde_json::from_str::<Up>(text);
    match serde_json::from_str::<Down>(text) {
        Ok(Down::Roster { roster, kicked }) => {
            let mut r = Roster::new(StageLimits::default());
            r.mirror(roster, &kicked);
            let _ = r.eject_check(ListenerId(1), 0);
        }
        Ok(Down::Hello { roster, .. }) => {
            let mut r = Roster::new(StageLimits::default());
            r.mirror(roster, &[]);
        }
        Ok(Down::Segments { starts }) => {
            let mut p = Packager::following();
            for s in starts {
                p.declare(SegmentStart::from(s));
            }
            let _ = p.segment_start();
        }
        _ => {}
    }
});
