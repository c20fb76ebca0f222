#!/usr/bin/env python3
"""Independent gRPC peer for Greenwave: Python grpcio against the daemon.

Generates stubs from proto/ with grpc_tools.protoc into a temp directory,
then checks, in order: reflection lists the services (grpcio-reflection,
which speaks v1alpha), health is SERVING (grpcio-health-checking), events
stream with increasing sequence numbers, a viewer token is denied a control
call, a bad timing plan is rejected naming the field, a plan with five
errors gets all five by proto field, a good plan is applied and then shows
in the state stream, and (with --log-dir, a daemon whose time_zone is UTC)
ReadEventLog gives exactly the lines the files on disk hold.

Persistence across a restart (issue #15.5), in two steps around a restart
of a daemon that runs a controllers directory: `--persist-step apply` runs
the checks above, then applies a plan and a mode and sees them saved (the
controller file's header, ListVersions); `--persist-step verify`, against
the restarted daemon, runs only the persistence checks: the plan and the
mode are in force again, and a rollback to the engineer's file (version 1)
runs that file's plan.

Usage: grpc_client.py --addr HOST:PORT --viewer-token T --operator-token T
       [--proto-dir proto] [--intersection elm-and-oak] [--log-dir DIR]
       [--persist-step apply|verify --controllers-dir DIR]
Exit status 0 when every check passed; prints "N passed, M failed" last.
"""

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from grpc_tools import protoc


def stubs(proto_dir, out):
    rc = protoc.main([
        "grpc_tools.protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}",
        "greenwave/v1/greenwave.proto",
    ])
    if rc != 0:
        raise SystemExit(f"protoc failed ({rc})")
    sys.path.insert(0, out)
    from greenwave.v1 import greenwave_pb2, greenwave_pb2_grpc  # noqa: E402
    return greenwave_pb2, greenwave_pb2_grpc


class Checks:
    """Runs named checks in order, printing each; a failed check is reported
    and the others still run. `summary()` prints "N passed, M failed" and
    gives the exit status."""

    def __init__(self):
        self.results = []

    def __call__(self, name, fn):
        try:
            detail = fn()
            self.results.append(True)
            print(f"ok   {name}: {detail}", flush=True)
        except Exception as e:  # a failed check is reported, the others still run
            self.results.append(False)
            print(f"FAIL {name}: {e!r}", flush=True)

    def summary(self):
        passed = sum(self.results)
        print(f"{passed} passed, {len(self.results) - passed} failed")
        return 0 if all(self.results) else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--viewer-token", required=True)
    ap.add_argument("--operator-token", required=True)
    ap.add_argument("--proto-dir", default="proto")
    ap.add_argument("--intersection", default="elm-and-oak")
    ap.add_argument("--timeout-s", type=float, default=120.0)
    ap.add_argument("--log-dir", type=Path, help="the daemon's event log directory (its time_zone UTC)")
    ap.add_argument("--persist-step", choices=["apply", "verify"],
                    help="persistence across a restart: apply before it, verify after it (only those checks)")
    ap.add_argument("--controllers-dir", type=Path, help="the daemon's controllers directory (--persist-step)")
    args = ap.parse_args()

    out = tempfile.mkdtemp(prefix="greenwave-stubs-")
    pb, rpc = stubs(args.proto_dir, out)
    channel = grpc.insecure_channel(args.addr)
    grpc.channel_ready_future(channel).result(timeout=30)
    viewer = [("authorization", f"Bearer {args.viewer_token}")]
    operator = [("authorization", f"Bearer {args.operator_token}")]
    watch = rpc.WatchStub(channel)
    control = rpc.ControlStub(channel)
    check = Checks()

    def reflection():
        services = set(ProtoReflectionDescriptorDatabase(channel).get_services())
        want = {"greenwave.v1.Watch", "greenwave.v1.Control", "greenwave.v1.Ingest", "grpc.health.v1.Health"}
        missing = want - services
        assert not missing, f"missing {missing} in {services}"
        return sorted(services)

    def health():
        status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert status.status == health_pb2.HealthCheckResponse.SERVING, status
        return "SERVING"

    def events():
        stream = watch.StreamEvents(pb.StreamEventsRequest(from_seq=1), metadata=viewer, timeout=30)
        seqs = []
        for msg in stream:
            if msg.WhichOneof("item") == "event":
                seqs.append(msg.event.seq)
            if len(seqs) == 10:
                stream.cancel()
                break
        assert seqs == sorted(seqs) and len(set(seqs)) == 10, seqs
        return f"seq {seqs[0]}..{seqs[-1]}"

    def viewer_denied():
        try:
            control.SetMode(pb.SetModeRequest(intersection_id=args.intersection, mode=pb.MODE_FLASH),
                            metadata=viewer, timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.PERMISSION_DENIED, e.code()
            assert "viewer" in e.details(), e.details()
            return e.details()
        raise AssertionError("a viewer changed the mode")

    def plan(cycle_s, splits):
        return pb.ApplyTimingPlanRequest(
            intersection_id=args.intersection,
            plan=pb.TimingPlan(number=2, name="interop", mode=pb.PLAN_MODE_COORDINATED, cycle_s=cycle_s,
                               offset_s=12, coordinated=[2],
                               splits_s=[pb.PhaseSplit(phase=2, split_s=splits[0]),
                                         pb.PhaseSplit(phase=4, split_s=splits[1])]),
            activate=True)

    def plan_error():
        try:
            control.ApplyTimingPlan(plan(80, (60, 30)), metadata=operator, timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
            assert "splits_s" in e.details(), e.details()
            return e.details()
        raise AssertionError("a plan whose splits exceed its cycle was accepted")

    def five_errors():
        bad = pb.TimingPlan(number=300, mode=pb.PLAN_MODE_UNSPECIFIED, name="x" * 65, cycle_s=80,
                            splits_s=[pb.PhaseSplit(phase=2, split_s=40), pb.PhaseSplit(phase=99, split_s=40)],
                            coordinated=[2, 2])
        try:
            control.ApplyTimingPlan(pb.ApplyTimingPlanRequest(intersection_id=args.intersection, plan=bad),
                                    metadata=operator, timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.code()
            d = e.details()
            assert d.startswith("timing plan rejected (5 errors)"), d
            fields = ["plan.number", "plan.mode", "plan.name", "plan.splits_s[1].phase", "plan.coordinated[1]"]
            at = [d.find(f + ":") for f in fields]
            assert all(i >= 0 for i in at) and at == sorted(at), d
            return d
        raise AssertionError("a plan with five errors was accepted")

    def wait_state(what, pred):
        deadline = time.monotonic() + args.timeout_s
        stream = watch.WatchState(pb.WatchStateRequest(intersection_ids=[args.intersection], min_interval_ms=200),
                                  metadata=viewer, timeout=args.timeout_s)
        for update in stream:
            if pred(update.state):
                stream.cancel()
                return update.state
            if time.monotonic() > deadline:
                break
        raise AssertionError(f"never saw {what} in the state stream")

    def good_plan():
        reply = control.ApplyTimingPlan(plan(80, (50, 30)), metadata=operator, timeout=10)
        assert reply.config_version >= 2, reply
        s = wait_state("the applied plan", lambda s: s.plan_number == 2 and s.cycle_ms == 80000
                       and s.config_version == reply.config_version)
        return f"version {reply.config_version} in force: plan {s.plan_number}, cycle {s.cycle_ms} ms"

    def history():
        # A cut the daemon flushed long ago (it flushes every second), on a
        # tenth of a second as the timestamps are.
        cut_ms = (int(time.time() * 1000) - 3000) // 100 * 100
        chunks = watch.ReadEventLog(pb.ReadEventLogRequest(intersection_id=args.intersection, to_unix_ms=cut_ms),
                                    metadata=viewer, timeout=10)
        pulled = "".join(c.csv for c in chunks).splitlines()
        assert pulled[0] == "SignalID,Timestamp,EventCode,EventParam", pulled[:1]
        cut = datetime.fromtimestamp(cut_ms / 1000, tz=timezone.utc)
        cut_s = cut.strftime("%Y-%m-%d %H:%M:%S") + f".{cut.microsecond // 100000}"
        disk = [line
                for f in sorted(args.log_dir.glob("greenwave-events-*.csv"))
                for line in f.read_text().splitlines()
                if line.startswith(args.intersection + ",") and line.split(",")[1] < cut_s]
        assert disk, "no events on disk before the cut"
        assert pulled[1:] == disk, f"{len(pulled) - 1} pulled, {len(disk)} on disk"
        return f"{len(disk)} events before {cut_s} UTC, line for line as on disk"

    # Persistence (issue #15.5). Plan 2 of the controller is 70 s; the
    # centre retimes it to 90 s and runs it fixed time.
    def fixed_90_s(s):
        return s.plan_number == 2 and s.cycle_ms == 90000 and s.mode == pb.MODE_FIXED

    def versions():
        return control.ListVersions(pb.ListVersionsRequest(intersection_id=args.intersection),
                                    metadata=operator, timeout=10).versions

    def persist_apply():
        reply = control.ApplyTimingPlan(plan(90, (60, 30)), metadata=operator, timeout=10)
        assert reply.saved_version > 1, reply
        control.SetMode(pb.SetModeRequest(intersection_id=args.intersection, mode=pb.MODE_FIXED),
                        metadata=operator, timeout=10)
        wait_state("plan 2 at 90 s fixed time", fixed_90_s)
        current = [v for v in versions() if v.current]
        assert [v.number for v in current] == [reply.saved_version], current
        assert current[0].saved_by == "tmc (operator)", current[0]
        assert current[0].method == "greenwave.v1.Control/ApplyTimingPlan", current[0]
        header = (args.controllers_dir / f"{args.intersection}.toml").read_text().splitlines()[:4]
        assert header[0] == f"# greenwave-version: {reply.saved_version}", header
        return f"saved as version {reply.saved_version}: {header}"

    def persist_verify():
        s = wait_state("plan 2 at 90 s fixed time after the restart", fixed_90_s)
        current = [v.number for v in versions() if v.current]
        assert len(current) == 1, current
        return f"version {current[0]} in force: plan {s.plan_number}, cycle {s.cycle_ms} ms, mode FIXED"

    def persist_rollback():
        engineers = versions()[0]
        assert engineers.number == 1 and engineers.method == "file", engineers
        reply = control.RollbackVersion(pb.RollbackVersionRequest(intersection_id=args.intersection, number=1),
                                        metadata=operator, timeout=10)
        s = wait_state("the engineer's 70 s plan 2", lambda s: s.plan_number == 2 and s.cycle_ms == 70000)
        text = (args.controllers_dir / f"{args.intersection}.toml").read_text()
        assert "# what: rollback to version 1" in text, text[:400]
        return f"saved as version {reply.saved_version}; plan {s.plan_number} back at {s.cycle_ms} ms"

    if args.persist_step == "verify":
        check("persistence: after a restart the applied plan and mode are in force", persist_verify)
        check("persistence: rollback to the engineer's file", persist_rollback)
    else:
        check("reflection lists the services", reflection)
        check("health", health)
        check("events stream with sequence numbers", events)
        check("viewer denied a control call", viewer_denied)
        check("bad plan rejected naming the field", plan_error)
        check("a plan with five errors gets all five, by proto field", five_errors)
        check("good plan applied and visible in the state stream", good_plan)
        if args.log_dir:
            check("history pulled from the event log files", history)
        if args.persist_step == "apply":
            check("persistence: a plan and a mode applied are saved", persist_apply)
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
