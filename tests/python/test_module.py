# SPDX-License-Identifier: MIT
"""The Python module's contract beyond the bring-up example: errors as exceptions with the
library's errno and message, memory a command holds, callbacks, interrupts with the GIL
released, a device gone mid-script, and the console."""

import errno
import gc
import os
import subprocess
import sys
import threading
import time

import pytest

import vfioq


def test_library_errors_are_oserrors_with_errno_and_message():
    with pytest.raises(vfioq.Error) as e:
        vfioq.open("vfio-user:/nonexistent/card.sock")
    assert isinstance(e.value, OSError) and e.value.errno == errno.ENOENT
    assert "/nonexistent/card.sock" in e.value.strerror
    with pytest.raises(vfioq.Error) as e:
        vfioq.open("nonsense")
    assert e.value.errno == errno.EINVAL


def test_model_options_are_checked_by_name_and_value():
    with pytest.raises(TypeError, match="latency_ms"):
        vfioq.open("model", latency_ms=3)
    with pytest.raises(vfioq.Error, match="drop=2"):
        vfioq.open("model", faults=["drop=2"])
    with pytest.raises(TypeError, match="the model's"):
        vfioq.open("vfio-user:/x", null_data=True)


def test_registers_by_name_refuse_what_the_contract_refuses(card):
    with pytest.raises(AttributeError, match="no register NOPE"):
        card.regs.NOPE
    with pytest.raises(AttributeError, match="read-only"):
        card.regs.CAP = 1
    with pytest.raises(AttributeError, match="write-only"):
        card.regs.RESET
    with pytest.raises(AttributeError, match="no field NOPE"):
        card.regs.CAP.NOPE
    assert "MAX_SGE" in dir(card.regs.CAP) and "SCRATCH" in dir(card.regs)
    qp = card.queue_pair(depth=8)
    assert card.regs.Q[qp.id].Q_STATUS.ENABLED == 1
    assert card.regs.Q[qp.id].SQ_SIZE >= 8
    with pytest.raises(vfioq.Error) as e:
        card.read(0, 2)  # misaligned
    assert e.value.errno == errno.EINVAL and "0x2" in e.value.strerror


def test_a_buffer_is_the_same_memory_to_memoryview_and_numpy(card):
    np = pytest.importorskip("numpy")
    buf = card.alloc(8192)
    a = np.frombuffer(buf, dtype=np.uint32)
    a[:] = np.arange(a.size, dtype=np.uint32)
    assert memoryview(buf).cast("I")[5] == 5
    qp = card.queue_pair(depth=4)
    qp.write(0, buf)
    assert np.frombuffer(qp.read(0, length=8192), dtype=np.uint32).tolist() == list(range(2048))


def test_registered_application_memory(card):
    np = pytest.importorskip("numpy")
    mine = np.full(16384, 0x3C, dtype=np.uint8)
    reg = card.register(mine)
    assert reg.size == 16384
    qp = card.queue_pair(depth=4)
    qp.write(0x4000, reg)
    into = card.register(np.zeros(16384, dtype=np.uint8))
    qp.read(0x4000, into)
    assert (into.memory == 0x3C).all()


def test_refused_submissions_raise_and_lose_nothing(card):
    qp = card.queue_pair(depth=4)
    buf = card.alloc(4096)
    with pytest.raises(vfioq.Error) as e:
        qp.submit("write", card.info["devmem_size"], [buf])
    assert e.value.errno == errno.EINVAL
    with pytest.raises(ValueError, match="none of write"):
        qp.submit("erase", 0, [buf])
    with pytest.raises(ValueError, match="outside the buffer"):
        qp.submit("write", 0, [(buf, 4000, 200)])
    with pytest.raises(TypeError, match="DmaBuffer or a Registration"):
        qp.submit("write", 0, [b"bytes are not device memory"])
    other = vfioq.open("model").alloc(4096)
    with pytest.raises(ValueError, match="another device"):
        qp.submit("write", 0, [other])
    for _ in range(4):
        qp.submit("nop", 0, [])
    with pytest.raises(vfioq.Error) as e:
        qp.submit("nop", 0, [])
    assert e.value.errno == errno.EAGAIN
    assert [c.status_name for c in qp.completions()] == ["SUCCESS"] * 4
    assert qp.stats()["submitted"] == 4


def test_a_buffer_dropped_under_its_command_stays_until_the_command_is_reported(card):
    qp = card.queue_pair(depth=4)
    buf = card.alloc(65536)
    memoryview(buf)[:] = b"\xAB" * 65536
    qp.submit("write", 0, [buf])
    del buf
    gc.collect()
    assert [c.status_name for c in qp.completions()] == ["SUCCESS"]
    assert qp.read(0, length=16) == b"\xAB" * 16


def test_callbacks_get_their_context_and_an_exception_in_one_comes_out_of_poll(card):
    qp = card.queue_pair(depth=8)
    seen = []
    qp.submit("nop", 0, [], lambda c: seen.append((c.context, c.status_name)), context="first")
    while not seen:
        qp.poll()
    assert seen == [("first", "SUCCESS")]

    def broken(c):
        raise RuntimeError("the callback broke")

    qp.submit("nop", 0, [], broken)
    with pytest.raises(RuntimeError, match="the callback broke"):
        deadline = time.monotonic() + 120  # the model's thread may be slow to run on a loaded machine
        while time.monotonic() < deadline:
            qp.poll()
    assert qp.outstanding == 0


def test_a_queue_pair_dropped_with_commands_in_flight_reports_each_once(card):
    seen = []
    qp = card.queue_pair(depth=16)
    for i in range(16):
        qp.submit("nop", 0, [], lambda c: seen.append(c.context), context=i)
    del qp
    gc.collect()
    assert sorted(seen) == list(range(16))


def test_interrupts_wait_with_the_gil_released(card):
    qp = card.queue_pair(depth=4, interrupts=True)
    ticks = []
    stop = threading.Event()

    def other():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    t = threading.Thread(target=other)
    t.start()
    try:
        assert qp.wait(timeout=0.3) == 0  # nothing submitted: the whole timeout, asleep
        assert len(ticks) > 0, "another Python thread ran while this one waited"
        buf = card.alloc(4096)
        assert qp.write(0, buf).ok
        done = []
        qp.submit("nop", 0, [], done.append)
        while not done:
            qp.wait(timeout=1.0)
        assert done[0].ok
    finally:
        stop.set()
        t.join()


def test_a_device_gone_mid_script_fails_cleanly(card):
    qp = card.queue_pair(depth=8)
    done = []
    qp.submit("nop", 0, [], done.append)
    card.device.mark_gone("unplugged by the test")
    while not done:
        qp.poll()
    assert done[0].status_name in ("SUCCESS", "DEVICE_GONE")
    with pytest.raises(vfioq.Error) as e:
        qp.submit("nop", 0, [])
    assert e.value.errno == errno.ENODEV
    with pytest.raises(vfioq.Error) as e:
        card.regs.SCRATCH
    assert e.value.errno == errno.ENODEV and "unplugged by the test" in e.value.strerror
    assert card.gone


def test_handles_released_in_any_order(card):
    qp = card.queue_pair(depth=4)
    buf = card.alloc(4096)
    card.close()
    gc.collect()
    assert qp.write(0, buf).ok, "the queue pair keeps its controller and device"


def test_the_console_runs_a_command_with_the_card_in_scope():
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-m", "vfioq", "model", "-c",
                          "regs.SCRATCH = 0x77; print(hex(regs.SCRATCH), qp.capacity, card.name)"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0x77", "64", "model"]
    bad = subprocess.run([sys.executable, "-m", "vfioq", "vfio-user:/nonexistent.sock", "-c", "pass"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 2 and "/nonexistent.sock" in bad.stderr


def test_prepared_requests_go_again_and_again(card):
    qp = card.queue_pair(depth=8)
    buf = card.alloc(8 * 512)
    memoryview(buf)[:] = bytes(range(256)) * 16
    writes = [qp.prepare("write", i * 512, [(buf, i * 512, 512)], context=i) for i in range(8)]
    assert writes[3].op == "write" and writes[3].devaddr == 3 * 512 and writes[3].context == 3
    for _ in range(3):
        assert qp.submit_batch(writes) == 8
        assert sorted(c.context for c in qp.completions() if c.ok) == list(range(8))
    assert qp.read(0, length=8 * 512) == bytes(buf)
    other = vfioq.open("model").queue_pair(depth=2)
    with pytest.raises(ValueError, match="another device"):
        other.submit_batch(writes[:1])
