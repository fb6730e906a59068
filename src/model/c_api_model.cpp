// SPDX-License-Identifier: MIT
// The model's C API (vfioq/vfioq_model.h): ModelConfig from a C struct, and the
// device it opens handed over as the driver library's C handle.
#include <string>
#include <string_view>

#include "vfioq/c_api.hpp"
#include "vfioq/model.hpp"
#include "vfioq/vfioq_model.h"

namespace {

vfioq::Result<vfioq::model::ModelConfig> config_from(const vfioq_model_options& o) {
    vfioq::model::ModelConfig c;
    c.null_data = o.null_data;
    c.latency = std::chrono::microseconds(o.latency_us);
    c.out_of_order = o.out_of_order;
    c.workers = o.workers;
    c.seed = o.seed;
    c.devmem_size = o.devmem_size;
    c.faults.seed = o.fault_seed;
    c.faults.status = o.fault_status;
    std::string_view faults = o.faults ? o.faults : "";
    while (!faults.empty()) {
        const size_t comma = faults.find(',');
        if (const auto item = faults.substr(0, comma); !item.empty())
            if (auto r = c.faults.add(item); !r) return r.error().with_context("model options");
        faults = comma == std::string_view::npos ? std::string_view{} : faults.substr(comma + 1);
    }
    if (auto r = c.validate(); !r) return r.error().with_context("model options");
    return c;
}

}  // namespace

extern "C" {

void vfioq_model_options_init(vfioq_model_options* options) {
    if (!options) return;
    const vfioq::model::ModelConfig defaults;
    *options = {};
    options->struct_size = sizeof(*options);
    options->null_data = defaults.null_data;
    options->latency_us = static_cast<uint32_t>(defaults.latency.count());
    options->out_of_order = defaults.out_of_order;
    options->workers = defaults.workers;
    options->seed = defaults.seed;
    options->devmem_size = defaults.devmem_size;
    options->faults = nullptr;
    options->fault_seed = defaults.faults.seed;
    options->fault_status = defaults.faults.status;
}

int vfioq_model_open(const vfioq_model_options* options, vfioq_device** device) {
    using vfioq::c_api::fail;
    if (!device) return fail(vfioq::static_error(EINVAL, "vfioq_model_open: no handle to fill"));
    vfioq_model_options o;
    if (int r = vfioq::c_api::options_from(options, vfioq_model_options_init,
                                           "vfioq_model_open: options not set up by vfioq_model_options_init()", o);
        r < 0)
        return r;
    return vfioq::c_api::guarded([&] {
        auto config = config_from(o);
        if (!config) return fail(config.error());
        auto d = vfioq::model::open_device(*config);
        if (!d) return fail(d.error());
        *device = vfioq::c_api::wrap(std::move(*d));
        return 0;
    });
}

void vfioq_model_enable(void) { vfioq::model::enable_model_address(); }

}  // extern "C"
