# SPDX-License-Identifier: MIT
"""A card's bring-up, as a lab runs it on every new FPGA image: identity, the scratch
register, a DMA pattern at several depths, and an error status. On the built-in model
by default; `--vfioq-device vfio-user:PATH` or a PCI address runs it on that device."""

import struct

import pytest

import vfioq


def test_identity(card):
    assert card.regs.ID == 0x44514753, "ID reads 'SGQD'"
    assert card.regs.VERSION.MAJOR == 1
    cap = card.regs.CAP
    assert cap.MQES >= 1 and cap.MAX_SGE >= 1
    assert card.info["kind"] == "SGQ"
    assert card.info["queue_pairs"] == cap.NQP + 1


def test_scratch(card):
    for value in (0x0, 0xFFFFFFFF, 0x5A5AA5A5, 0x12345678):
        card.regs.SCRATCH = value
        assert card.regs.SCRATCH == value


def pattern(seed, n):
    return bytes((i * 131 + seed * 7 + (i >> 8)) & 0xFF for i in range(n))


@pytest.mark.parametrize("depth", [1, 16, 256])
def test_dma_pattern(card, depth):
    """`depth` blocks written in one batch and read back in another, each its own command."""
    block = 4096
    qp = card.queue_pair(depth=depth)
    out, back = card.alloc(block * depth), card.alloc(block * depth)
    memoryview(out)[:] = pattern(depth, block * depth)
    for op, buf in (("write", out), ("read", back)):
        requests = [(op, i * block, [(buf, i * block, block)]) for i in range(depth)]
        while requests:
            requests = requests[qp.submit_batch(requests):]
            qp.poll()
        statuses = [c.status_name for c in qp.completions()]
        assert statuses == ["SUCCESS"] * depth, f"{op}s at depth {depth}"
    assert bytes(back) == bytes(out)


def test_a_command_beyond_card_memory_is_refused_by_the_card(card):
    """The card's own error status: a raw entry whose range runs past card memory (the library
    would refuse it before the card saw it)."""
    qp = card.queue_pair(depth=4)
    buf = card.alloc(4096)
    end = card.info["devmem_size"]
    # WRITE, 4096 bytes at the end of card memory, one DATA descriptor (device interface, section 3).
    entry = struct.pack("<BBHIQQQIxxxB16sQ", 0x01, 0, 0, 4096, end, 0, buf.iova, 4096, 0, b"", 0)
    done = []
    qp.submit_raw(entry, done.append)
    while not done:
        qp.poll()
    assert done[0].status_name == "DEVADDR_RANGE"
    with pytest.raises(vfioq.Error) as refused:
        qp.write(end, buf)
    assert "beyond" in refused.value.strerror


def test_an_injected_error_status(faulty_card):
    card = faulty_card(faults=["1:status"], fault_status=9)
    qp = card.queue_pair(depth=4)
    with pytest.raises(vfioq.CommandError) as failed:
        qp.write(0, b"x" * 512)
    assert failed.value.completion.status_name == "INTERNAL"
    assert qp.write(0, b"x" * 512).ok, "only the first completion was asked to fail"
