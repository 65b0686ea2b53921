"""Fault-injection scenarios against real processes (SPEC §10), shared by the fast subset in
``make test``, the soak in ``make reliability`` and the RELIABILITY.md report
(``python -m tests.reliability.report``).

Each scenario returns a :class:`Outcome`: how many releases it put at risk (trials), how many
ended in a defined final state (survived), how many never did (lost), and how many had a step
run twice (duplicated), plus scenario-specific checks that must all hold.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import redis

from release_orchestrator.celery_transport import CeleryTransport, make_app
from tests.conftest import REDIS_DB, REDIS_HOST, REDIS_PORT, Stack, hint_of

FINAL = {"succeeded", "failed", "rolled_back", "rollback_failed", "cancelled", "rejected",
         "skipped"}


@dataclass
class Outcome:
    scenario: str
    trials: int = 0
    survived: int = 0
    lost: int = 0
    duplicated: int = 0
    problems: list[str] = field(default_factory=list)

    def check(self, condition: bool, problem: str) -> None:
        if not condition:
            self.problems.append(problem)

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicated == 0


def flush_test_redis() -> None:
    redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB).flushdb()


def wait_final(stack: Stack, ids: list[int], timeout: float) -> dict[int, str]:
    """Statuses once all are final, or at the deadline (non-final ones count as lost)."""
    deadline = time.monotonic() + timeout
    statuses: dict[int, str] = {}
    while time.monotonic() < deadline:
        statuses = {i: str(stack.client.get(i).status) for i in ids}
        if all(s in FINAL for s in statuses.values()):
            break
        time.sleep(0.25)
    return statuses


def duplicated_steps(stack: Stack, ids: list[int]) -> int:
    """Forward calls of one (release, resource, action) that started more than once.

    A rollback applies a resource a second time on purpose, so only a resource whose calls
    outnumber its recorded steps counts as duplicated.
    """
    wanted = {str(i) for i in ids}
    calls = Counter((f[1], f[3]) for f in stack.execution_log()
                    if f[5] == "start" and f[1] in wanted)
    steps: Counter[tuple[str, str]] = Counter()
    for i in ids:
        for step in stack.client.get(i).steps:
            steps[(str(i), step.resource)] += 1
    return sum(1 for key, n in calls.items() if n > max(steps[key], 1))


# -- worker killed with SIGKILL at a random moment -----------------------------------------
def worker_sigkill(tmp: Path, trials: int, seed: int = 7) -> Outcome:
    """Per trial: the only worker is SIGKILLed (with its pool) at a random moment while two
    releases are queued/running; a new worker and beat must finish or fail both."""
    out = Outcome("worker SIGKILL mid-release")
    rng = random.Random(seed)
    flush_test_redis()
    stack = Stack(tmp, lock_ttl=3, redispatch_after=3, deploy_seconds=1.0)
    ids: list[int] = []
    try:
        stack.apply_shop()
        stack.start("beat")
        for trial in range(trials):
            victim = stack.worker(name=f"victim{trial}", concurrency=1)
            first = stack.client.submit("shop", "staging", "selective",
                                        targets=["service/payments"]).id
            second = stack.client.submit("shop", "staging", "selective",
                                         targets=["service/catalog"]).id
            ids += [first, second]
            time.sleep(rng.uniform(0.0, 2.5))
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait()
            rescuer = stack.worker(name=f"rescuer{trial}", concurrency=1)
            statuses = wait_final(stack, [first, second], timeout=60)
            out.trials += 2
            for rid, status in statuses.items():
                if status in FINAL:
                    out.survived += 1
                else:
                    out.lost += 1
                    out.problems.append(f"trial {trial}: release {rid} stuck {status}")
            lost = stack.client.get(first)
            if str(lost.status) == "failed":
                out.check("worker lost" in (lost.error or "") or "lease" in (lost.error or ""),
                          f"trial {trial}: failed without 'worker lost': {lost.error}")
                # a step that was in flight leaves its resource Unknown (a worker killed
                # after the claim but before any step started touched nothing)
                if lost.steps:
                    payments = {r.resource: r for r in stack.client.resources("shop", "staging")}
                    out.check(str(payments["service/payments"].sync) == "Unknown",
                              f"trial {trial}: payments not Unknown after a lost worker")
            locks = stack.client.ctx.locks.holders("shop/staging")
            out.check(not locks, f"trial {trial}: locks left behind: {locks}")
            stack.stop(rescuer)
        out.duplicated = duplicated_steps(stack, ids)
    finally:
        stack.close()
    return out


# -- the same message delivered several times --------------------------------------------
def duplicate_delivery(tmp: Path, releases: int, copies: int = 3) -> Outcome:
    out = Outcome("duplicate delivery")
    flush_test_redis()
    stack = Stack(tmp, deploy_seconds=0)
    try:
        stack.apply_shop()
        stack.worker(name="w1")
        stack.worker(name="w2")
        transport = CeleryTransport(make_app(stack.client.config), stack.client.config)
        targets = ["database/orders", "service/payments", "service/catalog", "service/frontend"]
        ids = []
        for i in range(releases):
            rid = stack.client.submit("shop", "prod", "selective",
                                      targets=[targets[i % 4]]).id
            ids.append(rid)
            hint = hint_of(stack.client, rid)
            for copy in range(copies - 1):  # with the lock hint, and as an older message
                transport.send_release("shop", "prod", rid, "duplicate",
                                       hint=hint if copy % 2 == 0 else None)
        statuses = wait_final(stack, ids, timeout=60 + releases)
        out.trials = len(ids)
        out.survived = sum(1 for s in statuses.values() if s == "succeeded")
        out.lost = sum(1 for s in statuses.values() if s not in FINAL)
        out.duplicated = duplicated_steps(stack, ids)
        out.check(out.survived == len(ids), f"not all succeeded: {Counter(statuses.values())}")
    finally:
        stack.close()
    return out


# -- Redis restarted and flushed while releases are queued and running ---------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen([server, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                             "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(100):
        try:
            if client.ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("private redis-server did not start")


def redis_restart(tmp: Path, releases: int = 6) -> Outcome:
    out = Outcome("Redis flushed and restarted")
    port = _free_port()
    server = _start_redis(port)
    stack = Stack(tmp, lock_ttl=3, redispatch_after=3, deploy_seconds=1.0)
    url = f"redis://127.0.0.1:{port}/0"
    stack.env["RELO_REDIS_URL"] = url
    try:
        stack.apply_shop()
        stack.worker(name="w1")
        stack.start("beat")
        ids = [stack.client.submit("shop", "staging", "full", force=True).id
               for _ in range(releases)]
        stack.wait_status(ids[0], {"running"})
        client = redis.Redis(host="127.0.0.1", port=port)
        client.flushall()
        with contextlib.suppress(redis.ConnectionError):
            client.shutdown(nosave=True)
        server.wait(timeout=10)
        time.sleep(2)
        server = _start_redis(port)
        statuses = wait_final(stack, ids, timeout=120)
        out.trials = len(ids)
        out.survived = sum(1 for s in statuses.values() if s in FINAL)
        out.lost = out.trials - out.survived
        out.duplicated = duplicated_steps(stack, ids)
        ran = sum(1 for s in statuses.values() if s == "succeeded")
        out.check(ran >= releases - 1,
                  f"queued releases did not all run after Redis returned: {statuses}")
    finally:
        stack.close()
        server.terminate()
        server.wait(timeout=10)
    return out


# -- many concurrent submitters into one environment ---------------------------------------
def _submitter(env: dict[str, str], count: int, queue: multiprocessing.Queue) -> None:
    os.environ.update(env)
    from release_orchestrator import Client

    client = Client()
    ids = []
    for _ in range(count):
        ids.append(client.submit("demo", "dev", "full", force=True).id)
    client.ctx.db.dispose()
    queue.put(ids)


DEMO = """
project: demo
environments:
  - name: dev
resources:
  - {type: service, name: api, executor: simulated, spec: {duration: 0}}
  - {type: service, name: web, executor: simulated, spec: {duration: 0}, depends_on: [service/api]}
"""


def concurrent_submitters(tmp: Path, processes: int, each: int) -> Outcome:
    out = Outcome(f"{processes} concurrent submitters x {each}")
    flush_test_redis()
    stack = Stack(tmp)
    try:
        (tmp / "demo.yaml").write_text(DEMO)
        stack.cli("blueprint", "apply", "-f", str(tmp / "demo.yaml"), check=True)
        stack.worker(name="w1")
        stack.worker(name="w2")
        env = {k: v for k, v in stack.env.items() if k.startswith("RELO_")}
        ctx = multiprocessing.get_context("spawn")
        queue: multiprocessing.Queue = ctx.Queue()
        procs = [ctx.Process(target=_submitter, args=(env, each, queue))
                 for _ in range(processes)]
        for p in procs:
            p.start()
        submitted: list[int] = []
        for _ in procs:
            submitted += queue.get(timeout=300)
        for p in procs:
            p.join(timeout=60)
        out.trials = processes * each
        out.check(len(set(submitted)) == out.trials, "duplicate or missing ids at submit")
        statuses = wait_final(stack, submitted, timeout=60 + out.trials * 0.5)
        out.survived = sum(1 for s in statuses.values() if s == "succeeded")
        out.lost = sum(1 for s in statuses.values() if s not in FINAL)
        releases = sorted((stack.client.get(i) for i in submitted), key=lambda r: r.id)
        started = sorted(releases, key=lambda r: (r.started_at, r.id))
        out.check([r.id for r in started] == [r.id for r in releases],
                  "execution order differs from submission (FIFO) order")
        spans = sorted((r.started_at, r.finished_at) for r in releases if r.started_at)
        overlaps = sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
        out.check(overlaps == 0, f"{overlaps} overlapping releases in a parallel-off environment")
        steps = Counter((r.id, s.resource) for r in releases for s in r.steps)
        out.duplicated = sum(1 for n in steps.values() if n > 1)
    finally:
        stack.close()
    return out


# -- beat killed and restarted; two beats at once ------------------------------------------
def beats(tmp: Path, due_times: int = 3) -> Outcome:
    """Two beats tick at once; one is SIGKILLed after the first due time and comes back
    later. Every due time of a 1-minute schedule must be recorded exactly once (a release or
    a skip), none lost, none twice."""
    from datetime import datetime, timedelta, timezone

    out = Outcome("beat killed/restarted, two beats at once")
    flush_test_redis()
    stack = Stack(tmp, deploy_seconds=0)
    try:
        stack.apply_shop()
        stack.worker(name="w1")
        first_due = datetime.now(timezone.utc) + timedelta(seconds=8)
        stack.cli("schedule", "set", "-p", "shop", "-e", "staging", "--every", "1m",
                  "--start-at", first_due.isoformat(), check=True)
        beat_a = stack.start("beat", name="beatA")
        stack.start("beat", name="beatB")
        last_due = first_due + timedelta(minutes=due_times - 1)
        killed = False
        while datetime.now(timezone.utc) < last_due + timedelta(seconds=10):
            now = datetime.now(timezone.utc)
            if not killed and now > first_due + timedelta(seconds=5):
                os.killpg(beat_a.pid, signal.SIGKILL)
                beat_a.wait()
                killed = True
                restart_at = now + timedelta(seconds=40)
            if killed and beat_a.poll() is not None and now > restart_at:
                beat_a = stack.start("beat", name="beatA2")
            time.sleep(0.5)
        view = stack.client.schedule("shop", "staging", limit=50)
        runs = Counter(run.due_at for run in view.recent)
        expected = [first_due + timedelta(minutes=k) for k in range(due_times)]
        out.trials = due_times
        for due in expected:
            n = sum(c for d, c in runs.items() if abs((d - due).total_seconds()) < 1)
            if n == 0:
                out.lost += 1
                out.problems.append(f"due time {due.isoformat()} never recorded")
            elif n > 1:
                out.duplicated += 1
            else:
                out.survived += 1
        out.check(len(runs) == due_times, f"unexpected due times recorded: {sorted(runs)}")
    finally:
        stack.close()
    return out
