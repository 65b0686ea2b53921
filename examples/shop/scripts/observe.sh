#!/bin/sh
# refresh: print the spec actually deployed - the state file, verbatim - as JSON on stdout
# (progress messages go to stderr, stdout carries only the JSON).
#
# A resource that was never deployed (or was torn down) has no actual spec. relo's shell
# executor needs a JSON object from a refresh, and printing {} would record an empty spec as
# "applied" (the resource would look present and healthy). So this exits 4 with a message
# instead: a refresh of a resource that is not deployed fails, and says why.
#
# Exit codes: 0 printed; 2 misuse; 4 not deployed.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_env
check_name_arg "$@" >&2
begin

if [ ! -f "$STATE_FILE" ]; then
    die 4 "$LABEL is not deployed on $WHERE (no $STATE_FILE)"
fi
spec=$(cat "$STATE_FILE")
printf '%s\n' "$spec"
printf 'observed %s on %s: %s\n' "$LABEL" "$WHERE" "$(describe "$spec")" >&2
