//! Refused calls, audited once per burst.
//!
//! A refused call is worth knowing about (a viewer trying to set a mode, a
//! camera with a revoked token, a scanner trying passwords, a TLS client
//! with the wrong CA), but a caller that repeats one mistake thousands of
//! times a second must not write thousands of records: the event history
//! is bounded, and every record it holds for a refusal is one real event a
//! resuming viewer can no longer fetch.
//!
//! So refusals are counted in bursts. The first refusal of a kind (same
//! peer address, principal, method, result and reason) is logged and
//! journaled in full, as before; repeats are only counted; the count is
//! written as one record ([`AuditEntry::calls`]) every [`REPORT_EVERY`]
//! while the burst lasts and when it ends ([`BURST_GAP`] without a repeat).
//! One peer has at most [`MAX_KINDS_PER_PEER`] bursts open, and all peers
//! at most [`MAX_BURSTS`]; past either, refusals are counted in a
//! catch-all burst for the peer (or for every peer), so a caller varying
//! its mistakes gains nothing.
//!
//! Successful control commands are not refusals: each is its own record
//! (`super::audit::record`), and the rate limit bounds how many a token
//! can make.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant as WallInstant};

use super::audit::{self, AuditEntry};
use super::auth::peer_text;
use crate::telemetry::journal::Journal;

/// A burst ends this long after its last refusal.
pub const BURST_GAP: Duration = Duration::from_secs(10);
/// A burst that goes on is reported this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Distinct kinds of refusal one peer address has counted apart.
pub const MAX_KINDS_PER_PEER: usize = 16;
/// Bursts counted apart, all peers together.
pub const MAX_BURSTS: usize = 1024;

/// One refused call, as the audit names it.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// The token's name, `anonymous`, or `unauthenticated`.
    pub principal: Arc<str>,
    /// The caller's role, or [`audit::NO_ROLE`].
    pub role: &'static str,
    pub peer: Option<SocketAddr>,
    pub method: &'static str,
    /// The request in words, as far as it was read.
    pub request: String,
    /// The status code name (`UNAUTHENTICATED`), or [`TLS_HANDSHAKE`].
    pub result: &'static str,
    /// Why.
    pub detail: String,
    /// The intersection the call named, when known.
    pub intersection: Option<usize>,
}

/// The `result` of a refused TLS handshake.
pub const TLS_HANDSHAKE: &str = "TLS_HANDSHAKE_FAILED";

/// Every `result` a refusal can carry: the gRPC status codes but OK, and
/// [`TLS_HANDSHAKE`]. The metrics count refusals by these, so the label
/// has this many values whatever callers send.
pub const RESULTS: [&str; 17] = [
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
    TLS_HANDSHAKE,
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BurstKey {
    peer: Option<IpAddr>,
    /// `None`: the catch-all of `peer` (or of every peer).
    kind: Option<Kind>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Kind {
    principal: Arc<str>,
    method: &'static str,
    result: &'static str,
    detail: String,
}

#[derive(Debug)]
struct Burst {
    /// The first refusal, as recorded.
    first: AuditEntry,
    intersection: Option<usize>,
    /// Refusals since the last record.
    unreported: u64,
    reported_at: WallInstant,
    last_at: WallInstant,
}

#[derive(Debug, Default)]
struct Bursts {
    open: HashMap<BurstKey, Burst>,
    /// Open bursts per peer address.
    per_peer: HashMap<Option<IpAddr>, usize>,
}

/// The refusals of every service; cheap to share (`Arc`).
#[derive(Debug)]
pub struct Refusals {
    journal: Arc<Journal>,
    bursts: Mutex<Bursts>,
    /// Every refusal, bursts or not, by its position in [`RESULTS`].
    by_result: [AtomicU64; RESULTS.len()],
}

impl Refusals {
    pub fn new(journal: Arc<Journal>) -> Self {
        Refusals { journal, bursts: Mutex::default(), by_result: Default::default() }
    }

    /// Refusals so far, per [`RESULTS`] entry (every one, zeros included).
    pub fn by_result(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        RESULTS.into_iter().zip(&self.by_result).map(|(r, n)| (r, n.load(Ordering::Relaxed)))
    }

    /// Whether a refusal of this kind would open a burst, so be recorded
    /// in full: the gate reads a refused Control call's first message (to
    /// name its intersection) only then.
    pub fn opens_burst(
        &self,
        peer: Option<SocketAddr>,
        principal: &Arc<str>,
        method: &'static str,
        result: &'static str,
        detail: &str,
    ) -> bool {
        let key = BurstKey {
            peer: peer.map(|p| p.ip()),
            kind: Some(Kind { principal: principal.clone(), method, result, detail: detail.to_owned() }),
        };
        !self.lock().open.contains_key(&key)
    }

    /// Counts one refusal at `now`: records it in full if it opens a burst,
    /// and the burst's count if it is due. Returns the journal sequence
    /// number of the record written (0 when none was, or it went to the
    /// log only).
    pub fn note(&self, refusal: Refusal, now: WallInstant) -> u64 {
        if let Some(k) = RESULTS.iter().position(|r| *r == refusal.result) {
            self.by_result[k].fetch_add(1, Ordering::Relaxed);
        }
        let peer = refusal.peer.map(|p| p.ip());
        let kind = Kind {
            principal: refusal.principal.clone(),
            method: refusal.method,
            result: refusal.result,
            detail: refusal.detail.clone(),
        };
        let mut bursts = self.lock();
        let mut key = BurstKey { peer, kind: Some(kind) };
        if !bursts.open.contains_key(&key) {
            let of_peer = bursts.per_peer.get(&peer).copied().unwrap_or(0);
            if of_peer >= MAX_KINDS_PER_PEER {
                key.kind = None;
            }
            if bursts.open.len() >= MAX_BURSTS && !bursts.open.contains_key(&key) {
                key = BurstKey { peer: None, kind: None };
            }
        }
        if let Some(burst) = bursts.open.get_mut(&key) {
            burst.unreported += 1;
            burst.last_at = now;
            if now.duration_since(burst.reported_at) >= REPORT_EVERY {
                let seq = self.report(burst, now);
                burst.unreported = 0;
                burst.reported_at = now;
                return seq;
            }
            return 0;
        }
        let catch_all = key.kind.is_none();
        let first = AuditEntry {
            principal: if catch_all { "(various)".into() } else { refusal.principal.to_string() },
            role: refusal.role,
            peer: if key.peer.is_none() && catch_all { "(various)".into() } else { peer_text(refusal.peer) },
            method: refusal.method,
            request: refusal.request,
            result: refusal.result.to_owned(),
            detail: if catch_all {
                format!("more kinds of refused call than are counted apart; first: {}", refusal.detail)
            } else {
                refusal.detail
            },
            calls: 1,
        };
        let seq = self.write(refusal.intersection, first.clone());
        *bursts.per_peer.entry(key.peer).or_default() += 1;
        bursts.open.insert(
            key,
            Burst { first, intersection: refusal.intersection, unreported: 0, reported_at: now, last_at: now },
        );
        seq
    }

    /// Ends the bursts with no refusal for [`BURST_GAP`], recording the
    /// count of those that had repeats. The API calls it every few seconds.
    pub fn sweep(&self, now: WallInstant) {
        let mut bursts = self.lock();
        let Bursts { open, per_peer } = &mut *bursts;
        open.retain(|key, burst| {
            if now.duration_since(burst.last_at) < BURST_GAP {
                return true;
            }
            if burst.unreported > 0 {
                self.report(burst, now);
            }
            if let Some(n) = per_peer.get_mut(&key.peer) {
                *n -= 1;
                if *n == 0 {
                    per_peer.remove(&key.peer);
                }
            }
            false
        });
    }

    /// Records `burst`'s unreported count as one entry.
    fn report(&self, burst: &Burst, now: WallInstant) -> u64 {
        let secs = now.duration_since(burst.reported_at).as_secs_f64();
        let entry = AuditEntry {
            request: format!("{} more like the first", burst.unreported),
            detail: format!("{} ({} calls in {secs:.0} s)", burst.first.detail, burst.unreported),
            calls: burst.unreported,
            ..burst.first.clone()
        };
        self.write(burst.intersection, entry)
    }

    fn write(&self, intersection: Option<usize>, entry: AuditEntry) -> u64 {
        let AuditEntry { principal, role, peer, method, request, result, detail, calls } = &entry;
        tracing::warn!(
            target: "audit",
            %principal, role, %peer, method, %request, %result, %detail, calls,
            "refused"
        );
        let Some(intersection) = intersection else { return 0 };
        audit::journal(&self.journal, intersection, entry)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Bursts> {
        self.bursts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::journal::RecordKind;

    fn refusal(port: u16, detail: &str) -> Refusal {
        Refusal {
            principal: "unauthenticated".into(),
            role: audit::NO_ROLE,
            peer: Some(SocketAddr::from(([192, 0, 2, 7], port))),
            method: "greenwave.v1.Control/SetMode",
            request: "request not read".into(),
            result: "UNAUTHENTICATED",
            detail: detail.into(),
            intersection: Some(0),
        }
    }

    fn audits(journal: &Journal) -> Vec<AuditEntry> {
        let mut out = Vec::new();
        journal.read(1, 10_000, &mut out);
        out.into_iter()
            .filter_map(|r| match r.kind {
                RecordKind::Audit(a) => Some((*a).clone()),
                RecordKind::Indiana(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_flood_is_one_record_then_its_count() {
        let journal = Arc::new(Journal::new(10_000));
        let refusals = Refusals::new(journal.clone());
        let t0 = WallInstant::now();
        // 100,000 wrong tokens over 20 s, from ever-changing source ports.
        for k in 0..100_000u32 {
            let at = t0 + Duration::from_micros(u64::from(k) * 200);
            refusals.note(refusal((k % 60_000) as u16, "unknown bearer token"), at);
        }
        refusals.sweep(t0 + Duration::from_secs(20) + BURST_GAP);
        assert!(refusals.sweep_is_empty());
        let a = audits(&journal);
        assert_eq!(a.len(), 2, "{a:#?}");
        assert_eq!((a[0].calls, a[0].detail.as_str()), (1, "unknown bearer token"));
        assert_eq!(a[1].calls, 99_999, "the rest, counted: {a:#?}");
        assert!(a[1].detail.starts_with("unknown bearer token (99999 calls in"), "{}", a[1].detail);
        assert_eq!(a.iter().map(|e| e.calls).sum::<u64>(), 100_000);
        let counted: Vec<_> = refusals.by_result().filter(|(_, n)| *n > 0).collect();
        assert_eq!(counted, [("UNAUTHENTICATED", 100_000)], "every refusal counted by code, bursts or not");
    }

    #[test]
    fn a_long_burst_is_reported_every_minute() {
        let journal = Arc::new(Journal::new(10_000));
        let refusals = Refusals::new(journal.clone());
        let t0 = WallInstant::now();
        for s in 0..150u64 {
            refusals.note(refusal(1, "unknown bearer token"), t0 + Duration::from_secs(s));
        }
        let a = audits(&journal);
        // The first, then at 60 s and 120 s.
        assert_eq!(a.iter().map(|e| e.calls).collect::<Vec<_>>(), [1, 60, 60], "{a:#?}");
        refusals.sweep(t0 + Duration::from_secs(149) + BURST_GAP);
        assert_eq!(audits(&journal).last().map(|e| e.calls), Some(29), "the rest when it ends");
    }

    #[test]
    fn different_mistakes_are_recorded_apart_up_to_a_bound() {
        let journal = Arc::new(Journal::new(10_000));
        let refusals = Refusals::new(journal.clone());
        let t0 = WallInstant::now();
        for k in 0..1000 {
            refusals.note(refusal(1, &format!("no intersection \"x{k}\"")), t0);
        }
        let a = audits(&journal);
        assert_eq!(a.len(), MAX_KINDS_PER_PEER + 1, "16 kinds apart, the rest in one: {a:#?}");
        assert!(a[MAX_KINDS_PER_PEER].detail.starts_with("more kinds of refused call"), "{a:#?}");
        // Another peer still gets its own records.
        let other = Refusal { peer: Some(SocketAddr::from(([198, 51, 100, 1], 1))), ..refusal(1, "x0") };
        assert_ne!(refusals.note(other, t0), 0);
        refusals.sweep(t0 + BURST_GAP);
        let total: u64 = audits(&journal).iter().map(|e| e.calls).sum();
        assert_eq!(total, 1001, "every call counted once");
    }

    #[test]
    fn every_status_code_but_ok_is_counted_apart() {
        for code in 1..=16 {
            let name = audit::code_name(tonic::Code::from_i32(code));
            assert!(RESULTS.contains(&name), "{name}");
        }
    }

    #[test]
    fn unknown_intersections_go_to_the_log_only() {
        let journal = Arc::new(Journal::new(100));
        let refusals = Refusals::new(journal.clone());
        assert_eq!(refusals.note(Refusal { intersection: None, ..refusal(1, "x") }, WallInstant::now()), 0);
        assert!(audits(&journal).is_empty());
    }

    impl Refusals {
        fn sweep_is_empty(&self) -> bool {
            let b = self.lock();
            b.open.is_empty() && b.per_peer.is_empty()
        }
    }
}
