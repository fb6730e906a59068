#!/usr/bin/env bash
# The bring-up example, unchanged, against vfioq-devsim in another process: what the
# lab does with --vfioq-device on its card. PYTHONPATH names the module built in the tree.
set -euo pipefail
python=${1:?usage: test_against_devsim.sh PYTHON DEVSIM EXAMPLES_DIR}
devsim=$2
examples=$3
tmp=$(mktemp -d)
"$devsim" --socket "$tmp/card.sock" --log-level warn &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 600); do [ -S "$tmp/card.sock" ] && break; sleep 0.05; done
[ -S "$tmp/card.sock" ] || { echo "FAIL: vfioq-devsim did not listen on $tmp/card.sock"; exit 1; }
"$python" -m pytest -q -p no:cacheprovider -rs "$examples" --vfioq-device "vfio-user:$tmp/card.sock"
