//! What the recorder reads back after a crash (stored fragments, the index text) and what LL-HLS
//! requests carry (blocking-reload queries, resource paths): errors, never panics.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tribune_media::cmaf::{read_samples, summarize};
use tribune_media::hls::{parse_blocking_query, Resource};
use tribune_media::record::{parse_index, IndexEntry};

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 3 {
        0 => {
            let bytes = Bytes::copy_from_slice(rest);
            if let Ok(samples) = read_samples(&bytes) {
                assert!(samples.iter().all(|s| !s.packet.is_empty()));
            }
            if let Ok(run) = summarize(rest) {
                assert!(run.frames >= run.fragments);
                let e = IndexEntry::rebuild(1, rest, None).expect("summarized bytes rebuild");
                assert_eq!(e.bytes, rest.len() as u64);
            }
        }
        1 => {
            let text = String::from_utf8_lossy(rest);
            let entries = parse_index(&text);
            assert!(entries.windows(2).all(|w| w[0].msn < w[1].msn));
            for e in entries {
                assert_eq!(IndexEntry::parse_line(e.to_line().trim_end()), Some(e));
            }
        }
        _ => {
            let text = String::from_utf8_lossy(rest);
            let _ = parse_blocking_query(&text);
            if let Some(r) = Resource::parse(&text) {
                assert_eq!(Resource::parse(&r.uri()), Some(r));
            }
        }
    }
});
