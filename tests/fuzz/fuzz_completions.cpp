// SPDX-License-Identifier: MIT
// Fuzz target: completion handling. A card that writes whatever it likes
// into the completion ring (any CID, SQ id, SQ head, status and phase, in any
// order, repeated) against the queue engine. Whatever it writes, the engine
// delivers only commands that are outstanding, each once, never moves its SQ
// head outside what was submitted, and accounts for every command.
#include <algorithm>
#include <cstdlib>
#include <set>
#include <vector>

#include "engine/queue_engine.hpp"
#include "fuzz_input.hpp"
#include "vfioq/log.hpp"

namespace {

using namespace vfioq::engine;

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool quiet = [] { return vfioq::log::set_levels("off").has_value(); }();
    (void)quiet;
    vfioq::fuzz::Input in(data, size);
    const uint32_t depth = 1 + in.take<uint8_t>() % 80;
    const uint32_t sq_entries = depth + 1 + in.take<uint8_t>() % 3;
    const uint32_t cq_entries = 2 + in.take<uint8_t>() % 90;
    const uint16_t qid = in.take<uint8_t>() % 4;
    std::vector<std::byte> sq(sq_entries * kSqEntrySize);
    std::vector<CqEntry> cq(cq_entries);
    volatile uint32_t sq_doorbell = 0, cq_doorbell = 0;
    QueueEngine engine(RingConfig{qid, sq.data(), sq_entries, cq.data(), cq_entries, depth,
                                  Doorbell{&sq_doorbell, nullptr, 0}, Doorbell{&cq_doorbell, nullptr, 0}});

    std::set<uint16_t> outstanding;  // CIDs
    std::vector<uint16_t> issued;    // every CID ever submitted, for the card to pick from
    uint32_t card_tail = 0;
    bool card_phase = true;
    uint32_t submitted = 0, delivered = 0, reclaimed = 0;

    while (!in.empty()) {
        switch (in.take<uint8_t>() % 5) {
            case 0: {  // submit
                if (!engine.can_submit()) break;
                const int32_t cid = engine.acquire_cid();
                check(cid >= 0);
                const auto c = static_cast<uint16_t>(cid);
                check(outstanding.insert(c).second);
                issued.push_back(c);
                std::memcpy(engine.sq_slot(), &c, sizeof(c));
                engine.push();
                ++submitted;
                break;
            }
            case 1: engine.ring_sq(); break;
            case 2: {  // the card posts an entry, unless the ring is full of entries not yet released
                const uint32_t head = cq_doorbell;
                if ((card_tail + 1) % cq_entries == head % cq_entries) break;
                CqEntry e{};
                e.dw0 = in.take<uint32_t>();
                const uint8_t how = in.take<uint8_t>();
                e.sqhd = (how & 1) ? in.take<uint16_t>() : static_cast<uint16_t>(in.take<uint8_t>() % sq_entries);
                e.sqid = (how & 2) ? in.take<uint16_t>() : qid;
                if ((how & 4) || issued.empty())
                    e.cid = in.take<uint16_t>();
                else
                    e.cid = issued[in.take<uint16_t>() % issued.size()];
                const bool phase = (how & 8) ? !card_phase : card_phase;
                e.status_phase = static_cast<uint16_t>(in.take<uint16_t>() << 1 | (phase ? 1 : 0));
                cq[card_tail] = e;
                if (++card_tail == cq_entries) {
                    card_tail = 0;
                    card_phase = !card_phase;
                }
                break;
            }
            case 3: {
                const uint32_t max = 1 + in.take<uint8_t>() % 100;
                engine.poll(max, [&](uint16_t tag, const CqEntry& e) {
                    check(tag < depth);
                    check(engine.tag_of(e.cid) == tag);
                    check(outstanding.erase(e.cid) == 1);  // outstanding, and delivered once
                    check(e.sqid == qid);
                    ++delivered;
                });
                check(engine.sq_head() < sq_entries);
                check(engine.cq_head() < cq_entries);
                break;
            }
            case 4: {
                if (in.take<uint8_t>() % 8 != 0) break;  // rarely: a reset
                engine.reclaim_all([&](uint16_t tag) {
                    check(tag < depth);
                    // The CID moved to its next generation as it was released: find it by tag.
                    auto it = std::find_if(outstanding.begin(), outstanding.end(),
                                           [&](uint16_t c) { return engine.tag_of(c) == tag; });
                    check(it != outstanding.end());
                    outstanding.erase(it);
                    ++reclaimed;
                });
                check(outstanding.empty());
                engine.restart();
                card_tail = 0;
                card_phase = true;
                cq_doorbell = 0;
                break;
            }
        }
        check(engine.outstanding() == outstanding.size());
        check(submitted == delivered + reclaimed + outstanding.size());
    }
    return 0;
}
