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
pkg-config --exists vfioq
c++ -std=c++20 -Wall -Werror "$src/examples/outside_consumer.cpp" -o "$tmp/consumer" \
    $(pkg-config --cflags --libs vfioq)
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/consumer" | tee "$tmp/out"
grep -qx "SCRATCH reads back 0xc0ffee" "$tmp/out"
# The DMA path through the installed library and headers alone.
c++ -std=c++20 -Wall -Werror "$src/examples/hello_dma.cpp" -o "$tmp/hello_dma" $(pkg-config --cflags --libs vfioq)
LD_LIBRARY_PATH=$tmp/prefix/lib "$tmp/hello_dma" | tee "$tmp/out"
grep -q "read them back: identical" "$tmp/out"
# Every public header compiles on its own.
for h in "$tmp"/prefix/include/vfioq/*.hpp; do
    echo "#include <vfioq/$(basename "$h")>" | c++ -std=c++20 -Wall -Werror -fsyntax-only -x c++ - \
        $(pkg-config --cflags vfioq)
done
test -x "$tmp/prefix/bin/vfioq-info" && test -x "$tmp/prefix/bin/vfioq-selftest"
test -L "$tmp/prefix/lib/libvfioq.so" && test -e "$tmp/prefix/lib/libvfioq.so.0"
echo "1 passed, 0 failed"
