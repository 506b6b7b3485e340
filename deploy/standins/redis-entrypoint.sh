#!/bin/sh
# As the official image does: `redis-server ...` runs with protected mode off.
set -e
if [ "${1:-}" = "redis-server" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi
exec "$@"
