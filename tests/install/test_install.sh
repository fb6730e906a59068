#!/usr/bin/env bash
# `meson install` into a prefix, then an outside program built against it with
# pkg-config alone, run against the model.
set -euo pipefail
src=${1:?usage: test_install.sh SOURCE_DIR}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
meson setup "$tmp/build" "$src" --prefix="$tmp/prefix" --libdir=lib -Dtests=false >"$tmp/setup.log" ||
    { cat "$tmp/setup.log"; exit 1; }
ninja -C "$tmp/build" install >"$tmp/install.log" || { tail -50 "$tmp/install.log"; exit 1; }
export PKG_CONFIG_PATH=$tmp/prefix/lib/pkgconfig
pkg-config --exists vfioq vfioq-model
c++ -std=c++20 -Wall -Werror "$src/examples/outside_consumer.cpp" -o "$tmp/consumer" \
    $(pkg-config --cflags --libs vfioq-model)
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/consumer" | tee "$tmp/out"
grep -qx "SCRATCH reads back 0xc0ffee" "$tmp/out"
# The DMA path through the installed libraries and headers alone.
c++ -std=c++20 -Wall -Werror "$src/examples/hello_dma.cpp" -o "$tmp/hello_dma" $(pkg-config --cflags --libs vfioq-model)
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/hello_dma" | tee "$tmp/out"
grep -q "read them back: identical" "$tmp/out"
# The same from C, through the C API: C11 with every warning, and pedantic.
cc -std=c11 -Wall -Wextra -Wpedantic -Werror "$src/examples/c/hello_dma.c" -o "$tmp/hello_dma_c" \
    $(pkg-config --cflags --libs vfioq-model)
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/hello_dma_c" | tee "$tmp/out"
grep -q "read them back: identical" "$tmp/out"
# A program that links the driver library alone reaches a vfio-user card (the installed
# vfioq-devsim), and is told what to link for the `model` address.
c++ -std=c++20 -Wall -Werror "$src/examples/driver_only.cpp" -o "$tmp/driver_only" $(pkg-config --cflags --libs vfioq)
if readelf -d "$tmp/driver_only" | grep -q "libvfioq-model"; then
    echo "driver_only links the model library"; exit 1
fi
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/prefix/bin/vfioq-devsim" --socket "$tmp/card.sock" --log-level warn &
devsim=$!
trap 'kill "$devsim" 2>/dev/null || true; rm -rf "$tmp"' EXIT
for _ in $(seq 100); do [ -S "$tmp/card.sock" ] && break; sleep 0.1; done
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/driver_only" "vfio-user:$tmp/card.sock" | tee "$tmp/out"
grep -qx "an SGQ card, interface 1.0" "$tmp/out"
if LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/driver_only" model 2>"$tmp/err"; then
    echo "driver_only opened 'model' without the model library"; exit 1
fi
grep -q "libvfioq-model" "$tmp/err"
kill "$devsim"
wait "$devsim" || true
# The Python module as installed, when this machine builds it: opened, a register, a DMA round trip.
init=$(find "$tmp/prefix" -path '*/vfioq/__init__.py' | head -1)
if [ -n "$init" ]; then
    # The interpreter meson built it for: the first python3 with pybind11 and pytest.
    for py in python3 /usr/bin/python3; do "$py" -c 'import pytest, pybind11' 2>/dev/null && break; done
    PYTHONPATH=$(dirname "$(dirname "$init")") LD_LIBRARY_PATH=$tmp/prefix/lib "$py" -c '
import vfioq
card = vfioq.open()
card.regs.SCRATCH = 0xBEEF
qp = card.queue_pair(depth=4)
qp.write(0, b"installed")
assert card.regs.SCRATCH == 0xBEEF and qp.read(0, length=9) == b"installed"
print("the installed Python module works")'
fi
# Every public header compiles on its own, and the C headers as C and as C++.
for h in "$tmp"/prefix/include/vfioq/*.hpp "$tmp"/prefix/include/vfioq/*.h; do
    echo "#include <vfioq/$(basename "$h")>" | c++ -std=c++20 -Wall -Werror -fsyntax-only -x c++ - \
        $(pkg-config --cflags vfioq)
done
for h in "$tmp"/prefix/include/vfioq/*.h; do
    echo "#include <vfioq/$(basename "$h")>" | cc -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -x c - \
        $(pkg-config --cflags vfioq)
done
test -x "$tmp/prefix/bin/vfioq-info" && test -x "$tmp/prefix/bin/vfioq-selftest"
test -L "$tmp/prefix/lib/libvfioq.so" && test -e "$tmp/prefix/lib/libvfioq.so.0"
test -L "$tmp/prefix/lib/libvfioq-model.so" && test -e "$tmp/prefix/lib/libvfioq-model.so.0"
# The installed libraries export their public API only.
mkdir -p "$tmp/exports/src"
cp -P "$tmp"/prefix/lib/libvfioq*.so* "$tmp/exports/src/"
"$src/tests/abi/test_exports.sh" "$tmp/exports"
echo "1 passed, 0 failed"
