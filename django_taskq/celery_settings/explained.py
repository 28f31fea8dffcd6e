"""Celery settings django_taskq does not read, each with what a system check says about it.

Two kinds: NO_EFFECT (a TASKQ key or URL option replaces it, or it is not needed: the hint says
which and why) and NOT_YET (the feature arrives with a later issue, named in the hint). The honoured
settings are in ``translated.py``; together the two tables hold every setting Celery 5.7 defines.
"""

from __future__ import annotations

#: What a check says about a setting; each kind has its own check id (checks.py).
ERROR, NO_EFFECT, NOT_YET, CONFLICT, UNKNOWN = "error", "no-effect", "not-yet", "conflict", "unknown"

_BEAT = ("Not needed: schedules live in the database (django-celery-beat's DatabaseScheduler is "
         "built in) and any number of beats may run; see docs/beat.md. Remove it.")
_BEAT_DEADLINE = ("Each periodic task has its own catch-up policy (skip missed runs, run the latest "
                  "once, or all within a window: catch_up and catch_up_window in the admin); "
                  "see docs/beat.md. Remove it.")
_BEAT_CONTROL = ("Not offered: beat does not answer remote control. Its liveness is stored "
                 "instead: the admin's Beat instances page shows each beat's last tick (and "
                 "warns when none ticked recently). Remove it.")
_EVENT_EXCHANGE = ("Not offered: events go out on Celery's default event exchange, celeryev, as "
                   "JSON (Redis and RabbitMQ, TASKQ['EVENTS_CELERY']), where Flower and celery "
                   "events find them with their defaults; see docs/monitoring.md. Remove it.")
_EVENT_QUEUES = ("Not needed: these shape the queues of event receivers (Flower, celery events), "
                 "which take them from their own Celery configuration; the events django_taskq "
                 "stores expire after TASKQ['EVENTS_EXPIRES'] seconds. Remove it.")
SIGNING_HINT = ("Celery's certificate-based `auth` serializer signs the body only; django_taskq "
                "signs headers and body with TASKQ['SIGNING_KEYS'] — see docs/security.md")
_CHORDS = ("Not needed: a chord's header tasks are counted atomically in the result store as "
           "they finish (never joined or polled by a retrying task), and the counts expire with "
           "TASKQ['RESULT_EXPIRES']; see docs/canvas.md. Remove it.")
_CHORD_ERRBACKS = ("An errback linked to a chord runs once, when the chord fails (on its body), "
                   "as with Celery's default; to handle a header task's own failure, link the "
                   "errback to the header tasks. Remove it.")
CACHE_HINT = ("Results in a cache are a Django cache of CACHES: declare the memcached (or Redis) "
              "server there, e.g. CACHES['results'] = {{'BACKEND': 'django.core.cache.backends."
              "memcached.PyMemcacheCache', 'LOCATION': '{location}'}}, and set "
              "TASKQ['RESULT_BACKEND'] = 'cache://results' (docs/result-backends.md). Remove it.")
_OTHER_BACKEND = ("A setting of a Celery result backend django_taskq does not have: results go to "
                  "TASKQ['RESULT_BACKEND'] (db://<alias> or redis://). Remove it.")
TRANSPORT_HINT = ("Not needed for visibility_timeout: leases are renewed while a task runs "
                  "(TASKQ['LEASE_TIMEOUT']). Connection options are URL query options "
                  "(docs/brokers.md); only sentinel:// (master_name, sentinel_kwargs, "
                  "min_other_sentinels) and sqs:// URLs read transport options. Remove it.")
SQLALCHEMY_HINT = ("Celery's SQLAlchemy result backend: use TASKQ['RESULT_BACKEND'] = "
                   "'db://<alias>' (a DATABASES alias; its tables come from migrate). Remove it.")
NO_BACKEND_HINT = ("django_taskq always has a result backend (TASKQ['RESULT_BACKEND']); to "
                   "store no results set TASKQ['TASK_IGNORE_RESULT'] = True. Remove it.")
_RECONNECT = ("Not needed: workers reconnect on their own, backing off; a producer gets "
              "BrokerConnectionError within the URL's deadlines (publish retries: "
              "TASKQ['TASK_PUBLISH_RETRY_POLICY']). Remove it.")
_QUEUE_ARGS = ("RabbitMQ queue arguments are BROKER_URL options: ?queue_type=quorum, "
               "?max_priority= (docs/brokers-rabbitmq.md). Remove it.")
_EXCHANGES = ("Not needed: each queue has a direct exchange and routing key of its own name "
              "(Celery's default); route tasks with TASKQ['TASK_ROUTES'] or queue=. Remove it.")
_CONTROL = ("Not needed: revocations and rate limits travel through the control store "
            "(TASKQ['CONTROL_URL']), not broadcast messages. Remove it.")
_INTERNAL = "Not needed: a part of Celery's worker that django_taskq's worker does not have. Remove it."
_LOGGING = ("Configure the django_taskq logger in Django's LOGGING; the worker adds a handler "
            "only when none is configured. Remove it.")
_SHUTDOWN = ("Use TASKQ['WORKER_SHUTDOWN_TIMEOUT']: seconds after a warm stop begins before "
             "running tasks are requeued. Remove it.")
_POOL = "Not needed: each process keeps its own broker connections, no pool to size. Remove it."

#: Celery settings that are not read, as (kind, hint, names): a check reports each one set.
_NOT_READ: tuple[tuple[str, str, str], ...] = (
    (NO_EFFECT, _BEAT, "beat_schedule_filename beat_scheduler beat_sync_every"),
    (NO_EFFECT, _BEAT_DEADLINE, "beat_cron_starting_deadline"),
    (NO_EFFECT, _BEAT_CONTROL, "beat_enable_remote_control beat_remote_control_max_tick_age"),
    (NO_EFFECT, _EVENT_EXCHANGE, "event_exchange event_serializer"),
    (NO_EFFECT, _EVENT_QUEUES, "event_queue_durable event_queue_exclusive event_queue_expires "
     "event_queue_prefix event_queue_ttl"),
    (NO_EFFECT, SIGNING_HINT, "security_cert_store security_certificate security_digest "
     "security_key security_key_password"),
    (NO_EFFECT, _CHORDS, "result_chord_expires result_chord_join_timeout "
     "result_chord_retry_interval"),
    (NO_EFFECT, _CHORD_ERRBACKS, "task_allow_error_cb_on_chord_header"),
    (NO_EFFECT, "The cache is the CACHES alias in the URL, TASKQ['RESULT_BACKEND'] = "
     "'cache://<alias>'; its servers and OPTIONS are its CACHES entry (with CELERY_RESULT_BACKEND "
     "= 'django-cache' a CACHES alias here is honoured). Remove it.",
     "cache_backend cache_backend_options"),
    (NO_EFFECT, "rpc:// replies through the default exchange straight to the caller's queue, as "
     "Celery's RPC backend does (these named the old amqp:// backend's exchange). Remove it.",
     "result_exchange result_exchange_type"),
    (NO_EFFECT, _OTHER_BACKEND, "arangodb_backend_settings azureblockblob_base_path "
     "azureblockblob_connection_timeout azureblockblob_container_name azureblockblob_read_timeout "
     "azureblockblob_retry_increment_base azureblockblob_retry_initial_backoff_sec "
     "azureblockblob_retry_max_attempts cassandra_auth_kwargs cassandra_auth_provider "
     "cassandra_bundle_path cassandra_entry_ttl cassandra_keyspace cassandra_options cassandra_port "
     "cassandra_read_consistency cassandra_servers cassandra_table cassandra_write_consistency "
     "cosmosdbsql_collection_name cosmosdbsql_consistency_level cosmosdbsql_database_name "
     "cosmosdbsql_max_retry_attempts cosmosdbsql_max_retry_wait_time couchbase_backend_settings "
     "elasticsearch_max_retries elasticsearch_retry_on_timeout elasticsearch_save_meta_as_text "
     "elasticsearch_timeout gcs_base_path gcs_bucket gcs_project gcs_ttl mongodb_backend_settings "
     "s3_access_key_id s3_base_path s3_bucket s3_endpoint_url s3_region s3_secret_access_key"),
    (NO_EFFECT, SQLALCHEMY_HINT, "database_create_tables_at_setup database_engine_callback "
     "database_engine_options database_short_lived_sessions database_table_names "
     "database_table_schemas database_url"),
    (NO_EFFECT, "Put Redis options in the URL: TASKQ['RESULT_BACKEND'] = 'redis://user:password@"
     "host:port/db?socket_timeout=10' (rediss:// for TLS; docs/brokers.md). Remove it.",
     "redis_db redis_host redis_max_connections redis_password redis_port redis_retry_on_timeout "
     "redis_socket_connect_timeout redis_socket_keepalive redis_socket_timeout redis_username"),
    (NO_EFFECT, "Write them into the URL: TASKQ['BROKER_URL'] = 'amqp://user:password@host:port/"
     "vhost' (or redis://...). Remove it.",
     "broker_host broker_password broker_port broker_transport broker_user broker_vhost"),
    (NO_EFFECT, "Producers and workers use the one TASKQ['BROKER_URL']. Remove it.",
     "broker_read_url broker_write_url"),
    (NO_EFFECT, _RECONNECT, "broker_channel_error_retry broker_connection_max_retries "
     "broker_connection_retry broker_connection_retry_on_startup broker_heartbeat_checkrate"),
    (NO_EFFECT, "Use ?socket_connect_timeout= (redis://) or ?connect_timeout= (amqp://) in "
     "TASKQ['BROKER_URL']. Remove it.", "broker_connection_timeout"),
    (NO_EFFECT, "django_taskq connects to one broker URL; failover lists are not offered. "
     "Remove it.", "broker_failover_strategy"),
    (NO_EFFECT, "Use ?heartbeat= in an amqp:// TASKQ['BROKER_URL'] (default 10 s). Remove it.",
     "broker_heartbeat"),
    (NO_EFFECT, "Not offered: the login is the BROKER_URL's user and password, or a client "
     "certificate (?certfile=&keyfile= on amqps://). Remove it.", "broker_login_method"),
    (NO_EFFECT, "Not needed: delayed messages wait in per-delay TTL queues "
     "(docs/brokers-rabbitmq.md). Remove it.", "broker_native_delayed_delivery_queue_type"),
    (NO_EFFECT, _POOL, "broker_pool_acquire_timeout broker_pool_limit"),
    (NO_EFFECT, _CONTROL, "control_exchange control_queue_durable control_queue_exclusive "
     "control_queue_expires control_queue_ttl worker_enable_remote_control"),
    (NO_EFFECT, "Django's USE_TZ governs: django_taskq sends and stores aware UTC times. "
     "Remove it.", "enable_utc"),
    (NO_EFFECT, "Django's TIME_ZONE governs: it is the default zone of crontab schedules, and "
     "each crontab may name its own (crontab(..., tz='Europe/Berlin')). Remove it.", "timezone"),
    (NO_EFFECT, "TASKQ['ACCEPT_CONTENT'] covers results too. Remove it.", "result_accept_content"),
    (NO_EFFECT, "Not needed: a worker keeps results it could not store and stores them again "
     "before it acknowledges their messages. Remove it.", "result_backend_always_retry "
     "result_backend_base_sleep_between_retries_ms result_backend_max_retries "
     "result_backend_max_sleep_between_retries_ms"),
    (NO_EFFECT, "Not needed: results are not cached in the process. Remove it.",
     "result_cache_max"),
    (NO_EFFECT, "Failed results expire with the others, after TASKQ['RESULT_EXPIRES']. Remove it.",
     "result_failure_expires"),
    (NO_EFFECT, "Not needed: django_taskq always acknowledges after the task ran. Remove it.",
     "task_acks_late"),
    (NO_EFFECT, "Not read as a setting: a failed or timed-out run is stored as FAILURE and "
     "acknowledged unless the task's own option says otherwise. Set the task option of the "
     "same name (acks_on_failure_or_timeout=False, ...) on the tasks that need it, or for "
     "all of them with TASKQ['TASK_ANNOTATIONS'] = {'*': {...}}.",
     "task_acks_on_failure task_acks_on_failure_or_timeout task_acks_on_timeout"),
    (NO_EFFECT, "Not needed: a message whose worker died is delivered again, up to "
     "TASKQ['MAX_DELIVERIES'] times, then dead-lettered. Remove it.",
     "task_reject_on_worker_lost task_retry_on_worker_lost"),
    (NO_EFFECT, _QUEUE_ARGS, "task_create_missing_queue_type task_default_queue_type "
     "task_queue_max_priority"),
    (NO_EFFECT, _EXCHANGES, "task_create_missing_queue_exchange_type task_default_exchange "
     "task_default_exchange_type task_default_routing_key"),
    (NO_EFFECT, "Not needed: a queue exists once a task is sent to it (queue=, "
     "TASKQ['TASK_ROUTES']) and a worker consumes it with -Q. Remove it.",
     "task_create_missing_queues task_queues"),
    (NO_EFFECT, "Not needed: messages are always persistent. Remove it.",
     "task_default_delivery_mode"),
    (NO_EFFECT, "Set rate_limit= on the tasks, or for all of them TASKQ['TASK_ANNOTATIONS'] = "
     "{'*': {'rate_limit': '10/s'}}; limits here are global, not per worker. Remove it.",
     "task_default_rate_limit"),
    (NO_EFFECT, "Set store_errors_even_if_ignored=True on the tasks, or for all of them "
     "TASKQ['TASK_ANNOTATIONS'] = {'*': {'store_errors_even_if_ignored': True}}. Remove it.",
     "task_store_errors_even_if_ignored"),
    (NO_EFFECT, "Not offered: a task sent from a task gets the priority of its call, its route "
     "or TASKQ['TASK_DEFAULT_PRIORITY']. Remove it.", "task_inherit_parent_priority"),
    (NO_EFFECT, "Not needed: messages are always protocol 2 (Celery's default since 4.0). "
     "Remove it.", "task_protocol"),
    (NO_EFFECT, "Not needed: AsyncResult.traceback holds the worker's traceback. Remove it.",
     "task_remote_tracebacks"),
    (NO_EFFECT, "Not offered: argsrepr and kwargsrepr are cut at fixed limits; pass argsrepr= "
     "and kwargsrepr= to apply_async to replace them. Remove it.", "task_repr_maxlevels"),
    (NO_EFFECT, _INTERNAL, "worker_agent worker_consumer worker_enable_prefetch_count_reduction "
     "worker_lost_wait worker_pool_putlocks worker_pool_restarts worker_proc_alive_timeout "
     "worker_timer worker_timer_precision"),
    (NO_EFFECT, "Not offered: the autoscaler is built in and cannot be replaced; set its range "
     "with taskworker --autoscale MAX,MIN or TASKQ['WORKER_AUTOSCALE'] (docs/pools.md). "
     "Remove it.", "worker_autoscaler"),
    (NO_EFFECT, "Not offered: a task keeps running when the broker connection drops (on "
     "RabbitMQ its message is delivered again meanwhile: make long tasks idempotent). Remove it.",
     "worker_cancel_long_running_tasks_on_connection_loss"),
    (NO_EFFECT, "Not offered: a redelivered task runs again; make tasks idempotent. Remove it.",
     "worker_deduplicate_successful_tasks"),
    (NO_EFFECT, "Not needed: quorum queues are chosen with ?queue_type=quorum in "
     "TASKQ['BROKER_URL']. Remove it.", "worker_detect_quorum_queues"),
    (NO_EFFECT, "Not offered: give a worker a queue of its own with -Q. Remove it.",
     "worker_direct"),
    (NO_EFFECT, "Use TASKQ['WORKER_PREFETCH_MULTIPLIER'] = 1: a worker then holds at most one "
     "message per slot. Remove it.", "worker_disable_prefetch"),
    (NO_EFFECT, "Not offered: rate limits are always enforced; take rate_limit off the tasks to "
     "lift them. Remove it.", "worker_disable_rate_limits"),
    (NO_EFFECT, _SHUTDOWN, "worker_enable_soft_shutdown_on_idle worker_soft_shutdown_timeout"),
    (NO_EFFECT, "Not needed: messages with an ETA wait in the broker, not in worker memory. "
     "Remove it.", "worker_eta_task_limit"),
    (NO_EFFECT, "Not needed: the worker never touches the root logger; it adds a handler to the "
     "django_taskq logger only when logging is not configured. Remove it.",
     "worker_hijack_root_logger"),
    (NO_EFFECT, _LOGGING, "worker_log_color worker_log_datefmt worker_log_format "
     "worker_task_log_datefmt worker_task_log_format"),
    (NO_EFFECT, "Not offered: the prefork pool forks. Remove it.", "worker_pool_start_method"),
    (NO_EFFECT, "Not needed: the worker leaves stdout and stderr alone; log with logging. "
     "Remove it.", "worker_redirect_stdouts worker_redirect_stdouts_level"),
    (NO_EFFECT, "Not needed: revocations are durable in the control store "
     "(TASKQ['CONTROL_URL']). Remove it.", "worker_state_db"),
)

EXPLAINED: dict[str, tuple[str, str]] = {
    name: (kind, hint) for kind, hint, names in _NOT_READ for name in names.split()}

