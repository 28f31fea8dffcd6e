#!/usr/bin/env bash
# The demo: a virtualenv, the package, the SQLite example project migrated, a worker started,
# example tasks enqueued and their results printed, `taskq status` shown, the worker stopped
# with SIGTERM.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
echo "installing django_taskq into .venv (log: .venv/install.log)..."
if ! .venv/bin/python -m pip install -e ".[metrics]" > .venv/install.log 2>&1; then
    cat .venv/install.log
    exit 1
fi
cd example_project
../.venv/bin/python manage.py migrate --verbosity 0
../.venv/bin/python manage.py taskworker --concurrency 2 --queues default,mail --beat --loglevel INFO \
    > worker.log 2>&1 &
worker=$!
trap 'kill -TERM $worker 2>/dev/null || true' EXIT
../.venv/bin/python manage.py demo
echo "manage.py taskq status (what the worker stored; the admin's Task queue > Workers page shows it too):"
../.venv/bin/python manage.py taskq status | sed 's/^/  /'
kill -TERM "$worker"
wait "$worker" && status=0 || status=$?
trap - EXIT
echo "worker stopped (exit $status); its log (example_project/worker.log), first and last lines:"
head -n 16 worker.log | sed 's/^/  | /'
echo "  | ..."
tail -n 4 worker.log | sed 's/^/  | /'

exit "$status"
