//! One master per cabinet: telling from the heartbeat register that another
//! controller writes the same cabinet.
//!
//! Two masters writing one cabinet interleave their frames at the heads (a
//! green from one, red from the other: no yellow). The heartbeat is the
//! register every master that drives a cabinet writes, and it is plain
//! data: a cabinet holds what it was last written. So before each write the
//! cabinet task reads it back (FC03) and compares it with what it must
//! hold: the heartbeat of this daemon's last accepted write, or, before
//! the first one of a connection and while not writing, the value the
//! previous look found. Any other value is a write by someone else.
//!
//! - After a (re)connection the task writes only once the register has
//!   stood still for the listening time (two of its write periods: a
//!   master writing as often as it does writes at least once in there),
//!   so it does not barge in on a cabinet another master is driving.
//! - A foreign write starts an *episode*: the task stops writing at once
//!   (see `docs/modbus.md`, "One master", for why it yields rather than
//!   writes flash) and the intersection flashes with an alarm.
//! - The episode ends when the register has stood still for the quiet
//!   time (the cabinet's link timeout, its watchdog time) plus a random
//!   part of it: two daemons that both yielded do not come back in the
//!   same tick, and the one that waits longer sees the other's writes and
//!   stays out.
//!
//! This is plain state: the task passes the time in and does the I/O and
//! the logging.

use std::time::{Duration, Instant};

use rand::Rng;
use rand::rngs::SmallRng;

/// An episode: another master has written the cabinet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Episode {
    pub started: Instant,
    /// Foreign writes seen (looks that found the register moved).
    pub foreign_writes: u64,
    /// How long the register must stand still to end the episode.
    quiet: Duration,
}

/// What one look at the heartbeat register found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Look {
    /// The first look of a connection: nothing to compare with yet.
    Baseline,
    /// The register holds what it must: no one else wrote.
    Alone,
    /// Someone else wrote it (`expected` → `found`): an episode starts.
    Started { expected: u16, found: u16 },
    /// During an episode: it moved again, or has not been still long
    /// enough yet.
    Continues { moved: bool },
    /// It has stood still for the quiet time: the episode is over.
    Ended(Episode),
}

/// The one-master watch of one cabinet, kept across its connections.
#[derive(Debug)]
pub struct OneMaster {
    /// Stillness before the first write of a connection.
    listen: Duration,
    /// Stillness that ends an episode, before the random part.
    quiet: Duration,
    rng: SmallRng,
    /// What the register must hold now; `None` just after connecting.
    expected: Option<u16>,
    /// A write of ours whose outcome is unknown: the register may hold
    /// this instead.
    maybe: Option<u16>,
    /// Since when a look has found it there (the first look of the
    /// connection, or the last that found it moved).
    still_since: Option<Instant>,
    /// This connection has carried a write of ours.
    written: bool,
    /// The last look found the register where it must be, long enough
    /// (and no episode).
    clear: bool,
    episode: Option<Episode>,
}

impl OneMaster {
    /// `rng` must differ between processes (two daemons drawing the same
    /// quiet times would come back together).
    pub fn new(listen: Duration, quiet: Duration, rng: SmallRng) -> Self {
        OneMaster {
            listen,
            quiet,
            rng,
            expected: None,
            maybe: None,
            still_since: None,
            written: false,
            clear: false,
            episode: None,
        }
    }

    /// A new connection: what the register holds is unknown until looked at.
    pub fn connected(&mut self) {
        self.expected = None;
        self.maybe = None;
        self.still_since = None;
        self.written = false;
        self.clear = false;
    }

    /// The cabinet accepted a write carrying `beat`.
    pub fn accepted(&mut self, beat: u16) {
        self.expected = Some(beat);
        self.maybe = None;
        self.written = true;
    }

    /// A write carrying `beat` got no answer (refused, or an RTU line timed
    /// out on it): the register holds what it must, or `beat`.
    pub fn unsure(&mut self, beat: u16) {
        self.maybe = Some(beat);
    }

    /// The cabinet would not answer the read-back: nothing can be told, so
    /// the task drives it as it would without the check (an episode under
    /// way holds until a look ends it).
    pub fn unseen(&mut self) {
        self.clear = self.episode.is_none();
    }

    /// Whether the task may write: the last look found no one else.
    pub fn may_write(&self) -> bool {
        self.clear
    }

    pub fn episode(&self) -> Option<&Episode> {
        self.episode.as_ref()
    }

    /// The register holds `value` at `now`.
    pub fn look(&mut self, now: Instant, value: u16) -> Look {
        let (Some(expected), Some(since)) = (self.expected.replace(value), self.still_since) else {
            self.still_since = Some(now);
            self.clear = false;
            return Look::Baseline;
        };
        let maybe = self.maybe.take();
        let moved = value != expected && maybe != Some(value);
        let still = if moved {
            self.still_since = Some(now);
            Duration::ZERO
        } else {
            now.saturating_duration_since(since)
        };
        let look = match &mut self.episode {
            None if moved => {
                let quiet = self.quiet + self.quiet.mul_f64(self.rng.random::<f64>());
                self.episode = Some(Episode { started: now, foreign_writes: 1, quiet });
                Look::Started { expected, found: value }
            }
            None => Look::Alone,
            Some(e) if moved => {
                e.foreign_writes += 1;
                Look::Continues { moved }
            }
            Some(e) if still >= e.quiet => {
                let e = *e;
                self.episode = None;
                Look::Ended(e)
            }
            Some(_) => Look::Continues { moved },
        };
        self.clear = self.episode.is_none() && !moved && (self.written || still >= self.listen);
        look
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    const LISTEN: Duration = Duration::from_millis(100);
    const QUIET: Duration = Duration::from_millis(400);

    fn watch() -> (OneMaster, Instant) {
        (OneMaster::new(LISTEN, QUIET, SmallRng::seed_from_u64(7)), Instant::now())
    }

    fn ms(t: Instant, n: u64) -> Instant {
        t + Duration::from_millis(n)
    }

    /// Connected and past listening, at `t + LISTEN`.
    fn writing(m: &mut OneMaster, t: Instant) {
        m.connected();
        m.look(t, 0);
        m.look(t + LISTEN, 0);
        assert!(m.may_write());
    }

    #[test]
    fn alone_the_register_holds_each_accepted_heartbeat() {
        let (mut m, t) = watch();
        m.connected();
        assert_eq!(m.look(t, 500), Look::Baseline);
        assert!(!m.may_write(), "listen before the first write");
        assert_eq!(m.look(ms(t, 50), 500), Look::Alone);
        assert!(!m.may_write(), "still listening");
        assert_eq!(m.look(ms(t, 100), 500), Look::Alone);
        assert!(m.may_write());
        for beat in 501..510 {
            m.accepted(beat);
            assert_eq!(m.look(ms(t, 100), beat), Look::Alone);
            assert!(m.may_write());
        }
    }

    #[test]
    fn a_foreign_write_stops_writing_until_the_register_is_still() {
        let (mut m, t) = watch();
        writing(&mut m, t);
        m.accepted(1);
        assert_eq!(m.look(t, 40_000), Look::Started { expected: 1, found: 40_000 });
        assert!(!m.may_write());
        // The other master keeps writing every 100 ms: the episode holds.
        for (k, at) in (1..=10).map(|k| (k, ms(t, 100 * k))) {
            assert_eq!(m.look(at, 40_000 + k as u16), Look::Continues { moved: true });
            assert_eq!(m.look(at + Duration::from_millis(50), 40_000 + k as u16), Look::Continues { moved: false });
            assert!(!m.may_write());
        }
        assert_eq!(m.episode().map(|e| e.foreign_writes), Some(11));
        // It stops: the episode ends after the quiet time and at most as
        // much again (the random part), not before.
        let stopped = ms(t, 1000);
        let mut at = stopped;
        let ended = loop {
            at += Duration::from_millis(50);
            match m.look(at, 40_010) {
                Look::Continues { moved: false } => assert!(!m.may_write()),
                Look::Ended(e) => break e,
                other => panic!("{other:?}"),
            }
        };
        let still = at - stopped;
        assert!(still >= QUIET && still <= 2 * QUIET + Duration::from_millis(50), "ended after {still:?}");
        assert_eq!((ended.started, ended.foreign_writes), (t, 11));
        assert!(m.may_write() && m.episode().is_none());
        m.accepted(2);
        assert_eq!(m.look(at, 2), Look::Alone);
    }

    #[test]
    fn a_master_already_writing_is_seen_before_the_first_write() {
        let (mut m, t) = watch();
        m.connected();
        assert_eq!(m.look(t, 7), Look::Baseline);
        // Two looks close together (a slow first tick) see nothing move:
        // still listening, not writing.
        assert_eq!(m.look(ms(t, 5), 7), Look::Alone);
        assert!(!m.may_write());
        assert_eq!(m.look(ms(t, 60), 8), Look::Started { expected: 7, found: 8 });
        assert!(!m.may_write());
    }

    #[test]
    fn an_episode_outlives_a_reconnection_and_an_unanswered_look() {
        let (mut m, t) = watch();
        m.connected();
        m.look(t, 1);
        m.look(t, 2);
        m.connected();
        assert_eq!(m.look(t, 90), Look::Baseline, "a new connection's first look counts nothing");
        m.unseen();
        assert!(!m.may_write(), "no look, no end of the episode");
        assert_eq!(m.look(t, 91), Look::Continues { moved: true });
        assert_eq!(m.episode().map(|e| e.foreign_writes), Some(2));
        // The quiet time counts from the last move seen.
        assert_eq!(m.look(ms(t, 300), 91), Look::Continues { moved: false });
        assert!(matches!(m.look(ms(t, 800), 91), Look::Ended(_)));
        assert!(m.may_write(), "still for longer than listening");
    }

    #[test]
    fn a_write_left_unanswered_may_or_may_not_have_taken_effect() {
        for took in [false, true] {
            let (mut m, t) = watch();
            writing(&mut m, t);
            m.accepted(7);
            m.unsure(8);
            assert_eq!(m.look(t + LISTEN, if took { 8 } else { 7 }), Look::Alone, "took effect: {took}");
            // Once: the next unanswered value is not taken for ours.
            assert_eq!(m.look(t + LISTEN, 9), Look::Started { expected: if took { 8 } else { 7 }, found: 9 });
        }
    }

    #[test]
    fn a_cabinet_that_refuses_the_read_back_is_driven_as_without_the_check() {
        let (mut m, _) = watch();
        m.connected();
        m.unseen();
        assert!(m.may_write());
    }
}
