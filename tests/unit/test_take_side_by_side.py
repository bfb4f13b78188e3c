"""Artifacts of one run taken side by side (daemon/backup/runner.py take_side_by_side)."""

from __future__ import annotations

import contextvars
import threading

import pytest

from daemon.backup.runner import take_side_by_side
from daemon.errors import Cancelled

RUN = contextvars.ContextVar("run", default="none")


class Plan:
    def __init__(self, target: str):
        self.target = target


PLANS = [Plan("authdb"), Plan("apidb"), Plan("admindb")]


class TestTakeSideBySide:
    def test_two_at_a_time_in_named_threads_with_the_callers_context(self):
        both_running = threading.Barrier(2, timeout=5)  # breaks (fails the test) unless two run at once
        seen: list[tuple[str, str, str]] = []

        def take(plan: Plan) -> None:
            if plan.target != "admindb":
                both_running.wait()
            seen.append((plan.target, RUN.get(), threading.current_thread().name))

        RUN.set("r1")
        take_side_by_side(PLANS, take, 2, "run-r1")
        assert sorted(target for target, _, _ in seen) == ["admindb", "apidb", "authdb"]
        assert {run for _, run, _ in seen} == {"r1"}
        assert all(name.startswith("run-r1") for _, _, name in seen)

    def test_one_job_runs_in_order_on_the_callers_thread(self):
        seen = []
        take_side_by_side(PLANS, lambda plan: seen.append((plan.target, threading.current_thread())), 1, "run-x")
        assert seen == [(p.target, threading.current_thread()) for p in PLANS]

    def test_a_cancellation_propagates_after_the_others_ended(self):
        ended = []

        def take(plan: Plan) -> None:
            if plan.target == "apidb":
                raise Cancelled("stopping")
            ended.append(plan.target)

        with pytest.raises(Cancelled, match="stopping"):
            take_side_by_side(PLANS, take, 2, "run-y")
        assert sorted(ended) == ["admindb", "authdb"]
