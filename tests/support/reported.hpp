// SPDX-License-Identifier: MIT
// What the application was told, for the fault and recovery tests: every
// completion by command number (the context pointer), so that a test can
// check that each command was reported exactly once and with which status.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <vector>

#include "vfioq/model_config.hpp"
#include "vfioq/queue_pair.hpp"

namespace vfioq::test {

// Declare it before the card: closing the card's queue pairs reports to it.
struct Seen {
    std::map<uintptr_t, std::vector<IoStatus>> by_command;
    static void callback(const Completion& c) {
        current->by_command[reinterpret_cast<uintptr_t>(c.context)].push_back(c.status);
    }
    static inline Seen* current = nullptr;
    Seen() { current = this; }
    // The first status command `cmd` got (UNKNOWN_DEVICE_STATUS if none).
    [[nodiscard]] IoStatus first(uintptr_t cmd) const {
        auto it = by_command.find(cmd);
        return it == by_command.end() || it->second.empty() ? IoStatus::kUnknownDeviceStatus : it->second[0];
    }
};

inline void expect_each_once(const Seen& seen, uintptr_t first, uintptr_t last) {
    for (uintptr_t i = first; i <= last; ++i) {
        auto it = seen.by_command.find(i);
        ASSERT_NE(it, seen.by_command.end()) << "command " << i << " was never reported";
        EXPECT_EQ(it->second.size(), 1u) << "command " << i << " was reported " << it->second.size() << " times";
    }
}

// A model configured with fault specs ("2:drop", "duplicate=0.1").
inline model::ModelConfig with_faults(std::initializer_list<const char*> specs) {
    model::ModelConfig c;
    for (const char* s : specs) EXPECT_TRUE(c.faults.add(s)) << s;
    return c;
}

}  // namespace vfioq::test
