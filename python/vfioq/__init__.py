# SPDX-License-Identifier: MIT
"""vfioq from Python: bring a card up, poke its registers, move data by DMA.

    import vfioq
    card = vfioq.open("model")             # or "vfio-user:PATH", or "0000:03:00.0"
    card.regs.SCRATCH = 0x1234
    print(card.regs.CAP.MAX_SGE)
    qp = card.queue_pair(depth=64)
    buf = card.alloc(4096)                 # memoryview(buf) and numpy see its bytes
    qp.write(0x1000, buf)
    assert qp.read(0x1000, length=4096) == bytes(buf)

Failures of the library raise vfioq.Error, an OSError whose errno and strerror
are the library's code and message; a command that completes with another
status than SUCCESS raises vfioq.CommandError in the one-at-a-time calls.
"""

from . import _vfioq
from ._vfioq import Completion, DmaBuffer, Error, Registration, Request, status_name
from .queue import CommandError, QueuePair
from .registers import Registers, Value

__all__ = ["open", "Card", "QueuePair", "Error", "CommandError", "Completion", "DmaBuffer", "Registration", "Request",
           "Registers", "Value", "status_name", "MODEL_OPTIONS"]

MODEL_OPTIONS = ("null_data", "latency_us", "out_of_order", "workers", "seed", "devmem_size", "faults",
                 "fault_seed", "fault_status", "fault_late_us", "corrupt_reads_every", "idle_spin_us")


class Card:
    """An opened device: registers, DMA memory, and the controller once asked for."""

    def __init__(self, device):
        self.device = device
        self.regs = Registers(device)
        self._controller = None

    name = property(lambda self: self.device.name)
    gone = property(lambda self: self.device.gone)

    def read(self, bar, offset, width=32):
        return self.device.read(bar, offset, width)

    def write(self, bar, offset, value, width=32):
        self.device.write(bar, offset, value, width)

    def config_read(self, offset, width=32):
        return self.device.config_read(offset, width)

    def config_write(self, offset, value, width=32):
        self.device.config_write(offset, value, width)

    def alloc(self, size):
        """A DMA buffer of `size` bytes the card can reach (the buffer protocol shows its memory)."""
        return self.device.alloc(size)

    def register(self, memory):
        """Registers the memory of a bytes-like object (bytearray, numpy array, mmap) for DMA."""
        return self.device.register(memory)

    @property
    def controller(self):
        """The card brought up (bring-up happens on first use)."""
        if self._controller is None:
            self._controller = _vfioq.controller(self.device)
        return self._controller

    @property
    def info(self):
        return self.controller.info()

    def queue_pair(self, depth=256, interrupts=False, timeout=30.0):
        """A queue pair on the next free queue id; `timeout` is each command's, in seconds."""
        return QueuePair(self, self.controller.queue_pair(depth, interrupts, int(timeout * 1000)))

    def shutdown(self):
        if self._controller is not None:
            self._controller.shutdown()

    def close(self):
        """Gives up this card's hold on the controller and device; what still uses them keeps them."""
        self._controller = None
        self.device = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<vfioq.Card {self.name}>" if self.device else "<vfioq.Card closed>"


def open(address="model", **model_options):
    """Opens a device by address. The model takes options: null_data, latency_us, out_of_order,
    workers, seed, devmem_size, faults (a list such as ["drop=0.01", "5:status"]), fault_seed,
    fault_status, fault_late_us, corrupt_reads_every, idle_spin_us (how long the card's thread spins
    before it sleeps, when idle)."""
    if address == "model":
        faults = model_options.get("faults")
        if isinstance(faults, str):
            model_options["faults"] = [f for f in faults.split(",") if f]
        return Card(_vfioq.open_model(**model_options))
    if model_options:
        raise TypeError(f"options {', '.join(model_options)} are the model's; {address} is not the model")
    return Card(_vfioq.open(address))
