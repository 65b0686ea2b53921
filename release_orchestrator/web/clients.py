"""The web app's client: one :class:`~release_orchestrator.Client` and per-caller views of it.

A view shares the client's database engine, Redis connection pool, lock store and Celery
transport; only who acts (``RELO_USER``) and the trigger differ: ``manual`` for the pages,
``api`` for the JSON API (SPEC §11).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from collections import OrderedDict

from ..client import Client
from ..domain import Trigger


class Clients:
    """Hands out views of one client, built once per (trigger, actor) and kept (LRU)."""

    def __init__(self, base: Client, max_views: int = 256) -> None:
        base.ctx.locks  # noqa: B018 - build the lock store now so every view shares it
        self.base = base
        self._views: OrderedDict[tuple[Trigger, str | None], Client] = OrderedDict()
        self._max = max_views
        self._lock = threading.Lock()

    def view(self, trigger: Trigger, actor: str | None = None) -> Client:
        """The client acting as ``actor`` (None: the process's own user) with ``trigger``."""
        key = (trigger, actor)
        with self._lock:
            found = self._views.get(key)
            if found is not None:
                self._views.move_to_end(key)
                return found
            view = copy.copy(self.base)
            view.trigger = trigger
            if actor is not None:
                view.config = self.base.config.model_copy(update={"user": actor})
                view.ctx = dataclasses.replace(self.base.ctx, settings=view.config)
            self._views[key] = view
            if len(self._views) > self._max:
                self._views.popitem(last=False)
            return view

    def close(self) -> None:
        """Release the database connections."""
        self.base.ctx.db.dispose()
