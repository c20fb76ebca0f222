"""Reads a running cabinet's pedestrian countdown and accessible signal
registers with pymodbus, an independent Modbus client, for greenwave's
interop test (tests/modbus.rs runs it against `greenwave sim-cabinet`
while `greenwave run` drives it with `ped_outputs = true`).

Usage: ped_countdown_reader.py PORT PHASE PED_CLEAR_S

It polls holding registers 16..66 (docs/modbus.md: `ped` 16..32,
`ped_countdown` 47..63, `aps` 63..66) every 50 ms until crossing PHASE has
shown one whole pedestrian clearance (flashing don't walk, from its walk
to its don't walk), and checks, independently of greenwave's code:
- during the walk the countdown is blank, the accessible walk bit is set
  and the locator tone bit is not;
- in the clearance the countdown is blank at most at its start, then never
  more than PED_CLEAR_S, never rising, and counts down to 1 or 2 (the last
  read may come up to a poll before the end);
- the clearance lasts at least PED_CLEAR_S (less a poll's rounding) and no
  longer than the first number read promised, give or take the polls;
- at don't walk the countdown is blank and the locator tone sounds.
Prints `OK <summary>` and exits 0, or `FAIL <reason>` and exits 1.
"""

import sys
import time

from pymodbus.client import ModbusTcpClient

DONT_WALK, CLEARANCE, WALK = 1, 2, 3
POLL_S = 0.05
# The daemon's tick and write, and this poll, each hold a value back.
SLACK_S = 0.5


def fail(reason):
    print(f"FAIL {reason}", flush=True)
    sys.exit(1)


def main():
    port, phase, ped_clear = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    bit = 1 << (phase - 1)
    client = ModbusTcpClient("127.0.0.1", port=port)
    if not client.connect():
        fail(f"cannot connect to 127.0.0.1:{port}")
    deadline = time.monotonic() + 150
    reads = []  # (time, ped, countdown, walk message, locator tone)
    while time.monotonic() < deadline:
        rr = client.read_holding_registers(16, count=50, device_id=1)
        if rr.isError():
            fail(f"read of holding registers 16..66: {rr}")
        regs = rr.registers
        ped, countdown = regs[phase - 1], regs[31 + phase - 1]
        walk_msg, locator = bool(regs[47] & bit), bool(regs[48] & bit)
        reads.append((time.monotonic(), ped, countdown, walk_msg, locator))
        # One walk, a clearance, then don't walk: done.
        peds = [r[1] for r in reads]
        if WALK in peds:
            after = peds[peds.index(WALK):]
            if CLEARANCE in after and DONT_WALK in after[after.index(CLEARANCE):]:
                break
        time.sleep(POLL_S)
    else:
        fail(f"crossing {phase} showed no whole clearance in 150 s")
    client.close()

    start = [r[1] for r in reads].index(WALK)
    walk = [r for r in reads[start:] if r[1] == WALK]
    if any(r[2] != 0 for r in walk):
        fail(f"a countdown during the walk: {[r[2] for r in walk]}")
    if not all(r[3] for r in walk) or any(r[4] for r in walk):
        fail(f"walk message / locator tone during the walk: {[(r[3], r[4]) for r in walk]}")
    first = start + len(walk)
    clearance = []
    for r in reads[first:]:
        if r[1] != CLEARANCE:
            break
        clearance.append(r)
    end = reads[first + len(clearance)]
    if end[1] != DONT_WALK or end[2] != 0 or not end[4]:
        fail(f"after the clearance: ped {end[1]} countdown {end[2]} locator {end[4]}")
    numbers = [r[2] for r in clearance]
    shown = [n for n in numbers if n]
    if not shown or numbers[len(numbers) - len(shown):] != shown:
        fail(f"blank inside the clearance: {numbers}")
    if any(b > a for a, b in zip(shown, shown[1:])):
        fail(f"the countdown rose: {numbers}")
    if shown[0] > ped_clear or shown[-1] > 2:
        fail(f"the countdown ran {shown[0]} .. {shown[-1]}, the clearance is {ped_clear} s: {numbers}")
    if any(r[3] for r in clearance) or not all(r[4] for r in clearance):
        fail("walk message or no locator tone in the clearance")
    lasted = end[0] - clearance[0][0]
    if lasted < ped_clear - SLACK_S:
        fail(f"the clearance lasted {lasted:.1f} s, less than {ped_clear} s")
    first_number = next(r for r in clearance if r[2])
    promised = first_number[0] + first_number[2]
    if end[0] > promised + SLACK_S:
        fail(f"flashing don't walk {end[0] - promised:.1f} s past what {first_number[2]} promised")
    print(
        f"OK crossing {phase}: walk {len(walk)} reads with the walk message, clearance {lasted:.1f} s "
        f"counted down {shown[0]} -> {shown[-1]} ({len(set(shown))} values), then don't walk, blank, locator tone",
        flush=True,
    )


if __name__ == "__main__":
    main()
