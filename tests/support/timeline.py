"""Where the suite's wall time goes: each test phase's worker, start and end, and how busy the
machine's cores were, written by the controlling pytest process to ``reports/``.

- ``reports/timeline.csv``: worker, test id, phase (setup/call/teardown), start and end in
  seconds from the session's start, and the CPU seconds the phase used (``cpu_s``: the worker's
  own and that of the processes it waited for, Metaflow's and Dagster's included, not those of
  containers, which dockerd's shims run). ``--durations`` ranks the slow tests; this shows when
  each worker was busy and which tests cost the cores most.
- ``reports/cpu.csv``: every 2 s, the cores' busy share over the last interval (``/proc/stat``).
  The terminal summary prints the session's average, so a change in the number of workers can
  be judged by whether the cores were idle.
"""

from __future__ import annotations

import csv
import resource
import threading
import time
from pathlib import Path
from typing import Any

INTERVAL = 2.0
CPU_PROPERTY = "cpu_s"  # a report's user property: the CPU seconds of its phase


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of all cores since boot; None without /proc."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def cpu_seconds() -> float:
    """User + system CPU of this process and of its waited-for children so far."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timeline:
    """Collects test reports (with their worker) and samples the CPU until ``close``."""

    def __init__(self) -> None:
        self.started = time.time()
        self.rows: list[tuple[str, str, str, float, float, float]] = []
        self.cpu: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._first = _cpu_times()
        self._thread = threading.Thread(target=self._sample, name="cpu-sampler", daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        last = self._first
        while not self._stop.wait(INTERVAL):
            now = _cpu_times()
            if now is None or last is None:
                return
            busy, total = now[0] - last[0], now[1] - last[1]
            if total:
                self.cpu.append((time.time() - self.started, busy / total))
            last = now

    def add(self, report: Any) -> None:
        node = getattr(report, "node", None)
        worker = getattr(getattr(node, "gateway", None), "id", "main")
        start, stop = getattr(report, "start", None), getattr(report, "stop", None)
        cpu = dict(report.user_properties).get(CPU_PROPERTY, float("nan"))
        if start is not None and stop is not None:
            when = (start - self.started, stop - self.started)
            self.rows.append((worker, report.nodeid, report.when, *when, cpu))

    def busy_share(self) -> float | None:
        """The cores' busy share over the whole session."""
        now = _cpu_times()
        if now is None or self._first is None or now[1] == self._first[1]:
            return None
        return (now[0] - self._first[0]) / (now[1] - self._first[1])

    def close(self, folder: Path) -> str | None:
        """Stop sampling, write the two files; a one-line summary for the terminal."""
        share = self.busy_share()
        self._stop.set()
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "timeline.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["worker", "test", "phase", "start_s", "end_s", "cpu_s"])
            out.writerows(
                (w, t, p, f"{a:.2f}", f"{b:.2f}", f"{c:.2f}") for w, t, p, a, b, c in self.rows
            )
        with open(folder / "cpu.csv", "w", newline="") as fh:
            out = csv.writer(fh)
            out.writerow(["seconds", "busy_share"])
            out.writerows((f"{t:.1f}", f"{b:.3f}") for t, b in self.cpu)
        if share is None:
            return None
        idle = [t for t, b in self.cpu if b < 0.5]
        by_module: dict[str, float] = {}
        for _, test, _, _, _, cpu in self.rows:
            if cpu == cpu:  # not NaN
                module = test.split("::", 1)[0]
                by_module[module] = by_module.get(module, 0.0) + cpu
        top = sorted(by_module.items(), key=lambda kv: -kv[1])[:5]
        return (
            f"cores busy {share:.0%} of the session on average; under half busy for "
            f"{len(idle) * INTERVAL:.0f} s of {time.time() - self.started:.0f} s "
            f"({folder / 'timeline.csv'}, {folder / 'cpu.csv'})\n"
            f"CPU seconds of the tests' processes (containers not counted): "
            f"{sum(by_module.values()):.0f}; most: " + ", ".join(f"{m} {c:.0f}" for m, c in top)
        )
