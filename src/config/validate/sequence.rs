//! `[sequence]` and `[startup]`: rings, barrier groups, declared conflicts,
//! flash indications, and the phases the controller starts in.

use crate::core::ids::{MAX_GROUPS, MAX_RINGS};
use crate::core::spec::{FlashIndication, RingSpec, StartupSpec};
use crate::core::{PhaseId, PhaseSet, Span};

use super::super::key::KeyPath;
use super::super::raw::{RawSequence, RawStartup};
use super::{Relation, Validator, root, secs};

/// The start-up all-red, after flash and before the first green: shorter is
/// an error (controllers ship 2-6 s; every shipped file uses 4 s).
const STARTUP_ALL_RED_MIN: Span = Span::from_millis(2000);

impl Validator<'_> {
    pub(super) fn sequence(&mut self, raw: Option<&RawSequence>) {
        let at = root().key("sequence");
        let Some(seq) = self.required_table(raw, &at, "sequence") else { return };
        let rings_at = at.key("rings");
        if let Some(rings) = self.required(seq.rings.as_ref(), &rings_at) {
            self.rings = Some(self.ring_list(rings, &rings_at));
        }
        let barriers_at = at.key("barriers");
        if let Some(barriers) = self.required(seq.barriers.as_ref(), &barriers_at) {
            self.groups = Some(self.barrier_list(barriers, &barriers_at));
        }

        // Every phase in exactly one ring and one barrier group.
        let unplaced: Vec<(KeyPath, PhaseId, bool, bool)> =
            self.phases.iter().map(|(id, d)| (d.at.clone(), *id, d.ring.is_none(), d.group.is_none())).collect();
        for (phase_at, id, no_ring, no_group) in unplaced {
            if no_ring && self.rings.is_some() {
                self.error(&phase_at, format!("phase {id} is in no ring of sequence.rings"));
            }
            if no_group && self.groups.is_some() {
                self.error(&phase_at, format!("phase {id} is in no barrier group of sequence.barriers"));
            }
        }

        // Each ring crosses the barriers in order: all its phases of group 1,
        // then group 2, ... Returning to an earlier group would cross a
        // barrier without the other rings.
        let orders: Vec<(usize, Vec<(PhaseId, usize)>)> = self
            .rings
            .iter()
            .flatten()
            .enumerate()
            .map(|(r, ring)| {
                let groups = ring.sequence.iter().filter_map(|p| Some((*p, self.phases.get(p)?.group?))).collect();
                (r, groups)
            })
            .collect();
        for (r, groups) in orders {
            if let Some(w) = groups.windows(2).find(|w| w[1].1 < w[0].1) {
                self.error(
                    &rings_at.index(r),
                    format!(
                        "ring {} runs phase {} (barrier group {}) after phase {} (group {}): a ring must run its phases group by group in the order of sequence.barriers",
                        r + 1,
                        w[1].0,
                        w[1].1 + 1,
                        w[0].0,
                        w[0].1 + 1
                    ),
                );
            }
        }

        // Declared conflicts are assertions about the structure: a pair the
        // ring-barrier would time together is a contradiction, never a
        // request to the core to keep them apart at run time.
        for (c, [a, b]) in seq.conflicts.iter().enumerate() {
            let pair_at = at.key("conflicts").index(c);
            let (Some(a), Some(b)) = (self.phase_ref(*a, &pair_at), self.phase_ref(*b, &pair_at)) else { continue };
            if a == b {
                self.error(&pair_at, format!("phase {a} cannot conflict with itself"));
            } else if let Some(Relation::Concurrent(ra, rb)) = self.relation(a, b) {
                self.error(
                    &pair_at,
                    format!(
                        "phases {a} and {b} conflict but are timed together (same barrier group, rings {} and {})",
                        ra + 1,
                        rb + 1
                    ),
                );
            } else {
                self.declared_conflicts.push((a, b));
            }
        }
        self.conditional_service_places();
    }

    /// A phase with `conditional_service` is re-served after a later
    /// phase of its ring ends before the barrier, while another ring's
    /// phase of the group still times: both must exist.
    fn conditional_service_places(&mut self) {
        let (Some(rings), Some(groups)) = (&self.rings, &self.groups) else { return };
        let mut misplaced = Vec::new();
        for (id, d) in &self.phases {
            let (Some(r), Some(g), true) = (d.ring, d.group, d.conditional_service) else { continue };
            let group = groups[g];
            let sequence = &rings[r].sequence;
            let later = sequence.iter().skip_while(|p| *p != id).skip(1).any(|p| group.contains(*p));
            let concurrent =
                rings.iter().enumerate().any(|(o, ring)| o != r && ring.sequence.iter().any(|p| group.contains(*p)));
            let reason = if !later {
                format!(
                    "phase {id} has no later phase in ring {} before the barrier (barrier group {}): no phase ends after it for it to be served again",
                    r + 1,
                    g + 1
                )
            } else if !concurrent {
                format!(
                    "no other ring has a phase in barrier group {}: no concurrent green keeps the group open for phase {id} to be served again",
                    g + 1
                )
            } else {
                continue;
            };
            misplaced.push((d.at.key("conditional_service"), reason));
        }
        for (at, reason) in misplaced {
            self.error(&at, reason);
        }
    }

    fn ring_list(&mut self, rings: &[Vec<u8>], at: &KeyPath) -> Vec<RingSpec> {
        if rings.is_empty() {
            self.error(at, "needs at least one ring");
        }
        if rings.len() > MAX_RINGS {
            self.error(at, format!("{} rings: a controller has at most {MAX_RINGS}", rings.len()));
        }
        let mut specs = Vec::new();
        for (r, ring) in rings.iter().enumerate() {
            let ring_at = at.index(r);
            if ring.is_empty() {
                self.error(&ring_at, format!("ring {} is empty", r + 1));
            }
            let mut sequence = Vec::new();
            for &n in ring {
                let Some(id) = self.phase_ref(n, &ring_at) else { continue };
                let placed = self.phases.get(&id).and_then(|d| d.ring);
                match placed {
                    Some(prev) if prev == r => {
                        self.error(&ring_at, format!("phase {id} is listed twice in ring {}", r + 1))
                    }
                    Some(prev) => self.error(
                        &ring_at,
                        format!(
                            "phase {id} is in ring {} and ring {}: a phase belongs to exactly one ring",
                            prev + 1,
                            r + 1
                        ),
                    ),
                    None => {
                        if let Some(d) = self.phases.get_mut(&id) {
                            d.ring = Some(r);
                        }
                        sequence.push(id);
                    }
                }
            }
            specs.push(RingSpec { sequence });
        }
        specs
    }

    fn barrier_list(&mut self, barriers: &[Vec<u8>], at: &KeyPath) -> Vec<PhaseSet> {
        if barriers.is_empty() {
            self.error(at, "needs at least one barrier group");
        }
        if barriers.len() > MAX_GROUPS {
            self.error(at, format!("{} barrier groups: a controller has at most {MAX_GROUPS}", barriers.len()));
        }
        let mut groups = Vec::new();
        for (g, group) in barriers.iter().enumerate() {
            let group_at = at.index(g);
            if group.is_empty() {
                self.error(&group_at, format!("barrier group {} is empty", g + 1));
            }
            let mut set = PhaseSet::EMPTY;
            for &n in group {
                let Some(id) = self.phase_ref(n, &group_at) else { continue };
                let placed = self.phases.get(&id).and_then(|d| d.group);
                match placed {
                    Some(prev) if prev == g => {
                        self.error(&group_at, format!("phase {id} is listed twice in barrier group {}", g + 1));
                    }
                    Some(prev) => self.error(
                        &group_at,
                        format!(
                            "phase {id} is in barrier groups {} and {}: a phase belongs to exactly one",
                            prev + 1,
                            g + 1
                        ),
                    ),
                    None => {
                        if let Some(d) = self.phases.get_mut(&id) {
                            d.group = Some(g);
                        }
                        set.insert(id);
                    }
                }
            }
            groups.push(set);
        }
        groups
    }

    /// In flash, crossing streets must not both flash yellow: each driver
    /// would think the other stops (MUTCD 4D.30: one street flashes red).
    pub(super) fn flash_indications(&mut self) {
        // Barrier groups alone decide "crossing": a left and the next group's
        // through can share a ring and still cross.
        let yellow: Vec<(PhaseId, Option<usize>, KeyPath)> = self
            .phases
            .iter()
            .filter(|(_, d)| d.flash == FlashIndication::Yellow)
            .map(|(id, d)| (*id, d.group, d.at.key("flash")))
            .collect();
        for (k, (b, gb, b_at)) in yellow.iter().enumerate() {
            for (a, ga, _) in &yellow[..k] {
                if let (Some(ga), Some(gb)) = (*ga, *gb)
                    && ga != gb
                {
                    self.error(
                        b_at,
                        format!(
                            "phases {a} and {b} would both flash yellow but cross each other (barrier groups {} and {}): flash one of them red",
                            ga + 1,
                            gb + 1
                        ),
                    );
                }
            }
        }
    }

    pub(super) fn startup(&mut self, raw: Option<&RawStartup>) -> Option<StartupSpec> {
        let at = root().key("startup");
        let raw = self.required_table(raw, &at, "startup")?;
        let flash = self.required_seconds(raw.flash_s, &at.key("flash_s"));
        if flash.is_some_and(Span::is_zero) {
            self.warn(
                &at.key("flash_s"),
                "0 s: no start-up flash, so drivers get no warning before the signal takes control",
            );
        }
        let all_red = self.required_seconds(raw.all_red_s, &at.key("all_red_s"));
        if let Some(all_red) = all_red.filter(|&r| r < STARTUP_ALL_RED_MIN) {
            self.error(
                &at.key("all_red_s"),
                format!(
                    "{} is below {}: after flash every approach must see red before a green (NEMA TS2 start-up all-red)",
                    secs(all_red),
                    secs(STARTUP_ALL_RED_MIN)
                ),
            );
        }
        let phases_at = at.key("phases");
        let numbers = self.required(raw.phases.as_ref(), &phases_at)?;
        let phases = self.phase_set(numbers, &phases_at);
        if numbers.is_empty() {
            self.error(&phases_at, "name the phases to serve first (usually the main-street throughs, e.g. [2, 6])");
        }
        self.check_together(phases, &phases_at, "start");
        Some(StartupSpec { flash: flash?, all_red: all_red?, phases })
    }

    /// Phases that must be green at the same time (start-up, preemption
    /// dwell and exit) must be able to: different rings, one barrier group.
    pub(super) fn check_together(&mut self, phases: PhaseSet, at: &KeyPath, what: &str) {
        let list: Vec<PhaseId> = phases.iter().collect();
        for (k, &b) in list.iter().enumerate() {
            for &a in &list[..k] {
                match self.relation(a, b) {
                    Some(Relation::SameRing(r)) => {
                        self.error(
                            at,
                            format!("phases {a} and {b} cannot {what} together: both are in ring {}", r + 1),
                        );
                    }
                    Some(Relation::CrossBarrier(ga, gb)) => self.error(
                        at,
                        format!("phases {a} and {b} cannot {what} together: barrier groups {} and {}", ga + 1, gb + 1),
                    ),
                    _ => {}
                }
            }
        }
    }
}
