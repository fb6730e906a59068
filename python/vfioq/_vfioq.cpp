// SPDX-License-Identifier: MIT
// vfioq._vfioq: the public C++ API for Python (pybind11). Python objects hold what they were
// made from (a queue pair its controller and device, a buffer its device), and a command holds
// the Python objects of its memory until it is reported, so that no order of release, and no
// buffer dropped under a command, can crash the interpreter. The package vfioq (__init__.py)
// builds the friendlier layer on this.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/model.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/sgq_registers.hpp"

namespace py = pybind11;

namespace {

PyObject* g_error = nullptr;  // vfioq.Error, an OSError: errno and strerror are the library's

[[noreturn]] void raise(const vfioq::Error& e) {
    PyErr_SetObject(g_error, py::make_tuple(e.code, e.text()).ptr());
    throw py::error_already_set();
}

template <typename T>
T take(vfioq::Result<T> r) {
    if (!r) raise(r.error());
    return std::move(*r);
}

void check(const vfioq::Result<void>& r) {
    if (!r) raise(r.error());
}

struct PyDevice {
    std::shared_ptr<vfioq::Device> device;
};

struct PyBuffer {
    std::shared_ptr<vfioq::Device> device;
    vfioq::DmaBuffer buffer;
};

struct PyRegistration {
    std::shared_ptr<vfioq::Device> device;
    py::object memory;  // the object whose memory is registered, kept alive while held
    py::buffer_info view;
    vfioq::Registration registration;
};

struct PyController {
    std::shared_ptr<vfioq::Device> device;
    std::shared_ptr<vfioq::Controller> controller;
};

// What a command holds until it is reported: its callback and the objects of its memory.
struct Command {
    py::object callback;  // None: the completion is queued for take_completions()
    py::object context;   // the caller's, handed back
    py::object keep;      // the memory's objects
    struct PyQueuePair* owner;
};

// A command made once and submitted as often as wanted: its segments converted, its memory held.
struct PyRequest {
    std::shared_ptr<vfioq::Device> device;
    vfioq::Opcode op;
    uint64_t devaddr;
    std::vector<vfioq::DmaSegment> segments;
    py::object keep;
    py::object callback, context;
};

struct PyCompletion {
    int status;
    std::string status_name;
    uint16_t device_status, qid, cid;
    uint32_t bytes;
    py::object context;
};

struct PyQueuePair {
    std::shared_ptr<vfioq::Device> device;
    std::shared_ptr<vfioq::Controller> controller;
    std::unique_ptr<vfioq::QueuePair> qp;
    py::list done;                                // completions of commands given no callback
    std::optional<py::error_already_set> failed;  // the first exception a callback raised

    ~PyQueuePair() {
        if (qp && !qp->closed()) (void)qp->close();  // reports to the callbacks, while they still exist
    }
};

// Called inside poll() with the GIL held, and inside wait() without it: it takes the GIL
// before it touches a Python object, the command's own included.
void deliver(const vfioq::Completion& c) {
    py::gil_scoped_acquire gil;
    std::unique_ptr<Command> cmd(static_cast<Command*>(c.context));
    PyCompletion out{static_cast<int>(c.status),
                     vfioq::io_status_name(c.status),
                     c.device_status,
                     c.qid,
                     c.cid,
                     c.bytes,
                     cmd->context};
    PyQueuePair* q = cmd->owner;
    if (cmd->callback.is_none()) {
        q->done.append(py::cast(std::move(out)));
        return;
    }
    try {
        cmd->callback(out);
    } catch (py::error_already_set& e) {
        // Not through the driver's code: kept and raised once poll() returns.
        if (!q->failed) q->failed.emplace(std::move(e));
    }
}

void raise_callback_failure(PyQueuePair& q) {
    if (!q.failed) return;
    py::error_already_set e = std::move(*q.failed);
    q.failed.reset();
    throw e;
}

// A segment from a Python object: a DmaBuffer (or part of it: (buffer, offset, length)), or
// memory registered through a Registration.
struct Segment {
    vfioq::DmaSegment dma;
    py::object keep;
};

Segment segment_of(PyDevice& dev, const py::handle& item) {
    py::object obj = py::reinterpret_borrow<py::object>(item);
    uint64_t offset = 0;
    std::optional<uint64_t> length;
    if (py::isinstance<py::tuple>(obj)) {
        auto t = obj.cast<py::tuple>();
        if (t.size() < 1 || t.size() > 3)
            throw py::value_error("a segment is BUFFER, (BUFFER, OFFSET) or (BUFFER, OFFSET, LENGTH)");
        obj = t[0];
        if (t.size() > 1) offset = t[1].cast<uint64_t>();
        if (t.size() > 2) length = t[2].cast<uint64_t>();
    }
    if (py::isinstance<PyBuffer>(obj)) {
        auto& b = obj.cast<PyBuffer&>();
        if (b.device != dev.device) throw py::value_error("the buffer belongs to another device");
        const uint64_t len = length.value_or(b.buffer.size() > offset ? b.buffer.size() - offset : 0);
        if (offset > b.buffer.size() || len > b.buffer.size() - offset)
            throw py::value_error("segment [" + std::to_string(offset) + ", +" + std::to_string(len) +
                                  ") is outside the buffer of " + std::to_string(b.buffer.size()) + " bytes");
        return {b.buffer.segment(offset, len), obj};
    }
    if (py::isinstance<PyRegistration>(obj)) {
        auto& r = obj.cast<PyRegistration&>();
        const uint64_t size = r.registration.size();
        const uint64_t len = length.value_or(size > offset ? size - offset : 0);
        if (offset > size || len > size - offset)
            throw py::value_error("segment outside the registered memory of " + std::to_string(size) + " bytes");
        return {r.registration.segment(static_cast<const std::byte*>(r.registration.addr()) + offset, len), obj};
    }
    throw py::type_error("a segment's memory is a DmaBuffer or a Registration");
}

vfioq::Opcode opcode_of(const std::string& op) {
    if (op == "write") return vfioq::Opcode::kWrite;
    if (op == "read") return vfioq::Opcode::kRead;
    if (op == "nop") return vfioq::Opcode::kNop;
    throw py::value_error("opcode '" + op + "' is none of write, read, nop");
}

vfioq::model::ModelConfig model_config(const py::kwargs& kw) {
    vfioq::model::ModelConfig c;
    for (auto [key, value] : kw) {
        const auto k = key.cast<std::string>();
        if (k == "null_data")
            c.null_data = value.cast<bool>();
        else if (k == "latency_us")
            c.latency = std::chrono::microseconds(value.cast<uint32_t>());
        else if (k == "out_of_order")
            c.out_of_order = value.cast<bool>();
        else if (k == "workers")
            c.workers = value.cast<uint32_t>();
        else if (k == "seed")
            c.seed = value.cast<uint64_t>();
        else if (k == "devmem_size")
            c.devmem_size = value.cast<uint64_t>();
        else if (k == "fault_seed")
            c.faults.seed = value.cast<uint64_t>();
        else if (k == "fault_status")
            c.faults.status = value.cast<uint16_t>();
        else if (k == "fault_late_us")
            c.faults.late_by_us = value.cast<uint32_t>();
        else if (k == "corrupt_reads_every")
            c.corrupt_reads_every = value.cast<uint64_t>();
        else if (k == "idle_spin_us")
            c.idle_spin = std::chrono::microseconds(value.cast<uint32_t>());
        else if (k == "faults") {
            for (auto spec : value.cast<std::vector<std::string>>())
                if (auto r = c.faults.add(spec); !r) raise(r.error());
        } else {
            throw py::type_error("model option '" + k +
                                 "' is not one: null_data, latency_us, out_of_order, workers, "
                                 "seed, devmem_size, faults, fault_seed, fault_status, fault_late_us, "
                                 "corrupt_reads_every, idle_spin_us");
        }
    }
    check(c.validate());
    return c;
}

uint32_t submit_one(PyQueuePair& q, vfioq::IoRequest& req, const py::object& callback, const py::object& context,
                    py::object keep) {
    auto* cmd = new Command{callback, context, std::move(keep), &q};
    req.callback = deliver;
    req.context = cmd;
    auto cid = q.qp->submit(req);
    if (!cid) {
        delete cmd;
        raise(cid.error());
    }
    return *cid;
}

}  // namespace

PYBIND11_MODULE(_vfioq, m) {
    m.doc() = "vfioq's C++ API; use the vfioq package";
    vfioq::model::enable_model_address();
    g_error = PyErr_NewExceptionWithDoc("vfioq.Error",
                                        "A vfioq failure: errno and strerror are the library's code and message, "
                                        "which names the device, register, queue or buffer at fault.",
                                        PyExc_OSError, nullptr);
    m.attr("Error") = py::handle(g_error);

    py::class_<PyDevice>(m, "Device")
        .def_property_readonly("name", [](const PyDevice& d) { return d.device->name(); })
        .def(
            "read",
            [](PyDevice& d, uint32_t bar, uint64_t offset, unsigned width) {
                return take(d.device->read(bar, offset, width));
            },
            py::arg("bar"), py::arg("offset"), py::arg("width") = 32)
        .def(
            "write",
            [](PyDevice& d, uint32_t bar, uint64_t offset, uint64_t value, unsigned width) {
                check(d.device->write(bar, offset, width, value));
            },
            py::arg("bar"), py::arg("offset"), py::arg("value"), py::arg("width") = 32)
        .def(
            "config_read",
            [](PyDevice& d, uint64_t offset, unsigned width) { return take(d.device->config_read(offset, width)); },
            py::arg("offset"), py::arg("width") = 32)
        .def(
            "config_write",
            [](PyDevice& d, uint64_t offset, uint64_t value, unsigned width) {
                check(d.device->config_write(offset, width, value));
            },
            py::arg("offset"), py::arg("value"), py::arg("width") = 32)
        .def("bar_size", [](const PyDevice& d, uint32_t bar) { return d.device->bar_size(bar); })
        .def_property_readonly("gone", [](const PyDevice& d) { return d.device->gone(); })
        .def_property_readonly("gone_reason", [](const PyDevice& d) { return d.device->gone_reason(); })
        .def("mark_gone", [](PyDevice& d, const std::string& why) { d.device->mark_gone(why); })
        .def(
            "alloc",
            [](PyDevice& d, size_t size) {
                return PyBuffer{d.device, take(d.device->dma().allocate(size))};
            },
            py::arg("size"))
        .def(
            "register",
            [](PyDevice& d, py::buffer memory) {
                auto r = std::make_unique<PyRegistration>();
                r->device = d.device;
                r->memory = memory;
                r->view = memory.request();
                const size_t bytes = static_cast<size_t>(r->view.size * r->view.itemsize);
                r->registration = take(d.device->dma().register_memory(r->view.ptr, bytes));
                return r;
            },
            py::arg("memory"), "Registers the memory of an object with the buffer protocol (bytearray, numpy, ...)")
        .def("dma_stats", [](PyDevice& d) {
            const auto s = d.device->dma().stats();
            py::dict out;
            out["buffers"] = s.buffers;
            out["buffer_bytes"] = s.buffer_bytes;
            out["registered_mappings"] = s.registered_mappings;
            out["registered_bytes"] = s.registered_bytes;
            out["cache_hits"] = s.cache_hits;
            out["cache_misses"] = s.cache_misses;
            return out;
        });

    m.def(
        "open", [](const std::string& address) { return PyDevice{take(vfioq::Device::open(address))}; },
        py::arg("address"));
    m.def("open_model",
          [](const py::kwargs& kw) { return PyDevice{take(vfioq::model::open_device(model_config(kw)))}; });

    py::class_<PyBuffer>(m, "DmaBuffer", py::buffer_protocol())
        .def_buffer([](PyBuffer& b) {
            return py::buffer_info(b.buffer.data(), 1, py::format_descriptor<uint8_t>::format(), 1,
                                   {static_cast<py::ssize_t>(b.buffer.size())}, {py::ssize_t{1}});
        })
        .def_property_readonly("size", [](const PyBuffer& b) { return b.buffer.size(); })
        .def_property_readonly("iova", [](const PyBuffer& b) { return b.buffer.iova(); })
        .def("__len__", [](const PyBuffer& b) { return b.buffer.size(); });

    py::class_<PyRegistration>(m, "Registration")
        .def_property_readonly("size", [](const PyRegistration& r) { return r.registration.size(); })
        .def_property_readonly("iova",
                               [](const PyRegistration& r) { return r.registration.iova_of(r.registration.addr()); })
        .def_property_readonly("memory", [](const PyRegistration& r) { return r.memory; });

    py::class_<PyRequest>(m, "Request")
        .def_property_readonly(
            "op",
            [](const PyRequest& r) {
                return r.op == vfioq::Opcode::kWrite ? "write" : r.op == vfioq::Opcode::kRead ? "read" : "nop";
            })
        .def_readonly("devaddr", &PyRequest::devaddr)
        .def_readonly("context", &PyRequest::context);

    py::class_<PyCompletion>(m, "Completion")
        .def_readonly("status", &PyCompletion::status)
        .def_readonly("status_name", &PyCompletion::status_name)
        .def_readonly("device_status", &PyCompletion::device_status)
        .def_readonly("qid", &PyCompletion::qid)
        .def_readonly("cid", &PyCompletion::cid)
        .def_readonly("bytes", &PyCompletion::bytes)
        .def_readonly("context", &PyCompletion::context)
        .def_property_readonly("ok", [](const PyCompletion& c) { return c.status == 0; })
        .def("__repr__", [](const PyCompletion& c) {
            return "<Completion " + c.status_name + " qid " + std::to_string(c.qid) + " cid " + std::to_string(c.cid) +
                   ", " + std::to_string(c.bytes) + " bytes>";
        });

    py::class_<PyController>(m, "Controller")
        .def("info",
             [](const PyController& c) {
                 const auto& i = c.controller->info();
                 py::dict out;
                 out["kind"] = i.kind;
                 out["version"] = i.version;
                 out["queue_pairs"] = i.queue_pairs;
                 out["interrupt_queue_pairs"] = i.interrupt_queue_pairs;
                 out["max_queue_entries"] = i.max_queue_entries;
                 out["devmem_size"] = i.devmem_size;
                 out["max_transfer"] = i.max_transfer;
                 out["max_segments"] = i.max_segments;
                 out["segment_alignment"] = i.segment_alignment;
                 out["block_size"] = i.block_size;
                 return out;
             })
        .def(
            "queue_pair",
            [](PyController& c, uint32_t depth, bool interrupts, uint32_t timeout_ms) {
                vfioq::QueuePairOptions o;
                o.depth = depth;
                o.interrupts = interrupts;
                o.command_timeout = std::chrono::milliseconds(timeout_ms);
                auto q = std::make_unique<PyQueuePair>();
                q->device = c.device;
                q->controller = c.controller;
                q->qp = take(c.controller->create_queue_pair(o));
                return q;
            },
            py::arg("depth") = 256, py::arg("interrupts") = false, py::arg("timeout_ms") = 30000)
        .def("shutdown", [](PyController& c) { check(c.controller->shutdown()); });

    m.def(
        "controller",
        [](PyDevice& d) {
            return PyController{d.device, std::shared_ptr<vfioq::Controller>(take(vfioq::Controller::open(*d.device)))};
        },
        py::arg("device"));

    py::class_<PyQueuePair>(m, "QueuePair")
        .def_property_readonly("id", [](const PyQueuePair& q) { return q.qp->id(); })
        .def_property_readonly("capacity", [](const PyQueuePair& q) { return q.qp->capacity(); })
        .def_property_readonly("outstanding", [](const PyQueuePair& q) { return q.qp->outstanding(); })
        .def_property_readonly("closed", [](const PyQueuePair& q) { return q.qp->closed(); })
        .def_property_readonly("event_fd", [](const PyQueuePair& q) { return q.qp->event_fd(); })
        .def(
            "submit",
            [](PyQueuePair& q, const std::string& op, uint64_t devaddr, const py::list& segments,
               const py::object& callback, const py::object& context) {
                PyDevice dev{q.device};
                std::vector<vfioq::DmaSegment> segs;
                py::list keep;
                for (auto item : segments) {
                    Segment s = segment_of(dev, item);
                    segs.push_back(s.dma);
                    keep.append(s.keep);
                }
                vfioq::IoRequest req{opcode_of(op), devaddr, segs, nullptr, nullptr};
                return submit_one(q, req, callback, context, keep);
            },
            py::arg("op"), py::arg("devaddr"), py::arg("segments"), py::arg("callback") = py::none(),
            py::arg("context") = py::none())
        .def(
            "prepare",
            [](PyQueuePair& q, const std::string& op, uint64_t devaddr, const py::list& segments,
               const py::object& callback, const py::object& context) {
                PyDevice dev{q.device};
                PyRequest r{q.device, opcode_of(op), devaddr, {}, py::list(), callback, context};
                py::list keep;
                for (auto item : segments) {
                    Segment seg = segment_of(dev, item);
                    r.segments.push_back(seg.dma);
                    keep.append(seg.keep);
                }
                r.keep = keep;
                return r;
            },
            py::arg("op"), py::arg("devaddr"), py::arg("segments"), py::arg("callback") = py::none(),
            py::arg("context") = py::none())
        .def(
            "submit_batch",
            [](PyQueuePair& q, const py::list& requests) {
                // Converted first (prepared requests as they are), then one doorbell for as many as the
                // queue takes.
                PyDevice dev{q.device};
                const size_t n = requests.size();
                std::vector<std::vector<vfioq::DmaSegment>> converted;
                std::vector<vfioq::IoRequest> reqs(n);
                std::vector<std::unique_ptr<Command>> cmds(n);
                for (size_t i = 0; i < n; ++i) {
                    py::handle item = requests[i];
                    if (py::isinstance<PyRequest>(item)) {
                        auto& r = item.cast<PyRequest&>();
                        if (r.device != q.device) throw py::value_error("the request was prepared for another device");
                        cmds[i] = std::make_unique<Command>(Command{r.callback, r.context, r.keep, &q});
                        reqs[i] = {r.op, r.devaddr, r.segments, deliver, cmds[i].get()};
                        continue;
                    }
                    auto t = py::reinterpret_borrow<py::tuple>(item);
                    if (!py::isinstance<py::tuple>(item) || t.size() < 3 || t.size() > 5)
                        throw py::value_error(
                            "a request is a prepared Request or (OP, DEVADDR, SEGMENTS[, CALLBACK[, CONTEXT]])");
                    if (converted.empty()) converted.resize(n);
                    py::list keep;
                    for (auto seg : t[2].cast<py::list>()) {
                        Segment s = segment_of(dev, seg);
                        converted[i].push_back(s.dma);
                        keep.append(s.keep);
                    }
                    cmds[i] = std::make_unique<Command>(
                        Command{t.size() > 3 ? py::object(t[3]) : py::object(py::none()),
                                t.size() > 4 ? py::object(t[4]) : py::object(py::none()), keep, &q});
                    reqs[i] = {opcode_of(t[0].cast<std::string>()), t[1].cast<uint64_t>(), converted[i], deliver,
                               cmds[i].get()};
                }
                const uint32_t sent = take(q.qp->submit_batch(reqs));
                for (uint32_t k = 0; k < sent; ++k) (void)cmds[k].release();  // the driver has them now
                return sent;
            },
            py::arg("requests"))
        .def(
            "submit_raw",
            [](PyQueuePair& q, py::bytes entry, const py::object& callback, const py::object& context) {
                const std::string bytes = entry;
                if (bytes.size() != 64)
                    throw py::value_error("a submission entry is 64 bytes, not " + std::to_string(bytes.size()));
                auto* cmd = new Command{callback, context, py::none(), &q};
                auto cid = q.qp->submit_raw(std::as_bytes(std::span(bytes.data(), bytes.size())), deliver, cmd);
                if (!cid) {
                    delete cmd;
                    raise(cid.error());
                }
                return *cid;
            },
            py::arg("entry"), py::arg("callback") = py::none(), py::arg("context") = py::none())
        .def(
            "poll",
            [](PyQueuePair& q, uint32_t max) {
                const uint32_t n = q.qp->poll(max);
                raise_callback_failure(q);
                return n;
            },
            py::arg("max") = 0)
        .def(
            "wait",
            [](PyQueuePair& q, uint32_t timeout_ms, uint32_t max) {
                vfioq::Result<uint32_t> r = 0u;
                {
                    // Other Python threads run while this one sleeps; callbacks take the GIL back.
                    py::gil_scoped_release unlocked;
                    r = q.qp->wait(std::chrono::milliseconds(timeout_ms), max);
                }
                raise_callback_failure(q);
                return take(std::move(r));
            },
            py::arg("timeout_ms"), py::arg("max") = 0)
        .def("take_completions",
             [](PyQueuePair& q) {
                 py::list out = std::move(q.done);
                 q.done = py::list();
                 return out;
             })
        .def("close",
             [](PyQueuePair& q) {
                 check(q.qp->close());
                 raise_callback_failure(q);
             })
        .def("stats", [](const PyQueuePair& q) {
            const auto s = q.qp->stats();
            py::dict out;
            out["submitted"] = s.submitted;
            out["completed"] = s.completed;
            out["sq_doorbells"] = s.sq_doorbells;
            out["queue_full"] = s.queue_full;
            out["device_errors"] = s.device_errors;
            out["error_statuses"] = s.error_statuses;
            out["timeouts"] = s.timeouts;
            out["queue_recoveries"] = s.queue_recoveries;
            out["controller_resets"] = s.controller_resets;
            out["memory_bytes"] = s.memory_bytes;
            return out;
        });

    m.def(
        "registers",
        [] {
            py::list out;
            for (const auto& r : vfioq::sgq::registers()) {
                py::list fields;
                for (const auto& f : r.fields)
                    fields.append(py::make_tuple(std::string(f.name), f.lsb, f.width, std::string(f.meaning)));
                out.append(py::make_tuple(std::string(r.name), r.offset, r.width, vfioq::sgq::access_name(r.access),
                                          fields, r.per_queue));
            }
            return out;
        },
        "The card's registers: (name, offset, width, access, [(field, lsb, width, meaning)], per_queue)");
    m.def("status_name", [](int status) {
        return status >= 0 && status <= static_cast<int>(vfioq::IoStatus::kDeviceGone)
                   ? std::string(vfioq::io_status_name(static_cast<vfioq::IoStatus>(status)))
                   : std::string("?");
    });
}
