#!/bin/sh
# destroy: remove this resource's state file. RELO_SPEC is the spec being torn down (the
# applied one). Removing something already gone succeeds (destroy is idempotent).
#
# Exit codes: 0 removed or already absent; 2 misuse; 3 the spec asks teardown to fail
# ("fail_teardown": true in RELO_SPEC) - e.g. to see a rollback fail (release status
# rollback_failed, resource Unknown). To get rid of it: set fail_teardown=false, apply, destroy.
set -eu
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

require_env
check_name_arg "$@"
begin

if [ ! -f "$STATE_FILE" ]; then
    say "$LABEL is not deployed on $WHERE: nothing to tear down"
    exit 0
fi

say "tearing down $(describe "$RELO_SPEC") on $WHERE ($LABEL, release $RELO_RELEASE_ID)..."
pause "$RELO_SPEC"

if json_true fail_teardown "$RELO_SPEC"; then
    die 3 "teardown of $LABEL on $WHERE failed: the spec says \"fail_teardown\": true"
fi

rm -f "$STATE_FILE"
say "$LABEL is gone from $WHERE"
