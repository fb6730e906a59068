# SPDX-License-Identifier: MIT
"""`python3 -m vfioq.bench`: commands per second through the Python module from one thread,
the queue kept at its depth with batched submissions (the figure docs/performance.md lays
beside vfioq-perf's). On the built-in model in null mode unless a device is named."""

import argparse
import json
import sys
import time

import vfioq


def run(card, depth=256, batch=0, seconds=3.0, block=4096, warmup=0.5):
    """Reads of `block` bytes kept `depth` deep, resubmitted `batch` at a time as they complete.
    Returns the commands completed per second over the measured `seconds`."""
    qp = card.queue_pair(depth=depth)
    buf = card.alloc(block * depth)
    batch = batch or max(1, depth // 2)
    requests = [qp.prepare("read", i * block, [(buf, i * block, block)], None, i) for i in range(depth)]
    ready = list(range(depth))  # slots whose command may go
    done = laps = 0
    start = time.perf_counter()
    measured_from, counted_from = start + warmup, None
    end = measured_from + seconds
    while True:
        if ready:
            go = ready[:batch]
            del ready[:qp._qp.submit_batch([requests[i] for i in go])]
        qp.poll()
        for c in qp._qp.take_completions():
            if not c.ok:
                raise vfioq.CommandError(f"queue {qp.id}: read at card address {c.context * block:#x}", c)
            ready.append(c.context)
            done += 1
        laps += 1
        if laps % 16:
            continue  # the clock is not free either
        now = time.perf_counter()
        if counted_from is None and now >= measured_from:
            counted_from, done_before = now, done
        elif now >= end:
            break
    rate = (done - done_before) / (now - counted_from)
    list(qp.completions())
    qp.close()
    return rate


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m vfioq.bench", description=__doc__)
    parser.add_argument("device", nargs="?", default="model")
    parser.add_argument("--depth", type=int, default=256)
    parser.add_argument("--batch", type=int, default=0, help="submissions per doorbell (default: half the depth)")
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--json", action="store_true", help="the figures as JSON")
    args = parser.parse_args(argv)
    # The model spins 2 ms before it sleeps, as under vfioq-perf: a batch from Python takes longer
    # than its default spin to build, and the model's sleep would be what this measures.
    card = (vfioq.open(args.device, null_data=True, idle_spin_us=2000) if args.device == "model"
            else vfioq.open(args.device))
    rate = run(card, args.depth, args.batch, args.seconds)
    figures = {"device": card.name, "depth": args.depth, "batch": args.batch or max(1, args.depth // 2),
               "commands_per_s": rate, "ns_per_command": 1e9 / rate if rate else None}
    if args.json:
        print(json.dumps(figures))
    else:
        print(f"{card.name}: {rate / 1e6:.3f} M commands/s from one Python thread at depth {args.depth} "
              f"({figures['ns_per_command']:.0f} ns per command, {figures['batch']} per doorbell)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
