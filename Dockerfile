# One image for every relo process: worker, beat, Flower, the web app and the CLI.
#   docker build -t relo:local .
#   docker run --rm relo:local                     # relo --help
# docker-compose.yml builds it and runs each process from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# Only what the package build needs, so that editing examples/ or tests/ does not reinstall,
# and local files (.venv, relo.db, .git) never end up in the image.
COPY pyproject.toml README.md celeryconfig.py ./
COPY release_orchestrator ./release_orchestrator
COPY workers ./workers
RUN pip install --no-cache-dir . \
    && rm -rf build ./*.egg-info

# The shop example (docker-compose's init service applies examples/shop/shop.yaml). Its
# scripts keep their executable bit and need only /bin/sh, sed and date, all in the base image.
COPY examples ./examples

# Run as a non-root user. The copied files stay root-owned (read-only for the app); the user
# owns the working directory itself so a process can create files there (e.g. Celery beat's
# schedule file, or the default SQLite database when RELO_DATABASE_URL is not set).
RUN useradd --create-home --uid 10001 --user-group relo \
    && chown relo:relo /app
USER relo

CMD ["relo", "--help"]
