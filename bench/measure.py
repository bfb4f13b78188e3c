"""Running contenders in alternating order over several rounds, and what one run measured.

A contender is a name plus a function that performs one run and returns a `Sample`
(wall time, output bytes, peak RSS). It raises `Unavailable` when it cannot run on
this build (the reason is reported instead of a number).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

SAMPLE_INTERVAL_SECONDS = 0.02


class Unavailable(Exception):
    """The contender cannot run here; str(error) says why."""


@dataclass
class Sample:
    seconds: float
    output_bytes: int | None = None
    peak_rss_bytes: int | None = None  # the measured process itself (wait4 ru_maxrss)
    tree_rss_bytes: int | None = None  # the largest sampled sum over its process tree
    details: dict = field(default_factory=dict)
    machine_cpu_seconds: float | None = None  # CPU time of the whole machine while it ran
    process_cpu_seconds: float | None = None  # the measured process and the children it reaped (wait4)


@dataclass
class Contender:
    key: str  # stable identifier, used by the target checks
    label: str  # what the table shows
    group: str
    run: Callable[[], Sample]
    rounds: int | None = None  # None: the benchmark's --rounds


@dataclass
class Result:
    contender: Contender
    samples: list[Sample] = field(default_factory=list)
    unavailable: str | None = None

    @property
    def ok(self) -> bool:
        return self.unavailable is None and bool(self.samples)

    @property
    def seconds(self) -> float | None:
        return statistics.median(s.seconds for s in self.samples) if self.ok else None

    @property
    def spread(self) -> tuple[float, float] | None:
        if not self.ok:
            return None
        times = [s.seconds for s in self.samples]
        return min(times), max(times)

    @property
    def output_bytes(self) -> int | None:
        sizes = [s.output_bytes for s in self.samples if s.output_bytes is not None]
        return int(statistics.median(sizes)) if self.ok and sizes else None

    @property
    def peak_rss_bytes(self) -> int | None:
        values = [s.peak_rss_bytes for s in self.samples if s.peak_rss_bytes is not None]
        return max(values) if self.ok and values else None

    @property
    def machine_cpu_seconds(self) -> float | None:
        values = [s.machine_cpu_seconds for s in self.samples if s.machine_cpu_seconds is not None]
        return statistics.median(values) if self.ok and values else None

    @property
    def process_cpu_seconds(self) -> float | None:
        values = [s.process_cpu_seconds for s in self.samples if s.process_cpu_seconds is not None]
        return statistics.median(values) if self.ok and values else None

    @property
    def tree_rss_bytes(self) -> int | None:
        values = [s.tree_rss_bytes for s in self.samples if s.tree_rss_bytes is not None]
        return max(values) if self.ok and values else None

    def to_json(self) -> dict:
        return {
            "key": self.contender.key, "label": self.contender.label, "group": self.contender.group,
            "unavailable": self.unavailable, "median_seconds": self.seconds,
            "samples": [
                {"seconds": s.seconds, "output_bytes": s.output_bytes, "peak_rss_bytes": s.peak_rss_bytes,
                 "tree_rss_bytes": s.tree_rss_bytes, "machine_cpu_seconds": s.machine_cpu_seconds,
                 "process_cpu_seconds": s.process_cpu_seconds,
                 **({"details": s.details} if s.details else {})}
                for s in self.samples
            ],
        }


def run_rounds(
    contenders: Sequence[Contender], rounds: int, log: Callable[[str], None] = print
) -> dict[str, Result]:
    """Run every contender once per round, rotating the order each round.

    Rotation puts each contender at a different position in every round, so a warm
    cache or a neighbour's load does not always favour the same one. A contender that
    becomes unavailable or fails is not run again; its reason is kept.
    """
    results = {c.key: Result(c) for c in contenders}
    for round_index in range(rounds):
        shift = round_index % max(1, len(contenders))
        order = list(contenders[shift:]) + list(contenders[:shift])
        for contender in order:
            result = results[contender.key]
            wanted = contender.rounds if contender.rounds is not None else rounds
            if result.unavailable is not None or len(result.samples) >= wanted:
                continue
            log(f"round {round_index + 1}/{rounds}: {contender.label} ...")
            try:
                sample = contender.run()
            except Unavailable as reason:
                result.unavailable = str(reason)
                log(f"    n/a: {reason}")
                continue
            except Exception as error:  # noqa: BLE001 - a broken contender must not stop the others
                result.unavailable = f"failed: {error}"
                log(f"    failed: {error}\n{traceback.format_exc(limit=3)}")
                continue
            result.samples.append(sample)
            log(f"    {sample.seconds:.2f} s" + (f", {sample.output_bytes / 1e6:.1f} MB" if sample.output_bytes else "")
                + (f", peak RSS {sample.peak_rss_bytes / 2**20:.0f} MiB" if sample.peak_rss_bytes else ""))
    return results


@dataclass
class ProcessRun:
    returncode: int
    seconds: float
    peak_rss_bytes: int
    tree_rss_bytes: int
    stdout: str
    stderr: str
    machine_cpu_seconds: float | None = None
    process_cpu_seconds: float | None = None  # user + system of the process and its reaped children


def machine_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy since boot (all cores; /proc/stat).

    The difference over a run says how much CPU the run cost everything on the machine:
    the contender, the database server and, for the S3 contenders, the local S3 server.
    """
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def run_process(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None,
    scratch: Path, timeout: float = 3600, shell_pipeline: bool = False,
) -> ProcessRun:
    """Run a command to completion: wall time, its peak RSS and the peak RSS of its tree.

    The peak RSS of the process is the kernel's figure (ru_maxrss from wait4, which also
    covers reaped children); the tree figure is sampled with psutil every 20 ms.
    stdout and stderr go to files in `scratch` so large outputs never fill a pipe.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    out_path, err_path = scratch / "stdout.txt", scratch / "stderr.txt"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        cpu_before = machine_cpu_seconds()
        started = time.perf_counter()
        process = subprocess.Popen(
            list(argv), env=dict(env) if env is not None else None, cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=out, stderr=err, start_new_session=True,
        )
        sampler = _TreeSampler(process.pid)
        sampler.start()
        timer = threading.Timer(timeout, _kill_group, args=(process.pid,))
        timer.start()
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        seconds = time.perf_counter() - started
        cpu_after = machine_cpu_seconds()
        process.returncode = os.waitstatus_to_exitcode(status)
        sampler.stop()
    return ProcessRun(
        returncode=process.returncode, seconds=seconds, peak_rss_bytes=usage.ru_maxrss * 1024,
        tree_rss_bytes=sampler.peak_tree, stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
        machine_cpu_seconds=cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None,
        process_cpu_seconds=usage.ru_utime + usage.ru_stime,
    )


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except ProcessLookupError:
        pass


class _TreeSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_tree = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            root = psutil.Process(self.pid)
        except psutil.Error:
            return
        while not self._stop_event.is_set():
            total = 0
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_tree = max(self.peak_tree, total)
            self._stop_event.wait(SAMPLE_INTERVAL_SECONDS)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=2)


def tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])
