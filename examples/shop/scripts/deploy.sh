#!/bin/sh
# apply: "deploy" RELO_SPEC, i.e. write it to this resource's state file.
#
# Exit codes: 0 deployed; 2 misuse (missing RELO_* variable, bad name, spec not an object);
# 3 the spec asks to fail ("fail": true anywhere in RELO_SPEC) - the tour's failing step.
# A failed deploy leaves the state file as it was.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_env
check_name_arg "$@"
begin

case $RELO_SPEC in
    '{'*'}') ;;
    *) die 2 "RELO_SPEC must be a JSON object, got: $RELO_SPEC" ;;
esac

what=$(what_of "$RELO_SPEC")
replicas=$(replicas_of "$RELO_SPEC")
say "deploying $what to $WHERE$replicas..."
if [ "$RELO_PREVIOUS_SPEC" = null ]; then
    say "  $LABEL, release $RELO_RELEASE_ID: new resource, nothing running yet"
else
    say "  $LABEL, release $RELO_RELEASE_ID: replacing $(describe "$RELO_PREVIOUS_SPEC")"
fi
say "  rolling out..."
pause "$RELO_SPEC"

if json_true fail "$RELO_SPEC"; then
    die 3 "rollout of $what on $WHERE failed: the spec says \"fail\": true" \
        "(relo resource set -p $RELO_PROJECT -e $RELO_ENVIRONMENT $LABEL fail=false to fix)"
fi

mkdir -p "$(dirname "$STATE_FILE")"
tmp=$STATE_FILE.tmp.$$
printf '%s\n' "$RELO_SPEC" >"$tmp"
mv -f "$tmp" "$STATE_FILE"
say "$what is up on $WHERE$replicas"
