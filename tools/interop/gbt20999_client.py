#!/usr/bin/env python3
"""An independent GB/T 20999-2017 centre (upper computer), standard library only.

Written from the framing facts the project's survey collects (frames
0x7E ... 0x7D; 0x5C before 0x7E, 0x7D and 0x5C on TCP; big-endian fields;
the length counting version ... CRC; CRC-16 generator 0x1005, initial 0,
over length ... last data byte; frame types 0x10 query ... 0x80 heartbeat
reply; error codes 0x10 ... 0x50), not from Greenwave's codec. The class,
object and attribute numbers are those docs/standards.md lists.

Against a Greenwave daemon with [gbt20999] on (role operator,
link_loss_action = "local_actuated") and controllers/elm-and-oak.toml:

  1. a heartbeat query is answered;
  2. every implemented data class is read (query, attribute/element 0);
  3. plan 2 is set as a stage chain with stage times, then selected with
     coordinated mode through centre control; the run status, polled at
     10 Hz, must switch plan at a stage boundary (every stage boundary of
     this controller is a barrier), never inside a stage's green;
  4. an invalid stage plan (a stage time below the phase's minimum
     service) and a stage chain the ring-barrier sequence cannot run are
     refused with error code 0x10 (bad value);
  5. the centre goes silent past the heartbeat timeout: the controller's
     fault action (local actuated) must show in the run status;
  6. a weekday day plan is set and read back, and one naming a plan the
     controller lacks is refused with 0x10;
  7. schedule rows are set (Saturday and Sunday to day plan 1, a holiday on
     4 July to day plan 2) and read back, and a row of two months is
     refused with 0x10;
  8. phase safety (0x07), transition constraints (0x0A) and the fault log
     (0x10) read as elm-and-oak's ring-barrier model says.

With --udp ADDR the centre also speaks over UDP (no escaping): a heartbeat
and a read of the run status.

Prints one line per check and "N passed, M failed"; exits non-zero on a
failure. Used by tests/gbt20999.rs; by hand:

    python tools/interop/gbt20999_client.py --addr 127.0.0.1:20999
"""

import argparse
import socket
import struct
import sys
import time

START, END, ESC = 0x7E, 0x7D, 0x5C
QUERY, QUERY_REPLY, QUERY_ERROR = 0x10, 0x20, 0x21
SET, SET_REPLY, SET_ERROR = 0x30, 0x40, 0x41
REPORT, HEARTBEAT, HEARTBEAT_REPLY = 0x60, 0x70, 0x80
BAD_VALUE = 0x10

# class -> what it is, for the printout
CLASSES = {
    0x01: "device info",
    0x02: "base info",
    0x03: "lamp groups",
    0x04: "phases",
    0x05: "detectors",
    0x06: "phase stages",
    0x07: "phase safety",
    0x09: "plans",
    0x0A: "transition constraints",
    0x0B: "day plans",
    0x0C: "schedules",
    0x0D: "run status",
    0x0E: "traffic data",
    0x0F: "alarms",
    0x10: "fault log",
}


def crc16(data: bytes) -> int:
    """x^16 + x^12 + x^2 + 1, initial 0, MSB first, no final XOR."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1005) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def build(kind, seq, values, controller, intersection=1, centre=5, version=0x0100, escape=True):
    """A frame on the wire (TCP: escaped; UDP: not). values: [(class, obj, attr, elem, bytes)]."""
    items = b""
    for index, (cls, obj, attr, elem, value) in enumerate(values, start=1):
        items += bytes([index, 4 + len(value), cls, obj, attr, elem]) + value
    rest = struct.pack(">HBIBBBB", version, centre, controller, intersection, seq, kind, len(values)) + items
    body = struct.pack(">H", len(rest) + 2) + rest
    body += struct.pack(">H", crc16(body))
    wire = bytearray([START])
    for b in body:
        if escape and b in (START, END, ESC):
            wire.append(ESC)
        wire.append(b)
    wire.append(END)
    return bytes(wire)


def parse(body: bytes):
    """An unescaped body (length ... CRC) as a dict; raises on a bad frame."""
    (length,) = struct.unpack(">H", body[:2])
    if length != len(body) - 2:
        raise ValueError(f"length field {length}, frame {len(body) - 2}")
    (crc,) = struct.unpack(">H", body[-2:])
    if crc != crc16(body[:-2]):
        raise ValueError(f"CRC {crc:#06x}, computed {crc16(body[:-2]):#06x}")
    version, centre, controller, intersection, seq, kind, count = struct.unpack(">HBIBBBB", body[2:13])
    values, at = [], 13
    for _ in range(count):
        index, n = body[at], body[at + 1]
        cls, obj, attr, elem = body[at + 2 : at + 6]
        values.append((index, cls, obj, attr, elem, bytes(body[at + 6 : at + 2 + n])))
        at += 2 + n
    if at != len(body) - 2:
        raise ValueError("data values do not fill the frame")
    return {"kind": kind, "seq": seq, "controller": controller, "intersection": intersection, "values": values}


class Centre:
    def __init__(self, addr, controller):
        host, port = addr.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.controller = controller
        self.seq = 0
        self.buf = bytearray()
        self.reports = 0

    def frames(self):
        """Frames already received, unescaped and parsed."""
        out = []
        while True:
            try:
                start = self.buf.index(START)
            except ValueError:
                self.buf.clear()
                return out
            body, i, done = bytearray(), start + 1, False
            while i < len(self.buf):
                b = self.buf[i]
                if b == ESC and i + 1 < len(self.buf):
                    body.append(self.buf[i + 1])
                    i += 2
                    continue
                if b == ESC:
                    break
                if b == END:
                    done = True
                    break
                body.append(b)
                i += 1
            if not done:
                del self.buf[:start]
                return out
            del self.buf[: i + 1]
            out.append(parse(bytes(body)))

    def call(self, kind, values):
        """Sends a frame and returns the reply with its sequence number; counts reports on the way."""
        self.seq = (self.seq + 1) % 256
        self.sock.sendall(build(kind, self.seq, values, self.controller))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for frame in self.frames():
                if frame["kind"] == REPORT:
                    self.reports += 1
                elif frame["seq"] == self.seq:
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the controller closed the connection")
            self.buf += chunk
        raise TimeoutError(f"no reply to sequence {self.seq}")

    def read(self, cls, obj=0, attr=0, elem=0):
        reply = self.call(QUERY, [(cls, obj, attr, elem, b"")])
        if reply["kind"] != QUERY_REPLY:
            raise RuntimeError(f"query {cls:#04x}.{obj}.{attr}.{elem}: reply type {reply['kind']:#04x}")
        return {(c, o, a, e): v for (_, c, o, a, e, v) in reply["values"]}

    def run_status(self):
        v = self.read(0x0D, 2)
        return v[(0x0D, 2, 2, 1)][0], v[(0x0D, 2, 3, 1)][0], v[(0x0D, 2, 4, 1)][0]

    def stage_state(self, stage):
        return self.read(0x06, 3, 2, stage)[(0x06, 3, 2, stage)][0]


def udp_call(addr, controller, kind, values, seq=1):
    """One datagram (a whole unescaped frame) and its reply."""
    host, port = addr.rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(build(kind, seq, values, controller, escape=False), (host, int(port)))
        data, _ = sock.recvfrom(65536)
    if data[0] != START or data[-1] != END:
        raise ValueError("a datagram is one frame between 0x7E and 0x7D")
    return parse(bytes(data[1:-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--addr", required=True)
    ap.add_argument("--udp", help="the adapter's UDP address, to check the UDP link too")
    ap.add_argument("--controller-id", type=int, default=1)
    ap.add_argument("--heartbeat-timeout-s", type=float, default=2.0)
    args = ap.parse_args()
    passed, failed = 0, 0

    def check(name, ok, detail=""):
        nonlocal passed, failed
        print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
        if ok:
            passed += 1
        else:
            failed += 1

    c = Centre(args.addr, args.controller_id)

    reply = c.call(HEARTBEAT, [])
    check("heartbeat", reply["kind"] == HEARTBEAT_REPLY, f"reply type {reply['kind']:#04x}")

    # Wait until the controller runs: before its first snapshot there is
    # no run status (not present), then start-up flash and all red (stage 0).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if c.run_status()[2] != 0:
                break
        except RuntimeError:
            pass
        time.sleep(0.2)

    read = {}
    for cls, name in CLASSES.items():
        try:
            read[cls] = c.read(cls)
            check(f"read class {cls:#04x} {name}", len(read[cls]) > 0, f"{len(read[cls])} values")
        except Exception as e:  # noqa: BLE001 - every failure is one failed check
            check(f"read class {cls:#04x} {name}", False, str(e))
    maker = read.get(0x01, {}).get((1, 1, 0, 0), b"").rstrip(b"\0").decode()
    check("device maker", maker == "Greenwave", maker)
    road = read.get(0x02, {}).get((2, 1, 0, 0), b"").rstrip(b"\0").decode()
    check("installation road", road == "Elm St & Oak Ave", road)
    phases = read.get(0x04, {})
    min_green_2 = struct.unpack(">H", phases.get((4, 2, 0x1B, 2), b"\0\0"))[0]
    check("phase 2 minimum green", min_green_2 == 8, f"{min_green_2} s")
    stages = {e: int.from_bytes(v, "big") for (c_, o, a, e), v in read.get(0x06, {}).items() if (o, a) == (2, 2)}
    check("stage view: {2}, {4}", stages == {1: 1 << 1, 2: 1 << 3}, str(stages))
    plan2 = read.get(0x09, {})
    chain = list(plan2.get((9, 2, 6, 2), b""))
    times = struct.unpack(">HH", plan2.get((9, 2, 7, 2), b"\0\0\0\0"))
    check("plan 2 as stages", chain == [1, 2] and times == (42, 28), f"chain {chain} times {times}")

    # A plan set: plan 2's stage times 40 s + 30 s (cycle 70 s).
    reply = c.call(SET, [(0x09, 2, 6, 2, bytes([1, 2])), (0x09, 2, 7, 2, struct.pack(">HH", 40, 30))])
    check("plan set accepted", reply["kind"] == SET_REPLY, f"reply type {reply['kind']:#04x}")
    times = struct.unpack(">HH", c.read(0x09, 2, 7, 2)[(9, 2, 7, 2)])
    check("plan 2 reads back", times == (40, 30), str(times))

    # Invalid sets, refused with the standard's bad-value code.
    reply = c.call(SET, [(0x09, 2, 6, 2, bytes([1, 2])), (0x09, 2, 7, 2, struct.pack(">HH", 5, 65))])
    codes = [v[5] for v in reply["values"]]
    check(
        "stage time below the minimum refused",
        reply["kind"] == SET_ERROR and codes == [bytes([BAD_VALUE])] * 2,
        f"type {reply['kind']:#04x} codes {codes}",
    )
    reply = c.call(SET, [(0x09, 2, 6, 2, bytes([2, 2])), (0x09, 2, 7, 2, struct.pack(">HH", 35, 35))])
    codes = [v[5] for v in reply["values"]]
    check(
        "stage chain out of sequence refused",
        reply["kind"] == SET_ERROR and codes == [bytes([BAD_VALUE])] * 2,
        f"type {reply['kind']:#04x} codes {codes}",
    )
    times = struct.unpack(">HH", c.read(0x09, 2, 7, 2)[(9, 2, 7, 2)])
    check("refused sets changed nothing", times == (40, 30), str(times))

    # Centre control as the captured frame addresses it: plan 2, coordinated.
    # The daemon runs on the host's clock, and the schedule asks for plan 2
    # on weekdays from 07:00 to 19:00: put plan 1 in force first, so that
    # the switch to plan 2 is seen at any hour.
    if c.run_status()[1] == 2:
        c.call(SET, [(0x11, 1, 3, 1, bytes([1]))])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and c.run_status()[1] != 1:
            time.sleep(0.1)
    before = c.run_status()
    check("plan 1 in force before centre control", before[1] == 1, f"plan {before[1]}")
    reply = c.call(SET, [(0x11, 1, 3, 1, bytes([2])), (0x11, 1, 4, 1, bytes([0x23]))])
    check("centre control plan 2, mode 0x23", reply["kind"] == SET_REPLY, f"reply type {reply['kind']:#04x}")
    samples = [(before, c.stage_state(before[2]))]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and samples[-1][0][1] != 2:
        time.sleep(0.1)
        status = c.run_status()
        samples.append((status, c.stage_state(status[2]) if status[2] else 0))
    (prev, prev_state), (now, _) = samples[-2], samples[-1]
    switched = now[1] == 2
    # At a barrier: the stage changed, or the one before was in its clearance.
    at_boundary = switched and (now[2] != prev[2] or prev_state == 0x30)
    check(
        "plan 2 in force at a barrier",
        at_boundary,
        f"plan {before[1]} -> {now[1]} after {len(samples) - 1} polls; stage {prev[2]} ({prev_state:#04x}) -> {now[2]}",
    )
    check("mode local coordinated", now[0] == 0x23, f"{now[0]:#04x}")

    # Silence: no frame for longer than the heartbeat timeout.
    time.sleep(args.heartbeat_timeout_s + 1.5)
    deadline = time.monotonic() + 90
    mode = c.run_status()[0]
    while time.monotonic() < deadline and mode != 0x22:
        time.sleep(0.5)
        mode = c.run_status()[0]
    check("heartbeat loss: local actuated (fault action 0x60)", mode == 0x22, f"mode {mode:#04x}")
    check("active reports received", c.reports > 0, f"{c.reports} reports")

    # Day plan 1 (weekday): 00:00 plan 1, 06:30 plan 2, 19:00 plan 1; then
    # one naming a plan the controller does not have, refused.
    starts, plans = bytes([0, 0, 6, 30, 19, 0]), bytes([1, 2, 1])
    reply = c.call(SET, [(0x0B, 2, 3, 1, starts), (0x0B, 2, 4, 1, plans)])
    check("day plan set accepted", reply["kind"] == SET_REPLY, f"reply type {reply['kind']:#04x}")
    day = c.read(0x0B, 2, 0, 1)
    check(
        "day plan 1 reads back",
        day.get((0x0B, 2, 3, 1)) == starts and day.get((0x0B, 2, 4, 1)) == plans,
        str(day),
    )
    reply = c.call(SET, [(0x0B, 2, 3, 1, bytes([0, 0])), (0x0B, 2, 4, 1, bytes([9]))])
    codes = [v[5] for v in reply["values"]]
    check(
        "day plan with an unknown plan refused",
        reply["kind"] == SET_ERROR and codes == [bytes([BAD_VALUE])] * 2,
        f"type {reply['kind']:#04x} codes {codes}",
    )

    # Schedules: lining's layout (weekday bit 0 Sunday, month bit 1 January,
    # date bit 0 the 1st). Saturday and Sunday run day plan 1 (weekday),
    # 4 July runs day plan 2 (weekend); two months in one row are refused.
    every_month, every_date = struct.pack(">H", 0x1FFE), struct.pack(">I", 0x7FFFFFFF)
    weekend = bytes([0b100_0001])
    reply = c.call(SET, [(0x0C, 2, 4, 2, weekend), (0x0C, 2, 5, 2, every_month), (0x0C, 2, 6, 2, every_date),
                         (0x0C, 2, 7, 2, bytes([1]))])
    check("schedule set: weekend runs day plan 1", reply["kind"] == SET_REPLY, f"reply type {reply['kind']:#04x}")
    july_4 = (struct.pack(">H", 1 << 7), struct.pack(">I", 1 << 3))
    reply = c.call(SET, [(0x0C, 2, 4, 9, bytes([0x7F])), (0x0C, 2, 5, 9, july_4[0]), (0x0C, 2, 6, 9, july_4[1]),
                         (0x0C, 2, 7, 9, bytes([2]))])
    check("schedule set: 4 July holiday", reply["kind"] == SET_REPLY, f"reply type {reply['kind']:#04x}")
    rows = c.read(0x0C, 2)
    by_row = {}
    for (_, o, a, e), v in rows.items():
        by_row.setdefault(e, {})[a] = v
    week_rows = [r for r in by_row.values() if r.get(5) == every_month]
    check(
        "schedules read back: every day runs day plan 1",
        len(week_rows) == 1 and week_rows[0].get(4) == bytes([0x7F]) and week_rows[0].get(7) == bytes([1]),
        str(week_rows),
    )
    holiday = [r for r in by_row.values() if (r.get(5), r.get(6)) == july_4]
    check("schedules read back: 4 July", len(holiday) == 1 and holiday[0].get(7) == bytes([2]), str(holiday))
    reply = c.call(SET, [(0x0C, 2, 4, 3, bytes([0x7F])), (0x0C, 2, 5, 3, struct.pack(">H", 0b110)),
                         (0x0C, 2, 6, 3, every_date), (0x0C, 2, 7, 3, bytes([2]))])
    codes = [v[5] for v in reply["values"]]
    check(
        "schedule row of two months refused",
        reply["kind"] == SET_ERROR and codes == [bytes([BAD_VALUE])] * 4,
        f"type {reply['kind']:#04x} codes {codes}",
    )

    # Phase safety: one ring (2, 4), so 2 and 4 conflict; from 2 to 4 the
    # green interval is yellow 3.5 + red clearance 2.0 s.
    safety = read.get(0x07, {})
    conflicts_2 = int.from_bytes(safety.get((7, 1, 2, 2), b""), "big")
    check("phase 2 conflicts with phase 4", conflicts_2 == 1 << 3, f"{conflicts_2:#x}")
    green_2 = safety.get((7, 2, 2, 2), b"")
    check("green interval 2 -> 4 is 5.5 s", len(green_2) == 64 and green_2[3] == 55, str(list(green_2[:4])))
    # Transitions: stage 2 ({4}) back to itself passes stage 1 ({2}, on recall).
    constraints = read.get(0x0A, {})
    row_2 = list(constraints.get((0x0A, 1, 2, 2), b"")[:2])
    check("transition constraints of stage 2", row_2 == [0, 1], str(row_2))
    faults = read.get(0x10, {}).get((0x10, 1, 0, 0), b"")
    check("fault log count", len(faults) == 4, f"{int.from_bytes(faults, 'big') if faults else None} faults")

    if args.udp:
        reply = udp_call(args.udp, args.controller_id, HEARTBEAT, [])
        check("UDP heartbeat", reply["kind"] == HEARTBEAT_REPLY, f"reply type {reply['kind']:#04x}")
        reply = udp_call(args.udp, args.controller_id, QUERY, [(0x0D, 2, 0, 0, b"")], seq=2)
        values = {(c_, o, a, e): v for (_, c_, o, a, e, v) in reply["values"]}
        check(
            "UDP read of the run status",
            reply["kind"] == QUERY_REPLY and (0x0D, 2, 2, 1) in values,
            f"reply type {reply['kind']:#04x}, {len(values)} values",
        )

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
