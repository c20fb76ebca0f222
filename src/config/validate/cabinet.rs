//! `[cabinet]` and `[cabinet.registers]`: how the daemon reaches the
//! intersection's cabinet.

use crate::config::registers::{CAMERA_ZONES, RegisterMap};
use crate::core::{DetectorChannel, MAX_DETECTORS, Span};

use super::super::key::KeyPath;
use super::super::raw::{RawCabinet, RawCabinetKind, RawOneMaster, RawParity, RawRegisters, RawVolumeSource};
use super::super::{
    CabinetConfig, ModbusCabinet, ModbusTransport, OneMasterCheck, Parity, VolumeSource, serial_char_bits,
};
use super::{DEFAULT_MODBUS_UNIT_ID, Validator, root, secs};

/// `connect_timeout_s` when not given.
pub const DEFAULT_CONNECT_TIMEOUT: Span = Span::from_millis(2000);
/// `request_timeout_s` when not given: a loopback or LAN I/O module answers
/// in a few ms; RTU at 9600 baud needs about 0.2 s for the default read.
pub const DEFAULT_REQUEST_TIMEOUT: Span = Span::from_millis(250);
/// `link_timeout_s` when not given (the cabinet's own watchdog time).
pub const DEFAULT_LINK_TIMEOUT: Span = Span::from_millis(1000);
pub const DEFAULT_BACKOFF_MIN: Span = Span::from_millis(100);
pub const DEFAULT_BACKOFF_MAX: Span = Span::from_millis(5000);
/// `read_ahead_s` when not given.
pub const DEFAULT_READ_AHEAD: Span = Span::from_millis(5);
/// RTU serial defaults: Modbus over serial line's 9600 8E1.
pub const DEFAULT_BAUD: u32 = 9600;
/// The daemon's default tick (`tick_ms`), what a cabinet must keep up with
/// unless it sets `poll_s` (a controller file does not know the daemon's).
const DEFAULT_TICK: Span = Span::from_millis(100);

/// A serial line's framing, for how long an exchange takes on the wire.
struct SerialLine {
    baud: u32,
    parity: Parity,
    data_bits: u8,
    stop_bits: u8,
}

impl SerialLine {
    /// Wire time of one tick's exchange with `map`: an FC04 read of the
    /// input span, the heartbeat read back (FC03 of one register) when the
    /// one-master check is on, and an FC16 write of the output span (what
    /// the daemon sends with the default map), each request and answer
    /// framed by the 3.5-character silence RTU requires. The cabinet's own
    /// turnaround comes on top, so this is the least it can take.
    fn exchange_time(&self, map: &RegisterMap, one_master: OneMasterCheck) -> Span {
        let span = |items: Vec<crate::config::registers::Item>| {
            let start = items.iter().map(|i| u32::from(i.block.start)).min().unwrap_or(0);
            let end = items.iter().map(|i| i.block.end()).max().unwrap_or(0);
            end.saturating_sub(start)
        };
        let (read, write) = (span(map.input_items(false)), span(map.output_items(false)));
        let (read_back, frames) = match one_master {
            OneMasterCheck::ReadBack => ((8) + (7), 6),
            OneMasterCheck::Off => (0, 4),
        };
        // Unit id, function code, CRC (2) and the fields of each frame.
        let bytes = (8) + (5 + 2 * read) + (9 + 2 * write) + (8) + read_back;
        let gaps = frames * 35 / 10;
        let bits_per_char = serial_char_bits(self.parity, self.data_bits, self.stop_bits);
        let bits = u64::from((bytes + gaps) * bits_per_char);
        Span::from_millis((bits * 1000).div_ceil(u64::from(self.baud.max(1))))
    }
}

impl Validator<'_> {
    pub(super) fn cabinet(&mut self, raw: Option<&RawCabinet>) -> Option<CabinetConfig> {
        let at = root().key("cabinet");
        let raw = self.required_table(raw, &at, "cabinet")?;
        let kind = self.required(raw.kind, &at.key("kind"))?;
        let serial_keys = [
            ("path", raw.path.is_some()),
            ("baud", raw.baud.is_some()),
            ("parity", raw.parity.is_some()),
            ("data_bits", raw.data_bits.is_some()),
            ("stop_bits", raw.stop_bits.is_some()),
        ];
        let modbus_keys = [
            ("address", raw.address.is_some()),
            ("unit_id", raw.unit_id.is_some()),
            ("connect_timeout_s", raw.connect_timeout_s.is_some()),
            ("request_timeout_s", raw.request_timeout_s.is_some()),
            ("link_timeout_s", raw.link_timeout_s.is_some()),
            ("backoff_min_s", raw.backoff_min_s.is_some()),
            ("backoff_max_s", raw.backoff_max_s.is_some()),
            ("poll_s", raw.poll_s.is_some()),
            ("read_ahead_s", raw.read_ahead_s.is_some()),
            ("volume", raw.volume.is_some()),
            ("camera_zone_channels", raw.camera_zone_channels.is_some()),
            ("one_master", raw.one_master.is_some()),
            ("registers", raw.registers.is_some()),
        ];
        let transport = match kind {
            RawCabinetKind::Simulated => {
                for (key, given) in modbus_keys.iter().chain(&serial_keys) {
                    if *given {
                        self.warn(&at.key(key), "ignored: the cabinet is simulated");
                    }
                }
                return Some(CabinetConfig::Simulated);
            }
            RawCabinetKind::ModbusTcp | RawCabinetKind::ModbusRtuOverTcp => {
                for (key, given) in serial_keys {
                    if given {
                        self.warn(&at.key(key), "ignored: only for kind = \"modbus-rtu\" (a serial port)");
                    }
                }
                let address = self.host_port(raw.address.as_deref(), &at.key("address"));
                address.map(|address| {
                    if kind == RawCabinetKind::ModbusTcp {
                        ModbusTransport::Tcp { address }
                    } else {
                        ModbusTransport::RtuOverTcp { address }
                    }
                })
            }
            RawCabinetKind::ModbusRtu => {
                if raw.address.is_some() {
                    self.warn(&at.key("address"), "ignored: a modbus-rtu cabinet is reached through `path`");
                }
                self.serial(raw, &at)
            }
        };
        let unit_id = raw.unit_id.unwrap_or(DEFAULT_MODBUS_UNIT_ID);
        if unit_id == 0 || unit_id > 247 {
            self.warn(
                &at.key("unit_id"),
                format!("{unit_id} is not a device unit id (1..=247; 0 is broadcast, 248-255 reserved)"),
            );
        }
        let connect_timeout =
            self.positive(raw.connect_timeout_s, &at.key("connect_timeout_s"), DEFAULT_CONNECT_TIMEOUT);
        let request_timeout =
            self.positive(raw.request_timeout_s, &at.key("request_timeout_s"), DEFAULT_REQUEST_TIMEOUT);
        let link_timeout = self.positive(raw.link_timeout_s, &at.key("link_timeout_s"), DEFAULT_LINK_TIMEOUT);
        let backoff_min = self.positive(raw.backoff_min_s, &at.key("backoff_min_s"), DEFAULT_BACKOFF_MIN);
        let backoff_max = self.positive(raw.backoff_max_s, &at.key("backoff_max_s"), DEFAULT_BACKOFF_MAX);
        if let (Some(min), Some(max)) = (backoff_min, backoff_max)
            && min > max
        {
            self.error(&at.key("backoff_max_s"), format!("{} is below backoff_min_s {}", secs(max), secs(min)));
        }
        if let (Some(req), Some(link)) = (request_timeout, link_timeout)
            && req >= link
        {
            self.warn(
                &at.key("request_timeout_s"),
                format!(
                    "{} is not below link_timeout_s {}: one slow answer already flashes the intersection",
                    secs(req),
                    secs(link)
                ),
            );
        }
        let poll = raw.poll_s.and_then(|s| self.positive(Some(s), &at.key("poll_s"), Span::ZERO));
        if let (Some(p), Some(link)) = (poll, link_timeout)
            && p >= link
        {
            self.error(
                &at.key("poll_s"),
                format!("{} must be below link_timeout_s {} (the link would always be lost)", secs(p), secs(link)),
            );
        }
        let read_ahead = match raw.read_ahead_s {
            Some(s) => match self.seconds(s, &at.key("read_ahead_s")) {
                Some(r) if r >= Span::from_millis(1000) => {
                    self.error(&at.key("read_ahead_s"), "must be below 1 s (it is part of one tick)");
                    None
                }
                other => other,
            },
            None => Some(DEFAULT_READ_AHEAD),
        };
        let volume = match raw.volume {
            None | Some(RawVolumeSource::Counters) => VolumeSource::Counters,
            Some(RawVolumeSource::Edges) => VolumeSource::Edges,
        };
        let one_master = match raw.one_master {
            None | Some(RawOneMaster::ReadBack) => OneMasterCheck::ReadBack,
            Some(RawOneMaster::Off) => OneMasterCheck::Off,
        };
        let zones = self.zones(raw.camera_zone_channels.as_deref(), &at.key("camera_zone_channels"));
        let registers = self.registers(raw.registers.as_ref(), &at.key("registers"));
        if let (Some(ModbusTransport::Rtu { baud, parity, data_bits, stop_bits, .. }), Some(map)) =
            (&transport, &registers)
        {
            let line = SerialLine { baud: *baud, parity: *parity, data_bits: *data_bits, stop_bits: *stop_bits };
            let period = poll.unwrap_or(DEFAULT_TICK);
            let wire = line.exchange_time(map, one_master);
            if wire > period {
                let exchange = match one_master {
                    OneMasterCheck::ReadBack => "read, heartbeat read-back and write",
                    OneMasterCheck::Off => "read and write",
                };
                self.warn(
                    &at.key("baud"),
                    format!(
                        "{baud} baud carries one tick's {exchange} of this register map in {} at the least, \
                         longer than {} ({}): the cabinet would fall behind every tick; raise the baud rate, \
                         shrink the map or set a longer poll_s",
                        secs(wire),
                        secs(period),
                        if poll.is_some() { "poll_s" } else { "the default 100 ms tick" }
                    ),
                );
            }
        }
        Some(CabinetConfig::Modbus(Box::new(ModbusCabinet {
            transport: transport?,
            unit_id,
            connect_timeout: connect_timeout?,
            request_timeout: request_timeout?,
            link_timeout: link_timeout?,
            backoff_min: backoff_min?,
            backoff_max: backoff_max?,
            poll,
            read_ahead: read_ahead?,
            volume,
            camera_zone_channels: zones?,
            one_master,
            registers: registers?,
        })))
    }

    /// A duration > 0 in seconds, or `default` when not given.
    fn positive(&mut self, s: Option<f64>, at: &KeyPath, default: Span) -> Option<Span> {
        let Some(s) = s else { return Some(default) };
        match self.seconds(s, at) {
            Some(span) if span.is_zero() => {
                self.error(at, "must be greater than 0");
                None
            }
            other => other,
        }
    }

    fn host_port(&mut self, address: Option<&str>, at: &KeyPath) -> Option<String> {
        let address = self.required(address.map(str::to_owned), at)?;
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
        if !valid {
            self.error(at, format!("\"{address}\" is not host:port (e.g. \"10.20.30.40:502\")"));
            return None;
        }
        Some(address)
    }

    fn serial(&mut self, raw: &RawCabinet, at: &KeyPath) -> Option<ModbusTransport> {
        let path = self.required(raw.path.clone(), &at.key("path"));
        if path.as_deref().is_some_and(str::is_empty) {
            self.error(&at.key("path"), "must not be empty (a serial device, e.g. \"/dev/ttyS0\")");
            return None;
        }
        let baud = raw.baud.unwrap_or(DEFAULT_BAUD);
        if !(300..=1_000_000).contains(&baud) {
            self.error(&at.key("baud"), format!("{baud} is not a serial speed (300..=1000000)"));
        }
        let data_bits = raw.data_bits.unwrap_or(8);
        if !(5..=8).contains(&data_bits) {
            self.error(&at.key("data_bits"), format!("{data_bits}: must be 5..=8 (Modbus RTU uses 8)"));
        }
        let stop_bits = raw.stop_bits.unwrap_or(1);
        if !(1..=2).contains(&stop_bits) {
            self.error(&at.key("stop_bits"), format!("{stop_bits}: must be 1 or 2"));
        }
        let parity = match raw.parity.unwrap_or(RawParity::Even) {
            RawParity::None => Parity::None,
            RawParity::Even => Parity::Even,
            RawParity::Odd => Parity::Odd,
        };
        let ok = (300..=1_000_000).contains(&baud) && (5..=8).contains(&data_bits) && (1..=2).contains(&stop_bits);
        ok.then_some(ModbusTransport::Rtu { path: path?, baud, parity, data_bits, stop_bits })
    }

    fn zones(&mut self, raw: Option<&[u8]>, at: &KeyPath) -> Option<Vec<DetectorChannel>> {
        let raw = raw.unwrap_or_default();
        if raw.len() > CAMERA_ZONES as usize {
            self.error(at, format!("{} zones: the register map has {CAMERA_ZONES}", raw.len()));
            return None;
        }
        let mut out = Vec::new();
        let mut ok = true;
        for (i, &n) in raw.iter().enumerate() {
            match DetectorChannel::new(n) {
                Some(ch) if !out.contains(&ch) => out.push(ch),
                Some(ch) => {
                    self.error(&at.index(i), format!("channel {ch} is given to two zones"));
                    ok = false;
                }
                None => {
                    self.error(&at.index(i), format!("{n} is outside the cabinet's channels 1..={MAX_DETECTORS}"));
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }

    fn registers(&mut self, raw: Option<&RawRegisters>, at: &KeyPath) -> Option<RegisterMap> {
        let d = RegisterMap::default();
        let Some(r) = raw else { return Some(d) };
        let map = RegisterMap {
            presence: r.presence.unwrap_or(d.presence),
            status: r.status.unwrap_or(d.status),
            sim_time: r.sim_time.unwrap_or(d.sim_time),
            sim_step: r.sim_step.unwrap_or(d.sim_step),
            volume: r.volume.unwrap_or(d.volume),
            volume_channels: r.volume_channels.unwrap_or(d.volume_channels),
            camera: r.camera.unwrap_or(d.camera),
            camera_zones: r.camera_zones.unwrap_or(d.camera_zones),
            camera_queue: r.camera_queue.unwrap_or(d.camera_queue),
            camera_queue_zones: r.camera_queue_zones.unwrap_or(d.camera_queue_zones),
            preempt: r.preempt.unwrap_or(d.preempt),
            priority: r.priority.unwrap_or(d.priority),
            vehicle: r.vehicle.unwrap_or(d.vehicle),
            ped: r.ped.unwrap_or(d.ped),
            overlap: r.overlap.unwrap_or(d.overlap),
            heartbeat: r.heartbeat.unwrap_or(d.heartbeat),
            requested_mode: r.requested_mode.unwrap_or(d.requested_mode),
            flash_reason: r.flash_reason.unwrap_or(d.flash_reason),
            step_ack: r.step_ack.unwrap_or(d.step_ack),
            ped_countdown: r.ped_countdown.unwrap_or(d.ped_countdown),
            aps: r.aps.unwrap_or(d.aps),
            ped_outputs: r.ped_outputs.unwrap_or(d.ped_outputs),
        };
        let problems = map.problems();
        for p in &problems {
            self.error(at, p.clone());
        }
        problems.is_empty().then_some(map)
    }
}
