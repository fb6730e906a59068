#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A short bring-up script: open the card, show what it is, check the scratch register,
write a pattern by DMA and read it back.

    python3 examples/python/bringup.py [DEVICE]     # DEVICE: model (default), vfio-user:PATH, PCI address
"""
import os
import sys

try:
    import vfioq._vfioq  # noqa: F401
    import vfioq
except ImportError:  # not installed: the module built in this tree
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    sys.path.insert(0, os.path.join(os.environ.get("VFIOQ_BUILD_DIR", os.path.join(root, "build")), "python"))
    import vfioq


def main(address):
    card = vfioq.open(address)
    info = card.info
    print(f"{card.name}: {info['kind']} card, interface {card.regs.VERSION.MAJOR}.{card.regs.VERSION.MINOR}, "
          f"{info['queue_pairs']} queue pairs, {info['devmem_size'] >> 20} MiB of card memory")
    print(card.regs.CAP)
    card.regs.SCRATCH = 0xC0FFEE
    print(f"SCRATCH reads back {card.regs.SCRATCH:#x}")
    qp = card.queue_pair(depth=16)
    data = bytes(range(256)) * 256
    qp.write(0x10000, data)
    same = qp.read(0x10000, length=len(data)) == data
    print(f"{len(data)} bytes written by DMA and read back: {'identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "model"))
