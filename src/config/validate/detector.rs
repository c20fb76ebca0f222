//! `[[detector]]` and `[[overlap]]`.

use crate::core::ids::{MAX_DETECTORS, MAX_OVERLAPS};
use crate::core::spec::{DetectorDiagnostics, DetectorKind, DetectorPlacement, DetectorSpec, OverlapKind, OverlapSpec};
use crate::core::{DetectorChannel, OverlapId, PhaseId, PhaseSet, Span};

use super::super::key::KeyPath;
use super::super::raw::{RawDetector, RawDetectorKind, RawDetectorPlacement, RawOverlap, RawOverlapKind};
use super::{Relation, Validator, root, secs};

/// MUTCD 4E.08: an extended push-button press lasts at least 1 s, so an
/// ordinary press never asks for it.
const SHORTEST_LONG_PRESS: Span = Span::from_millis(1000);

impl Validator<'_> {
    pub(super) fn detectors(&mut self, raw: &[RawDetector]) {
        let table = root().key("detector");
        for (i, d) in raw.iter().enumerate() {
            let at = table.index(i);
            let kind = match d.kind {
                RawDetectorKind::Vehicle => DetectorKind::Vehicle,
                RawDetectorKind::Pedestrian => DetectorKind::Pedestrian,
            };
            let placement = match (d.placement, kind) {
                (RawDetectorPlacement::StopBar, _) => DetectorPlacement::StopBar,
                (RawDetectorPlacement::Advance, DetectorKind::Vehicle) => DetectorPlacement::Advance,
                (RawDetectorPlacement::Advance, DetectorKind::Pedestrian) => {
                    self.error(&at.key("placement"), "a push button has no advance placement: remove placement");
                    DetectorPlacement::StopBar
                }
            };
            let calls_at = at.key("calls");
            let calls = self.required(d.calls.as_ref(), &calls_at).map(|c| self.phase_set(c, &calls_at));
            let extends_at = at.key("extends");
            let extends = match (&d.extends, kind) {
                (Some(list), _) => self.phase_set(list, &extends_at),
                // A vehicle detector usually extends the phases it calls; a
                // push button never extends green.
                (None, DetectorKind::Vehicle) => calls.unwrap_or_default(),
                (None, DetectorKind::Pedestrian) => PhaseSet::EMPTY,
            };
            if let Some(calls) = calls {
                match kind {
                    DetectorKind::Pedestrian => {
                        let no_walk: Vec<PhaseId> =
                            calls.iter().filter(|p| self.timing(*p).is_some_and(|t| !t.has_ped())).collect();
                        for p in no_walk {
                            self.error(&calls_at, format!("phase {p} has no pedestrian movement (walk_s is 0), so a push button cannot call it"));
                        }
                        if !extends.is_empty() {
                            self.error(&extends_at, "push buttons do not extend green: remove extends");
                        }
                    }
                    DetectorKind::Vehicle => {
                        // On the lists as written: a list of only undefined
                        // phases is reported as such already.
                        let none_written =
                            d.calls.as_ref().is_some_and(Vec::is_empty) && d.extends.as_ref().is_none_or(Vec::is_empty);
                        if none_written {
                            self.warn(&at, "calls and extends no phase: the detector does nothing");
                        }
                    }
                }
            }
            let ped_extension = self.ped_extension(d, kind, calls, &at);
            let travel_time = self.travel_time(d, placement, calls, &at);
            let delay = self.seconds(d.delay_s, &at.key("delay_s"));
            let extend = self.seconds(d.extend_s, &at.key("extend_s"));
            // Zero turns a diagnostic off (NTCIP uses 0 the same way).
            let no_activity = self.seconds(d.no_activity_s, &at.key("no_activity_s"));
            let max_presence = self.seconds(d.max_presence_s, &at.key("max_presence_s"));
            let diagnostics = DetectorDiagnostics {
                no_activity: no_activity.filter(|s| !s.is_zero()),
                max_presence: max_presence.filter(|s| !s.is_zero()),
                erratic_per_minute: Some(d.erratic_per_minute).filter(|&n| n > 0),
            };

            let channel_at = at.key("channel");
            let Some(n) = self.required(d.channel, &channel_at) else { continue };
            let Some(channel) = DetectorChannel::new(n) else {
                self.error(&channel_at, format!("{n} is outside the cabinet's channels 1..={MAX_DETECTORS}"));
                continue;
            };
            if let Some((first, _)) = self.detectors.get(&channel) {
                let first = first.render(self.tree);
                self.error(&channel_at, format!("channel {channel} is already used by {first}"));
                continue;
            }
            // Keys that were missing or invalid are reported already, so the
            // spec is never built; the detector is still recorded so that
            // lanes referring to it do not report it undefined as well.
            let spec = DetectorSpec {
                channel,
                kind,
                placement,
                travel_time,
                calls: calls.unwrap_or_default(),
                extends,
                delay: delay.unwrap_or_default(),
                extend: extend.unwrap_or_default(),
                ped_extension,
                diagnostics,
            };
            self.detectors.insert(channel, (at, spec));
        }
    }

    /// A push button that asks for extended pedestrian clearance: by a
    /// long press (`long_press_s`) or, as the crossing's extension input,
    /// by any press (`extension_input`). Every phase it calls needs an
    /// `extended_ped_clear_s` to grant.
    fn ped_extension(
        &mut self,
        d: &RawDetector,
        kind: DetectorKind,
        calls: Option<PhaseSet>,
        at: &KeyPath,
    ) -> Option<Span> {
        let key = match (d.long_press_s, d.extension_input) {
            (None, false) => return None,
            (Some(_), true) => {
                self.error(
                    &at.key("extension_input"),
                    "give long_press_s (an accessible button's long press) or extension_input (a second input), not both",
                );
                return None;
            }
            (Some(_), false) => at.key("long_press_s"),
            (None, true) => at.key("extension_input"),
        };
        if kind != DetectorKind::Pedestrian {
            self.error(&key, "only a push button (kind = \"pedestrian\") asks for extended pedestrian clearance");
            return None;
        }
        let hold = match d.long_press_s {
            Some(s) => {
                let hold = self.seconds(s, &key)?;
                if hold < SHORTEST_LONG_PRESS {
                    self.error(
                        &key,
                        format!(
                            "{} is shorter than 1 s: ordinary presses would ask for it (MUTCD 4E.08: an extended press lasts 1 s or more)",
                            secs(hold)
                        ),
                    );
                    return None;
                }
                hold
            }
            None => Span::ZERO,
        };
        let without: Vec<PhaseId> = calls
            .unwrap_or_default()
            .iter()
            .filter(|p| self.timing(*p).is_some_and(|t| t.has_ped() && t.extended_ped_clear.is_zero()))
            .collect();
        for p in without {
            self.error(&key, format!("phase {p} has no extended_ped_clear_s to grant"));
        }
        Some(hold)
    }

    /// An advance loop's travel time to the stop bar, from `travel_time_s`
    /// or from `distance_m` at the approach speed of the first phase it
    /// calls. Without either, zero (the car counted at the loop), warned.
    fn travel_time(
        &mut self,
        d: &RawDetector,
        placement: DetectorPlacement,
        calls: Option<PhaseSet>,
        at: &KeyPath,
    ) -> Span {
        let (distance_at, travel_at) = (at.key("distance_m"), at.key("travel_time_s"));
        match (placement, d.distance_m, d.travel_time_s) {
            (DetectorPlacement::StopBar, None, None) => Span::ZERO,
            (DetectorPlacement::StopBar, distance, _) => {
                let key = if distance.is_some() { distance_at } else { travel_at };
                self.error(
                    &key,
                    "only an advance loop (placement = \"advance\") is upstream of the stop bar: remove it",
                );
                Span::ZERO
            }
            (DetectorPlacement::Advance, Some(_), Some(_)) => {
                self.error(&travel_at, "give distance_m or travel_time_s, not both");
                Span::ZERO
            }
            (DetectorPlacement::Advance, None, Some(s)) => self.seconds(s, &travel_at).unwrap_or_default(),
            (DetectorPlacement::Advance, Some(m), None) => {
                if !(m.is_finite() && m > 0.0) {
                    self.error(&distance_at, format!("{m} m: must be greater than 0"));
                    return Span::ZERO;
                }
                // A missing or invalid speed is reported on its phase.
                let speed = calls.and_then(|c| c.iter().next()).and_then(|p| self.phases.get(&p)?.speed);
                speed.and_then(|v| Span::try_from_secs_f64(m / v.m_per_s())).unwrap_or_default()
            }
            (DetectorPlacement::Advance, None, None) => {
                self.warn(
                    at,
                    "an advance loop without distance_m or travel_time_s: arrivals on green count each car as it \
                     crosses the loop, not as it reaches the stop bar",
                );
                Span::ZERO
            }
        }
    }

    pub(super) fn overlaps(&mut self, raw: &[RawOverlap]) {
        let table = root().key("overlap");
        for (i, o) in raw.iter().enumerate() {
            let at = table.index(i);
            let parents_at = at.key("parents");
            let parents = self.required(o.parents.as_ref(), &parents_at).map(|p| self.phase_set(p, &parents_at));
            if o.parents.as_ref().is_some_and(|p| p.is_empty()) {
                self.error(&parents_at, "an overlap needs at least one parent phase");
            }
            let conflicts_at = at.key("conflicts");
            let conflicts = match (&o.conflicts, parents) {
                (Some(list), Some(parents)) => {
                    let conflicts = self.phase_set(list, &conflicts_at);
                    self.check_overlap_conflicts(parents, conflicts, &conflicts_at);
                    Some(conflicts)
                }
                (Some(list), None) => Some(self.phase_set(list, &conflicts_at)),
                // Default: what conflicts with every parent. The overlap is
                // green whenever a parent is, so those can never be green
                // with it; anything concurrent with some parent must not be
                // listed.
                (None, Some(parents)) => Some(self.common_conflicts(parents)),
                (None, None) => None,
            };

            let kind = self.overlap_kind(o, parents, conflicts, &at);

            let id_at = at.key("id");
            let Some(text) = self.required(o.id.as_ref(), &id_at) else { continue };
            let mut chars = text.chars();
            let id = match (chars.next(), chars.next()) {
                (Some(c), None) => OverlapId::from_letter(c),
                _ => None,
            };
            let Some(id) = id else {
                let last = OverlapId::new(MAX_OVERLAPS as u8).map_or('H', |o| o.letter());
                self.error(&id_at, format!("\"{text}\" is not an overlap letter A..={last}"));
                continue;
            };
            if let Some((first, _)) = self.overlaps.get(&id) {
                let first = first.render(self.tree);
                self.error(&id_at, format!("overlap {id} is already defined by {first}"));
                continue;
            }
            if let (Some(parents), Some(conflicts), Some(kind)) = (parents, conflicts, kind) {
                if conflicts.is_empty() && o.conflicts.is_none() {
                    self.warn(
                        &at,
                        format!(
                            "no phase conflicts with every parent ({parents}): overlap {id} conflicts with nothing"
                        ),
                    );
                }
                self.overlaps.insert(id, (at, OverlapSpec { id, parents, conflicts, kind }));
            }
        }
    }

    /// `kind` and `permissive_phase`. A flashing yellow arrow has one
    /// parent, the protected left; its permissive phase is the opposing
    /// through, which the left yields to: in the parent's ring and barrier
    /// group (so the two are never green together) and among the protected
    /// arrow's conflicts. Sharing the parent's ring and group, it times
    /// with exactly the parent's concurrent phases, which the conflicts may
    /// not list (`check_overlap_conflicts`): the flashing arrow, shown
    /// whenever it is green, conflicts with none of them.
    fn overlap_kind(
        &mut self,
        o: &RawOverlap,
        parents: Option<PhaseSet>,
        conflicts: Option<PhaseSet>,
        at: &KeyPath,
    ) -> Option<OverlapKind> {
        let perm_at = at.key("permissive_phase");
        if o.kind == RawOverlapKind::Normal {
            if o.permissive_phase.is_some() {
                self.error(&perm_at, "only a flashing yellow arrow overlap (kind = \"fya\") has a permissive phase");
            }
            return Some(OverlapKind::Normal);
        }
        let permissive = self.required(o.permissive_phase, &perm_at).and_then(|n| self.phase_ref(n, &perm_at));
        let parent = match parents.map(|p| (p.len(), p.iter().next())) {
            Some((1, parent)) => parent,
            Some(_) => {
                let reason = "a flashing yellow arrow overlap has exactly one parent: its protected left phase";
                self.error(&at.key("parents"), reason);
                None
            }
            None => None,
        };
        let (permissive, parent, conflicts) = (permissive?, parent?, conflicts?);
        let same_group =
            self.phases.get(&parent).and_then(|d| d.group) == self.phases.get(&permissive).and_then(|d| d.group);
        if permissive == parent
            || !same_group
            || !matches!(self.relation(parent, permissive), Some(Relation::SameRing(_)))
        {
            self.error(
                &perm_at,
                format!(
                    "phase {permissive} must be the opposing through of protected left {parent}: a phase of the same ring and barrier group"
                ),
            );
            return None;
        }
        if !conflicts.contains(permissive) {
            self.error(
                &at.key("conflicts"),
                format!("the protected arrow conflicts with its opposing through: list phase {permissive}"),
            );
        }
        Some(OverlapKind::FlashingYellowArrow { permissive })
    }

    fn common_conflicts(&self, parents: PhaseSet) -> PhaseSet {
        let all: PhaseSet = self.phases.keys().copied().collect();
        all.difference(parents)
            .iter()
            .filter(|&c| {
                parents
                    .iter()
                    .all(|p| matches!(self.relation(p, c), Some(Relation::SameRing(_) | Relation::CrossBarrier(..))))
            })
            .collect()
    }

    fn check_overlap_conflicts(&mut self, parents: PhaseSet, conflicts: PhaseSet, at: &KeyPath) {
        for c in conflicts.iter() {
            if parents.contains(c) {
                self.error(at, format!("phase {c} is a parent of the overlap, so it cannot conflict with it"));
                continue;
            }
            for p in parents.iter() {
                if let Some(Relation::Concurrent(rp, rc)) = self.relation(p, c) {
                    self.error(
                        at,
                        format!(
                            "phase {c} times together with parent {p} (same barrier group, rings {} and {}), so the overlap cannot conflict with it",
                            rc + 1,
                            rp + 1
                        ),
                    );
                }
            }
        }
    }
}
