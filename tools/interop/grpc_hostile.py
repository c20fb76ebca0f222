#!/usr/bin/env python3
"""Hostile and daily-operation checks of Greenwave's gRPC API, from Python grpcio.

Against a daemon started by tests/grpc/interop.rs (two intersections, a
small event history, max_streams = 256), checks in order:
- the wrong-token flood: thousands of SetMode calls with a wrong token are
  refused (UNAUTHENTICATED, then RESOURCE_EXHAUSTED once the address is
  past its failed-authentication allowance), and the event history of real
  events is intact: no `lagged` gap, a handful of audit records whose
  `calls` add up to the calls made;
- 300 WatchState streams against a cap of 256: 256 open, 44 refused with
  RESOURCE_EXHAUSTED naming the limit;
- the silent watcher: a watcher that stops reading for a while is then sent
  the newest state within a few messages, with skipped_updates > 0;
- scoped tokens: a token for one intersection sees and controls only it;
- a Control message that does not decode is INVALID_ARGUMENT;
- token rotation by SIGHUP: the operator token is replaced in
  greenwave.toml, SIGHUP, the old token is refused and the new one works,
  a stream opened before keeps running, and no intersection flashes.

Usage: grpc_hostile.py --addr HOST:PORT --pid PID --config greenwave.toml
       --viewer-token T --operator-token T --new-operator-token T
       --scoped-token T [--proto-dir proto]
Exit status 0 when every check passed; prints "N passed, M failed" last.
"""

import argparse
import hashlib
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).parent))
from grpc_client import Checks, stubs  # noqa: E402

A, B = "elm-and-oak", "oak-and-pine"
FLOOD_CALLS = 6000
STREAM_CAP, STREAMS = 256, 300
# Indiana event 173, unit flash status change: none may appear while
# tokens rotate.
FLASH_STATUS_CHANGE = 173


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--viewer-token", required=True)
    ap.add_argument("--operator-token", required=True)
    ap.add_argument("--new-operator-token", required=True)
    ap.add_argument("--scoped-token", required=True)
    ap.add_argument("--proto-dir", default="proto")
    args = ap.parse_args()

    pb, rpc = stubs(args.proto_dir, tempfile.mkdtemp(prefix="greenwave-stubs-"))
    channel = grpc.insecure_channel(args.addr)
    grpc.channel_ready_future(channel).result(timeout=30)
    auth = lambda token: [("authorization", f"Bearer {token}")]  # noqa: E731
    viewer = auth(args.viewer_token)
    watch = rpc.WatchStub(channel)
    control = rpc.ControlStub(channel)
    check = Checks()

    def audits_and_gaps(intersection, seconds):
        """The audit records and `lagged` gaps of `intersection` in the history, read for `seconds`."""
        stream = watch.StreamEvents(pb.StreamEventsRequest(from_seq=1, intersection_ids=[intersection]),
                                    metadata=viewer, timeout=seconds)
        audits, gaps, events = [], [], 0
        try:
            for msg in stream:
                if msg.WhichOneof("item") == "lagged":
                    gaps.append(msg.lagged)
                elif msg.event.WhichOneof("kind") == "audit":
                    audits.append(msg.event.audit)
                else:
                    events += 1
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        return audits, gaps, events

    def flood():
        bad = auth("not-a-token-0123456789abcdef0123456789")
        request = pb.SetModeRequest(intersection_id=A, mode=pb.MODE_FLASH)
        codes = {}
        lock = threading.Lock()

        def call(_):
            try:
                control.SetMode(request, metadata=bad, timeout=10)
                code = grpc.StatusCode.OK
            except grpc.RpcError as e:
                code = e.code()
            with lock:
                codes[code] = codes.get(code, 0) + 1

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(call, range(FLOOD_CALLS)))
        took = time.monotonic() - started
        assert grpc.StatusCode.OK not in codes, codes
        limited = codes.get(grpc.StatusCode.RESOURCE_EXHAUSTED, 0)
        assert codes.get(grpc.StatusCode.UNAUTHENTICATED, 0) + limited == FLOOD_CALLS, codes
        # 20 failures in a burst, then 1 per second: the rest are limited.
        assert limited >= FLOOD_CALLS - 20 - int(took) - 2, (codes, took)
        # A burst is counted when it ends: 10 s without a repeat, swept
        # every 2 s.
        time.sleep(13)
        audits, gaps, events = audits_and_gaps(A, 3)
        assert not gaps, f"real events evicted: {gaps}"
        refused = [a for a in audits if a.principal == "unauthenticated"]
        counted = sum(a.calls for a in refused)
        assert counted == FLOOD_CALLS, f"{counted} of {FLOOD_CALLS} counted in {len(refused)} records: {refused}"
        assert len(refused) <= 6, f"{len(refused)} records for one flood"
        return (f"{FLOOD_CALLS} calls in {took:.1f} s: {codes.get(grpc.StatusCode.UNAUTHENTICATED, 0)} "
                f"UNAUTHENTICATED, {limited} RESOURCE_EXHAUSTED; history intact ({events} events, no gap), "
                f"{len(refused)} audit records counting {counted} calls")

    def streams():
        # Three connections: one HTTP/2 connection carries at most 128
        # calls. Two tokens, each within its own cap (256): the daemon's
        # cap is the one that refuses.
        channels = [grpc.insecure_channel(args.addr, options=[("grpc.use_local_subchannel_pool", 1)])
                    for _ in range(3)]
        tokens = [viewer, auth(args.operator_token)]
        open_streams, refused = [], []
        try:
            for k in range(STREAMS):
                w = rpc.WatchStub(channels[k % 3])
                s = w.WatchState(pb.WatchStateRequest(intersection_ids=[A]), metadata=tokens[k % 2], timeout=60)
                try:
                    next(s)
                    open_streams.append(s)
                except grpc.RpcError as e:
                    refused.append(e)
            codes = {e.code() for e in refused}
            assert len(open_streams) == STREAM_CAP and len(refused) == STREAMS - STREAM_CAP, \
                (len(open_streams), len(refused))
            assert codes == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
            assert "max_streams = 256" in refused[0].details(), refused[0].details()
            return f"{len(open_streams)} open, {len(refused)} refused: {refused[0].details()}"
        finally:
            for s in open_streams:
                s.cancel()
            for c in channels:
                c.close()
            time.sleep(1)

    def silent_watcher():
        # What a client's transport reads ahead within the flow-control
        # window it grants is the client's memory, not the daemon's: grpcio
        # grants 64 KiB (more with BDP probing), about 470 states, 47 s of
        # them at 10 Hz. An 8 KiB window shows in 20 s what the daemon
        # does once the window is full: it holds at most its 16 KiB send
        # buffer and then sends the newest state, with the count skipped.
        quiet = grpc.insecure_channel(
            args.addr, options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 8192)])
        s = rpc.WatchStub(quiet).WatchState(pb.WatchStateRequest(intersection_ids=[A], min_interval_ms=100),
                                            metadata=viewer, timeout=120)
        next(s)
        time.sleep(20)
        resumed = time.time()
        stale_bytes = 0
        for n, update in enumerate(s, start=1):
            age_s = resumed - update.state.at_unix_ms / 1000
            if age_s < 2:
                s.cancel()
                quiet.close()
                assert update.skipped_updates > 0, (n, stale_bytes, update.skipped_updates)
                # What waited: the client's window and the daemon's 16 KiB
                # send buffer, not 20 s of states.
                assert stale_bytes <= 32 * 1024, f"{n - 1} stale messages, {stale_bytes} bytes"
                return (f"silent 20 s; then {n - 1} older messages ({stale_bytes} bytes, what the windows held), "
                        f"then the newest state with skipped_updates = {update.skipped_updates}")
            stale_bytes += update.ByteSize()
        raise AssertionError("the stream ended before a fresh state")

    def scoped():
        scoped = auth(args.scoped_token)
        listed = [i.id for i in watch.ListIntersections(pb.ListIntersectionsRequest(), metadata=scoped,
                                                         timeout=10).intersections]
        assert listed == [A], listed
        watch.GetState(pb.GetStateRequest(intersection_id=A), metadata=scoped, timeout=10)
        for call in (lambda: watch.GetState(pb.GetStateRequest(intersection_id=B), metadata=scoped, timeout=10),
                     lambda: control.HoldPhases(pb.PhasesRequest(intersection_id=B, phases=[2]),
                                                metadata=scoped, timeout=10)):
            try:
                call()
                raise AssertionError("a scoped token reached the other intersection")
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.PERMISSION_DENIED, (e.code(), e.details())
                denied = e.details()
        return f"lists {listed}; {B}: {denied}"

    def rotation():
        old, new = auth(args.operator_token), auth(args.new_operator_token)
        probe = lambda md: watch.GetState(pb.GetStateRequest(intersection_id=A), metadata=md, timeout=10)  # noqa: E731
        probe(old)
        # A watcher with the old token, open across the rotation.
        kept = watch.WatchState(pb.WatchStateRequest(min_interval_ms=100), metadata=old, timeout=60)
        next(kept)
        text = args.config.read_text()
        from_hash, to_hash = (hash_token(args.operator_token), hash_token(args.new_operator_token))
        assert from_hash in text, "the operator token is in greenwave.toml"
        args.config.write_text(text.replace(from_hash, to_hash))
        rotated_at = time.time()
        os.kill(args.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while True:
            try:
                probe(old)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.UNAUTHENTICATED:
                    break
                raise
            assert time.monotonic() < deadline, "the old token still works 10 s after SIGHUP"
            time.sleep(0.1)
        probe(new)
        seen = 0
        for update in kept:
            seen += 1
            assert update.state.unit_state != pb.UNIT_STATE_FLASH, update.state
            if update.state.at_unix_ms / 1000 > rotated_at + 2:
                break
        kept.cancel()
        flashes = []
        stream = watch.StreamEvents(pb.StreamEventsRequest(from_seq=1), metadata=auth(args.new_operator_token),
                                    timeout=3)
        try:
            for msg in stream:
                e = msg.event
                if (msg.WhichOneof("item") == "event" and e.WhichOneof("kind") == "indiana"
                        and e.at_unix_ms / 1000 >= rotated_at and e.indiana.code == FLASH_STATUS_CHANGE):
                    flashes.append(e)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        assert not flashes, f"flash during the rotation: {flashes}"
        return (f"old token refused, new token admitted; the watcher opened before read on ({seen} updates); "
                "no flash event since the SIGHUP")

    def malformed():
        raw = channel.unary_unary("/greenwave.v1.Control/SetMode")
        try:
            raw(b"\xff\xff\xff\xff", metadata=auth(args.operator_token), timeout=10)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, (e.code(), e.details())
            return e.details()
        raise AssertionError("a malformed message was accepted")

    check("a wrong-token flood is limited and the history of real events intact", flood)
    check("a malformed Control message is INVALID_ARGUMENT", malformed)
    check(f"{STREAMS} streams against a cap of {STREAM_CAP}", streams)
    check("a silent watcher resumes with the newest state", silent_watcher)
    check("a token scoped to one intersection reaches only it", scoped)
    check("an operator token rotated by SIGHUP, no flash", rotation)
    return check.summary()


def hash_token(token):
    """As `greenwave token hash` prints it (src/api/auth.rs)."""
    return hashlib.sha256(token.encode()).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
