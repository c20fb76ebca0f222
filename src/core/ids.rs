//! Identifiers from the NTCIP 1202 vocabulary and the compact sets the core
//! uses instead of collections, so a tick never allocates.

use std::fmt;

/// Most phases a controller has (NTCIP 1202 `maxPhases` on an ATC is 16+; 16
/// covers every NEMA TS2 cabinet).
pub const MAX_PHASES: usize = 16;
/// Most rings (dual ring is usual; ATC allows four).
pub const MAX_RINGS: usize = 4;
/// Most barrier groups in a sequence.
pub const MAX_GROUPS: usize = 4;
/// Most detector channels per cabinet.
pub const MAX_DETECTORS: usize = 64;
/// Most overlaps (A..P in NTCIP; eight are plenty for a cabinet).
pub const MAX_OVERLAPS: usize = 8;

/// A phase number, 1..=16 as engineers write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhaseId(u8);

impl PhaseId {
    /// `None` outside 1..=16.
    pub const fn new(number: u8) -> Option<Self> {
        if number >= 1 && number as usize <= MAX_PHASES { Some(PhaseId(number)) } else { None }
    }

    /// Phase from a zero-based index; panics outside 0..16 (a programming error).
    pub const fn from_index(index: usize) -> Self {
        assert!(index < MAX_PHASES);
        PhaseId(index as u8 + 1)
    }

    pub const fn number(self) -> u8 {
        self.0
    }

    pub const fn index(self) -> usize {
        self.0 as usize - 1
    }
}

impl fmt::Display for PhaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A set of phases as a bit mask (bit 0 = phase 1).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PhaseSet(u16);

impl PhaseSet {
    pub const EMPTY: PhaseSet = PhaseSet(0);

    pub const fn from_bits(bits: u16) -> Self {
        PhaseSet(bits)
    }

    pub const fn bits(self) -> u16 {
        self.0
    }

    pub const fn single(p: PhaseId) -> Self {
        PhaseSet(1 << p.index())
    }

    pub const fn contains(self, p: PhaseId) -> bool {
        self.0 & (1 << p.index()) != 0
    }

    pub fn insert(&mut self, p: PhaseId) {
        self.0 |= 1 << p.index();
    }

    pub fn remove(&mut self, p: PhaseId) {
        self.0 &= !(1 << p.index());
    }

    pub fn set(&mut self, p: PhaseId, on: bool) {
        if on { self.insert(p) } else { self.remove(p) }
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn len(self) -> u32 {
        self.0.count_ones()
    }

    pub const fn union(self, other: PhaseSet) -> PhaseSet {
        PhaseSet(self.0 | other.0)
    }

    pub const fn intersection(self, other: PhaseSet) -> PhaseSet {
        PhaseSet(self.0 & other.0)
    }

    pub const fn difference(self, other: PhaseSet) -> PhaseSet {
        PhaseSet(self.0 & !other.0)
    }

    pub const fn intersects(self, other: PhaseSet) -> bool {
        self.0 & other.0 != 0
    }

    /// Phases in ascending order.
    pub fn iter(self) -> impl Iterator<Item = PhaseId> {
        (0..MAX_PHASES).filter(move |i| self.0 & (1 << i) != 0).map(PhaseId::from_index)
    }
}

impl FromIterator<PhaseId> for PhaseSet {
    fn from_iter<I: IntoIterator<Item = PhaseId>>(iter: I) -> Self {
        let mut s = PhaseSet::EMPTY;
        for p in iter {
            s.insert(p);
        }
        s
    }
}

impl fmt::Debug for PhaseSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter().map(|p| p.number())).finish()
    }
}

impl fmt::Display for PhaseSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            write!(f, "{p}")?;
            first = false;
        }
        Ok(())
    }
}

/// A detector channel, 1..=64 as wired in the cabinet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DetectorChannel(u8);

impl DetectorChannel {
    pub const fn new(number: u8) -> Option<Self> {
        if number >= 1 && number as usize <= MAX_DETECTORS { Some(DetectorChannel(number)) } else { None }
    }

    /// Channel from a zero-based index (a bit of the presence word); panics
    /// outside 0..64 (a programming error).
    pub const fn from_index(index: usize) -> Self {
        assert!(index < MAX_DETECTORS);
        DetectorChannel(index as u8 + 1)
    }

    pub const fn number(self) -> u8 {
        self.0
    }

    pub const fn index(self) -> usize {
        self.0 as usize - 1
    }
}

impl fmt::Display for DetectorChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An overlap, A..H; stored as 1..=8 (the Indiana event parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OverlapId(u8);

impl OverlapId {
    pub const fn new(number: u8) -> Option<Self> {
        if number >= 1 && number as usize <= MAX_OVERLAPS { Some(OverlapId(number)) } else { None }
    }

    /// Overlap from a zero-based index; panics outside 0..8 (a programming
    /// error).
    pub const fn from_index(index: usize) -> Self {
        assert!(index < MAX_OVERLAPS);
        OverlapId(index as u8 + 1)
    }

    /// From its letter, `'A'..='H'` (either case).
    pub fn from_letter(c: char) -> Option<Self> {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_uppercase() { Self::new(c as u8 - b'A' + 1) } else { None }
    }

    pub const fn number(self) -> u8 {
        self.0
    }

    pub const fn index(self) -> usize {
        self.0 as usize - 1
    }

    pub fn letter(self) -> char {
        (b'A' + self.0 - 1) as char
    }
}

impl fmt::Display for OverlapId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_sets_iterate_in_order() {
        let s: PhaseSet = [6, 2, 16].into_iter().filter_map(PhaseId::new).collect();
        assert_eq!(s.iter().map(PhaseId::number).collect::<Vec<_>>(), vec![2, 6, 16]);
        assert_eq!(s.to_string(), "2,6,16");
        assert!(PhaseId::new(0).is_none() && PhaseId::new(17).is_none());
    }

    #[test]
    fn overlap_letters_round_trip() {
        let a = OverlapId::from_letter('b').unwrap();
        assert_eq!(a.number(), 2);
        assert_eq!(a.letter(), 'B');
        assert!(OverlapId::from_letter('Z').is_none());
    }
}
