"""relo's Celery worker package: the app (``workers.app:app``) and its thin tasks."""
