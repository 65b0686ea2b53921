"""The web app in process (FastAPI TestClient): JSON API, pages and their actions.

SQLite, in-memory transport and locks; "workers" run releases in process (``Rig.work``).
The real ``relo web`` process and a browser are exercised in tests/integration/test_web.py.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from release_orchestrator import Client, Settings
from release_orchestrator.domain import Trigger
from release_orchestrator.locks import MemoryLockStore
from release_orchestrator.services import engine
from release_orchestrator.testing import MemoryTransport
from release_orchestrator.web import create_app

BLUEPRINT = """
project: shop
environments:
  - name: staging
  - name: prod
    settings: {parallel_releases: true, max_parallel_releases: 5}
resources:
  - {type: database, name: orders, executor: simulated, spec: {size: 1}}
  - {type: service, name: web, executor: simulated, spec: {image: "web:1"},
     depends_on: [database/orders]}
"""

TOKEN = "tok-ci-0123456789"
BARE = "tok-bare-9876543210"
API = {"Authorization": f"Bearer {TOKEN}"}
STAGING = "/api/projects/shop/environments/staging"


class Rig:
    def __init__(self, tmp_path: Path, tokens: str | None) -> None:
        self.transport = MemoryTransport(workers={"w1": ["release.shop.staging"]})
        self.client = Client(
            Settings(
                database_url=f"sqlite:///{tmp_path / 'relo.db'}", user="webproc", api_tokens=tokens
            ),
            transport=self.transport,
            lock_store=MemoryLockStore(),
            trigger=Trigger.MANUAL,
        )
        self.client.apply_blueprint_text(BLUEPRINT)
        self.http = TestClient(create_app(client=self.client))

    def work(self) -> None:
        """Run every release handed to workers (and what that lets start)."""
        while self.transport.sent:
            for msg in self.transport.take():
                engine.execute(self.client.ctx, msg.release_id, "w1")

    def page_auth(self, user: str = "alice") -> dict[str, str]:
        raw = base64.b64encode(f"{user}:{BARE}".encode()).decode()
        return {"Authorization": f"Basic {raw}"}


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path, f"ci:{TOKEN},{BARE}")
    with r.http:
        yield r


def queued_behind_pause(rig: Rig) -> list[int]:
    """Two releases queued in a paused shop/staging; returns their ids."""
    rig.client.pause("shop", "staging", reason="freeze")
    return [rig.client.submit("shop", "staging", "full", comment=f"r{i}").id for i in (1, 2)]


# -- authentication ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/environments"),
        ("get", STAGING + "/releases/active"),
        ("post", STAGING + "/releases"),
        ("delete", "/api/releases/1"),
        ("post", "/api/projects/shop/pause"),
        ("get", "/api/events"),
        ("post", "/api/blueprints"),
    ],
)
def test_every_api_route_needs_a_token(rig: Rig, method: str, path: str) -> None:
    r = rig.http.request(method, path, json={})
    assert r.status_code == 401, r.text
    assert r.json()["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = rig.http.request(method, path, json={}, headers={"Authorization": "Bearer wrong"})
    assert (r.status_code, r.json()["code"]) == (401, "unauthorized")
    assert [e.kind for e in rig.client.events("shop")] == ["blueprint_applied"]  # nothing else


def test_without_configured_tokens_the_api_is_disabled(tmp_path: Path) -> None:
    rig = Rig(tmp_path, None)
    with rig.http:
        r = rig.http.get("/api/environments", headers=API)
        assert r.status_code == 403
        assert r.json()["code"] == "api_disabled"
        assert "RELO_API_TOKENS" in r.json()["error"]
        assert rig.http.get("/").status_code == 200  # pages open (local use)


# -- releases ------------------------------------------------------------------------------------
def test_api_results_equal_the_client_and_submissions_have_trigger_api(rig: Rig) -> None:
    queued_behind_pause(rig)
    r = rig.http.post(
        STAGING + "/releases",
        json={"type": "selective", "targets": ["web"], "comment": "from CI"},
        headers=API,
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["trigger"], body["triggered_by"], body["status"]) == ("api", "ci", "queued")
    assert body["targets"] == [{"type": "service", "name": "web", "action": "apply"}]
    active = rig.http.get(STAGING + "/releases/active", headers=API).json()
    assert active == [x.summary() for x in rig.client.active("shop", "staging")]
    assert [a["id"] for a in active] == [1, 2, 3]
    assert [a["position"] for a in active] == [1, 2, 3]
    assert active[0]["held"][0]["code"] == "environment_paused"
    assert rig.http.get("/api/releases/3", headers=API).json() == rig.client.get(3).detail()
    history = rig.http.get(STAGING + "/releases?limit=2", headers=API).json()
    assert [h["id"] for h in history] == [3, 2]


def test_delete_approve_reject_and_errors_as_json(rig: Rig) -> None:
    first, second = queued_behind_pause(rig)
    assert rig.http.delete(f"/api/releases/{first}", headers=API).json() == {"deleted": [first]}
    assert str(rig.client.get(first).status) == "cancelled"
    again = rig.http.delete(f"/api/releases/{first}", headers=API)
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_request"
    assert "cancelled" in again.json()["error"]
    missing = rig.http.get("/api/releases/999", headers=API)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    unknown_env = rig.http.get("/api/projects/shop/environments/stagin/releases", headers=API)
    assert unknown_env.status_code == 404
    assert "staging" in unknown_env.json()["error"]
    bad_type = rig.http.post(STAGING + "/releases", json={"type": "bogus"}, headers=API)
    assert (bad_type.status_code, bad_type.json()["code"]) == (400, "invalid_request")
    extra = rig.http.post(STAGING + "/releases", json={"triggered_by": "mallory"}, headers=API)
    assert (extra.status_code, extra.json()["code"]) == (400, "invalid_request")
    assert "triggered_by" in extra.json()["error"]
    cleared = rig.http.delete(STAGING + "/releases/queued", headers=API).json()
    assert cleared == {"deleted": [second]}

    patch = rig.http.patch(STAGING + "/settings", json={"approval_required": True}, headers=API)
    assert patch.json()["approval_required"] is True
    pending = rig.http.post(STAGING + "/releases", json={}, headers=API).json()
    assert pending["status"] == "pending_approval"
    approved = rig.http.post(f"/api/releases/{pending['id']}/approve", headers=API)
    assert approved.json()["status"] == "queued"
    other = rig.http.post(STAGING + "/releases", json={}, headers=API).json()
    rejected = rig.http.post(f"/api/releases/{other['id']}/reject", headers=API)
    assert rejected.json()["status"] == "rejected"


def test_a_conflict_with_fail_on_conflict_is_409_with_the_recorded_release(rig: Rig) -> None:
    rig.client.submit("shop", "staging", "full")  # dispatched: holds the environment
    r = rig.http.post(STAGING + "/releases", json={"fail_on_conflict": True}, headers=API)
    assert r.status_code == 409
    assert r.json()["code"] == "state_lock"
    assert r.json()["release"]["status"] == "failed"


def test_pause_resume_events_name_the_token(rig: Rig) -> None:
    r = rig.http.post(STAGING + "/pause", json={"reason": "release freeze"}, headers=API)
    assert r.status_code == 200, r.text
    assert (r.json()["paused_by"], r.json()["reason"]) == ("ci", "release freeze")
    view = rig.http.get(STAGING, headers=API).json()
    assert view["environment_pause"]["paused_by"] == "ci" and not view["can_start"]
    project = rig.http.post("/api/projects/shop/pause", headers=API).json()
    assert project["scope"] == "project"
    assert rig.http.post("/api/projects/shop/resume", headers=API).json()["resumed"]
    resumed = rig.http.post(STAGING + "/resume", headers={"Authorization": f"Bearer {BARE}"})
    assert resumed.json()["resumed"]["paused_by"] == "ci"
    events = rig.http.get("/api/events?project=shop&limit=10", headers=API).json()
    assert [(e["actor"], e["kind"]) for e in events][:4] == [
        ("webproc", "resumed"),  # a bare token acts as the web process's user
        ("ci", "resumed"),
        ("ci", "paused"),
        ("ci", "paused"),
    ]


def test_settings_resources_windows_schedule_diagnose_sync_wait_locks(rig: Rig) -> None:
    s = rig.http.get(STAGING + "/settings", headers=API).json()
    assert s == {"parallel_releases": False, "max_parallel_releases": 10,
                 "approval_required": False, "effective_parallel": False}
    bad = rig.http.patch(STAGING + "/settings", json={"max_parallel_releases": 0}, headers=API)
    assert bad.status_code == 400
    res = rig.http.patch(STAGING + "/resources/service/web", json={"values": {"image": "web:2"}},
                         headers=API)
    assert res.json()["desired_spec"]["image"] == "web:2"
    names = [x["resource"] for x in rig.http.get(STAGING + "/resources", headers=API).json()]
    assert names == ["database/orders", "service/web"]

    w = rig.http.post(STAGING + "/windows", json={"kind": "deny", "cron": "0 3 * * *",
                                                 "duration": "1h"}, headers=API)
    assert w.status_code == 201, w.text
    assert [x["id"] for x in rig.http.get(STAGING + "/windows", headers=API).json()] == [
        w.json()["id"]]
    assert rig.http.delete(f"{STAGING}/windows/{w.json()['id']}", headers=API).status_code == 200

    no_schedule = rig.http.get(STAGING + "/schedule", headers=API)
    assert no_schedule.status_code == 404
    sched = rig.http.put(STAGING + "/schedule", json={"every": "1d"}, headers=API)
    assert sched.json()["schedule"]["every"] == "1d"
    assert rig.http.post(STAGING + "/schedule/pause", headers=API).json()["schedule"]["paused"]
    bad_every = rig.http.put(STAGING + "/schedule", json={"every": "0m"}, headers=API)
    assert bad_every.status_code == 400
    assert rig.http.delete(STAGING + "/schedule", headers=API).status_code == 200

    synced = rig.http.post(STAGING + "/sync", json={"apps": "web"}, headers=API).json()
    assert synced["release"]["type"] == "selective"
    assert synced["release"]["trigger"] == "api"
    findings = rig.http.get(STAGING + "/diagnose", headers=API).json()
    assert isinstance(findings, list)
    rig.work()
    done = rig.http.post(STAGING + "/wait", json={"apps": "web", "timeout": 5, "interval": 0.05},
                         headers=API)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "ready"
    in_sync = rig.http.post(STAGING + "/sync", json={"apps": ["web"]}, headers=API).json()
    assert in_sync["release"] is None
    assert rig.http.get(STAGING + "/locks", headers=API).json() == []
    too_long = rig.http.post(STAGING + "/wait", json={"apps": "web", "timeout": 10_000},
                             headers=API)
    assert too_long.status_code == 400


def test_wait_timeout_is_504_with_findings(rig: Rig) -> None:
    rig.client.pause("shop", "staging", reason="freeze")
    r = rig.http.post(STAGING + "/wait", json={"apps": "web", "sync": True, "timeout": 0.2,
                                              "interval": 0.05}, headers=API)
    assert r.status_code == 504
    body = r.json()
    assert body["code"] == "timeout"
    assert body["result"]["status"] == "timeout"
    assert any(f["code"] == "environment_paused" for f in body["findings"])


def test_blueprint_over_http_is_all_or_nothing(rig: Rig) -> None:
    good = BLUEPRINT.replace("name: prod", "name: qa")
    r = rig.http.post("/api/blueprints", content=good.encode(), headers=API)
    assert r.status_code == 200, r.text
    assert "qa" in r.json()["created_environments"]
    bad = good.replace("name: qa", "name: uat").replace("[database/orders]", "[database/nope]")
    r = rig.http.post("/api/blueprints", content=bad.encode(), headers=API)
    assert r.status_code == 400
    envs = {e["name"] for e in rig.http.get("/api/environments", headers=API).json()}
    assert envs == {"staging", "prod", "qa"}


# -- pages ---------------------------------------------------------------------------------------
def test_pages_need_basic_auth_with_a_token(rig: Rig) -> None:
    r = rig.http.get("/")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert rig.http.get("/", headers=rig.page_auth()).status_code == 200


def test_environment_page_shows_active_releases_with_holds_and_history(rig: Rig) -> None:
    first, second = queued_behind_pause(rig)
    html = rig.http.get("/projects/shop/environments/staging", headers=rig.page_auth()).text
    assert f'data-release-id="{first}" data-status="queued"' in html
    assert f'action="/releases/{second}/delete"' in html
    assert "is paused by webproc" in html  # the hold, in plain words
    assert 'id="resume-environment"' in html
    assert "environment_paused" in html  # diagnose finding
    index = rig.http.get("/", headers=rig.page_auth()).text
    assert '<a href="/projects/shop/environments/staging">staging</a>' in index
    release = rig.http.get(f"/releases/{first}", headers=rig.page_auth())
    assert release.status_code == 200 and "r1" in release.text
    missing = rig.http.get("/projects/shop/environments/nope", headers=rig.page_auth())
    assert missing.status_code == 404 and "staging" in missing.text


def test_page_actions_act_as_the_user_with_trigger_manual(rig: Rig) -> None:
    auth = rig.page_auth("alice")
    first, second = queued_behind_pause(rig)
    r = rig.http.post(f"/releases/{first}/delete", headers=auth, follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/projects/shop/environments/staging?msg=deleted")
    assert str(rig.client.get(first).status) == "cancelled"
    deleted = next(e for e in rig.client.events("shop", "staging") if e.release_id == first)
    assert deleted.actor == "alice"

    r = rig.http.post("/projects/shop/environments/staging/releases", headers=auth,
                      data={"type": "selective", "targets": "web database/orders",
                            "comment": "by hand", "force": "on"}, follow_redirects=False)
    assert r.status_code == 303 and "error" not in r.headers["location"], r.headers
    newest = rig.client.list("shop", "staging", 1)[0]
    assert (str(newest.trigger), newest.triggered_by, newest.force) == ("manual", "alice", True)
    assert [t.resource for t in newest.targets] == ["service/web", "database/orders"]

    r = rig.http.post("/projects/shop/environments/staging/resume", headers=auth)
    assert r.status_code == 200 and "resumed shop/staging" in r.text
    r = rig.http.post("/projects/shop/pause", headers=auth,
                      data={"reason": "audit", "from_environment": "staging"})
    assert "paused shop: audit" in r.text
    assert rig.client.environment("shop", "prod").project_pause.paused_by == "alice"
    rig.http.post("/projects/shop/resume", headers=auth)
    assert rig.client.environment("shop", "prod").project_pause is None

    r = rig.http.post("/projects/shop/environments/staging/settings", headers=auth,
                      data={"max_parallel_releases": "3", "parallel_releases": "on"})
    assert "settings saved: parallel on, max parallel 3" in r.text
    assert rig.client.settings("shop", "staging").max_parallel_releases == 3

    # an action that fails comes back as an error line, and changes nothing
    r = rig.http.post(f"/releases/{first}/delete", headers=auth)
    assert 'id="flash-error"' in r.text and "cancelled" in r.text
    r = rig.http.post("/projects/shop/environments/staging/settings", headers=auth,
                      data={"max_parallel_releases": "zero"})
    assert "must be an integer" in r.text
    assert rig.client.settings("shop", "staging").max_parallel_releases == 3
    assert str(rig.client.get(second).status) in ("queued", "running")


def test_cross_site_form_posts_are_refused(rig: Rig) -> None:
    [first, _] = queued_behind_pause(rig)
    for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "null"}):
        r = rig.http.post(f"/releases/{first}/delete", headers={**rig.page_auth(), **headers})
        assert r.status_code == 403, headers
    assert str(rig.client.get(first).status) == "queued"
    same = {"Origin": "http://testserver", **rig.page_auth()}
    r = rig.http.post(f"/releases/{first}/delete", headers=same, follow_redirects=False)
    assert r.status_code == 303


def test_security_headers_and_escaping(rig: Rig) -> None:
    rig.client.pause("shop", "staging", reason="<script>alert(1)</script>")
    r = rig.http.get("/projects/shop/environments/staging", headers=rig.page_auth())
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    js = rig.http.get("/static/relo.js")
    assert js.status_code == 200 and "data-confirm" in js.text


def test_metrics_endpoint_is_prometheus_text(rig: Rig) -> None:
    queued_behind_pause(rig)
    r = rig.http.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert 'relo_queue_depth{environment="staging",project="shop"} 2.0' in r.text
    assert 'relo_environment_paused{environment="staging",project="shop"} 1.0' in r.text




def test_api_help_lists_the_routes_and_the_schema_is_served(rig: Rig) -> None:
    r = rig.http.get("/api-help", headers=rig.page_auth())
    assert r.status_code == 200
    assert "<code>/api/projects/{project}/environments/{environment}/releases/active</code>" \
        in r.text
    assert "relo release active -o json" in r.text
    schema = rig.http.get("/api/openapi.json").json()
    assert "/api/releases/{release_id}" in schema["paths"]
