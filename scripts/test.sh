#!/usr/bin/env bash
# The whole test suite. Installs what it needs into local virtualenvs, then runs pytest once per
# supported Django line whose Python is on this machine:
#   main      python3 (3.10+)  + the newest Django the package allows (5.2 LTS on 3.10/3.11):
#             ruff, mypy and every test but those marked own_server
#   servers   the main leg's virtualenv: the tests marked own_server (they start their own
#             SQS emulator, memcached, Redis sentinel or TLS Redis, or green-pool workers)
#   django6   Python 3.12+     + Django 6.x     (skipped with a note when no 3.12 is found)
#   django42  Python 3.10      + Django 4.2 LTS (skipped with a note when no 3.10 is found)
# The django6 and django42 legs run what depends on the Django or Python version: everything
# but the tests marked network_broker (Redis and RabbitMQ engines, which never touch the ORM)
# and subprocess (real taskworker processes); those run on the main leg only.
# The main leg runs first, then servers, django6 and django42 side by side (own test databases
# each; the servers leg waits on its servers more than on the CPU).
# The main leg runs every database; the version legs split the two servers between them
# (django6: SQLite and PostgreSQL, django42: SQLite and MariaDB; TASKQ_TEST_DESELECT_KINDS),
# so each Django line meets each backend at least once and CI stays under 30 minutes.
# Extra arguments go to pytest. TASKQ_TEST_LEGS="main" limits the legs (without the servers leg,
# the main leg runs the own_server tests too, so "main" alone is still every test).
# Tests needing PostgreSQL, MariaDB, Redis or RabbitMQ skip when those are unreachable, unless
# TASKQ_REQUIRE_SERVICES=1 (CI), where they fail. Before the legs, Debian's chromium and
# chromium-driver are installed with apt-get when missing (the admin page tests use them).
set -euo pipefail
cd "$(dirname "$0")/.."
LEGS=${TASKQ_TEST_LEGS:-main servers django6 django42}

find_python() {  # find_python 3.12 -> a working python3.12 executable, or nothing
    local version=$1 candidate
    for candidate in "$(command -v "python$version" || true)" \
        $( (command -v pyenv > /dev/null && ls -d "$(pyenv root)"/versions/"$version".*/bin/python) \
           2> /dev/null | sort -V -r); do
        # pyenv shims exist for versions that are not selected: check that it really runs.
        if [ -n "$candidate" ] && "$candidate" -c "import venv" > /dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
}

#: What the legs other than main leave to it (see the header).
VERSION_LEG_MARKS="not network_broker and not subprocess and not own_server"

run_leg() {  # run_leg NAME VENV PYTHON DJANGO_SPEC [pytest args]
    local name=$1 venv=$2 python=$3 django=$4
    shift 4
    echo "=== $name: $("$python" --version 2>&1), $django"
    [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
    if ! "$venv/bin/python" -m pip install -e ".[dev]" "$django" > "$venv/install.log" 2>&1; then
        cat "$venv/install.log"
        return 1
    fi
    # "|| return 1": set -e does not apply inside a function called as "run_leg ... || status=1".
    "$venv/bin/python" -m ruff check --quiet django_taskq tests example_project bench || return 1
    if [ "$name" = main ]; then  # [tool.mypy] in pyproject.toml: the package, tests/typecheck
        "$venv/bin/python" -m mypy || return 1
    fi
    "$venv/bin/python" -m pytest "$@"
}

#: Debian's Chromium and its driver, for the admin page tests in a real browser (tests/browser.py),
#: and memcached, which the cache:// result store tests start on a free port of their own.
SYSTEM_PACKAGES_LOG=${TMPDIR:-/tmp}/django-taskq-apt-install.log

install_system_packages() {  # a failed install is not fatal: those tests skip, or fail in CI
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -x /usr/bin/memcached ] && return 0
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get)
    [ "$(id -u)" = 0 ] || apt=(sudo -n "${apt[@]}")
    local install=("${apt[@]}" install -y --no-install-recommends chromium chromium-driver memcached)
    echo "=== system packages: installing Debian's chromium, chromium-driver and memcached (apt-get; log $SYSTEM_PACKAGES_LOG)"
    # apt-get update only when the install fails: package lists are usually fresh enough.
    if ! { "${install[@]}" || { "${apt[@]}" update && "${install[@]}"; }; } > "$SYSTEM_PACKAGES_LOG" 2>&1
    then
        cat "$SYSTEM_PACKAGES_LOG"
        echo "=== system packages: install failed; browser and memcached tests will skip (fail if required)"
    fi
}

install_system_packages
status=0
# The main leg first; then the two version legs side by side (they wait on databases more
# than on the CPU), each with its own test databases and Redis database, their output kept
# apart and printed when both are done.
version_leg() {  # version_leg NAME PYTHON_VERSION DJANGO_SPEC VENV [pytest args]
    local name=$1 version=$2 django=$3 venv=$4 py
    shift 4
    py=$(find_python "$version")
    if [ -z "$py" ]; then
        echo "=== $name: skipped, no Python $version on this machine"
        return 0
    fi
    local deselect=mariadb
    [ "$name" = django42 ] && deselect=postgres
    TASKQ_TEST_PG_TESTNAME="test_taskq_$name" TASKQ_TEST_MYSQL_TESTNAME="test_taskq_$name" \
        TASKQ_TEST_DESELECT_KINDS=$deselect run_leg "$name" "$venv" "$py" "$django" -m "$VERSION_LEG_MARKS" "$@"
}
servers_leg() {  # servers_leg [pytest args]: the own_server tests, in the main leg's venv
    echo "=== servers: the tests that start their own servers (own_server)"
    if [ ! -x .venv/bin/python ]; then  # run without the main leg: install as it would
        "${PYTHON:-python3}" -m venv .venv
        .venv/bin/python -m pip install -e ".[dev]" > .venv/install.log 2>&1 || { cat .venv/install.log; return 1; }
    fi
    TASKQ_TEST_PG_TESTNAME=test_taskq_servers TASKQ_TEST_MYSQL_TESTNAME=test_taskq_servers \
        TASKQ_TEST_REDIS_URL=redis://127.0.0.1:6379/13 .venv/bin/python -m pytest -m own_server "$@"
}
MAIN_MARKS=()
case " $LEGS " in *" servers "*) MAIN_MARKS=(-m "not own_server") ;; esac
pids=()
logs=()
for leg in $LEGS; do
    case $leg in
        main) run_leg main .venv "${PYTHON:-python3}" "Django>=4.2" ${MAIN_MARKS[@]+"${MAIN_MARKS[@]}"} "$@" \
                  || status=1 ;;
        servers|django6|django42)
            log=$(mktemp "${TMPDIR:-/tmp}/taskq-leg-$leg.XXXXXX")
            if [ "$leg" = servers ]; then
                servers_leg "$@" > "$log" 2>&1 &
            elif [ "$leg" = django6 ]; then
                version_leg django6 3.12 "Django>=6.0,<7" .venv-django6 "$@" > "$log" 2>&1 &
            else
                version_leg django42 3.10 "Django>=4.2,<5.0" .venv-django42 "$@" > "$log" 2>&1 &
            fi
            pids+=("$!")
            logs+=("$log") ;;
        *) echo "unknown leg $leg"; exit 2 ;;
    esac
done
for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || status=1
    cat "${logs[$i]}"
    rm -f "${logs[$i]}"
done
exit $status
