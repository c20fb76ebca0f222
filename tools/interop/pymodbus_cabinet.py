"""A cabinet played by pymodbus, an independent Modbus peer, for greenwave's
interop test (tests/modbus.rs runs it with the venv's interpreter).

It serves greenwave's default register map (docs/modbus.md) on a free
loopback port, printed as `PORT <n>`, and checks everything the daemon
writes, independently of greenwave's own code:
- every write is one FC16 of holding registers 0..43 (vehicle, ped,
  overlap, heartbeat, requested mode, flash reason);
- indications are valid values; the heartbeat moves by one per write;
- its own conflict check for elm-and-oak: phases 2 and 4 (one ring, a
  barrier between them) are never green or yellow together;
- the daemon serves both phases once their detectors call them (it sets
  presence on channel 3, which calls phase 4, and counts on the volume
  counters, wrapping them past 65535);
- after the test stops the daemon (it prints `SEEN`, the test sends SIGTERM
  and then `STOP` on stdin), the last write is flash with reason 9
  (shutdown).
Prints `OK <summary>` and exits 0, or `FAIL <reason>` and exits 1.
"""

import asyncio
import sys
import time

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.pdu.register_message import WriteMultipleRegistersRequest
from pymodbus.server import ModbusTcpServer

GREEN, YELLOW = 3, 2
HOLDING = 43  # registers the daemon writes without lockstep

writes = []  # (time, registers)
problems = []


def check_write(pdu):
    regs = list(pdu.registers)
    if pdu.address != 0 or len(regs) != HOLDING:
        problems.append(f"write at {pdu.address} of {len(regs)} registers, expected 0 of {HOLDING}")
        return
    vehicle, ped, overlap = regs[0:16], regs[16:32], regs[32:40]
    hb, mode, reason = regs[40], regs[41], regs[42]
    if any(v > 5 for v in vehicle + overlap) or any(v > 3 for v in ped):
        problems.append(f"invalid indication in {regs[:40]}")
    if vehicle[1] in (GREEN, YELLOW) and vehicle[3] in (GREEN, YELLOW):
        problems.append(f"CONFLICT: phases 2 and 4 permissive together: {vehicle[:4]}")
    if mode not in (1, 2):
        problems.append(f"requested mode {mode}")
    if writes and hb != (writes[-1][1][40] + 1) % 65536:
        problems.append(f"heartbeat jumped from {writes[-1][1][40]} to {hb}")
    writes.append((time.monotonic(), regs))


def trace_pdu(sending, pdu):
    if not sending and isinstance(pdu, WriteMultipleRegistersRequest):
        check_write(pdu)
    return pdu


async def main():
    device = ModbusDeviceContext(
        ir=ModbusSequentialDataBlock(1, [0] * 110), hr=ModbusSequentialDataBlock(1, [0] * 100)
    )
    context = ModbusServerContext(devices={1: device}, single=False)
    server = ModbusTcpServer(context, address=("127.0.0.1", 0), trace_pdu=trace_pdu)
    await server.serve_forever(background=True)
    port = server.transport.sockets[0].getsockname()[1]
    print(f"PORT {port}", flush=True)

    counter = 65530  # volume counter of channel 3: wraps during the test
    await server.async_setValues(1, 4, 10 + 2, [counter])
    seen = {2: False, 4: False}
    # The clock starts at the daemon's first write, not at start-up: on a
    # loaded machine the daemon may take a while to connect.
    deadline = None
    while not all(seen.values()) and (deadline is None or time.monotonic() < deadline) and not problems:
        await asyncio.sleep(0.1)
        if writes:
            if deadline is None:
                deadline = writes[0][0] + 60
            v = writes[-1][1]
            seen[2] |= v[1] == GREEN
            seen[4] |= v[3] == GREEN
        # A car on the Oak EB loop (channel 3, calls phase 4) until phase 4 is green.
        present = 0 if seen[4] else 1 << 2
        await server.async_setValues(1, 4, 0, [present])
        if present:
            counter = (counter + 1) % 65536
            await server.async_setValues(1, 4, 10 + 2, [counter])
    if problems or not all(seen.values()):
        print(f"FAIL {problems[:3] or f'phases not served: {seen}'}", flush=True)
        sys.exit(1)
    print("SEEN", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await server.shutdown()
    last = writes[-1][1]
    if last[41] != 2 or last[42] != 9:
        problems.append(f"last write is not shutdown flash: mode {last[41]}, reason {last[42]}, heads {last[:4]}")
    if problems:
        print(f"FAIL {problems[:3]}", flush=True)
        sys.exit(1)
    print(f"OK {len(writes)} writes checked, heartbeat {writes[0][1][40]}..{last[40]}, final flash reason {last[42]}", flush=True)


asyncio.run(main())
