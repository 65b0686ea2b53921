"""The Celery app: ``celery -A workers.app worker|beat|flower`` and ``relo worker`` use it."""

from __future__ import annotations

import gc

from celery.signals import worker_process_init

from release_orchestrator.celery_transport import make_app
from release_orchestrator.settings import Settings

from .follow import FollowEnvironments, add_worker_options

app = make_app(Settings(), main="workers.app")
add_worker_options(app)
app.steps["consumer"].add(FollowEnvironments)


@worker_process_init.connect
def _fresh_connections(**_: object) -> None:
    from . import wiring

    wiring.reset()
    # Everything the pool process inherited (modules, the app: ~100,000 objects) lives as long
    # as it does: out of the collector's sight, so that a full collection scans only what
    # releases allocate (it cost ~0.1 ms per release, about 8% of relo's own work).
    gc.freeze()


from . import tasks  # noqa: E402,F401  (registers the tasks)
