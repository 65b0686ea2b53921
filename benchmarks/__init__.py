"""relo's benchmarks against the raw Celery + Redis stack (``make bench``).

Every benchmark module has ``run(...) -> list[dict]`` and ``markdown_table(rows)``;
:mod:`benchmarks.run` runs them all, prints the tables and appends them to ``BENCHMARKS.md``.
"""
