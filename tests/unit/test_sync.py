"""``relo release sync`` / ``wait`` (SPEC §6) through the client: SQLite, in-memory transport
and locks, the simulated executor run in-process where a worker would run it. ``wait``'s
clock and sleep are injected: "sleeping" is when the fake worker runs what was sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from release_orchestrator import Client, InvalidRequest, NotFound, ReleaseFailed, Settings
from release_orchestrator.domain.models import WaitResult
from release_orchestrator.errors import WaitTimeout
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import engine
from release_orchestrator.services import sync as service
from release_orchestrator.testing import MemoryTransport

BLUEPRINT = """
project: shop
environments:
  - name: staging
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 1, duration: 0}}
  - {type: service, name: web, executor: simulated, spec: {image: "web:1", duration: 0},
     depends_on: [database/orders]}
  - {type: service, name: api, executor: simulated, spec: {image: "api:1", duration: 0}}
  - {type: queue, name: api, executor: simulated, spec: {duration: 0}}
"""


class Rig:
    def __init__(self, tmp_path: Path) -> None:
        self.transport = MemoryTransport(workers={"w1": ["release.shop.staging"]})
        self.client = Client(
            Settings(database_url=f"sqlite:///{tmp_path / 'relo.db'}", user="ci"),
            transport=self.transport,
            lock_store=MemoryLockStore(),
        )
        self.client.apply_blueprint_text(BLUEPRINT)
        self.now = 0.0
        self.worker_on = True
        self.changes: list[WaitResult] = []

    def work(self) -> None:
        """Run everything sent to the workers (and what that lets start), in order."""
        while self.worker_on and self.transport.sent:
            for msg in self.transport.take():
                engine.execute(self.client.ctx, msg.release_id, "w1")

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.work()

    def wait(self, apps: str, **kw: Any) -> WaitResult:
        return service.wait(
            self.client.ctx, "shop", "staging", apps, clock=lambda: self.now,
            sleep=self.sleep, on_change=self.changes.append, **kw)


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_sync_releases_only_out_of_sync_apps_in_one_selective_release(rig: Rig) -> None:
    first = rig.client.sync("shop", "staging", "web, service/api")
    assert first is not None
    assert (str(first.type), str(first.trigger), first.triggered_by) == ("selective", "api", "ci")
    assert [t.resource for t in first.targets] == ["service/web", "service/api"]
    rig.work()
    assert str(rig.client.get(first.id).status) == "succeeded"
    assert rig.client.sync("shop", "staging", ["web", "service/api"]) is None
    rig.client.set_resource("shop", "staging", "service/api", ["image=api:2"])
    second = rig.client.sync("shop", "staging", "web,service/api")
    assert second is not None and [t.resource for t in second.targets] == ["service/api"]
    forced = rig.client.sync("shop", "staging", "web", force=True)
    assert forced is not None and [t.resource for t in forced.targets] == ["service/web"]


def test_sync_bad_input(rig: Rig) -> None:
    with pytest.raises(NotFound) as err:
        rig.client.sync("shop", "staging", "paymnts")
    assert "unknown resource 'paymnts'" in err.value.message
    assert "service/web" in err.value.message and "database/orders" in err.value.message
    with pytest.raises(InvalidRequest, match="ambiguous"):
        rig.client.sync("shop", "staging", "api")
    with pytest.raises(NotFound, match="existing: staging"):
        rig.client.sync("shop", "prod", "web")
    with pytest.raises(NotFound, match="existing: shop"):
        rig.client.sync("shp", "staging", "web")
    with pytest.raises(InvalidRequest, match="at least one app"):
        rig.client.sync("shop", "staging", " , ")
    assert rig.client.list("shop", "staging") == []


def test_wait_sync_until_synced_and_healthy(rig: Rig) -> None:
    result = rig.wait("web,service/api", sync_first=True, interval=1)
    assert result.status == "ready"
    assert [(a.app, str(a.sync), str(a.health), a.ready) for a in result.apps] == [
        ("service/web", "Synced", "Healthy", True), ("service/api", "Synced", "Healthy", True)]
    assert result.synced_release_id is not None
    assert result.releases == [result.synced_release_id]
    # progress: first queued for the sync release, then ready
    first = rig.changes[0].apps[0]
    assert (first.release_id, str(first.release_status)) == (result.synced_release_id, "queued")
    assert rig.changes[-1].apps[0].ready


def test_wait_covers_the_queued_phase_and_every_release_targeting_the_app(rig: Rig) -> None:
    rig.worker_on = False
    full = rig.client.submit("shop", "staging", "full")
    rig.worker_on = True
    # web is not even "out of sync" by then for a naive check; the full release targets it
    result = rig.wait("web", interval=1)
    assert result.status == "ready" and result.releases == [full.id]
    assert str(rig.client.get(full.id).status) == "succeeded"
    assert rig.changes[0].apps[0].release_id == full.id


def test_wait_fails_when_the_release_fails(rig: Rig) -> None:
    rig.client.set_resource("shop", "staging", "web", ["fail=true"])
    with pytest.raises(ReleaseFailed) as err:
        rig.wait("web", sync_first=True, interval=1)
    result = err.value.details["result"]
    assert result.status == "failed" and result.failed_release_id == result.synced_release_id
    assert f"release {result.synced_release_id} failed" in err.value.message


def test_wait_fails_at_once_on_a_degraded_app_with_nothing_in_flight(rig: Rig) -> None:
    rig.client.set_resource("shop", "staging", "web", ["fail=true"])
    rid = rig.client.sync("shop", "staging", "web")
    assert rid is not None
    rig.work()
    with pytest.raises(ReleaseFailed, match="service/web is Degraded"):
        rig.wait("web", interval=1)
    # a new sync in flight repairs it: the wait does not fail on the old Degraded state
    rig.client.set_resource("shop", "staging", "web", ["fail=false"])
    assert rig.wait("web", sync_first=True, interval=1).status == "ready"


def test_wait_fails_when_its_release_is_cancelled(rig: Rig) -> None:
    rig.worker_on = False
    blocker = rig.client.submit("shop", "staging", "selective", targets=["service/api"])
    release = rig.client.sync("shop", "staging", "web")
    assert release is not None

    def cancel_then_sleep(seconds: float) -> None:
        rig.now += seconds
        rig.client.delete([release.id])

    with pytest.raises(ReleaseFailed, match=f"release {release.id} was cancelled"):
        service.wait(rig.client.ctx, "shop", "staging", "web", clock=lambda: rig.now,
                     sleep=cancel_then_sleep)
    assert blocker.id != release.id


def test_wait_timeout_carries_the_findings(rig: Rig) -> None:
    rig.worker_on = False
    rig.client.pause("shop", "staging", reason="freeze")
    with pytest.raises(WaitTimeout) as err:
        rig.wait("web", sync_first=True, timeout=5, interval=2)
    result = err.value.details["result"]
    assert result.status == "timeout" and rig.now == 5
    assert err.value.message.startswith("timed out after 5s waiting for service/web (release ")
    codes = [f.code for f in err.value.details["findings"]]
    assert codes[0] == "environment_paused"
    assert [f.code for f in result.findings] == codes
    assert result.apps[0].waiting_on.startswith("environment 'shop/staging' is paused by ci")


def test_wait_bad_input(rig: Rig) -> None:
    with pytest.raises(NotFound, match=r"existing: .*service/web"):
        rig.wait("nope")
    with pytest.raises(InvalidRequest, match="--interval"):
        rig.wait("web", interval=0)
    with pytest.raises(InvalidRequest, match="--timeout"):
        rig.wait("web", timeout=-1)


def test_wait_rides_out_a_database_blip(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    from release_orchestrator.errors import Unavailable

    real = service._poll
    failures = iter([True, True])

    def flaky(*args: Any) -> Any:
        if next(failures, False):
            raise Unavailable("database is not answering")
        return real(*args)

    monkeypatch.setattr(service, "_poll", flaky)
    assert rig.wait("web", sync_first=True, interval=1).status == "ready"
    assert rig.now >= 2
    failures = iter([True] * 100)
    with pytest.raises(Unavailable):
        rig.wait("web", timeout=3, interval=1)
