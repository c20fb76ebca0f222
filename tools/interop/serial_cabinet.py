"""A serial Modbus RTU cabinet played by pymodbus, an independent peer, for
greenwave's RTU interop test (tests/modbus.rs runs it with the venv's
interpreter on one end of a pseudo-terminal pair made by socat).

    serial_cabinet.py PORT [BAUD]

It serves greenwave's default register map (docs/modbus.md: input
registers 0..108 read with FC04, holding registers 0..43 written with FC16,
the heartbeat read back with FC03)
as unit 1 over RTU framing, and answers one request at a time, in order,
as a serial device does. Prints `READY` once the port is open, then obeys
commands on stdin, one per line:

- `LATE <ms>`: answer the next input register read <ms> late (a cabinet
  busy with something else); prints `LATE ANSWERED writes=<n>` once that
  answer is on the line, <n> being the writes applied so far.
- `STATS`: prints `STATS reads=<n> writes=<n> answers=<n> heartbeat=<n>`
  (answers: frames sent, the late one included).
- `STOP`: prints `OK <summary>` (or `FAIL <reason>`) and exits.

Every write must be one FC16 of holding registers 0..43 with valid
indications; anything else is reported by `STOP` as `FAIL`.
"""

import asyncio
import sys

from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer

HOLDING = 43  # registers the daemon writes without lockstep
READ_INPUTS, WRITE_HOLDINGS = 4, 16


class Cabinet:
    """The server's datastore, one request at a time, with one answer
    delayed on command."""

    def __init__(self, store):
        self.store = store
        self.busy = asyncio.Lock()
        self.late_ms = None
        self.reads = 0
        self.writes = 0
        self.heartbeat = None
        self.problems = []

    def device_ids(self):
        return self.store.device_ids()

    async def async_getValues(self, device_id, func_code, address, count=1):
        async with self.busy:
            values = await self.store.async_getValues(device_id, func_code, address, count)
            if func_code == READ_INPUTS:
                self.reads += 1
                if self.late_ms is not None:
                    delay, self.late_ms = self.late_ms, None
                    await asyncio.sleep(delay / 1000)
                    # pymodbus sends the answer as soon as this returns.
                    asyncio.get_running_loop().call_soon(
                        lambda: print(f"LATE ANSWERED writes={self.writes}", flush=True)
                    )
            return values

    async def async_setValues(self, device_id, func_code, address, values):
        async with self.busy:
            regs = list(values)
            if func_code != WRITE_HOLDINGS or address != 0 or len(regs) != HOLDING:
                self.problems.append(f"FC{func_code} at {address} of {len(regs)} registers")
            elif any(v > 5 for v in regs[:16] + regs[32:40]) or any(v > 3 for v in regs[16:32]):
                self.problems.append(f"invalid indication in {regs[:40]}")
            else:
                self.writes += 1
                self.heartbeat = regs[40]
            return await self.store.async_setValues(device_id, func_code, address, values)


async def main():
    port = sys.argv[1]
    baud = int(sys.argv[2]) if len(sys.argv) > 2 else 115200
    device = ModbusDeviceContext(
        ir=ModbusSequentialDataBlock(1, [0] * 110), hr=ModbusSequentialDataBlock(1, [0] * 100)
    )
    answers = 0

    def count_answers(sending, pdu):
        nonlocal answers
        answers += sending
        return pdu

    server = ModbusSerialServer(
        ModbusServerContext(devices={1: device}, single=False),
        framer=FramerType.RTU,
        port=port,
        baudrate=baud,
        parity="N",
        trace_pdu=count_answers,
    )
    cabinet = Cabinet(server.context)
    server.context = cabinet
    await server.serve_forever(background=True)
    print("READY", flush=True)

    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "STOP":
            break
        if line[0] == "LATE":
            cabinet.late_ms = int(line[1])
        elif line[0] == "STATS":
            print(
                f"STATS reads={cabinet.reads} writes={cabinet.writes} answers={answers} heartbeat={cabinet.heartbeat}",
                flush=True,
            )
    await server.shutdown()
    if cabinet.problems:
        print(f"FAIL {cabinet.problems[:3]}", flush=True)
        sys.exit(1)
    print(f"OK {cabinet.reads} reads, {cabinet.writes} writes, {answers} answers", flush=True)


asyncio.run(main())
