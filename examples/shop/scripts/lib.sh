# shellcheck shell=sh
# Shared helpers of the shop example's scripts (POSIX sh; sourced, not executed).
#
# relo's shell executor runs deploy.sh / teardown.sh / observe.sh as plain argv (never through
# a shell string) with the step described in RELO_* variables. These scripts fake a "cluster"
# with one JSON file per project/environment/resource:
#
#   $SHOP_STATE_DIR/<project>/<environment>/<type>/<name>.json   the deployed spec, verbatim
#   $SHOP_STATE_DIR/execution.log                                   one line per start and end
#
# SHOP_STATE_DIR defaults to ${TMPDIR:-/tmp}/relo-shop-state.
#
# Log line (space separated, 6 fields; appended with O_APPEND, one write per line):
#   <unix time, seconds.nanoseconds> <release id> <environment> <type/name> <action> start|end
# Every call writes "start" before any work and "end" when it exits, whatever its exit code
# (also when killed by SIGTERM/SIGINT, e.g. a step timeout). A rollback is an "apply" (back to
# the previous spec) or a "destroy" (of a resource this release created), so a resource that
# was rolled back appears twice in the same release: forward, then rollback.
#
# Specs are never evaluated: they are only compared with `case` patterns, pulled apart with
# sed for display, and written to files with printf '%s'.

STATE_DIR=${SHOP_STATE_DIR:-${TMPDIR:-/tmp}/relo-shop-state}
LOG_FILE=$STATE_DIR/execution.log

die() {
    # die CODE MESSAGE: print MESSAGE on stderr and exit with CODE.
    code=$1
    shift
    printf '%s: error: %s\n' "${0##*/}" "$*" >&2
    exit "$code"
}

say() {
    printf '%s\n' "$*"
}

_unset() {
    die 2 "$1 is not set: run this script through relo's shell executor"
}

# Sets LABEL (type/name), WHERE (project/environment) and STATE_FILE for the scripts.
# shellcheck disable=SC2034
require_env() {
    [ -n "${RELO_PROJECT+x}" ] || _unset RELO_PROJECT
    [ -n "${RELO_ENVIRONMENT+x}" ] || _unset RELO_ENVIRONMENT
    [ -n "${RELO_RELEASE_ID+x}" ] || _unset RELO_RELEASE_ID
    [ -n "${RELO_RESOURCE_TYPE+x}" ] || _unset RELO_RESOURCE_TYPE
    [ -n "${RELO_RESOURCE_NAME+x}" ] || _unset RELO_RESOURCE_NAME
    [ -n "${RELO_ACTION+x}" ] || _unset RELO_ACTION
    [ -n "${RELO_SPEC+x}" ] || _unset RELO_SPEC
    [ -n "${RELO_PREVIOUS_SPEC+x}" ] || _unset RELO_PREVIOUS_SPEC
    # These name a directory and a file: refuse anything that could leave the state dir.
    for _part in "$RELO_PROJECT" "$RELO_ENVIRONMENT" "$RELO_RESOURCE_TYPE" "$RELO_RESOURCE_NAME"; do
        case $_part in
            '' | .* | */* | *[[:space:]]*) die 2 "invalid name '$_part' in RELO_* variables" ;;
        esac
    done
    case $RELO_RELEASE_ID in
        '' | *[!0-9]*) die 2 "RELO_RELEASE_ID must be an integer, got '$RELO_RELEASE_ID'" ;;
    esac
    LABEL=$RELO_RESOURCE_TYPE/$RELO_RESOURCE_NAME
    WHERE=$RELO_PROJECT/$RELO_ENVIRONMENT
    STATE_FILE=$STATE_DIR/$RELO_PROJECT/$RELO_ENVIRONMENT/$RELO_RESOURCE_TYPE/$RELO_RESOURCE_NAME.json
}

check_name_arg() {
    # The blueprint passes the resource name as the first argument ([./scripts/deploy.sh,
    # payments]); a mismatch means a copy-paste slip in the blueprint. Further arguments come
    # from a custom release (relo release trigger --arg ...).
    if [ $# -ge 1 ] && [ "$1" != "$RELO_RESOURCE_NAME" ]; then
        die 2 "argument '$1' does not match RELO_RESOURCE_NAME '$RELO_RESOURCE_NAME'"
    fi
    if [ $# -ge 2 ]; then
        shift
        say "extra arguments: $*"
    fi
}

now() {
    _t=$(date +%s.%N)
    case $_t in *N* | *%*) _t=$(date +%s) ;; esac  # a date(1) without %N
    printf '%s' "$_t"
}

log_event() {
    mkdir -p "$STATE_DIR"
    printf '%s %s %s %s %s %s\n' "$(now)" "$RELO_RELEASE_ID" "$RELO_ENVIRONMENT" "$LABEL" \
        "$RELO_ACTION" "$1" >>"$LOG_FILE"
}

_on_exit() {
    _rc=$?
    trap - EXIT
    log_event end || true
    exit "$_rc"
}

begin() {
    # Log "start" and make sure "end" is logged however the script exits.
    log_event start
    trap _on_exit EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
}

json_str() {
    # json_str KEY JSON: the last "KEY": "string" value in JSON, for display only.
    printf '%s' "$2" | sed -n "s/.*\"$1\": *\"\\([^\"]*\\)\".*/\\1/p"
}

json_num() {
    # json_num KEY JSON: the last "KEY": number value in JSON, for display only.
    printf '%s' "$2" | sed -n "s/.*\"$1\": *\\(-\\{0,1\\}[0-9][0-9.]*\\).*/\\1/p"
}

json_true() {
    # json_true KEY JSON: whether JSON contains "KEY": true (anywhere, also in nested objects).
    # A string value cannot fake it: json.dumps escapes its quotes as \".
    case $2 in
        *"\"$1\": true"* | *"\"$1\":true"*) return 0 ;;
    esac
    return 1
}

what_of() {
    # what_of JSON: the image (services) or engine (databases) of a spec, for progress lines.
    _what=$(json_str image "$1")
    [ -n "$_what" ] || _what=$(json_str engine "$1")
    [ -n "$_what" ] || _what=$RELO_RESOURCE_NAME
    printf '%s' "$_what"
}

replicas_of() {
    # replicas_of JSON: " (3 replicas)", " (1 replica)" or nothing, for progress lines.
    _replicas=$(json_num replicas "$1")
    case $_replicas in
        '') ;;
        1) printf ' (1 replica)' ;;
        *) printf ' (%s replicas)' "$_replicas" ;;
    esac
}

describe() {
    # describe JSON: "payments:1.4.2 (3 replicas)" or the like.
    printf '%s%s' "$(what_of "$1")" "$(replicas_of "$1")"
}

pause() {
    # Pretend to work: "deploy_seconds": N in the spec, else SHOP_DEPLOY_SECONDS, else 1.
    _secs=$(json_num deploy_seconds "$1")
    [ -n "$_secs" ] || _secs=${SHOP_DEPLOY_SECONDS:-1}
    case $_secs in
        '' | *[!0-9.]* | *.*.*) die 2 "deploy time must be a number of seconds, got '$_secs'" ;;
    esac
    sleep "$_secs"
}
