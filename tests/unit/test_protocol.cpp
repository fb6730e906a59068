// SPDX-License-Identifier: MIT
// vfio-user framing and capability parsing, against plain sockets.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "../support/model_fixture.hpp"
#include "vfio_user/message_socket.hpp"
#include "vfio_user/protocol.hpp"

namespace vfioq::vfio_user {
namespace {

std::span<const std::byte> as_bytes(std::string_view s) { return {reinterpret_cast<const std::byte*>(s.data()), s.size()}; }

struct Pair {
    Pair() {
        auto p = make_socket_pair();
        EXPECT_TRUE(p.has_value());
        a = MessageSocket(std::move(p->first));
        b = MessageSocket(std::move(p->second));
    }
    MessageSocket a, b;
};

TEST(Capabilities, RoundTripThroughJson) {
    Capabilities caps;
    caps.max_msg_fds = 8;
    caps.max_data_xfer_size = 4096;
    caps.max_dma_maps = 10;
    caps.pgsizes = 4096 | (2 << 20);
    const std::string json = capabilities_to_json(caps);
    Capabilities parsed;
    EXPECT_FALSE(parse_capabilities(as_bytes(json), parsed).has_value());
    EXPECT_EQ(parsed.max_msg_fds, 8u);
    EXPECT_EQ(parsed.max_data_xfer_size, 4096u);
    EXPECT_EQ(parsed.max_dma_maps, 10u);
    EXPECT_EQ(parsed.pgsizes, caps.pgsizes);
}

TEST(Capabilities, AbsentFieldsKeepProtocolDefaults) {
    Capabilities parsed;
    EXPECT_FALSE(parse_capabilities(as_bytes("{}"), parsed).has_value());
    EXPECT_FALSE(parse_capabilities({}, parsed).has_value());
    EXPECT_EQ(parsed.max_msg_fds, 1u);
    EXPECT_EQ(parsed.max_data_xfer_size, 1u << 20);
    EXPECT_EQ(parsed.max_dma_maps, 65535u);
    EXPECT_EQ(parsed.pgsizes, 4096u);
}

TEST(Capabilities, MalformedDocumentsAreErrorsNotExceptions) {
    for (const char* bad : {"{", "[1,2]", "{\"capabilities\": 3}", "{\"capabilities\": {\"max_msg_fds\": -1}}",
                            "{\"capabilities\": {\"max_msg_fds\": 1e99}}",
                            "{\"capabilities\": {\"max_msg_fds\": 99999999999}}",
                            "{\"capabilities\": {\"pgsizes\": \"4096\"}}",
                            "{\"capabilities\": {\"twin_socket\": {\"supported\": 1}}}", "\xff\xfe"}) {
        SCOPED_TRACE(bad);
        Capabilities parsed;
        EXPECT_TRUE(parse_capabilities(as_bytes(bad), parsed).has_value());
    }
}

TEST(Capabilities, DeeplyNestedJsonDoesNotCrash) {
    std::string deep(100000, '[');
    Capabilities parsed;
    EXPECT_TRUE(parse_capabilities(as_bytes(deep), parsed).has_value());
}

TEST(MessageSocket, CarriesPayloadAndFds) {
    Pair p;
    auto efd = test::make_eventfd();
    std::vector<std::byte> payload(3000, std::byte{0x5A});
    int fds[2] = {efd.get(), efd.get()};
    ASSERT_TRUE(p.a.send(Header{7, 9, 0, kFlagTypeCommand, 0}, payload, fds).has_value());
    auto m = p.b.receive(std::chrono::milliseconds(1000));
    ASSERT_TRUE(m.has_value()) << m.error().message;
    EXPECT_EQ(m->header.msg_id, 7);
    EXPECT_EQ(m->header.command, 9);
    EXPECT_EQ(m->header.msg_size, 16u + 3000u);
    EXPECT_EQ(m->payload, payload);
    ASSERT_EQ(m->fds.size(), 2u);
    EXPECT_FALSE(m->fds_truncated);
    // The received fd is the same eventfd.
    const uint64_t one = 1;
    ASSERT_EQ(::write(m->fds[0].get(), &one, 8), 8);
    EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);
}

TEST(MessageSocket, TooManyFdsAreFlaggedButTheMessageArrives) {
    Pair p;
    auto efd = test::make_eventfd();
    std::vector<int> fds(5, efd.get());
    ASSERT_TRUE(p.a.send(Header{1, 2, 0, 0, 0}, {}, fds).has_value());
    auto m = p.b.receive(std::chrono::milliseconds(1000), kMaxMessageSize, 2);
    ASSERT_TRUE(m.has_value());
    EXPECT_TRUE(m->fds_truncated);
    EXPECT_LE(m->fds.size(), 2u);
}

TEST(MessageSocket, TimeoutBeforeTheFirstByteKeepsTheSocket) {
    Pair p;
    auto m = p.b.receive(std::chrono::milliseconds(20));
    ASSERT_FALSE(m.has_value());
    EXPECT_EQ(m.error().code, ETIMEDOUT);
    ASSERT_TRUE(p.a.send(Header{1, 1, 0, 0, 0}, {}).has_value());
    EXPECT_TRUE(p.b.receive(std::chrono::milliseconds(1000)).has_value());
}

TEST(MessageSocket, BrokenFramingLosesTheConnection) {
    struct Case {
        const char* what;
        std::vector<std::byte> bytes;
        bool close_after;
    };
    auto header = [](uint32_t size) {
        Header h{1, 9, size, 0, 0};
        std::vector<std::byte> v(sizeof(h));
        std::memcpy(v.data(), &h, sizeof(h));
        return v;
    };
    std::vector<Case> cases = {
        {"size smaller than the header", header(8), false},
        {"size beyond the limit", header(kMaxMessageSize + 1), false},
        {"closed mid-header", std::vector<std::byte>(7), true},
        {"closed mid-payload", header(100), true},
    };
    for (auto& c : cases) {
        SCOPED_TRACE(c.what);
        Pair p;
        ASSERT_EQ(::send(p.a.fd(), c.bytes.data(), c.bytes.size(), 0), static_cast<ssize_t>(c.bytes.size()));
        if (c.close_after) p.a.close();
        auto m = p.b.receive(std::chrono::milliseconds(1000));
        ASSERT_FALSE(m.has_value());
        EXPECT_EQ(m.error().code, ECONNRESET) << m.error().message;
    }
}

TEST(MessageSocket, PeerStallingMidMessageTimesOutInsteadOfHanging) {
    Pair p;
    Header h{1, 9, 64, 0, 0};
    ASSERT_EQ(::send(p.a.fd(), &h, sizeof(h), 0), static_cast<ssize_t>(sizeof(h)));
    const auto start = std::chrono::steady_clock::now();
    auto m = p.b.receive(std::chrono::milliseconds(1000), kMaxMessageSize, kMaxMsgFds, std::chrono::milliseconds(100));
    ASSERT_FALSE(m.has_value());
    EXPECT_NE(m.error().message.find("stopped in the middle of a message"), std::string::npos) << m.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60)) << "a hang, not a timeout";
}

TEST(MessageSocket, SendToAClosedPeerIsAnErrorNotASignal) {
    Pair p;
    p.b.close();
    std::vector<std::byte> payload(100000);
    auto r = p.a.send(Header{1, 1, 0, 0, 0}, payload);
    EXPECT_FALSE(r.has_value());
}

}  // namespace
}  // namespace vfioq::vfio_user
