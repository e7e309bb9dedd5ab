#!/bin/sh
# Entry point of shipmate/rabbitmq: write the broker's config from the environment, then run it.
#   RABBITMQ_DEFAULT_USER, RABBITMQ_DEFAULT_PASS: the one user (default guest/guest, loopback only)
#   RABBITMQ_DEFAULT_VHOST: its virtual host (default /)
set -eu
conf=/var/lib/rabbitmq/shipmate-rabbitmq.conf
umask 077
{
    if [ -n "${RABBITMQ_DEFAULT_USER:-}" ]; then
        echo "default_user = ${RABBITMQ_DEFAULT_USER}"
        echo "default_pass = ${RABBITMQ_DEFAULT_PASS:-}"
        # The user is meant for the other containers: let it connect from them.
        echo "loopback_users = none"
    fi
    if [ -n "${RABBITMQ_DEFAULT_VHOST:-}" ]; then
        echo "default_vhost = ${RABBITMQ_DEFAULT_VHOST}"
    fi
} >"$conf"
export RABBITMQ_CONFIG_FILE="$conf"
# The server itself, not Debian's wrapper (which sends the log to a file and switches users).
exec /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
