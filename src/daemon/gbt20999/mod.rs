//! The GB/T 20999-2017 adapter (`[gbt20999]`, off without the section): a
//! TCP listener a traffic control centre (the standard's upper computer)
//! connects to, speaking the codec of [`crate::standards::gbt20999`], and
//! with `listen_udp` a UDP socket beside it (one unescaped frame a
//! datagram, as the standard's UDP link has no escaping; replies go to the
//! sender, reports only to TCP connections).
//!
//! - Queries are answered from the definition in force and the latest
//!   snapshot (`objects`); nothing here touches the controllers.
//! - Sets (plans as stage chains, day plans, schedules, centre-control
//!   plan and run mode) run
//!   the Control service's own handlers through the API's
//!   [`Gateway`](crate::api::gateway::Gateway): the same checks, staging
//!   to the safe point, saving, roles and audit as gRPC, with the
//!   centre's role and name from `[gbt20999]`.
//! - Heartbeat queries are answered. Silence for `heartbeat_timeout_s`
//!   (across every connection) after the centre set a mode or plan is a
//!   lost link: `link_loss_action` then runs once per intersection the
//!   centre had set, audited as the centre's link loss.
//! - With `report_interval_ms`, every connection receives active reports
//!   (frame type 0x60) of run status and lamp group states.
//!
//! Sets are applied value by value: plans (class 0x09), then day plans
//! (0x0B), then schedules (0x0C), then centre control in frame order; a set-error reply lists the values refused,
//! each with its error code as a one-byte value (the reply layout is an
//! assumption, `docs/standards.md`).

mod objects;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::{Code, Status};
use tracing::{debug, info, warn};

use crate::api::auth::Identity;
use crate::api::gateway::{Gateway, plan_message};
use crate::api::pb;
use crate::config::gbt20999::{Gbt20999Config, LinkLossAction, Profile};
use crate::core::Span;
use crate::standards::gbt20999::classes::{DataClass, RunMode};
use crate::standards::gbt20999::stages::StageView;
use crate::standards::gbt20999::{Address, DataValue, Deframer, ErrorCode, Escaping, Frame, FrameType, Header};

/// What the audit log names a set made over GB/T 20999.
const SET: &str = "gbt20999/Set";
const CENTRE_PLAN: &str = "gbt20999/CentreControl.plan";
/// Connections at once: a centre and a standby, with room for a tool.
const MAX_SESSIONS: usize = 8;
/// The version reports carry (the captured frame's, STANDARDS.md §1.1).
const REPORT_VERSION: u16 = 0x0100;
/// Journal records scanned for the fault log (class 0x10): the newest
/// ones, across intersections and audit records.
const FAULT_SCAN: usize = 4096;

/// The running adapter.
#[derive(Debug)]
pub struct Gbt20999Server {
    pub addr: SocketAddr,
    /// The UDP address bound, with `listen_udp`.
    pub udp_addr: Option<SocketAddr>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Gbt20999Server {
    /// Closes the listener and every connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Binds `cfg.listen` and serves centres on the current tokio runtime.
///
/// # Errors
/// An address cannot be bound.
pub async fn serve(cfg: &Gbt20999Config, gateway: Gateway) -> std::io::Result<Gbt20999Server> {
    let listener = TcpListener::bind(cfg.listen).await?;
    let addr = listener.local_addr()?;
    let udp = match cfg.listen_udp {
        Some(at) => Some(UdpSocket::bind(at).await?),
        None => None,
    };
    let udp_addr = udp.as_ref().map(UdpSocket::local_addr).transpose()?;
    let (stop, stopping) = watch::channel(false);
    let adapter = Arc::new(Adapter {
        cfg: cfg.clone(),
        gateway,
        link: Mutex::new(Link { heard: Instant::now(), centre_set: BTreeSet::new() }),
        sessions: AtomicUsize::new(0),
        report_sequence: AtomicU8::new(0),
    });
    let mut tasks = vec![tokio::spawn(accept(listener, adapter.clone(), stopping.clone()))];
    if let Some(socket) = udp {
        tasks.push(tokio::spawn(datagrams(socket, adapter.clone(), stopping.clone())));
    }
    tasks.push(tokio::spawn(supervise(adapter, stopping)));
    let udp = udp_addr.map_or_else(String::new, |a| format!(", udp {a}"));
    info!("GB/T 20999 adapter on {addr}{udp} (role {})", cfg.role.name());
    Ok(Gbt20999Server { addr, udp_addr, stop, tasks })
}

#[derive(Debug)]
struct Adapter {
    cfg: Gbt20999Config,
    gateway: Gateway,
    link: Mutex<Link>,
    sessions: AtomicUsize,
    report_sequence: AtomicU8,
}

/// The centre's link, across its connections.
#[derive(Debug)]
struct Link {
    /// When a valid frame last arrived.
    heard: Instant,
    /// Intersections whose mode or plan the centre set since the link was
    /// last lost: the ones the link-loss action applies to.
    centre_set: BTreeSet<usize>,
}

async fn accept(listener: TcpListener, adapter: Arc<Adapter>, mut stopping: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "GB/T 20999: accept failed");
                    continue;
                }
            },
            _ = crate::api::server::stopped(&mut stopping) => return,
        };
        if adapter.sessions.fetch_add(1, Ordering::Relaxed) >= MAX_SESSIONS {
            adapter.sessions.fetch_sub(1, Ordering::Relaxed);
            warn!(%peer, "GB/T 20999: {MAX_SESSIONS} centres connected already; connection closed");
            continue;
        }
        info!(%peer, "GB/T 20999: centre connected");
        let (adapter, stopping) = (adapter.clone(), stopping.clone());
        tokio::spawn(async move {
            session(&adapter, stream, peer, stopping).await;
            adapter.sessions.fetch_sub(1, Ordering::Relaxed);
            info!(%peer, "GB/T 20999: centre disconnected");
        });
    }
}

async fn session(adapter: &Adapter, stream: TcpStream, peer: SocketAddr, mut stopping: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut deframer = Deframer::new();
    let mut buf = [0u8; 4096];
    let mut reports = adapter.cfg.report_interval.map(tokio::time::interval);
    let caller = adapter.caller(peer);
    loop {
        let mut out = Vec::new();
        tokio::select! {
            read = rd.read(&mut buf) => {
                let n = match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                for &b in &buf[..n] {
                    match deframer.push(b) {
                        None => {}
                        Some(Ok(frame)) => {
                            adapter.heard();
                            if let Some(reply) = adapter.handle(&caller, &frame).await {
                                out.push(reply);
                            }
                        }
                        Some(Err(e)) => warn!(%peer, error = %e, "GB/T 20999: frame dropped"),
                    }
                }
            }
            _ = async { reports.as_mut()?.tick().await; Some(()) }, if reports.is_some() => {
                out.extend(adapter.reports());
            }
            _ = crate::api::server::stopped(&mut stopping) => return,
        }
        for frame in out {
            match frame.encode(Escaping::Escaped) {
                Ok(wire) => {
                    if wr.write_all(&wire).await.is_err() {
                        return;
                    }
                }
                Err(e) => warn!(%peer, error = %e, "GB/T 20999: reply not encodable"),
            }
        }
    }
}

/// Answers datagrams: each one frame without escaping, its reply sent
/// back to where it came from.
async fn datagrams(socket: UdpSocket, adapter: Arc<Adapter>, mut stopping: watch::Receiver<bool>) {
    // The largest UDP payload: a frame never needs more.
    let mut buf = vec![0u8; 65_535];
    loop {
        let (n, peer) = tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(e) => {
                    warn!(error = %e, "GB/T 20999: UDP receive failed");
                    continue;
                }
            },
            _ = crate::api::server::stopped(&mut stopping) => return,
        };
        let frame = match Frame::decode(&buf[..n], Escaping::Raw) {
            Ok(frame) => frame,
            Err(e) => {
                warn!(%peer, error = %e, "GB/T 20999: datagram dropped");
                continue;
            }
        };
        adapter.heard();
        let Some(reply) = adapter.handle(&adapter.caller(peer), &frame).await else { continue };
        match reply.encode(Escaping::Raw) {
            Ok(wire) => {
                if let Err(e) = socket.send_to(&wire, peer).await {
                    warn!(%peer, error = %e, "GB/T 20999: UDP reply not sent");
                }
            }
            Err(e) => warn!(%peer, error = %e, "GB/T 20999: reply not encodable"),
        }
    }
}

/// Every `tick`: a link silent past `heartbeat_timeout_s` after the centre
/// set something is lost, and the fault action runs.
async fn supervise(adapter: Arc<Adapter>, mut stopping: watch::Receiver<bool>) {
    let (Some(timeout), Some(mode)) = (adapter.cfg.heartbeat_timeout, fault_mode(adapter.cfg.link_loss_action)) else {
        return;
    };
    let mut every = tokio::time::interval(std::time::Duration::from_millis(250));
    loop {
        tokio::select! {
            _ = every.tick() => {}
            _ = crate::api::server::stopped(&mut stopping) => return,
        }
        let lost = {
            let mut link = adapter.link.lock().unwrap_or_else(PoisonError::into_inner);
            if link.centre_set.is_empty() || link.heard.elapsed() < timeout {
                continue;
            }
            std::mem::take(&mut link.centre_set)
        };
        let caller = Identity {
            principal: format!("{} (link lost)", adapter.cfg.principal).into(),
            role: adapter.cfg.role,
            peer: None,
            scope: None,
        };
        for i in lost {
            let Some(id) = adapter.gateway.ids().get(i) else { continue };
            match adapter.gateway.set_mode(&caller, id, mode).await {
                Ok(detail) => warn!(intersection = %id, %detail, "GB/T 20999: centre link lost; fault action run"),
                Err(e) => warn!(intersection = %id, error = %e.message(), "GB/T 20999: link-loss fault action refused"),
            }
        }
    }
}

/// The Greenwave mode a link-loss fault action runs.
fn fault_mode(action: LinkLossAction) -> Option<pb::Mode> {
    match action {
        LinkLossAction::None => None,
        LinkLossAction::Flash => Some(pb::Mode::Flash),
        LinkLossAction::LocalFixed => Some(pb::Mode::Fixed),
        LinkLossAction::LocalCoordinated => Some(pb::Mode::Coordinated),
        LinkLossAction::LocalActuated => Some(pb::Mode::Actuated),
    }
}

/// The standard's error code for a refusal of the Control service.
fn error_code(status: &Status) -> ErrorCode {
    match status.code() {
        Code::InvalidArgument => ErrorCode::BadValue,
        Code::OutOfRange => ErrorCode::Overflow,
        Code::NotFound => ErrorCode::NotPresent,
        // This centre may not set: read-only to it.
        Code::PermissionDenied | Code::Unauthenticated => ErrorCode::ReadOnly,
        Code::FailedPrecondition | Code::Aborted | Code::ResourceExhausted | Code::Unavailable => {
            ErrorCode::ControlFailed
        }
        _ => ErrorCode::General,
    }
}

/// A refused data value and its error code (the reason went to the log
/// and the refusal record where it was found).
struct Refused {
    value: (u8, Address),
    code: ErrorCode,
}

/// A plan's values in one set frame (class 0x09, object 2, element = the
/// plan number).
#[derive(Default)]
struct PlanEdit {
    values: Vec<(u8, Address)>,
    cycle: Option<Vec<u8>>,
    offset: Option<Vec<u8>>,
    chain: Option<Vec<u8>>,
    times: Option<Vec<u8>>,
}

/// A day plan's values in one set frame (class 0x0B, object 2, element =
/// the day plan's number in file order).
#[derive(Default)]
struct DayPlanEdit {
    values: Vec<(u8, Address)>,
    starts: Option<Vec<u8>>,
    plans: Option<Vec<u8>>,
}

/// A schedule row's values in one set frame (class 0x0C, object 2,
/// element = the row's number).
#[derive(Default)]
struct ScheduleEdit {
    values: Vec<(u8, Address)>,
    week: Option<Vec<u8>>,
    month: Option<Vec<u8>>,
    day: Option<Vec<u8>>,
    day_plan: Option<Vec<u8>>,
}

/// A centre's schedule row as the controller file says it.
enum ScheduleRow {
    /// Weekdays (bit 0 Sunday) running the day plan named.
    Weekdays(u8, String),
    /// A date ("MM-DD") running the day plan named, or no holiday then.
    Holiday(String, Option<String>),
}

/// `row` written into the controller file's `[schedule]`.
fn edit_schedule(table: &mut toml::Table, row: ScheduleRow) -> Result<(), Status> {
    let schedule = table
        .get_mut("schedule")
        .and_then(toml::Value::as_table_mut)
        .ok_or_else(|| Status::failed_precondition("the controller file has no [schedule]"))?;
    match row {
        ScheduleRow::Weekdays(week, name) => {
            let days =
                schedule.get_mut("week").and_then(toml::Value::as_array_mut).filter(|d| d.len() == 7).ok_or_else(
                    || Status::failed_precondition("the controller file's [schedule] has no week of 7 days"),
                )?;
            // The file's week is Monday first; the row's bit 0 is Sunday.
            for (w, slot) in days.iter_mut().enumerate() {
                if week & 1 << ((w + 1) % 7) != 0 {
                    *slot = name.clone().into();
                }
            }
        }
        ScheduleRow::Holiday(date, name) => {
            let holidays = schedule.entry("holiday").or_insert_with(|| toml::value::Array::new().into());
            let holidays = holidays
                .as_array_mut()
                .ok_or_else(|| Status::failed_precondition("[schedule] holiday is not an array of tables"))?;
            holidays.retain(|h| h.get("date").and_then(toml::Value::as_str) != Some(date.as_str()));
            if let Some(name) = name {
                let mut holiday = toml::Table::new();
                holiday.insert("date".into(), date.into());
                holiday.insert("day_plan".into(), name.into());
                holidays.push(holiday.into());
            }
        }
    }
    Ok(())
}

/// What a centre-control value asks for.
#[derive(Clone, Copy)]
enum CentreControl {
    Stage,
    Plan,
    Mode,
}

impl Adapter {
    /// A centre at `peer`, with the configured role and name.
    fn caller(&self, peer: SocketAddr) -> Identity {
        Identity { principal: self.cfg.principal.as_str().into(), role: self.cfg.role, peer: Some(peer), scope: None }
    }

    fn heard(&self) {
        self.link.lock().unwrap_or_else(PoisonError::into_inner).heard = Instant::now();
    }

    fn centre_set(&self, i: usize) {
        self.link.lock().unwrap_or_else(PoisonError::into_inner).centre_set.insert(i);
    }

    /// The reply to `frame`, if it gets one.
    async fn handle(&self, caller: &Identity, frame: &Frame) -> Option<Frame> {
        let h = frame.header;
        let (ok, error) = match h.kind {
            FrameType::HeartbeatQuery => {
                return Some(Frame { header: Header { kind: FrameType::HeartbeatReply, ..h }, values: Vec::new() });
            }
            FrameType::Query => (FrameType::QueryReply, FrameType::QueryError),
            FrameType::Set => (FrameType::SetReply, FrameType::SetError),
            other => {
                debug!(kind = ?other, "GB/T 20999: frame type not answered");
                return None;
            }
        };
        let reply = |kind, values| Some(Frame { header: Header { kind, ..h }, values });
        let i = usize::from(h.intersection).wrapping_sub(1);
        if h.controller != self.cfg.controller_id || i >= self.gateway.ids().len() {
            warn!(
                controller = h.controller,
                intersection = h.intersection,
                "GB/T 20999: frame for a controller or intersection not served here (gbt20999.controller_id = {})",
                self.cfg.controller_id
            );
            let refused = frame.values.iter().map(|v| error_value(v.index, v.address, ErrorCode::NotPresent));
            return reply(error, refused.collect());
        }
        let (values, refused) = if h.kind == FrameType::Query {
            self.query(i, h.intersection, &frame.values)
        } else {
            let refused = self.set(caller, i, &frame.values).await;
            // A set reply names what was set, without the values.
            (frame.values.iter().map(|v| DataValue { value: Vec::new(), ..v.clone() }).collect(), refused)
        };
        if !refused.is_empty() {
            let values = refused.iter().map(|r| error_value(r.value.0, r.value.1, r.code)).collect();
            return reply(error, values);
        }
        let candidate = Frame { header: Header { kind: ok, ..h }, values };
        match candidate.encode(Escaping::Escaped) {
            Ok(_) => Some(candidate),
            // More than a frame holds: the centre asks for less at once.
            Err(_) => reply(
                error,
                frame.values.iter().map(|v| error_value(v.index, v.address, ErrorCode::Overflow)).collect(),
            ),
        }
    }

    /// Intersection `i`'s view, for `f`; with its fault log when
    /// `with_faults` (a query of class 0x10).
    fn with_view<T>(
        &self,
        i: usize,
        intersection: u8,
        with_faults: bool,
        f: impl FnOnce(&objects::View<'_>) -> T,
    ) -> T {
        let current = self.gateway.current(i);
        let snapshot = self.gateway.board().get(i);
        let spec = &current.config.spec;
        let stages = StageView::derive(spec);
        let faults: Vec<objects::FaultRecord> = if with_faults {
            let events = self.gateway.recent_events(i, FAULT_SCAN);
            let mut faults: Vec<_> = events.iter().filter_map(|(at, e)| objects::fault_record(*at, e)).collect();
            // The newest that fit a frame's element numbers.
            faults.drain(..faults.len().saturating_sub(usize::from(u8::MAX)));
            faults
        } else {
            Vec::new()
        };
        let view = objects::View {
            spec,
            name: &current.config.name,
            snapshot: snapshot.as_deref(),
            stages: &stages,
            controller_id: self.cfg.controller_id,
            intersections: self.gateway.ids().len(),
            intersection,
            faults: &faults,
        };
        f(&view)
    }

    fn query(&self, i: usize, intersection: u8, asked: &[DataValue]) -> (Vec<DataValue>, Vec<Refused>) {
        let faults = asked.iter().any(|v| v.address.class == DataClass::Faults.byte());
        self.with_view(i, intersection, faults, |view| {
            let (mut values, mut refused) = (Vec::new(), Vec::new());
            for v in asked {
                match objects::read(view, v.address) {
                    Ok(found) => {
                        values.extend(found.into_iter().map(|(address, value)| DataValue { index: 0, address, value }))
                    }
                    Err(code) => refused.push(Refused { value: (v.index, v.address), code }),
                }
            }
            // Indexes count from 1 in the reply's own order.
            for (k, v) in values.iter_mut().enumerate() {
                v.index = (k + 1).min(255) as u8;
            }
            (values, refused)
        })
    }

    /// Runs a set frame's values; returns those refused.
    async fn set(&self, caller: &Identity, i: usize, values: &[DataValue]) -> Vec<Refused> {
        let mut refused = Vec::new();
        let mut plans: Vec<(u8, PlanEdit)> = Vec::new();
        let mut day_plans: Vec<(u8, DayPlanEdit)> = Vec::new();
        let mut schedules: Vec<(u8, ScheduleEdit)> = Vec::new();
        let mut controls = Vec::new();
        for v in values {
            let at = (v.index, v.address);
            let a = v.address;
            match (DataClass::from_byte(a.class), self.centre_control(a)) {
                (Some(DataClass::CentreControl), Some(what)) => controls.push((at, what, v.value.clone())),
                (Some(DataClass::Plans), _) if a.object == 2 && matches!(a.attribute, 3 | 5 | 6 | 7) => {
                    let edit = edit_of(&mut plans, a.element);
                    edit.values.push(at);
                    let slot = match a.attribute {
                        3 => &mut edit.cycle,
                        5 => &mut edit.offset,
                        6 => &mut edit.chain,
                        _ => &mut edit.times,
                    };
                    *slot = Some(v.value.clone());
                }
                (Some(DataClass::DayPlans), _) if a.object == 2 && matches!(a.attribute, 3 | 4) => {
                    let edit = edit_of(&mut day_plans, a.element);
                    edit.values.push(at);
                    *(if a.attribute == 3 { &mut edit.starts } else { &mut edit.plans }) = Some(v.value.clone());
                }
                (Some(DataClass::Schedules), _) if a.object == 2 && matches!(a.attribute, 3..=7) => {
                    let edit = edit_of(&mut schedules, a.element);
                    edit.values.push(at);
                    let slot = match a.attribute {
                        4 => &mut edit.week,
                        5 => &mut edit.month,
                        6 => &mut edit.day,
                        7 => &mut edit.day_plan,
                        // The priority: Greenwave's holidays always win
                        // over weekdays (as read, 1 above 2).
                        _ => continue,
                    };
                    *slot = Some(v.value.clone());
                }
                (Some(_), _) => {
                    self.refuse(caller, i, a, &Status::failed_precondition(format!(
                        "{a}: not settable over GB/T 20999 (definitions come from controller files, ApplyTimingPlan and plan sets)"
                    )));
                    refused.push(Refused { value: at, code: ErrorCode::ReadOnly });
                }
                (None, _) => refused.push(Refused { value: at, code: ErrorCode::NotPresent }),
            }
        }
        for (number, edit) in plans {
            if let Err(code) = self.set_plan(caller, i, number, &edit).await {
                refused.extend(edit.values.iter().map(|&value| Refused { value, code }));
            }
        }
        for (number, edit) in day_plans {
            if let Err(code) = self.set_day_plan(caller, i, number, &edit).await {
                refused.extend(edit.values.iter().map(|&value| Refused { value, code }));
            }
        }
        for (number, edit) in schedules {
            if let Err(code) = self.set_schedule(caller, i, number, &edit).await {
                refused.extend(edit.values.iter().map(|&value| Refused { value, code }));
            }
        }
        for (at, what, value) in controls {
            if let Err(code) = self.centre_control_set(caller, i, at.1, what, &value).await {
                refused.push(Refused { value: at, code });
            }
        }
        refused
    }

    /// Where the profile puts centre control (see [`Profile`]).
    fn centre_control(&self, a: Address) -> Option<CentreControl> {
        if a.class != DataClass::CentreControl.byte() {
            return None;
        }
        let which = match self.cfg.profile {
            Profile::Capture if a.object == 1 => a.attribute,
            Profile::Lining if a.attribute == 0 => a.object,
            _ => return None,
        };
        match which {
            2 => Some(CentreControl::Stage),
            3 => Some(CentreControl::Plan),
            4 => Some(CentreControl::Mode),
            _ => None,
        }
    }

    fn refuse(&self, caller: &Identity, i: usize, a: Address, status: &Status) {
        warn!(address = %a, reason = %status.message(), "GB/T 20999: set refused");
        self.gateway.refused(caller, SET, format!("set {a}"), status, Some(i));
    }

    /// `status` noted and turned into its error code.
    fn refused_with(&self, caller: &Identity, i: usize, a: Address, status: Status) -> ErrorCode {
        self.refuse(caller, i, a, &status);
        error_code(&status)
    }

    async fn centre_control_set(
        &self,
        caller: &Identity,
        i: usize,
        a: Address,
        what: CentreControl,
        value: &[u8],
    ) -> Result<(), ErrorCode> {
        let id = &self.gateway.ids()[i];
        let &[byte] = value else {
            return Err(self.refused_with(
                caller,
                i,
                a,
                Status::invalid_argument(format!("{a}: one byte, not {}", value.len())),
            ));
        };
        // An error from the Control service is noted there already.
        let done = match what {
            CentreControl::Stage => {
                return Err(self.refused_with(
                    caller,
                    i,
                    a,
                    Status::failed_precondition(format!(
                        "{a}: stage {byte}: Greenwave does not hold a phase stage on command; the ring-barrier sequence \
                         and its clearances decide when phases end (set a plan or a run mode instead)"
                    )),
                ));
            }
            CentreControl::Plan => self.gateway.select_plan(caller, CENTRE_PLAN, id, byte).await,
            CentreControl::Mode => {
                let mode = match RunMode::from_byte(byte) {
                    None => {
                        return Err(self.refused_with(
                            caller,
                            i,
                            a,
                            Status::invalid_argument(format!("{a}: 0x{byte:02X} is not a run mode")),
                        ));
                    }
                    Some(m) => match centre_mode(m) {
                        Some(mode) => mode,
                        None => {
                            return Err(self.refused_with(
                                caller,
                                i,
                                a,
                                Status::failed_precondition(format!(
                                    "{a}: run mode 0x{byte:02X} ({m:?}) is not one Greenwave runs (no manual, all-red \
                                     or dark mode on command)"
                                )),
                            ));
                        }
                    },
                };
                self.gateway.set_mode(caller, id, mode).await
            }
        };
        match done {
            Ok(detail) => {
                info!(intersection = %id, %detail, "GB/T 20999: centre control");
                self.centre_set(i);
                Ok(())
            }
            Err(status) => Err(error_code(&status)),
        }
    }

    /// A stage-based plan from the centre as a Greenwave plan, staged to
    /// the next barrier.
    async fn set_plan(&self, caller: &Identity, i: usize, number: u8, edit: &PlanEdit) -> Result<(), ErrorCode> {
        let a = Address::new(DataClass::Plans.byte(), 2, 0, number);
        let current = self.gateway.current(i);
        let spec = &current.config.spec;
        let Some(plan) = spec.plan(number) else {
            return Err(self.refused_with(caller, i, a, Status::not_found(format!("plan {number}: no such plan"))));
        };
        if plan.adaptive {
            return Err(self.refused_with(
                caller,
                i,
                a,
                Status::failed_precondition(format!(
                    "plan {number} runs adaptively: its optimizer sets cycle and splits from measured flows"
                )),
            ));
        }
        let bad = |reason: String| Status::invalid_argument(format!("plan {number}: {reason}"));
        let seconds = |v: &Option<Vec<u8>>, what: &str| -> Result<Option<Span>, Status> {
            match v.as_deref() {
                None => Ok(None),
                Some(&[hi, lo]) => Ok(Some(Span::from_secs(u64::from(u16::from_be_bytes([hi, lo]))))),
                Some(b) => Err(bad(format!("{what}: 2 bytes (seconds), not {}", b.len()))),
            }
        };
        let checked = (|| {
            let cycle = seconds(&edit.cycle, "cycle")?;
            let offset = seconds(&edit.offset, "offset")?;
            let mut message = plan_message(plan);
            match (&edit.chain, &edit.times) {
                (None, None) => {}
                (Some(chain), Some(times)) => {
                    if times.len() % 2 != 0 {
                        return Err(bad(format!("stage time chain: 2 bytes a stage, not {} bytes", times.len())));
                    }
                    let times: Vec<Span> = times
                        .chunks_exact(2)
                        .map(|t| Span::from_secs(u64::from(u16::from_be_bytes([t[0], t[1]]))))
                        .collect();
                    let splits =
                        StageView::derive(spec).splits(chain, &times, cycle).map_err(|e| bad(e.to_string()))?;
                    message.splits_s = splits
                        .iter()
                        .enumerate()
                        .filter(|(_, s)| !s.is_zero())
                        .map(|(k, s)| pb::PhaseSplit { phase: k as u32 + 1, split_s: s.as_secs_f64() })
                        .collect();
                    message.cycle_s = times.iter().map(|t| t.as_secs_f64()).sum();
                }
                _ => return Err(bad("the stage chain and the stage time chain are set together".into())),
            }
            if let Some(c) = cycle {
                message.cycle_s = c.as_secs_f64();
            }
            if let Some(o) = offset {
                message.offset_s = o.as_secs_f64();
            }
            Ok(message)
        })();
        let message = checked.map_err(|status| self.refused_with(caller, i, a, status))?;
        let id = &self.gateway.ids()[i];
        match self.gateway.apply_plan(caller, id, message, false).await {
            Ok(detail) => {
                info!(intersection = %id, %detail, "GB/T 20999: plan set");
                self.centre_set(i);
                Ok(())
            }
            Err(status) => {
                warn!(intersection = %id, reason = %status.message(), "GB/T 20999: plan set refused");
                Err(error_code(&status))
            }
        }
    }

    /// A day plan from the centre (segment starts and plans) written into
    /// the controller file and applied as a whole file is over gRPC:
    /// validated, staged, saved.
    async fn set_day_plan(&self, caller: &Identity, i: usize, number: u8, edit: &DayPlanEdit) -> Result<(), ErrorCode> {
        let a = Address::new(DataClass::DayPlans.byte(), 2, 0, number);
        let bad = |reason: String| Status::invalid_argument(format!("day plan {number}: {reason}"));
        let edited = (|| {
            let (Some(starts), Some(plans)) = (&edit.starts, &edit.plans) else {
                return Err(bad("the start time chain and the plan chain are set together".into()));
            };
            if starts.len() != 2 * plans.len() {
                return Err(bad(format!(
                    "{} start bytes (hour, minute a segment) for {} plans",
                    starts.len(),
                    plans.len()
                )));
            }
            let mut events = toml::value::Array::new();
            for (start, &plan) in starts.chunks_exact(2).zip(plans) {
                let (hour, minute) = (start[0], start[1]);
                if hour > 23 || minute > 59 {
                    return Err(bad(format!("{hour}:{minute} is not a time of day")));
                }
                let mut event = toml::Table::new();
                event.insert("at".into(), format!("{hour:02}:{minute:02}").into());
                event.insert("plan".into(), i64::from(plan).into());
                events.push(event.into());
            }
            self.gateway.edited(i, |table| {
                let slot = table
                    .get_mut("schedule")
                    .and_then(|s| s.get_mut("day_plan"))
                    .and_then(toml::Value::as_array_mut)
                    .and_then(|d| d.get_mut(usize::from(number).checked_sub(1)?))
                    .and_then(toml::Value::as_table_mut)
                    .ok_or_else(|| Status::not_found(format!("day plan {number}: no such day plan")))?;
                slot.insert("events".into(), events.into());
                Ok(())
            })
        })();
        self.apply_file(caller, i, a, &format!("day plan {number}"), edited).await
    }

    /// An edited controller file (`edited`, from [`Gateway::edited`])
    /// applied as a whole file is over gRPC: validated, staged, saved, and
    /// only over the version it was edited from. `what` names the set in
    /// the log.
    async fn apply_file(
        &self,
        caller: &Identity,
        i: usize,
        a: Address,
        what: &str,
        edited: Result<(String, u64), Status>,
    ) -> Result<(), ErrorCode> {
        let (text, version) = edited.map_err(|status| self.refused_with(caller, i, a, status))?;
        let id = &self.gateway.ids()[i];
        match self.gateway.apply_controller(caller, id, text, version).await {
            Ok(detail) => {
                info!(intersection = %id, %detail, "GB/T 20999: {what} set");
                Ok(())
            }
            Err(status) => {
                warn!(intersection = %id, reason = %status.message(), "GB/T 20999: {what} set refused");
                Err(error_code(&status))
            }
        }
    }

    /// A schedule row from the centre (weekdays, months, dates, day plan)
    /// written into the controller file's `[schedule]`: a row of every
    /// month and date runs the day plan on its weekdays (`week`); a row of
    /// one month and one date, every weekday, is a holiday (day plan 0
    /// removes the date's holiday). Greenwave places the row by its days,
    /// so the element only names the row in the reply. Other rows cannot
    /// be expressed in the file and are refused with the reason.
    async fn set_schedule(
        &self,
        caller: &Identity,
        i: usize,
        number: u8,
        edit: &ScheduleEdit,
    ) -> Result<(), ErrorCode> {
        let a = Address::new(DataClass::Schedules.byte(), 2, 0, number);
        let bad = |reason: String| Status::invalid_argument(format!("schedule {number}: {reason}"));
        let current = self.gateway.current(i);
        let day_plans = &current.config.spec.schedule.day_plans;
        let edited = (|| {
            let (Some(&[week]), Some(&[m0, m1]), Some(&[d0, d1, d2, d3]), Some(&[day_plan])) =
                (edit.week.as_deref(), edit.month.as_deref(), edit.day.as_deref(), edit.day_plan.as_deref())
            else {
                return Err(bad(
                    "weekdays (1 byte), months (2 bytes), dates (4 bytes) and day plan (1 byte) are set together"
                        .into(),
                ));
            };
            let (month, day) = (u16::from_be_bytes([m0, m1]), u32::from_be_bytes([d0, d1, d2, d3]));
            let name = match usize::from(day_plan).checked_sub(1).map(|k| day_plans.get(k)) {
                None => None,
                Some(Some(d)) => Some(d.name.clone()),
                Some(None) => return Err(bad(format!("no day plan {day_plan}"))),
            };
            let row = if month == objects::EVERY_MONTH && day == objects::EVERY_DATE && week & 0x80 == 0 && week != 0 {
                let name = name.ok_or_else(|| bad("a weekday row runs a day plan (not 0)".into()))?;
                ScheduleRow::Weekdays(week, name)
            } else if week == objects::EVERY_WEEKDAY
                && month.count_ones() == 1
                && month & objects::EVERY_MONTH != 0
                && day.count_ones() == 1
                && day & objects::EVERY_DATE != 0
            {
                let date = format!("{:02}-{:02}", month.trailing_zeros(), day.trailing_zeros() + 1);
                ScheduleRow::Holiday(date, name)
            } else {
                return Err(bad(format!(
                    "weekdays {week:#04x}, months {month:#06x}, dates {day:#010x}: Greenwave's schedule runs a day plan on \
                     weekdays (every month and date) or on one date (a holiday, every weekday)"
                )));
            };
            self.gateway.edited(i, |table| edit_schedule(table, row))
        })();
        self.apply_file(caller, i, a, &format!("schedule {number}"), edited).await
    }

    /// One report frame per intersection: run status and lamp group states.
    fn reports(&self) -> Vec<Frame> {
        (0..self.gateway.ids().len())
            .filter_map(|i| {
                let intersection = u8::try_from(i + 1).ok()?;
                let values = self.with_view(i, intersection, false, |view| {
                    let status = objects::read(view, Address::new(DataClass::RunStatus.byte(), 2, 0, 0));
                    let lamps = objects::read(view, Address::new(DataClass::LampGroups.byte(), 3, 1, 0));
                    status.into_iter().chain(lamps).flatten().collect::<Vec<_>>()
                });
                let header = Header {
                    version: REPORT_VERSION,
                    centre: 0,
                    controller: self.cfg.controller_id,
                    intersection,
                    sequence: self.report_sequence.fetch_add(1, Ordering::Relaxed),
                    kind: FrameType::Report,
                };
                let values = values
                    .into_iter()
                    .enumerate()
                    .map(|(k, (address, value))| DataValue { index: (k + 1).min(255) as u8, address, value })
                    .collect();
                Some(Frame { header, values })
            })
            .collect()
    }
}

/// The edit of table row `element` in `edits`, added empty at its first
/// value: one edit per row, however many of its attributes a frame sets.
fn edit_of<T: Default>(edits: &mut Vec<(u8, T)>, element: u8) -> &mut T {
    let k = edits.iter().position(|(n, _)| *n == element).unwrap_or_else(|| {
        edits.push((element, T::default()));
        edits.len() - 1
    });
    &mut edits[k].1
}

/// A refused value as an error reply carries it.
fn error_value(index: u8, address: Address, code: ErrorCode) -> DataValue {
    DataValue { index, address, value: vec![code.byte()] }
}

/// The Greenwave mode a centre's run mode asks for, if it runs one.
fn centre_mode(m: RunMode) -> Option<pb::Mode> {
    match m {
        RunMode::CentreTimeOfDay => Some(pb::Mode::Scheduled),
        RunMode::CentreCoordinated | RunMode::LocalCoordinated => Some(pb::Mode::Coordinated),
        RunMode::CentreAdaptive | RunMode::LocalAdaptive => Some(pb::Mode::Adaptive),
        RunMode::LocalFixed => Some(pb::Mode::Fixed),
        RunMode::LocalActuated => Some(pb::Mode::Actuated),
        RunMode::Flash => Some(pb::Mode::Flash),
        RunMode::CentreManual | RunMode::LocalManual | RunMode::AllRed | RunMode::Off => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule_after(row: ScheduleRow) -> toml::Value {
        let mut table: toml::Table = include_str!("../../../controllers/elm-and-oak.toml").parse().expect("toml");
        edit_schedule(&mut table, row).expect("edited");
        table["schedule"].clone()
    }

    #[test]
    fn a_weekday_row_assigns_its_days_and_a_date_row_is_a_holiday() {
        // Bit 0 Sunday, bit 6 Saturday: the weekend runs "weekday".
        let s = schedule_after(ScheduleRow::Weekdays(0b100_0001, "weekday".into()));
        let week: Vec<_> = s["week"].as_array().expect("week").iter().filter_map(toml::Value::as_str).collect();
        assert_eq!(week, ["weekday"; 7]);
        let s = schedule_after(ScheduleRow::Holiday("12-25".into(), Some("weekday".into())));
        let holidays = s["holiday"].as_array().expect("holidays");
        let christmas: Vec<_> = holidays.iter().filter(|h| h["date"].as_str() == Some("12-25")).collect();
        assert_eq!(christmas.len(), 1, "replaced, not added: {holidays:?}");
        assert_eq!(christmas[0]["day_plan"].as_str(), Some("weekday"));
        let s = schedule_after(ScheduleRow::Holiday("01-01".into(), None));
        assert_eq!(s["holiday"].as_array().map(Vec::len), Some(1), "day plan 0 removes the holiday");
    }
}
