//! `[[plan]]`: cycle, offset, splits (ring totals and barrier alignment) and
//! coordinated phases.

use std::fmt::Write as _;

use crate::core::ids::MAX_PHASES;
use crate::core::spec::{MaxSelect, PlanMode, PlanSpec};
use crate::core::{PhaseId, PhaseSet, Span};

use super::super::key::KeyPath;
use super::super::raw::{RawMaxSelect, RawPlan, RawPlanMode};
use super::{Relation, SPLIT_TOLERANCE, Validator, list, root, secs};

impl Validator<'_> {
    pub(super) fn plans(&mut self, raw: &[RawPlan]) {
        let table = root().key("plan");
        if raw.is_empty() && !self.invalid.contains(&table) {
            self.error(&table, "no [[plan]] defined (a free plan is enough: mode = \"free\")");
        }
        for (i, p) in raw.iter().enumerate() {
            let at = table.index(i);
            let number = self.required(p.number, &at.key("number"));
            if number == Some(0) {
                self.error(&at.key("number"), "plan numbers are 1..=255");
            }
            let mode = self.required(p.mode, &at.key("mode"));
            let plan = mode.and_then(|mode| self.plan(p, mode, &at));
            let Some(number) = number.filter(|&n| n > 0) else { continue };
            if let Some(first) = self.declared_plans.get(&number) {
                let first = first.render(self.tree);
                self.error(&at.key("number"), format!("plan {number} is already defined by {first}"));
                continue;
            }
            self.declared_plans.insert(number, at.clone());
            if let Some(plan) = plan {
                let name = p.name.clone().unwrap_or_else(|| format!("plan {number}"));
                let Some(omit) = self.omits(&p.omit, plan.coordinated, &at.key("omit")) else { continue };
                self.plans.push(PlanSpec { number, name, omit, ..plan });
            }
        }
    }

    /// One plan's timing; `number` and `name` are filled in by the caller.
    fn plan(&mut self, p: &RawPlan, mode: RawPlanMode, at: &KeyPath) -> Option<PlanSpec> {
        let mode_word = mode;
        let max_select = match p.max {
            RawMaxSelect::Max1 => MaxSelect::Max1,
            RawMaxSelect::Max2 => MaxSelect::Max2,
        };
        let blank = PlanSpec {
            number: 0,
            name: String::new(),
            mode: PlanMode::Free,
            cycle: Span::ZERO,
            offset: Span::ZERO,
            splits: [Span::ZERO; MAX_PHASES],
            coordinated: PhaseSet::EMPTY,
            max_select,
            adaptive: false,
            omit: PhaseSet::EMPTY,
        };
        let mode = match mode {
            RawPlanMode::Free => {
                let ignored: Vec<&str> = [
                    ("cycle_s", p.cycle_s != 0.0),
                    ("offset_s", p.offset_s != 0.0),
                    ("splits_s", !p.splits_s.is_empty()),
                    ("coordinated", !p.coordinated.is_empty()),
                ]
                .into_iter()
                .filter_map(|(k, set)| set.then_some(k))
                .collect();
                if !ignored.is_empty() {
                    self.warn(at, format!("a free plan has no cycle: {} ignored", ignored.join(", ")));
                }
                return Some(blank);
            }
            RawPlanMode::Coordinated | RawPlanMode::Adaptive => PlanMode::Coordinated,
            RawPlanMode::Fixed => PlanMode::Fixed,
        };
        let adaptive = matches!(mode_word, RawPlanMode::Adaptive);
        let word = if mode == PlanMode::Fixed { "fixed" } else { "coordinated" };
        let cycle = self.seconds(p.cycle_s, &at.key("cycle_s"));
        let offset = self.seconds(p.offset_s, &at.key("offset_s"));
        if cycle == Some(Span::ZERO) {
            self.error(&at.key("cycle_s"), format!("a {word} plan needs cycle_s > 0"));
        }
        let cycle = cycle.filter(|c| !c.is_zero());
        if let (Some(cycle), Some(offset)) = (cycle, offset)
            && offset >= cycle
        {
            self.error(&at.key("offset_s"), format!("{} must be less than the cycle ({})", secs(offset), secs(cycle)));
        }
        let splits = self.splits(p, at, cycle);
        let coordinated = self.coordinated_phases(p, mode, at);
        Some(PlanSpec {
            mode,
            cycle: cycle?,
            offset: offset?,
            splits: splits?,
            coordinated: coordinated?,
            adaptive,
            ..blank
        })
    }

    /// `omit`: defined phases, none coordinated, and a phase left in every
    /// ring (a ring with all its phases omitted would never turn green).
    fn omits(&mut self, omit: &[u8], coordinated: PhaseSet, at: &KeyPath) -> Option<PhaseSet> {
        let before = self.errors.len();
        let set = self.phase_set(omit, at);
        for p in set.intersection(coordinated).iter() {
            self.error(at, format!("phase {p} is coordinated in this plan: it cannot be omitted"));
        }
        for (r, ring) in self.rings.clone().unwrap_or_default().iter().enumerate() {
            if !ring.sequence.is_empty() && ring.sequence.iter().all(|p| set.contains(*p)) {
                let phases = list(ring.sequence.iter().copied());
                self.error(at, format!("omits every phase of ring {} ({phases}): leave at least one", r + 1));
            }
        }
        (self.errors.len() == before).then_some(set)
    }

    fn splits(&mut self, p: &RawPlan, at: &KeyPath, cycle: Option<Span>) -> Option<[Span; MAX_PHASES]> {
        let splits_at = at.key("splits_s");
        if self.invalid.contains(&splits_at) {
            return None;
        }
        let mut splits: [Option<Span>; MAX_PHASES] = [None; MAX_PHASES];
        let mut keys: [Option<&str>; MAX_PHASES] = [None; MAX_PHASES];
        let mut complete = true;
        for (key, &s) in &p.splits_s {
            let key_at = splits_at.key(key);
            let id = match key.parse::<u8>() {
                Ok(n) => self.phase_ref(n, &key_at).filter(|id| match keys[id.index()].replace(key) {
                    // `2` and `02` are two TOML keys but one phase.
                    Some(first) => {
                        self.error(
                            &key_at,
                            format!("\"{first}\" and \"{key}\" both give phase {id}'s split: give it once"),
                        );
                        false
                    }
                    None => true,
                }),
                Err(_) => {
                    self.error(&key_at, format!("\"{key}\" is not a phase number: split keys are phase numbers"));
                    None
                }
            };
            let Some(id) = id else {
                complete = false;
                continue;
            };
            let Some(split) = self.seconds(s, &key_at) else {
                complete = false;
                continue;
            };
            splits[id.index()] = Some(split);
            self.check_split_fits_phase(id, split, &key_at);
        }
        let missing: Vec<PhaseId> = self.phases.keys().copied().filter(|p| splits[p.index()].is_none()).collect();
        if !missing.is_empty() {
            self.error(&splits_at, format!("no split for phase {} (every phase needs one)", list(missing)));
            complete = false;
        }
        if complete && let Some(cycle) = cycle {
            self.check_ring_totals(&splits, cycle, &splits_at);
        }
        let mut out = [Span::ZERO; MAX_PHASES];
        for (o, s) in out.iter_mut().zip(splits) {
            *o = s.unwrap_or_default();
        }
        complete.then_some(out)
    }

    fn check_split_fits_phase(&mut self, id: PhaseId, split: Span, at: &KeyPath) {
        let Some(t) = self.timing(id).copied() else { return };
        let vehicle = t.min_green + t.clearance();
        if split < vehicle {
            self.error(
                at,
                format!(
                    "{} is shorter than min green {} + yellow {} + red clearance {} = {}",
                    secs(split),
                    secs(t.min_green),
                    secs(t.yellow),
                    secs(t.red_clear),
                    secs(vehicle)
                ),
            );
        } else if t.has_ped() && split < t.ped_service() + t.clearance() {
            self.error(
                at,
                format!(
                    "{} is shorter than walk {} + ped clearance {} + yellow {} + red clearance {} = {}",
                    secs(split),
                    secs(t.walk),
                    secs(t.ped_clear),
                    secs(t.yellow),
                    secs(t.red_clear),
                    secs(t.ped_service() + t.clearance())
                ),
            );
        } else if t.has_ped() && split < t.service(true) + t.clearance() {
            self.error(
                at,
                format!(
                    "{} is shorter than leading walk {} + min green {} + yellow {} + red clearance {} = {}",
                    secs(split),
                    secs(t.leading_walk),
                    secs(t.min_green),
                    secs(t.yellow),
                    secs(t.red_clear),
                    secs(t.service(true) + t.clearance())
                ),
            );
        }
    }

    /// Barrier alignment and ring totals. A ring with no phase in a barrier
    /// group waits through it, so it counts that group's time as its own.
    fn check_ring_totals(&mut self, splits: &[Option<Span>; MAX_PHASES], cycle: Span, at: &KeyPath) {
        let (Some(rings), Some(groups)) = (self.rings.clone(), self.groups.clone()) else { return };
        let total = |phases: &mut dyn Iterator<Item = PhaseId>| {
            phases.filter_map(|p| splits[p.index()]).fold(Span::ZERO, |a, b| a + b)
        };
        let mut group_time: Vec<Option<Span>> = vec![None; groups.len()];
        let mut aligned = true;
        for (g, group) in groups.iter().enumerate() {
            let mut first: Option<(usize, Span)> = None;
            for (r, ring) in rings.iter().enumerate() {
                if !ring.sequence.iter().any(|p| group.contains(*p)) {
                    continue;
                }
                let t = total(&mut ring.sequence.iter().copied().filter(|p| group.contains(*p)));
                match first {
                    None => first = Some((r, t)),
                    Some((r0, t0)) if t0.as_millis().abs_diff(t.as_millis()) > SPLIT_TOLERANCE.as_millis() => {
                        self.error(
                            at,
                            format!(
                                "barrier misaligned: ring {} gives {} to group {}, ring {} gives {}",
                                r0 + 1,
                                secs(t0),
                                g + 1,
                                r + 1,
                                secs(t)
                            ),
                        );
                        aligned = false;
                    }
                    Some(_) => {}
                }
            }
            group_time[g] = first.map(|(_, t)| t);
        }
        if !aligned {
            return;
        }
        for (r, ring) in rings.iter().enumerate() {
            let own = total(&mut ring.sequence.iter().copied());
            let mut waited = Span::ZERO;
            let mut idle_groups = Vec::new();
            for (g, group) in groups.iter().enumerate() {
                if !ring.sequence.iter().any(|p| group.contains(*p)) {
                    waited += group_time[g].unwrap_or_default();
                    idle_groups.push((g + 1).to_string());
                }
            }
            let sum = own + waited;
            if sum.as_millis().abs_diff(cycle.as_millis()) > SPLIT_TOLERANCE.as_millis() {
                let mut reason = format!("ring {} splits sum to {}", r + 1, secs(own));
                if !idle_groups.is_empty() {
                    let _ = write!(
                        reason,
                        " plus {} for barrier group {} it has no phase in, {}",
                        secs(waited),
                        idle_groups.join(", "),
                        secs(sum)
                    );
                }
                let _ = write!(reason, ", but the cycle is {}", secs(cycle));
                self.error(at, reason);
            }
        }
    }

    fn coordinated_phases(&mut self, p: &RawPlan, mode: PlanMode, at: &KeyPath) -> Option<PhaseSet> {
        let coord_at = at.key("coordinated");
        if self.invalid.contains(&coord_at) {
            return None;
        }
        let set = self.phase_set(&p.coordinated, &coord_at);
        if mode == PlanMode::Coordinated && p.coordinated.is_empty() {
            self.error(
                &coord_at,
                "a coordinated plan needs its coordinated phases (one per ring in one barrier group, e.g. [2, 6])",
            );
            return None;
        }
        let phases: Vec<PhaseId> = set.iter().collect();
        let mut ok = true;
        for (k, &b) in phases.iter().enumerate() {
            for &a in &phases[..k] {
                match self.relation(a, b) {
                    Some(Relation::SameRing(r)) => {
                        self.error(
                            &coord_at,
                            format!(
                                "phases {a} and {b} are both in ring {}: at most one coordinated phase per ring",
                                r + 1
                            ),
                        );
                        ok = false;
                    }
                    Some(Relation::CrossBarrier(ga, gb)) => {
                        self.error(
                            &coord_at,
                            format!("phases {a} and {b} are in barrier groups {} and {}: coordinated phases share one barrier group", ga + 1, gb + 1),
                        );
                        ok = false;
                    }
                    _ => {}
                }
            }
        }
        // Each ring that runs in the coordinated group needs its own
        // coordinated phase, or it has no yield point to hold to.
        let group = phases.first().and_then(|p| self.phases.get(p)?.group);
        if ok
            && mode == PlanMode::Coordinated
            && let (Some(g), Some(rings), Some(groups)) = (group, self.rings.clone(), self.groups.clone())
        {
            for (r, ring) in rings.iter().enumerate() {
                let in_group: Vec<PhaseId> = ring.sequence.iter().copied().filter(|p| groups[g].contains(*p)).collect();
                if !in_group.is_empty() && !in_group.iter().any(|p| set.contains(*p)) {
                    self.error(
                        &coord_at,
                        format!(
                            "ring {} has phases {} in the coordinated barrier group {} but none is coordinated",
                            r + 1,
                            list(in_group),
                            g + 1
                        ),
                    );
                }
            }
        }
        Some(set)
    }
}
