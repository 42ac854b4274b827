//! Blocking playlist reload (RFC 8216bis 6.2.5.2): strict parsing of the `_HLS_msn` and
//! `_HLS_part` delivery directives. The decision itself is [`super::LivePlaylist::decide`].

use super::parse_u64;

/// A blocking reload request: answer once the playlist holds segment `msn` (or part `part`
/// of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockingRequest {
    /// `_HLS_msn`: the media sequence number waited for.
    pub msn: u64,
    /// `_HLS_part`: the part index in that segment, if any.
    pub part: Option<u64>,
}

/// What to do with a blocking request, given the playlist as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockDecision {
    /// The playlist already holds what was asked for: send it now.
    Ready,
    /// It is coming soon: hold the request until the playlist changes, then decide again
    /// (answer 503 after [`super::BLOCKING_TIMEOUT_MS`]).
    Wait,
    /// Too far in the future to ever be a legitimate request: answer 400 now.
    Invalid,
}

/// Why the delivery directives of a query string were refused (answer 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    /// A directive value that is not 1 to 20 ASCII digits fitting a u64.
    #[error("{0} must be a decimal integer")]
    BadNumber(&'static str),
    /// The same directive twice.
    #[error("{0} given more than once")]
    Duplicate(&'static str),
    /// `_HLS_part` without `_HLS_msn` (RFC 8216bis 6.2.5.2 requires 400).
    #[error("_HLS_part needs _HLS_msn")]
    PartWithoutMsn,
}

const MSN: &str = "_HLS_msn";
const PART: &str = "_HLS_part";

/// Extracts `_HLS_msn` and `_HLS_part` from a raw query string (without the `?`).
///
/// Other parameters, including `_HLS_skip` (no delta updates are advertised, so the spec says
/// to ignore it) and anything percent-encoded, are ignored. Returns `None` for a plain
/// (non-blocking) request.
pub fn parse_blocking_query(query: &str) -> Result<Option<BlockingRequest>, DirectiveError> {
    let mut msn = None;
    let mut part = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let (name, slot) = match key {
            MSN => (MSN, &mut msn),
            PART => (PART, &mut part),
            _ => continue,
        };
        if slot.is_some() {
            return Err(DirectiveError::Duplicate(name));
        }
        *slot = Some(parse_u64(value).ok_or(DirectiveError::BadNumber(name))?);
    }
    match (msn, part) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(DirectiveError::PartWithoutMsn),
        (Some(msn), part) => Ok(Some(BlockingRequest { msn, part })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::XorShift;

    fn req(msn: u64, part: Option<u64>) -> Result<Option<BlockingRequest>, DirectiveError> {
        Ok(Some(BlockingRequest { msn, part }))
    }

    #[test]
    fn well_formed_directives() {
        assert_eq!(parse_blocking_query(""), Ok(None));
        assert_eq!(parse_blocking_query("ticket=abc&x"), Ok(None));
        assert_eq!(parse_blocking_query("_HLS_msn=12"), req(12, None));
        assert_eq!(
            parse_blocking_query("_HLS_msn=12&_HLS_part=3"),
            req(12, Some(3))
        );
        assert_eq!(
            parse_blocking_query("_HLS_part=0&_HLS_msn=7"),
            req(7, Some(0))
        );
        assert_eq!(
            parse_blocking_query("t=1&_HLS_skip=YES&_HLS_msn=0012&&"),
            req(12, None)
        );
        assert_eq!(
            parse_blocking_query("_HLS_msn=18446744073709551615"),
            req(u64::MAX, None)
        );
    }

    #[test]
    fn malformed_directives_are_refused() {
        use DirectiveError::*;
        for (q, err) in [
            ("_HLS_part=1", PartWithoutMsn),
            ("_HLS_msn", BadNumber(MSN)),
            ("_HLS_msn=", BadNumber(MSN)),
            ("_HLS_msn=-1", BadNumber(MSN)),
            ("_HLS_msn=+1", BadNumber(MSN)),
            ("_HLS_msn=1.0", BadNumber(MSN)),
            ("_HLS_msn=0x10", BadNumber(MSN)),
            ("_HLS_msn= 1", BadNumber(MSN)),
            ("_HLS_msn=%31", BadNumber(MSN)),
            ("_HLS_msn=18446744073709551616", BadNumber(MSN)),
            ("_HLS_msn=000000000000000000001", BadNumber(MSN)),
            ("_HLS_msn=1&_HLS_part=x", BadNumber(PART)),
            ("_HLS_msn=1&_HLS_msn=1", Duplicate(MSN)),
            ("_HLS_msn=1&_HLS_part=1&_HLS_part=2", Duplicate(PART)),
        ] {
            assert_eq!(parse_blocking_query(q), Err(err), "{q:?}");
        }
    }

    #[test]
    fn random_queries_never_panic_and_round_trip_when_accepted() {
        let mut rng = XorShift::new(0x004c_4c48_4c53);
        let alphabet = b"_HLS_msnpart=&0123456789+-.% x";
        for _ in 0..20_000 {
            let len = rng.below(40);
            let q: String = (0..len)
                .map(|_| alphabet[rng.below(alphabet.len())] as char)
                .collect();
            if let Ok(Some(r)) = parse_blocking_query(&q) {
                // Whatever was accepted must be the digits actually present in the query.
                assert!(q.contains(&format!("{MSN}=")), "{q:?}");
                let mut rebuilt = format!("{MSN}={}", r.msn);
                if let Some(p) = r.part {
                    rebuilt.push_str(&format!("&{PART}={p}"));
                }
                assert_eq!(parse_blocking_query(&rebuilt), Ok(Some(r)));
            }
        }
    }
}
