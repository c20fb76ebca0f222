"""The NATS broker of a run split over several daemons (run.py
--greenwave-daemons): Debian's `nats-server` with JetStream (the daemons'
city feed, docs/nats.md) on the run's own ports, and what it saw of the
corridor neighbour exchange.

The daemon does not report its neighbour counters outside its own process
(src/daemon/neighbours.rs `NeighbourStats`), so the rig reads them where the
messages pass: the broker's monitoring endpoint (`/connz`) counts, per
client connection, the messages it published (`in_msgs`) and those the
broker delivered to it (`out_msgs`). Each daemon's exchange has its own
connection, named `greenwave-neighbours`, subscribed to the outflow subjects
of the remote members next to its own.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

NEIGHBOUR_CLIENT = "greenwave-neighbours"  # the exchange's connection name (src/daemon/neighbours.rs)
DEBIAN_PATH = "/usr/sbin/nats-server"  # where Debian's package puts it, off some users' PATH


def server_bin() -> str:
    """The nats-server binary, or SystemExit saying how to get it."""
    found = shutil.which("nats-server") or (DEBIAN_PATH if Path(DEBIAN_PATH).is_file() else None)
    if not found:
        raise SystemExit("nats-server not found (apt-get install nats-server): --greenwave-daemons above 1 "
                         "joins the daemons through it")
    return found


class Broker:
    """A nats-server on 127.0.0.1:`port` (monitoring on `port` + 1) with its
    JetStream store and log in `store`, for one run."""

    def __init__(self, port: int, store: Path):
        self.port, self.monitor = port, port + 1
        self.store = store
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, wait_s: float = 10.0) -> None:
        self.store.mkdir(parents=True, exist_ok=True)
        log = self.store / "nats-server.log"
        self.proc = subprocess.Popen([server_bin(), "-a", "127.0.0.1", "-p", str(self.port),
                                      "-m", str(self.monitor), "-js", "-sd", str(self.store / "js"),
                                      "-l", str(log)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        limit = time.time() + wait_s
        while time.time() < limit:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        tail = log.read_text(errors="replace")[-500:] if log.exists() else ""
        self.stop()
        raise RuntimeError(f"nats-server did not start on port {self.port} within {wait_s:.0f} s: {tail}")

    def neighbour_traffic(self, expected: list[set[str]]) -> list[dict]:
        """Per daemon (in the order of `expected`: the subject tokens of the
        remote members each one subscribes to), its exchange connection's
        messages published and delivered, as the broker counted them. A
        daemon whose connection was not found (not connected, or subscribed
        to other subjects than expected) gets None counts."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.monitor}/connz?subs=1&limit=4096", timeout=5) as r:
            conns = json.load(r).get("connections") or []
        out = []
        for k, subjects in enumerate(expected, 1):
            row = {"daemon": k, "subscribed": sorted(subjects), "published": None, "received": None}
            for c in conns:
                heard = {s.split(".")[-2] for s in c.get("subscriptions_list") or [] if s.endswith(".outflow")}
                if c.get("name") == NEIGHBOUR_CLIENT and heard == subjects:
                    row.update(published=c.get("in_msgs", 0), received=c.get("out_msgs", 0))
            out.append(row)
        return out

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
