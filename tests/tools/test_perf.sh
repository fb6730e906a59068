#!/usr/bin/env bash
# vfioq-perf as a lab engineer runs it: the report in text, JSON and CSV, the
# workload options, verification that catches a corrupting card, and clear
# refusals. Figures are checked for sense, never for speed.
set -euo pipefail
# Runs count commands (--ios) rather than time: a busy machine makes them slower, never empty.
build=${1:?usage: test_perf.sh BUILD_DIR}
tools=$build/tools
# shellcheck source=harness.sh
. "$(dirname "$0")/harness.sh"
# A stall is a hang only after two minutes: a loaded machine is slow, not stalled (a later --stall-timeout wins).
perf() { "$tools/vfioq-perf" --warmup 0.2 --duration 1 --stall-timeout 120 "$@"; }
perf_to() {  # perf_to FILE ARGS...: a run that must succeed, its output in FILE
    local out=$1
    shift
    perf "$@" >"$out" 2>&1 || { failed=$((failed + 1)); echo "FAIL: vfioq-perf $*"; cat "$out"; }
}
json() {  # json FILE PYTHON-EXPRESSION-ON-r: must be true
    python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if ($2) else 1)" "$1"
}

# The default run: the model in null mode, the report with its references.
perf_to "$tmp/text" --duration 0 --ios 100000 --json "$tmp/r.json" --csv "$tmp/r.csv"
for section in "Total IO" "Latency (us)" "9-nines" "driver ns/cmd" "memory per queue pair" "io_uring NOP" \
    "cache-line round trip" "memcpy, one thread" "model in null mode"; do
    check "the text report has '$section'" grep -qF "$section" "$tmp/text"
done
check "JSON: commands were counted and moved bytes" json "$tmp/r.json" "r['total']['ios'] > 0 and r['total']['bytes'] == r['total']['ios'] * 4096"
check "JSON: latency percentiles from min to max, in order" json "$tmp/r.json" \
    "[p['percentile'] for p in r['total']['latency']['total']['percentiles']][0] == 0 and all(a['us'] <= b['us'] for a, b in zip(r['total']['latency']['total']['percentiles'], r['total']['latency']['total']['percentiles'][1:]))"
check "JSON: the references were measured" json "$tmp/r.json" \
    "r['references']['io_uring_nop_ns'] > 0 and r['references']['cache_line_round_trip_ns'] > 0 and r['references']['memcpy_gib_per_s'] > 0"
check "JSON: the bare ring was run at the run's depth and batch on two CPUs (or not, on one)" json "$tmp/r.json" \
    "(len(__import__('os').sched_getaffinity(0)) < 2 and r['references']['bare_ring_commands_per_s'] is None) or (r['references']['bare_ring_commands_per_s'] > 0 and r['references']['bare_ring_depth'] == r['workload']['depth'] and r['references']['bare_ring_batch'] == r['workload']['batch'])"
check "the text report has the bare ring" grep -q "bare ring, two cores .* M commands/s (depth 256, tail published every 128)" "$tmp/text"
threads_named() {  # the driver's and the model's threads carry their names while a run goes on
    "$tools/vfioq-perf" --duration 3 --warmup 0 --stall-timeout 120 --no-references >/dev/null &
    local pid=$! names=
    for _ in $(seq 100); do
        names=$(cat /proc/$pid/task/*/comm 2>/dev/null | tr '\n' ' ')
        [[ $names == *vfioq-perf-q0* && $names == *vfioq-doorbell* ]] && break
        sleep 0.05
    done
    wait "$pid"
    echo "threads: $names"
    [[ $names == *vfioq-perf-q0* && $names == *vfioq-doorbell* ]]
}
check "the driver's and the model's threads are named for top -H and perf" threads_named
check "JSON: ratios to the references" json "$tmp/r.json" "r['ratios']['driver_cpu_per_command_to_io_uring_nop'] > 0"
check "JSON: driver CPU and memory per queue pair" json "$tmp/r.json" \
    "r['total']['driver_ns_per_command'] > 0 and r['total']['queue_pair_memory_bytes'] > 0"
check "JSON: the built-in model's doorbell thread reports its busy share and time per command" json "$tmp/r.json" \
    "0 < r['total']['model_thread']['busy_percent'] <= 100 and r['total']['model_thread']['busy_ns_per_command'] > 0"
short_runs_see_the_model_busy() {  # a run over before the main thread looks still has the model's share
    local i
    for i in 1 2 3 4 5; do
        perf --duration 0 --ios 2000 --warmup 0.1 --no-references --json "$tmp/short.json" >/dev/null || return 1
        json "$tmp/short.json" "0 < r['total']['model_thread']['busy_percent'] <= 100" || return 1
    done
}
check "JSON: a run of a few thousand commands still reports the model's busy share" short_runs_see_the_model_busy
check "text: the model's doorbell thread beside the driver's" grep -q "model's doorbell thread (CPU .*): busy" "$tmp/text"
check "JSON: system calls are counted, or why not is said" json "$tmp/r.json" \
    "r['total']['syscalls'] >= 0 or 'tracefs' in r['total']['syscalls_not_counted'] or 'perf_event_open' in r['total']['syscalls_not_counted']"
check "JSON: the goals this run measures, each met or missed by a figure" json "$tmp/r.json" \
    "any(g['name'].startswith('driver CPU per command') for g in r['goals']) and all(g['met'] == (g['missed_by_percent'] == 0) for g in r['goals'])"
check "the text report lists the goals" grep -q "^Goals this run measures" "$tmp/text"
check "driver and thread CPU per command are both shown" grep -q "driver ns/cmd | thread ns/cmd" "$tmp/text"
check "CSV: a header, one thread and the total" bash -c "[ \$(wc -l <'$tmp/r.csv') -eq 3 ] && head -1 '$tmp/r.csv' | grep -q '^thread,queue_pair,cpu,bytes,ios' && tail -1 '$tmp/r.csv' | grep -q '^total,'"
perf_to "$tmp/noref.txt" --duration 0 --ios 2000 --warmup 0 --no-references --json "$tmp/noref.json"
check "--no-references prints no reference block" bash -c "! grep -q 'References' '$tmp/noref.txt'"
check "--no-references: JSON references and ratios are null, not zeros" json "$tmp/noref.json" \
    "r['references'] is None and r['ratios'] is None"
perf_to "$tmp/verify.txt" --verify --depth 16 --duration 0 --ios 4000 --no-references --json "$tmp/verify.json"
check "--verify reports the mix it ran, not the 100% reads it was given" bash -c \
    "grep -Eq '  (4[0-9]|5[0-9])% reads as run \(each block written, then read back\)' '$tmp/verify.txt'"
check "--verify: JSON read_percent is the share that ran" json "$tmp/verify.json" \
    "40 <= r['workload']['read_percent'] <= 60 and r['total']['write_ios'] > 0"
check "--json - prints JSON alone" bash -c "'$tools/vfioq-perf' --duration 0.3 --warmup 0 --stall-timeout 120 --no-references --json - | python3 -c 'import json,sys; json.load(sys.stdin)'"
# The window is timed from when the threads are in it: each one's measured time covers the asked
# duration, however late a thread starts (two queue pairs, no warm-up, so they start cold).
perf_to "$tmp/w.txt" --queue-pairs 2 --depth 64 --warmup 0 --duration 0.05 --no-references --json "$tmp/w.json"
check "each thread measures the whole asked window" json "$tmp/w.json" \
    "all(t['seconds'] >= 0.05 for t in r['threads'])"

# Workload options.
perf_to "$tmp/q.txt" --queue-pairs 2 --depth 4096 --duration 0 --ios 20000 --no-references --json "$tmp/q.json"
check "two queue pairs at depth 4096 each measure their I/O count" json "$tmp/q.json" \
    "len(r['threads']) == 2 and all(t['ios'] >= 20000 for t in r['threads']) and r['threads'][0]['queue_pair'] != r['threads'][1]['queue_pair']"
perf_to "$tmp/i.txt" --interrupts --depth 32 --duration 0 --ios 20000 --no-references --json "$tmp/i.json"
check "interrupt mode takes interrupts" json "$tmp/i.json" "r['workload']['mode'] == 'interrupts' and r['total']['interrupts_per_command'] > 0"
perf_to "$tmp/mix" --read-percent 30 --sequential --block-size 512,4096,65536 --segments 4 --registration per-io \
    --model-mode data --duration 0 --ios 1000 --no-references --json "$tmp/m.json"
check "a read/write mix reports both" json "$tmp/m.json" "r['total']['read_ios'] > 0 and r['total']['write_ios'] > 0"
check "a mix prints Read IO and Write IO tables" bash -c "grep -q '^Read IO' '$tmp/mix' && grep -q '^Write IO' '$tmp/mix'"
check "a size distribution moves whole blocks of those sizes" json "$tmp/m.json" \
    "r['total']['bytes'] % 512 == 0 and r['total']['bytes'] > r['total']['ios'] * 512"
check "verification in data mode finds every byte as written" perf --verify --depth 64 --segments 3 --block-size 4096,1000 \
    --duration 0 --ios 5000 --no-references

# A card that corrupts data: verification must fail and name the command.
sock=$tmp/card.sock
start_devsim "$sock" --corrupt-reads-every 5
set +e
perf "vfio-user:$sock" --verify --depth 8 --duration 0 --ios 2000 --no-references >"$tmp/bad" 2>&1
status=$?
set -e
check "vfioq-perf --verify exits 1 on corrupted data" test "$status" -eq 1
check "the mismatch names queue, CID and card address" grep -Eq "queue [0-9]+ CID [0-9]+: the [0-9]+ bytes read back at card address 0x[0-9a-f]+ are not what was written" "$tmp/bad"
stop_devsim

# The model in its own process in null mode, reached by socket.
start_devsim "$sock" --null-data
check "vfioq-perf over vfio-user against vfioq-devsim --null-data" perf "vfio-user:$sock" --depth 64 --duration 0 \
    --ios 20000 --no-references --json "$tmp/devsim.json"
check "JSON: a model in another process has no doorbell-thread figures (null)" json "$tmp/devsim.json" \
    "r['total']['model_thread'] is None"
stop_devsim

# A card whose every completion carries an error: the run fails and names the status.
start_devsim "$sock" --fault status=1 --fault-status 7
set +e
perf "vfio-user:$sock" --depth 4 --duration 0 --ios 50 --no-references >"$tmp/faulty" 2>&1
status=$?
set -e
check "vfioq-perf exits 1 when the card fails commands" test "$status" -eq 1
check "the failure names queue, CID, card address and status" grep -Eq "queue [0-9]+ CID [0-9]+: read 4096 bytes at card address 0x[0-9a-f]+: DMA_FAULT" "$tmp/faulty"
stop_devsim
# A card that completes nothing: the run stops by itself and says the device stalled.
start_devsim "$sock" --fault drop=1
set +e
perf "vfio-user:$sock" --depth 4 --duration 0 --ios 50 --stall-timeout 1 --no-references >"$tmp/stall" 2>&1
status=$?
set -e
check "vfioq-perf exits 1 when the card stalls" test "$status" -eq 1
check "a stall is named, with the device" grep -q "no command completed for 1 s on vfio-user:.*: the device stalled" "$tmp/stall"
stop_devsim
check "vfioq-devsim refuses a fault it does not know" bash -c \
    "! '$tools/vfioq-devsim' --socket '$tmp/x.sock' --fault explode=0.1 2>'$tmp/err' && grep -q 'KIND=RATE' '$tmp/err'"

# Refusals: exit 2 and say why.
refuses() {  # refuses MESSAGE ARGS...
    local message=$1 status=0
    shift
    "$tools/vfioq-perf" "$@" >"$tmp/err" 2>&1 || status=$?
    [ "$status" -eq 2 ] && grep -qF -- "$message" "$tmp/err"
}
check "depth 0 is refused" refuses "--depth takes a number from 1 to 4096" --depth 0
check "verify in null mode is refused" refuses "--verify needs data to move" --verify --model-mode null
check "more segments than the card carries are refused" refuses "more than the device's 1024" --segments 2000 --block-size 1048576
check "more queue pairs than the card has are refused" refuses "the device has 16" --queue-pairs 17
check "an unknown device is refused" refuses "unknown device address" card0
check "a CPU the process may not use is refused" refuses "CPU 4000 is not one this process may run on" --cpus 4000

# The pictures and the diskspd comparison, from reports of this run.
scripts=$(cd "$(dirname "$0")/../../scripts" && pwd)
fixtures=$(cd "$(dirname "$0")/../perf" && pwd)
sample=$fixtures/diskspd-4k-random-read.xml
for d in 1 32; do perf_to "$tmp/d$d.txt" --depth "$d" --duration 0 --ios 5000 --no-references --json "$tmp/d$d.json"; done
check "perf-plot draws latency pictures and depth scaling" "$scripts/perf-plot" --out "$tmp/plots" "$tmp/d1.json" "$tmp/d32.json"
for f in latency-d1 latency-d32 depth-scaling; do
    check "$f.png is a PNG" bash -c "head -c 8 '$tmp/plots/$f.png' | od -An -c | grep -q 'P   N   G'"
done
check "perf-plot draws SVG too" bash -c "'$scripts/perf-plot' --format svg --out '$tmp/svg' '$tmp/d1.json' && grep -q '<svg' '$tmp/svg/latency-d1.svg'"
check "perf-plot refuses what is not a report" bash -c "! '$scripts/perf-plot' '$sample' 2>'$tmp/err' && grep -q 'perf-plot: ' '$tmp/err'"
"$scripts/perf-compare-diskspd" "$sample" "$tmp/d32.json" --plot "$tmp/cmp.png" >"$tmp/cmp" 2>&1 || true
check "perf-compare-diskspd lays the figures side by side" bash -c \
    "grep -Eq '^IOPS +\\| +199605.80 \\| +[0-9.]+ \\| +[0-9.]+\$' '$tmp/cmp' && grep -q '^latency 9-nines us' '$tmp/cmp' && grep -q '^MiB/s' '$tmp/cmp'"
check "perf-compare-diskspd reads diskspd's IOPS deviation and the busiest CPU" bash -c \
    "grep -Eq '^IOPS std dev +\\| +2340.84' '$tmp/cmp' && grep -Eq '^busiest CPU user % +\\| +18.45' '$tmp/cmp' &&
     grep -Eq '^busiest CPU kernel % +\\| +43.05' '$tmp/cmp'"
check "perf-compare-diskspd says when the workloads are the same" grep -q "the two runs measure the same workload" "$tmp/cmp"
check "perf-compare-diskspd says when the workloads differ, and how" bash -c \
    "'$scripts/perf-compare-diskspd' '$sample' '$tmp/d1.json' | grep -q 'do not measure the same workload: outstanding I/Os per thread 32 against 1'"
check "perf-compare-diskspd draws the comparison" bash -c "head -c 8 '$tmp/cmp.png' | od -An -c | grep -q 'P   N   G'"
compare() {  # compare FIXTURE REPORT: the side-by-side in $tmp/cmp, its errors in $tmp/err
    "$scripts/perf-compare-diskspd" "$fixtures/$1" "$2" >"$tmp/cmp" 2>"$tmp/err"
}
row() { grep -E "^$1 +\\| +$2 +\\|" "$tmp/cmp"; }  # row FIGURE DISKSPD-VALUE
check "without -L diskspd's latency is N/A, not 0" bash -c \
    "$(declare -f compare row); fixtures='$fixtures' scripts='$scripts' tmp='$tmp'; compare diskspd-no-latency.xml '$tmp/d1.json' &&
     row 'avg latency us' N/A && row 'latency std dev us' N/A && row 'latency 99th us' N/A && grep -q 'without -L' '$tmp/cmp'"
check "without -D diskspd's IOPS deviation is N/A, not 0" bash -c \
    "$(declare -f compare row); fixtures='$fixtures' scripts='$scripts' tmp='$tmp'; compare diskspd-no-iops-deviation.xml '$tmp/d1.json' &&
     row 'IOPS std dev' N/A && grep -q 'without -D' '$tmp/cmp' && ! row 'avg latency us' N/A"
check "outstanding I/Os per thread: -F with -O is the pool's RequestCount" bash -c \
    "$(declare -f compare row); fixtures='$fixtures' scripts='$scripts' tmp='$tmp'; compare diskspd-thread-pool.xml '$tmp/d1.json' &&
     row 'outstanding I/Os per thread' 64 && grep -q 'thread pool' '$tmp/cmp'"
check "several threads on several targets: per thread, the sum over its targets; CPU from one CPU" bash -c \
    "$(declare -f compare row); fixtures='$fixtures' scripts='$scripts' tmp='$tmp'; compare diskspd-threads-targets-writes.xml '$tmp/d1.json' &&
     row threads 4 && row 'outstanding I/Os per thread' 16 && row 'block size' 8192 && row 'write % \\(asked\\)' 100 &&
     row 'busiest CPU user %' 2.10 && row 'busiest CPU kernel %' 44.70"
perf_to "$tmp/same.txt" --diskspd "-b4K -o32 -t2 -r -w30 -d1 -W0 -L -D" --no-references --json "$tmp/same.json"
check "vfioq-perf --diskspd runs diskspd's workload: a mixed run compared read and write apart" bash -c \
    "$(declare -f compare row); fixtures='$fixtures' scripts='$scripts' tmp='$tmp'; compare diskspd-mixed.xml '$tmp/same.json' &&
     grep -q 'the two runs measure the same workload' '$tmp/cmp' && grep -q 'ran diskspd.s own flags: -b4K -o32 -t2' '$tmp/cmp' &&
     grep -Eq '^read avg latency us +\\| +[0-9.]+ +\\| +[0-9.]+' '$tmp/cmp' && grep -Eq '^write avg latency us +\\| +[0-9.]+ +\\| +[0-9.]+' '$tmp/cmp' &&
     grep -q '^write latency 99th us' '$tmp/cmp'"
check "vfioq-perf --diskspd refuses a flag with no meaning here, saying why" bash -c \
    "! '$tools/vfioq-perf' --diskspd '-b4K -c64G' 2>'$tmp/err' && grep -q \"'-c64G' has no meaning here: it creates a file\" '$tmp/err'"
check "vfioq-perf --diskspd refuses a target path" bash -c \
    "! '$tools/vfioq-perf' --diskspd '-b4K \\\\.\\PhysicalDrive2' 2>'$tmp/err' && grep -q 'a target path has no meaning' '$tmp/err'"
# Bad input: one line naming it, never a traceback.
one_line() {  # one_line WORDS COMMAND...: fails with one line on stderr that has WORDS
    if "${@:2}" >/dev/null 2>"$tmp/err1"; then return 1; fi
    [ "$(wc -l <"$tmp/err1")" -eq 1 ] && grep -q -- "$1" "$tmp/err1" && ! grep -q Traceback "$tmp/err1"
}
sed 's|<IOCount>\([0-9]*\)</IOCount>|<IOCount>lots</IOCount>|' "$fixtures/diskspd-4k-random-read.xml" >"$tmp/nan.xml"
check "a figure that is not a number" one_line "IOCount is 'lots', not a number" "$scripts/perf-compare-diskspd" "$tmp/nan.xml" "$tmp/d1.json"
sed '0,/<Percentile>50<\/Percentile>/s||<Percentile></Percentile>|' "$fixtures/diskspd-4k-random-read.xml" >"$tmp/empty.xml"
check "an empty percentile" one_line "no Percentile" "$scripts/perf-compare-diskspd" "$tmp/empty.xml" "$tmp/d1.json"
sed 's|<TestTimeSeconds>[0-9.]*</TestTimeSeconds>|<TestTimeSeconds>0.00</TestTimeSeconds>|' "$fixtures/diskspd-4k-random-read.xml" >"$tmp/zero.xml"
check "a zero test time" one_line "measured nothing" "$scripts/perf-compare-diskspd" "$tmp/zero.xml" "$tmp/d1.json"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); del r['total']['latency']; json.dump(r, open(sys.argv[2],'w'))" "$tmp/d1.json" "$tmp/nokey.json"
check "a report missing a key" one_line "without 'latency'" "$scripts/perf-compare-diskspd" "$fixtures/diskspd-4k-random-read.xml" "$tmp/nokey.json"
check "a plot path that cannot be written" one_line "cannot write the picture" \
    "$scripts/perf-compare-diskspd" "$fixtures/diskspd-4k-random-read.xml" "$tmp/d1.json" --plot "$tmp/no/such/dir/p.png"
mkdir -p "$tmp/nompl/matplotlib" && echo 'raise ImportError("no matplotlib here")' >"$tmp/nompl/matplotlib/__init__.py"
check "matplotlib missing" one_line "matplotlib is not installed" env PYTHONPATH="$tmp/nompl" \
    "$scripts/perf-compare-diskspd" "$fixtures/diskspd-4k-random-read.xml" "$tmp/d1.json" --plot "$tmp/p.png"
printf 'Command Line: diskspd -b4K -o32 -t1 -r -d10 -L PhysicalDrive2\r\n\r\nInput parameters:\r\n' >"$tmp/text.out"
check "diskspd's text output hints at -Rxml and no -v" one_line "must run with -Rxml, and without -v" \
    "$scripts/perf-compare-diskspd" "$tmp/text.out" "$tmp/d1.json"
check "a closed pipe is no traceback" bash -c \
    "'$scripts/perf-compare-diskspd' '$fixtures/diskspd-mixed.xml' '$tmp/same.json' 2>'$tmp/err' | head -1 >/dev/null; ! grep -q Traceback '$tmp/err'"
check "perf-compare-diskspd refuses an XML that is not diskspd's" bash -c \
    "echo '<Other/>' >'$tmp/other.xml'; ! '$scripts/perf-compare-diskspd' '$tmp/other.xml' '$tmp/d1.json' 2>'$tmp/err' && grep -q 'not a diskspd XML result' '$tmp/err'"
check "perf-compare-diskspd refuses a missing file by name" bash -c \
    "! '$scripts/perf-compare-diskspd' '$tmp/none.xml' '$tmp/d1.json' 2>'$tmp/err' && grep -q 'none.xml' '$tmp/err'"
check "the fixtures are what make-diskspd-fixtures writes" bash -c \
    "mkdir -p '$tmp/fx' && '$fixtures/make-diskspd-fixtures' '$tmp/fx' && for f in '$fixtures'/diskspd-*.xml; do cmp \"\$f\" '$tmp/fx/'\$(basename \"\$f\") || exit 1; done"
check "the fixtures have diskspd 2.2's CRLF line ends and three-part version" bash -c \
    "grep -q \$'\\r\$' '$fixtures/diskspd-mixed.xml' && grep -q '<Version>2.2.0</Version>' '$fixtures/diskspd-mixed.xml' &&
     grep -q '<Latency ReadHistoBuckets=' '$fixtures/diskspd-mixed.xml' && grep -q '<Bucket SampleMillisecond=' '$fixtures/diskspd-mixed.xml'"

# docs/performance.md's generator, briefly: every goal gets a figure and a verdict.
"$scripts/performance-doc" --quick --build "$build" --out "$tmp/performance.md" >"$tmp/doc-log" 2>&1 || cat "$tmp/doc-log"
check "performance-doc writes every goal with a verdict" bash -c \
    "[ \$(grep -cE '^\\| .* \\| (met|missed by [0-9]+%|not measured|figure) \\|\$' '$tmp/performance.md') -eq 13 ] \
     && [ \$(grep -cE '^\\| .* \\| figure \\|\$' '$tmp/performance.md') -ge 3 ]"
# A build without the module (a sanitizer's) says so.
check "performance-doc sets the Python module's rate beside vfioq-perf's (or says it is not built)" bash -c \
    "grep -qE '^\\| Commands per second from one Python thread .* \\| ([0-9.]+ M/s .* x vfioq-perf.s \\| figure|the module is not built \\| not measured) \\|\$' '$tmp/performance.md'"
check "performance-doc names the machine and the commands" bash -c \
    "grep -q '^Machine: ' '$tmp/performance.md' && grep -q '^vfioq-perf --depth 256' '$tmp/performance.md'"

report
