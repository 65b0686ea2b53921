#!/bin/sh
# Deploy one app from a CI job with relo, and block until it is live.
#
#   examples/ci/deploy.sh PROJECT ENVIRONMENT APP KEY=VALUE...
#   e.g. examples/ci/deploy.sh shop staging service/payments image=payments:1.5.0
#
# The three steps of README.md (CI pipeline) ("CI pipeline"):
#   1. relo resource set    - change the app's desired spec in the environment;
#   2. relo release sync    - release it if it is now out of sync (prints the release id;
#                             nothing to do when it already runs that spec);
#   3. relo release wait    - wait until it is Synced and Healthy, queued phase included.
#
# Configuration comes from the environment: RELO_DATABASE_URL, RELO_REDIS_URL (and
# RELO_BROKER_URL), RELO_USER (recorded as triggered_by). TIMEOUT (seconds, default 900) and
# INTERVAL (default 5) tune the wait; COMMENT is recorded on the release.
#
# Exit codes are relo's, so the CI job can branch on them: 0 live; 1 the release failed or
# the app is Degraded; 2 bad input (unknown project/environment/app: the message lists what
# exists); 3 timed out (what blocks is printed first: queue position, pause, lock holder);
# 4 state lock conflict.
set -eu

if [ $# -lt 4 ]; then
    echo "usage: $0 PROJECT ENVIRONMENT APP KEY=VALUE..." >&2
    exit 2
fi
project=$1
environment=$2
app=$3
shift 3

relo resource set -p "$project" -e "$environment" "$app" "$@"
relo release sync "$app" -p "$project" -e "$environment" --comment "${COMMENT:-deployed by CI}"
exec relo release wait "$app" -p "$project" -e "$environment" \
    --timeout "${TIMEOUT:-900}" --interval "${INTERVAL:-5}"
