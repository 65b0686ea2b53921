#!/bin/sh
# refresh: print the spec actually deployed - the state file, verbatim - as JSON on stdout
# (progress messages go to stderr, stdout carries only the JSON).
#
# A resource that was never deployed (or was torn down) has no actual spec: this prints
# `null`, which relo's shell executor records as "absent" (health Missing).
#
# Exit codes: 0 printed; 2 misuse.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_env
check_name_arg "$@" >&2
begin

if [ ! -f "$STATE_FILE" ]; then
    printf 'null\n'
    printf 'observed %s on %s: not deployed\n' "$LABEL" "$WHERE" >&2
    exit 0
fi
spec=$(cat "$STATE_FILE")
printf '%s\n' "$spec"
printf 'observed %s on %s: %s\n' "$LABEL" "$WHERE" "$(describe "$spec")" >&2
