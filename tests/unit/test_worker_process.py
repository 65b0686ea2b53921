"""What a prefork pool process does when it starts (``workers.app``'s ``worker_process_init``)."""

from __future__ import annotations

import gc


def test_a_pool_process_starts_with_fresh_connections_and_its_inheritance_frozen(
    own_redis_url: str, tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv("RELO_REDIS_URL", own_redis_url)
    monkeypatch.setenv("RELO_DATABASE_URL", f"sqlite:///{tmp_path / 'relo.db'}")
    from workers import app, wiring

    before = wiring.context()
    gc.unfreeze()
    try:
        app._fresh_connections()
        # what the process inherited is out of the collector's sight
        assert gc.get_freeze_count() > 10_000
        assert wiring.context() is not before  # adapters of its own, not the parent's
    finally:
        gc.unfreeze()
        wiring.reset()
