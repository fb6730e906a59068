#!/usr/bin/env bash
# The shared libraries export their public API and nothing else: every dynamic
# symbol of libvfioq is in vfioq:: outside the internal namespaces (none of the
# model's) or the C API's vfioq_*, and every one of libvfioq-model is in
# vfioq::model:: or vfioq_model_*.
set -euo pipefail
build=${1:?usage: test_exports.sh BUILD_DIR}
internal='model|io|engine|nvme|vfio_user|dma|detail|\(anonymous namespace\)'
failed=0

# Prints the symbol's qualified name: the special prefixes and the parameter list dropped.
names() {
    nm -D --defined-only -C "$1" | awk '$2 != "A"' | cut -d' ' -f3- |
        sed -E 's/^(typeinfo name for|typeinfo for|vtable for|non-virtual thunk to|VTT for) //; s/\(.*$//'
}

check() {  # check LIBRARY PATTERN WHAT
    local lib=$1 pattern=$2 what=$3 bad
    [ -e "$lib" ] || { echo "FAIL: $lib was not built"; failed=1; return; }
    local count
    count=$(names "$lib" | wc -l)
    [ "$count" -gt 0 ] || { echo "FAIL: $lib exports nothing"; failed=1; return; }
    bad=$(names "$lib" | grep -Ev "$pattern" || true)
    if [ -n "$bad" ]; then
        echo "FAIL: $(basename "$lib") exports symbols outside $what:"
        echo "$bad" | sort -u | head -40 | sed 's/^/  /'
        failed=1
    else
        echo "ok: $(basename "$lib"): $count symbols, all $what"
    fi
}

check "$build/src/libvfioq.so" "^(vfioq::(sgq::|log::)?[A-Za-z_]|vfioq_[a-z])" "the driver's public API"
if names "$build/src/libvfioq.so" | grep -Eq "^vfioq::($internal)::"; then
    echo "FAIL: libvfioq.so exports internal or model symbols:"
    names "$build/src/libvfioq.so" | grep -E "^vfioq::($internal)::" | sort -u | head -20 | sed 's/^/  /'
    failed=1
fi
check "$build/src/libvfioq-model.so" "^(vfioq::model::|vfioq_model_)" "the model's public API"
[ "$failed" = 0 ] && echo "2 passed, 0 failed"
exit "$failed"
