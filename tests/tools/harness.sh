# Shared by the tool checks (sourced, not run): a scratch folder, check(), a
# vfioq-devsim in the background that is always stopped, and the closing line.
# The sourcing script sets `build` and `tools` first.
tmp=$(mktemp -d)
devsim_pid=
cleanup() {
    [ -n "$devsim_pid" ] && kill "$devsim_pid" 2>/dev/null && wait "$devsim_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
passed=0 failed=0
check() {  # check NAME COMMAND...: the command must succeed
    if "${@:2}" >"$tmp/out" 2>&1; then passed=$((passed + 1)); else
        failed=$((failed + 1)); echo "FAIL: $1"; cat "$tmp/out"; fi
}
start_devsim() {  # start_devsim SOCKET [OPTIONS...]: serves the model and waits for its socket
    local sock=$1
    shift
    "$tools/vfioq-devsim" --socket "$sock" --log-level error "$@" &
    devsim_pid=$!
    for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.05; done
}
stop_devsim() {  # stops it with SIGTERM; its exit status is left in devsim_status
    kill -TERM "$devsim_pid"
    devsim_status=0
    wait "$devsim_pid" || devsim_status=$?
    devsim_pid=
}
report() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
