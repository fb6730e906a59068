# SPDX-License-Identifier: MIT
"""The card's registers by name, with their fields decoded:

    card.regs.CAP.MAX_SGE        # a field of a read
    card.regs.SCRATCH = 0x1234   # a write
    card.regs.Q[2].SQ_BASE       # a queue pair's register
    card.regs.CTRL.fields()      # {'EN': 1, 'SHN': 0}

The names and fields are the contract's (docs/device-interface.md), as the
library's own table has them; a register read is one read of the card.
"""

from . import _vfioq


class Field:
    __slots__ = ("name", "lsb", "width", "meaning")

    def __init__(self, name, lsb, width, meaning):
        self.name, self.lsb, self.width, self.meaning = name, lsb, width, meaning

    def of(self, value):
        return (value >> self.lsb) & ((1 << self.width) - 1)


class Register:
    __slots__ = ("name", "offset", "width", "access", "fields", "per_queue")

    def __init__(self, name, offset, width, access, fields, per_queue):
        self.name, self.offset, self.width, self.access, self.per_queue = name, offset, width, access, per_queue
        self.fields = {f[0]: Field(*f) for f in fields}


REGISTERS = [Register(*r) for r in _vfioq.registers()]
GLOBAL = {r.name: r for r in REGISTERS if not r.per_queue}
PER_QUEUE = {r.name: r for r in REGISTERS if r.per_queue}
QUEUE_BLOCK = 0x1000   # where queue pair 0's registers start (section 2.3)
QUEUE_STRIDE = 0x40    # and each next queue pair's


class Value(int):
    """A register's value: an int whose fields are attributes (`value.EN`)."""

    def __new__(cls, value, register):
        v = super().__new__(cls, value)
        v.register = register
        return v

    def __getattr__(self, name):
        field = self.register.fields.get(name)
        if field is None:
            raise AttributeError(f"{self.register.name} has no field {name}; it has {', '.join(self.register.fields)}")
        return field.of(int(self))

    def __dir__(self):
        return list(self.register.fields) + ["fields"]

    def fields(self):
        return {name: f.of(int(self)) for name, f in self.register.fields.items()}

    def __repr__(self):
        decoded = " ".join(f"{name}={value:#x}" for name, value in self.fields().items())
        return f"{self.register.name} = {int(self):#x} ({decoded})"


class _Block:
    """Registers at `base` in BAR0, by name."""

    def __init__(self, device, table, base, what):
        object.__setattr__(self, "_device", device)
        object.__setattr__(self, "_table", table)
        object.__setattr__(self, "_base", base)
        object.__setattr__(self, "_what", what)

    def _register(self, name):
        r = self._table.get(name)
        if r is None:
            raise AttributeError(f"{self._what} has no register {name}; it has {', '.join(self._table)}")
        return r

    def __getattr__(self, name):
        r = self._register(name)
        if r.access == "WO":
            raise AttributeError(f"{r.name} is write-only")
        return Value(self._device.read(0, self._base + r.offset, r.width), r)

    def __setattr__(self, name, value):
        r = self._register(name)
        if r.access == "RO":
            raise AttributeError(f"{r.name} is read-only")
        self._device.write(0, self._base + r.offset, int(value), r.width)

    def __dir__(self):
        return list(self._table)

    def dump(self):
        """Every readable register of the block, decoded."""
        return {name: getattr(self, name) for name, r in self._table.items() if r.access != "WO"}


class _Queues:
    def __init__(self, device):
        self._device = device

    def __getitem__(self, qid):
        if not isinstance(qid, int) or not 0 <= qid < 256:
            raise IndexError(f"queue pair {qid!r}: queue pairs are numbered 0 to 255")
        return _Block(self._device, PER_QUEUE, QUEUE_BLOCK + qid * QUEUE_STRIDE, f"queue pair {qid}")


class Registers(_Block):
    """The card's global registers by name, and its queue pairs' as `Q[n]`."""

    def __init__(self, device):
        super().__init__(device, GLOBAL, 0, "the card")
        object.__setattr__(self, "Q", _Queues(device))

    def __dir__(self):
        return super().__dir__() + ["Q"]
