"""Celery settings of relo, chosen for hours-long releases on a Redis broker.

The database is the source of truth for releases; Celery messages are only transport. The
broker must never silently re-run a release, so (see shared CELERY-NOTES and celery#5935,
#3430, #9082):
"""

# Early ack: a message is acknowledged when a worker takes it, so the Redis transport's
# visibility-timeout redelivery never re-runs a long release. A worker that dies after the
# ack loses only the message; the release row stays "dispatched" and the reconciler
# re-sends it (the worker's compare-and-set claim makes a duplicate harmless).
task_acks_late = False
# Never requeue after SIGKILL/OOM (it can requeue forever, celery#9082); the reconciler
# fails a release whose worker vanished once its lease expires.
task_reject_on_worker_lost = False
# Fetch a message only when a pool slot is free: nothing sits prefetched (and unacked)
# behind a long release on a busy worker while another worker idles.
worker_prefetch_multiplier = 1
worker_disable_prefetch = True
# Redelivery of unacked messages (only a message fetched but not yet acked can be unacked
# with early ack): long enough never to fire for a message a worker holds. relo's app turns
# kombu's ack emulation off (make_app; RELO_BROKER_ACK_EMULATION=true turns it back on): the
# reconciler re-sends a release whose message was lost, so the timeout matters only with it.
broker_transport_options = {
    "visibility_timeout": 12 * 3600,
    # One key per queue instead of four: a worker consuming 1,000 environment queues
    # issues BRPOP over 1,000 keys, not 4,000 (relo does not use message priorities).
    "priority_steps": [0],
}
broker_connection_retry_on_startup = True
broker_connection_max_retries = None
# Nobody reads task results: the release row holds the outcome. Saves ~8 Redis commands per
# task round trip.
task_ignore_result = True
result_backend = None
# Flower needs task events.
worker_send_task_events = True
task_send_sent_event = True
task_track_started = True
# Queues are created when first routed to (release.<project>.<environment>); they never expire.
task_create_missing_queues = True
task_default_queue = "relo.control"
# A warm shutdown waits for running releases; a soft-shutdown grace on top of it lets
# a release finish its current step when the worker is told to stop twice.
worker_soft_shutdown_timeout = 600
worker_enable_soft_shutdown_on_idle = False
# Releases can run for hours: no time limits from Celery (per-step timeouts are the
# executor's job).
task_time_limit = None
task_soft_time_limit = None
worker_cancel_long_running_tasks_on_connection_loss = False
task_serializer = "json"
accept_content = ["json"]
timezone = "UTC"
enable_utc = True
worker_hijack_root_logger = False
