#!/bin/sh
# Container entry point: bring the database schema up to date once, then become the mailroom process (exec:
# it receives SIGTERM itself, so its grace period applies, and its exit code is the container's).
#
#   entrypoint.sh web [options]     mailroom serve: the admin UI and the JSON API (/healthz, /readyz)
#   entrypoint.sh worker            mailroom worker: delivers queued mail
#   entrypoint.sh migrate           only the migrations
#   entrypoint.sh check [web|worker]
#                                   health check for HEALTHCHECK: a worker's liveness file, else the web's
#                                   /healthz; exit 0 healthy, 1 not (what Docker expects)
#   entrypoint.sh <command> ...     anything else runs as given, e.g. `mailroom user create ...`
#
# Settings come from MAILROOM_* variables as usual. MAILROOM_MIGRATE_WAIT_SECONDS (default 60) is how long
# the migration waits for a database that is still starting.
set -eu

mailroom=${MAILROOM_COMMAND:-mailroom}

migrate() {
    wait_seconds=${MAILROOM_MIGRATE_WAIT_SECONDS:-60}
    started=$(date +%s)
    while :; do
        status=0
        "$mailroom" migrate || status=$?
        [ "$status" -eq 0 ] && return 0
        # 3 is the CLI's "cannot reach the database"; any other failure (a bad setting) will not heal by waiting.
        if [ "$status" -ne 3 ] || [ $(( $(date +%s) - started )) -ge "$wait_seconds" ]; then
            echo "entrypoint: migrations failed (exit $status)" >&2
            exit "$status"
        fi
        echo "entrypoint: the database does not answer yet; trying again in 2 s" >&2
        sleep 2
    done
}

check() {
    role=${1:-}
    if [ -z "$role" ]; then
        if [ -n "${MAILROOM_WORKER_LIVENESS_FILE:-}" ] && [ -e "$MAILROOM_WORKER_LIVENESS_FILE" ]; then
            role=worker
        else
            role=web
        fi
    fi
    case "$role" in
        worker) "$mailroom" worker --check-alive >/dev/null || exit 1 ;;
        web)
            port=${MAILROOM_WEB_PORT:-8025}
            python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=4)' \
                "http://127.0.0.1:$port/healthz" 2>/dev/null || { echo "web: /healthz does not answer" >&2; exit 1; }
            ;;
        *) echo "entrypoint: check web or worker, not '$role'" >&2; exit 1 ;;
    esac
}

command=${1:-web}
[ "$#" -gt 0 ] && shift
case "$command" in
    web|serve) migrate; exec "$mailroom" serve "$@" ;;
    worker) migrate; exec "$mailroom" worker "$@" ;;
    migrate) migrate ;;
    check) check "$@" ;;
    *) exec "$command" "$@" ;;
esac
