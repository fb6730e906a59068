// SPDX-License-Identifier: MIT
// The model's MSI-X: the table and PBA in BAR2 and delivery through the
// eventfds the client assigned with SET_IRQS. A vector fires when it has an
// eventfd and is masked neither by SET_IRQS, nor by its table entry, nor by the
// function mask; otherwise its PBA bit is set and it fires on unmask.
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <vector>

#include "vfioq/result.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::model {

class Msix {
public:
    explicit Msix(uint32_t vectors);

    [[nodiscard]] uint32_t vector_count() const { return static_cast<uint32_t>(vectors_.size()); }

    // BAR2 dword access; offsets outside the table and PBA read 0 and ignore writes.
    uint32_t read32(uint64_t offset) const;
    void write32(uint64_t offset, uint32_t value);

    // SET_IRQS: assign eventfds to vectors start.. (which unmasks their table
    // entries, as a host's VFIO does when it programs them), release them, or
    // mask/unmask/trigger vectors selected by `which` (empty: all in range).
    void assign(uint32_t start, std::vector<UniqueFd> eventfds);
    void release(uint32_t start, uint32_t count);
    void release_all();
    void set_masked(uint32_t start, uint32_t count, std::span<const uint8_t> which, bool masked);
    void trigger(uint32_t start, uint32_t count, std::span<const uint8_t> which);

    void set_function_masked(bool masked);

    // The device raises a vector.
    void raise(uint32_t vector);

    // Signals actually delivered to vector's eventfd since creation (for tests and stats).
    [[nodiscard]] uint64_t delivered(uint32_t vector) const;
    [[nodiscard]] bool pending(uint32_t vector) const;
    [[nodiscard]] bool has_eventfd(uint32_t vector) const;

    // Device reset: pending bits cleared, unassigned entries masked again.
    void reset();

private:
    struct Vector {
        uint32_t addr_lo = 0, addr_hi = 0, data = 0;
        uint32_t control = 1;  // bit 0: masked
        bool irq_masked = false;
        bool pending = false;
        UniqueFd eventfd;
        uint64_t delivered = 0;
    };

    bool deliverable(const Vector& v) const;
    void signal(Vector& v);
    void deliver_pending();

    mutable std::mutex mutex_;
    std::vector<Vector> vectors_;
    bool function_masked_ = false;
};

}  // namespace vfioq::model
