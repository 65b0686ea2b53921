"""Client mixins, one per feature area; :class:`release_orchestrator.Client` combines them.

Each mixin reaches the services through ``self.ctx`` (a
:class:`release_orchestrator.services.context.Context`).
"""
