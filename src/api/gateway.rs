//! The Control service in-process, for front ends that speak another
//! protocol (the GB/T 20999 adapter, `crate::daemon::gbt20999`, and the
//! NTCIP 1202 agent, `crate::ntcip`): their sets
//! run the very handlers a gRPC call runs, so they are parsed, checked by
//! the controller, staged to the safe point, saved, refused and audited
//! the same way. The caller's [`Identity`] is the adapter's to set (its
//! role and scope come from its own configuration), in place of what the
//! gRPC gate derives from a bearer token.

use std::sync::Arc;

use tonic::{Request, Status};

use super::auth::Identity;
use super::control::ControlService;
use super::docs::Current;
use super::{Shared, audit, pb, versions};
use crate::core::Event;
use crate::core::OperatingMode;
use crate::core::spec::{MaxSelect, PlanSpec};
use crate::engine::board::SnapshotBoard;
use crate::telemetry::journal::{Read, RecordKind};

/// The Control service without a listener; see the module docs.
#[derive(Clone, Debug)]
pub struct Gateway {
    control: Arc<ControlService>,
    shared: Arc<Shared>,
    /// Keeps `Shared::stopping` open: the gateway has no streams to end.
    _stop: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gateway {
    pub(super) fn new(shared: Arc<Shared>, stop: tokio::sync::watch::Sender<bool>) -> Gateway {
        let control = ControlService::new(shared.core.clone(), shared.engine.clone(), shared.emergency.clone());
        Gateway { control: Arc::new(control), shared, _stop: Arc::new(stop) }
    }

    /// SetMode for `caller`; the controller's answer in words.
    ///
    /// # Errors
    /// As the gRPC call: a refusal with its status.
    pub async fn set_mode(&self, caller: &Identity, intersection_id: &str, mode: pb::Mode) -> Result<String, Status> {
        let req = pb::SetModeRequest { intersection_id: intersection_id.to_owned(), mode: mode.into() };
        let reply = pb::control_server::Control::set_mode(&*self.control, with(caller, req)).await?;
        Ok(reply.into_inner().detail)
    }

    /// ApplyTimingPlan with one plan for `caller`: replaces the plan of
    /// that number, staged to the next barrier; `activate` also runs it.
    ///
    /// # Errors
    /// As the gRPC call: a refusal with its status (INVALID_ARGUMENT with
    /// every field the controller file validator found wrong).
    pub async fn apply_plan(
        &self,
        caller: &Identity,
        intersection_id: &str,
        plan: pb::TimingPlan,
        activate: bool,
    ) -> Result<String, Status> {
        use pb::apply_timing_plan_request::Source;
        let req = pb::ApplyTimingPlanRequest {
            intersection_id: intersection_id.to_owned(),
            source: Some(Source::Plan(plan)),
            activate,
            expected_version: 0,
        };
        let reply = pb::control_server::Control::apply_timing_plan(&*self.control, with(caller, req)).await?;
        let r = reply.into_inner();
        Ok(format!(
            "plan {} staged as config version {}: in force at the next barrier",
            r.plan_number, r.config_version
        ))
    }

    /// ApplyTimingPlan with a whole controller file for `caller`: validated
    /// as `greenwave check` does, staged to the next barrier, saved; only
    /// over config version `expected_version` (the file was edited from it).
    ///
    /// # Errors
    /// As the gRPC call (FAILED_PRECONDITION when another change came first).
    pub async fn apply_controller(
        &self,
        caller: &Identity,
        intersection_id: &str,
        text: String,
        expected_version: u64,
    ) -> Result<String, Status> {
        use pb::apply_timing_plan_request::Source;
        let req = pb::ApplyTimingPlanRequest {
            intersection_id: intersection_id.to_owned(),
            source: Some(Source::ControllerToml(text)),
            activate: false,
            expected_version,
        };
        let reply = pb::control_server::Control::apply_timing_plan(&*self.control, with(caller, req)).await?;
        Ok(format!(
            "controller file staged as config version {}: in force at the next barrier",
            reply.into_inner().config_version
        ))
    }

    /// Selects plan `number` of the running definition for `caller`
    /// (audited under `method`): saved as what operators set, as an
    /// operator's selection is, so a restart runs it again while the
    /// schedule still asks for the plan it asked for then
    /// (`crate::engine::Engine::restore_operator`); in force from the next
    /// barrier.
    ///
    /// # Errors
    /// The controller refused it (no such plan), or the role or scope does
    /// not allow it.
    pub async fn select_plan(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
        number: u8,
    ) -> Result<String, Status> {
        self.control.select_plan_as(caller, method, intersection_id, number).await.map(|(detail, _)| detail)
    }

    /// Sets the operating mode for `caller`, audited under `method` (a
    /// front end's own name for the command): saved, in force at the next
    /// barrier, as SetMode.
    ///
    /// # Errors
    /// The caller may not, the intersection is unknown, or the controller refused.
    pub async fn set_mode_as(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
        mode: OperatingMode,
    ) -> Result<String, Status> {
        let words = versions::mode_word(mode).to_owned();
        self.control.set_mode_as(caller, method, intersection_id, words, Ok(mode)).await.map(|(detail, _)| detail)
    }

    /// Hands the intersection back to its time-of-day schedule for
    /// `caller` (audited under `method`): what operators set is cleared.
    ///
    /// # Errors
    /// As [`Self::set_mode_as`].
    pub async fn follow_schedule(
        &self,
        caller: &Identity,
        method: &'static str,
        intersection_id: &str,
    ) -> Result<String, Status> {
        self.control.follow_schedule_as(caller, method, intersection_id).await.map(|(detail, _)| detail)
    }

    /// Intersection `i`'s controller file in force with `edit` made to it:
    /// the text [`Self::apply_controller`] takes, and the config version it
    /// was edited from. A front end's sets of single parameters (a day
    /// plan, a schedule row, a phase time) become whole files this way, so
    /// the file validator judges them together with everything else.
    ///
    /// # Errors
    /// What `edit` refused, or the file in force does not parse.
    pub fn edited(
        &self,
        i: usize,
        edit: impl FnOnce(&mut toml::Table) -> Result<(), Status>,
    ) -> Result<(String, u64), Status> {
        let current = self.current(i);
        let mut table: toml::Table =
            current.config.text.parse().map_err(|_| {
                Status::failed_precondition("the controller definition in force does not parse as TOML")
            })?;
        edit(&mut table)?;
        let text =
            toml::to_string(&table).map_err(|e| Status::internal(format!("controller file not written: {e}")))?;
        Ok((text, current.version))
    }

    /// Checks `text` as intersection `i`'s controller file, with the code
    /// ApplyTimingPlan runs, without staging it: a front end answers a set
    /// the file validator would refuse before it commits anything.
    ///
    /// # Errors
    /// INVALID_ARGUMENT with every key the validator found wrong.
    pub fn check(&self, i: usize, text: &str) -> Result<(), Status> {
        let current = self.current(i);
        crate::config::load_intersection_str(&current.config.source.display().to_string(), text)
            .map(|_| ())
            .map_err(|errors| super::convert::rejected("controller file", &errors, None))
    }

    /// Notes a set the adapter refused before it reached a handler, as
    /// refused gRPC calls are noted (one record per burst).
    pub fn refused(&self, caller: &Identity, method: &'static str, request: String, status: &Status, i: Option<usize>) {
        let refusal = audit::refusal(caller, method, request, status, i);
        self.shared.core.refusals.note(refusal, std::time::Instant::now());
    }

    /// Intersection ids, in the engine's order.
    pub fn ids(&self) -> &[String] {
        &self.shared.core.ids
    }

    /// Intersection `i`'s definition in force.
    pub fn current(&self, i: usize) -> Arc<Current> {
        self.shared.core.docs.current(i)
    }

    /// Intersection `i`'s controller events among the journal's newest
    /// `scan` records, oldest first, with their times (ms since the Unix
    /// epoch): what a front end's event log is read from.
    pub fn recent_events(&self, i: usize, scan: usize) -> Vec<(u64, Event)> {
        let journal = &self.shared.core.journal;
        let mut from = journal.next_seq().saturating_sub(scan as u64).max(1);
        let mut records = Vec::new();
        // Records dropped meanwhile: start at the oldest one held.
        if let Read::Gap { resume, .. } = journal.read(from, scan, &mut records) {
            from = resume;
            journal.read(from, scan, &mut records);
        }
        records
            .into_iter()
            .filter(|r| r.intersection == i)
            .filter_map(|r| match r.kind {
                RecordKind::Indiana(e) => Some((r.at_unix_ms, e)),
                RecordKind::Audit(_) => None,
            })
            .collect()
    }

    pub fn board(&self) -> &Arc<SnapshotBoard> {
        &self.shared.engine.board
    }
}

/// `message` as a request from `caller`, as the gRPC gate leaves it.
fn with<T>(caller: &Identity, message: T) -> Request<T> {
    let mut req = Request::new(message);
    req.extensions_mut().insert(caller.clone());
    req
}

/// A plan as ApplyTimingPlan takes it (splits of phases the plan splits).
pub fn plan_message(plan: &PlanSpec) -> pb::TimingPlan {
    let phase_numbers = |set: crate::core::PhaseSet| set.iter().map(|p| u32::from(p.number())).collect();
    pb::TimingPlan {
        number: plan.number.into(),
        name: plan.name.clone(),
        mode: super::convert::pb_plan_mode(plan.mode).into(),
        cycle_s: plan.cycle.as_secs_f64(),
        offset_s: plan.offset.as_secs_f64(),
        splits_s: plan
            .splits
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.is_zero())
            .map(|(k, s)| pb::PhaseSplit { phase: k as u32 + 1, split_s: s.as_secs_f64() })
            .collect(),
        coordinated: phase_numbers(plan.coordinated),
        max2: plan.max_select == MaxSelect::Max2,
    }
}
