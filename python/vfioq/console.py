# SPDX-License-Identifier: MIT
"""`python3 -m vfioq DEVICE`: the device opened and a Python prompt with it in scope."""

import argparse
import code
import sys

import vfioq

BANNER = """vfioq console on {name}: a {kind} card, {queue_pairs} queue pairs, {devmem} MiB of card memory.
  card            the device: card.read/write(bar, offset), card.alloc(size), card.register(obj)
  regs            its registers by name: regs.CAP.MAX_SGE, regs.SCRATCH = 0x1234, regs.Q[0].Q_STATUS
  qp              a queue pair (depth 64): qp.write(addr, data), qp.read(addr, length=n)
  vfioq           the module; help(vfioq) says the rest. Names complete with Tab."""


def namespace(card):
    return {"vfioq": vfioq, "card": card, "regs": card.regs, "qp": card.queue_pair(depth=64)}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m vfioq", description=__doc__)
    parser.add_argument("device", nargs="?", default="model",
                        help='"model" (default), "vfio-user:PATH" or a PCI address')
    parser.add_argument("-c", dest="command", help="run COMMAND in that scope instead of a prompt")
    args = parser.parse_args(argv)
    try:
        card = vfioq.open(args.device)
        scope = namespace(card)
    except vfioq.Error as e:
        print(f"vfioq: {e.strerror}", file=sys.stderr)
        return 2
    if args.command is not None:
        exec(compile(args.command, "<command>", "exec"), scope)
        return 0
    try:
        import readline
        import rlcompleter

        readline.set_completer(rlcompleter.Completer(scope).complete)
        readline.parse_and_bind("tab: complete")
    except ImportError:  # no readline: a prompt without completion
        pass
    info = card.info
    code.interact(banner=BANNER.format(name=card.name, kind=info["kind"], queue_pairs=info["queue_pairs"],
                                       devmem=info["devmem_size"] >> 20), local=scope, exitmsg="")
    return 0
