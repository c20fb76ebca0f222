//! Time as the core sees it: an injected monotonic [`Instant`] and a [`Span`]
//! between two instants, both in whole milliseconds.
//!
//! The core never reads a clock. The engine (real time), the simulator
//! (lockstep) and replay (recorded timestamps) all pass `now` in, which is what
//! makes the core deterministic: the same inputs at the same instants give the
//! same outputs at any speed.

use std::fmt;
use std::ops::{Add, AddAssign, Sub};

/// A point on the controller's monotonic timeline, in milliseconds since an
/// arbitrary epoch chosen by whoever drives the core.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

/// A length of time in milliseconds. Timing parameters (min green, yellow, ...)
/// are spans; engineers write them in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(u64);

impl Instant {
    pub const ZERO: Instant = Instant(0);

    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, zero if `earlier` is later.
    pub const fn since(self, earlier: Instant) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }
}

impl Span {
    pub const ZERO: Span = Span(0);

    pub const fn from_millis(ms: u64) -> Self {
        Span(ms)
    }

    pub const fn from_secs(s: u64) -> Self {
        Span(s * 1000)
    }

    /// Seconds as engineers write them; rounded to the nearest millisecond.
    /// Negative or non-finite input gives `None`.
    pub fn try_from_secs_f64(s: f64) -> Option<Self> {
        (s.is_finite() && (0.0..1e9).contains(&s)).then(|| Span((s * 1000.0).round() as u64))
    }

    pub const fn as_millis(self) -> u64 {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub const fn saturating_sub(self, other: Span) -> Span {
        Span(self.0.saturating_sub(other.0))
    }

    /// `self` modulo `cycle`; a zero cycle gives zero.
    pub const fn rem(self, cycle: Span) -> Span {
        if cycle.0 == 0 { Span(0) } else { Span(self.0 % cycle.0) }
    }
}

impl Add<Span> for Instant {
    type Output = Instant;
    fn add(self, rhs: Span) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign<Span> for Instant {
    fn add_assign(&mut self, rhs: Span) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl Sub<Instant> for Instant {
    type Output = Span;
    fn sub(self, rhs: Instant) -> Span {
        self.since(rhs)
    }
}

impl Add for Span {
    type Output = Span;
    fn add(self, rhs: Span) -> Span {
        Span(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Span {
    fn add_assign(&mut self, rhs: Span) {
        self.0 = self.0.saturating_add(rhs.0);
    }
}

impl Sub for Span {
    type Output = Span;
    fn sub(self, rhs: Span) -> Span {
        self.saturating_sub(rhs)
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}s", self.as_secs_f64())
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{:.1}s", self.0 as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_to_millis_and_reject_nonsense() {
        assert_eq!(Span::try_from_secs_f64(4.3), Some(Span::from_millis(4300)));
        assert_eq!(Span::try_from_secs_f64(-1.0), None);
        assert_eq!(Span::try_from_secs_f64(f64::NAN), None);
    }

    #[test]
    fn instants_subtract_saturating() {
        let a = Instant::from_millis(100);
        let b = Instant::from_millis(400);
        assert_eq!(b - a, Span::from_millis(300));
        assert_eq!(a - b, Span::ZERO);
        assert_eq!(a + Span::from_millis(50), Instant::from_millis(150));
    }
}
