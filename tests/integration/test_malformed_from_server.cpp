// SPDX-License-Identifier: MIT
// A broken or hostile server, scripted as raw messages, against the real
// client: every bad reply is a clear error, never a crash or a hang.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include "../support/model_fixture.hpp"
#include "vfio_user/protocol.hpp"
#include "vfioq/vfio_user.hpp"

namespace vfioq {
namespace {

using namespace vfio_user;
using std::chrono::milliseconds;

using test::bytes;

// A scripted server on a thread: `script` gets the server end of the socket.
class FakeServer {
public:
    explicit FakeServer(std::function<void(MessageSocket&)> script) {
        auto pair = make_socket_pair();
        client_end = std::move(pair->first);
        thread = std::thread([s = std::move(script), fd = pair->second.release()]() mutable {
            MessageSocket sock{UniqueFd(fd)};
            s(sock);
        });
    }
    ~FakeServer() {
        if (thread.joinable()) thread.join();
    }
    UniqueFd client_end;
    std::thread thread;
};

Message next(MessageSocket& s) {
    auto m = s.receive(milliseconds(5000));
    EXPECT_TRUE(m.has_value());
    return m ? std::move(*m) : Message{};
}

void reply(MessageSocket& s, const Message& to, std::span<const std::byte> payload, uint32_t flags = kFlagTypeReply,
           uint32_t err = 0) {
    (void)s.send(Header{to.header.msg_id, to.header.command, 0, flags, err}, payload);
}

// Answers VERSION and DEVICE_GET_INFO as a well-behaved server would.
void handshake(MessageSocket& s) {
    auto v = next(s);
    reply(s, v, bytes(VersionPayload{0, 1}));
    auto info = next(s);
    reply(s, info, bytes(DeviceInfoPayload{16, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, 9, 5}));
}

// Replies the script sends come well within this on a loaded machine; a test about a reply that never
// comes uses impatient() instead.
VfioUserOptions quick() {
    VfioUserOptions o;
    o.reply_timeout = milliseconds(20000);
    return o;
}
VfioUserOptions impatient() {
    VfioUserOptions o;
    o.reply_timeout = milliseconds(2000);
    return o;
}

void wait_closed(MessageSocket& s) { (void)s.receive(milliseconds(3000)); }

TEST(MalformedServer, VersionRefused) {
    FakeServer server([](MessageSocket& s) { reply(s, next(s), {}, kFlagTypeReply | kFlagError, ENOTSUP); });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_FALSE(t.has_value());
    EXPECT_EQ(t.error().code, ENOTSUP);
    EXPECT_NE(t.error().message.find("fake"), std::string::npos);
}

TEST(MalformedServer, VersionWithWrongMajorOrHigherMinor) {
    for (auto v : {VersionPayload{1, 0}, VersionPayload{0, 9}}) {
        FakeServer server([v](MessageSocket& s) { reply(s, next(s), bytes(v)); });
        auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
        ASSERT_FALSE(t.has_value());
        EXPECT_EQ(t.error().code, EPROTO);
    }
}

TEST(MalformedServer, VersionReplyMalformed) {
    std::vector<std::vector<std::byte>> payloads = {{}, std::vector<std::byte>(3)};
    auto bad_json = bytes(VersionPayload{0, 1});
    const char json[] = "{\"capabilities\":{\"max_data_xfer_size\":0}}";
    bad_json.insert(bad_json.end(), reinterpret_cast<const std::byte*>(json),
                    reinterpret_cast<const std::byte*>(json) + sizeof(json));
    payloads.push_back(bad_json);
    auto twin = bytes(VersionPayload{0, 1});
    const char twin_json[] = "{\"capabilities\":{\"twin_socket\":{\"supported\":true,\"fd_index\":0}}}";
    twin.insert(twin.end(), reinterpret_cast<const std::byte*>(twin_json),
                reinterpret_cast<const std::byte*>(twin_json) + sizeof(twin_json));
    payloads.push_back(twin);
    for (auto& p : payloads) {
        FakeServer server([p](MessageSocket& s) { reply(s, next(s), p); });
        auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
        ASSERT_FALSE(t.has_value());
        EXPECT_EQ(t.error().code, EPROTO) << t.error().message;
    }
}

TEST(MalformedServer, ReplyToTheWrongCommand) {
    FakeServer server([](MessageSocket& s) {
        auto v = next(s);
        (void)s.send(Header{v.header.msg_id, static_cast<uint16_t>(Command::kDmaMap), 0, kFlagTypeReply, 0}, {});
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_FALSE(t.has_value());
    EXPECT_EQ(t.error().code, EPROTO);
}

TEST(MalformedServer, SilentServerTimesOut) {
    FakeServer server([](MessageSocket& s) {
        (void)next(s);  // VERSION, never answered
        wait_closed(s);
    });
    const auto start = std::chrono::steady_clock::now();
    auto t = open_vfio_user(std::move(server.client_end), "fake", impatient());
    ASSERT_FALSE(t.has_value());
    EXPECT_EQ(t.error().code, ETIMEDOUT);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60)) << "a hang, not a timeout";
}

TEST(MalformedServer, ServerClosesDuringHandshake) {
    FakeServer server([](MessageSocket& s) {
        auto v = next(s);
        reply(s, v, bytes(VersionPayload{0, 1}));
        (void)next(s);  // DEVICE_GET_INFO, then hang up
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_FALSE(t.has_value());
    EXPECT_EQ(t.error().code, ECONNRESET) << t.error().message;
}

TEST(MalformedServer, TruncatedDeviceInfo) {
    FakeServer server([](MessageSocket& s) {
        auto v = next(s);
        reply(s, v, bytes(VersionPayload{0, 1}));
        reply(s, next(s), std::vector<std::byte>(8));
        wait_closed(s);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_FALSE(t.has_value());
    EXPECT_EQ(t.error().code, EPROTO);
}

// Region info replies that lie about their capabilities.
std::vector<std::byte> region_reply(uint32_t cap_offset, uint32_t next_cap, uint32_t nr_areas, SparseMmapArea area,
                                    uint64_t size = 0x4000) {
    std::vector<std::byte> p;
    const uint32_t argsz = 32 + 8 + 8 + 16;
    append_struct(p, RegionInfoPayload{argsz, VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_CAPS, 0, cap_offset,
                                       size, 0});
    append_struct(p, CapHeader{VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, next_cap});
    append_struct(p, SparseMmapHeader{nr_areas, 0});
    append_struct(p, area);
    return p;
}

TEST(MalformedServer, BadRegionCapabilityChains) {
    struct Case {
        const char* what;
        std::vector<std::byte> payload;
    };
    std::vector<Case> cases = {
        {"loop", region_reply(32, 32, 1, {0x2000, 0x1000})},
        {"offset outside the reply", region_reply(4000, 0, 1, {0x2000, 0x1000})},
        {"offset inside the fixed part", region_reply(8, 0, 1, {0x2000, 0x1000})},
        {"too many areas", region_reply(32, 0, 1000, {0x2000, 0x1000})},
        {"area beyond the region", region_reply(32, 0, 1, {0x3000, 0x2000})},
        {"area offset overflowing", region_reply(32, 0, 1, {~0ull, 0x10})},
    };
    for (auto& c : cases) {
        SCOPED_TRACE(c.what);
        FakeServer server([&c](MessageSocket& s) {
            handshake(s);
            reply(s, next(s), c.payload);
            wait_closed(s);
        });
        auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
        ASSERT_TRUE(t.has_value()) << t.error().message;
        auto info = (*t)->region_info(0);
        ASSERT_FALSE(info.has_value());
        EXPECT_EQ(info.error().code, EPROTO) << info.error().message;
        t->reset();
    }
}

TEST(MalformedServer, RegionInfoThatKeepsGrowing) {
    FakeServer server([](MessageSocket& s) {
        handshake(s);
        for (uint32_t argsz : {64u, 128u}) {
            auto m = next(s);
            reply(s, m, bytes(RegionInfoPayload{argsz, VFIO_REGION_INFO_FLAG_READ, 0, 0, 0x4000, 0}));
        }
        wait_closed(s);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    auto info = (*t)->region_info(0);
    ASSERT_FALSE(info.has_value());
    EXPECT_EQ(info.error().code, EPROTO);
}

TEST(MalformedServer, RegionReadReplyWithWrongCount) {
    FakeServer server([](MessageSocket& s) {
        handshake(s);
        reply(s, next(s), bytes(RegionInfoPayload{32, VFIO_REGION_INFO_FLAG_READ, 0, 0, 0x4000, 0}));
        auto m = next(s);
        auto p = bytes(RegionAccessPayload{0, 0, 2});
        p.resize(p.size() + 2);
        reply(s, m, p);
        wait_closed(s);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    std::array<std::byte, 4> buf{};
    auto r = (*t)->region_read(0, 0, buf);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, EPROTO);
}

TEST(MalformedServer, ServerCommandsAreServedOrRefused) {
    std::vector<Message> answers;
    FakeServer server([&answers](MessageSocket& s) {
        handshake(s);
        // DMA_READ of memory never mapped, an unknown command, a truncated DMA_WRITE.
        (void)s.send(Header{100, static_cast<uint16_t>(Command::kDmaRead), 0, kFlagTypeCommand, 0},
                     bytes(DmaAccessPayload{0x1000, 16}));
        (void)s.send(Header{101, 77, 0, kFlagTypeCommand, 0}, {});
        (void)s.send(Header{102, static_cast<uint16_t>(Command::kDmaWrite), 0, kFlagTypeCommand, 0},
                     std::vector<std::byte>(5));
        for (int i = 0; i < 3; ++i) answers.push_back(next(s));
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    server.client_end.reset();
    server.thread.join();  // once it has every answer
    ASSERT_EQ(answers.size(), 3u);
    EXPECT_TRUE(answers[0].is_error());
    EXPECT_EQ(answers[0].header.error_reply, static_cast<uint32_t>(EFAULT));
    EXPECT_EQ(answers[1].header.error_reply, static_cast<uint32_t>(ENOSYS));
    EXPECT_EQ(answers[2].header.error_reply, static_cast<uint32_t>(EINVAL));
}

TEST(MalformedServer, ALateReplyToARequestThatTimedOutIsDroppedAndTheNextCounts) {
    std::promise<void> gave_up;
    std::shared_future<void> given_up = gave_up.get_future().share();
    FakeServer server([given_up](MessageSocket& s) {
        handshake(s);
        auto first = next(s);
        given_up.wait();  // answered only once the client has given up on it
        reply(s, first, bytes(IrqInfoPayload{16, VFIO_IRQ_INFO_EVENTFD, 2, 1}));
        auto second = next(s);
        reply(s, second, bytes(IrqInfoPayload{16, VFIO_IRQ_INFO_EVENTFD, 2, 8}));
        wait_closed(s);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", impatient());
    ASSERT_TRUE(t.has_value());
    auto timed_out = (*t)->irq_info(2);
    ASSERT_FALSE(timed_out);
    EXPECT_EQ(timed_out.error().code, ETIMEDOUT);
    gave_up.set_value();  // the late reply comes before the next request's, which it must not be taken for
    auto irq = (*t)->irq_info(2);
    ASSERT_TRUE(irq.has_value()) << irq.error().message;
    EXPECT_EQ(irq->count, 8u);
}

TEST(MalformedServer, AReplyWithTheWrongMessageIdFailsItsRequestAtOnceNamingIt) {
    FakeServer server([](MessageSocket& s) {
        handshake(s);
        auto m = next(s);
        (void)s.send(Header{static_cast<uint16_t>(m.header.msg_id + 1000), m.header.command, 0, kFlagTypeReply, 0},
                     bytes(IrqInfoPayload{16, VFIO_IRQ_INFO_EVENTFD, 2, 8}));
        wait_closed(s);
    });
    VfioUserOptions slow;
    slow.reply_timeout = std::chrono::seconds(120);
    auto t = open_vfio_user(std::move(server.client_end), "fake", slow);
    ASSERT_TRUE(t.has_value());
    const auto start = std::chrono::steady_clock::now();
    auto irq = (*t)->irq_info(2);
    ASSERT_FALSE(irq);
    EXPECT_EQ(irq.error().code, EPROTO);
    EXPECT_NE(irq.error().message.find("message id"), std::string::npos) << irq.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60)) << "the 120 s timeout was waited out";
}

size_t open_fds() {
    size_t n = 0;
    for (int fd = 0; fd < 4096; ++fd) n += ::fcntl(fd, F_GETFD) != -1;
    return n;
}

TEST(MalformedServer, FileDescriptorsAReplyShouldNotCarryAreClosed) {
    std::promise<void> server_closed_its_copy;
    FakeServer server([&server_closed_its_copy](MessageSocket& s) {
        handshake(s);
        auto m = next(s);
        UniqueFd extra(::eventfd(0, EFD_CLOEXEC));
        const int fd = extra.get();
        (void)s.send(Header{m.header.msg_id, m.header.command, 0, kFlagTypeReply, 0},
                     bytes(IrqInfoPayload{16, VFIO_IRQ_INFO_EVENTFD, 2, 8}), std::span<const int>(&fd, 1));
        extra.reset();
        server_closed_its_copy.set_value();
        wait_closed(s);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    const size_t before = open_fds();
    auto irq = (*t)->irq_info(2);
    ASSERT_TRUE(irq.has_value()) << irq.error().message;
    server_closed_its_copy.get_future().wait();
    EXPECT_EQ(open_fds(), before) << "the eventfd the reply carried is still open";
}

TEST(MalformedServer, ServerDyingMidSessionFailsEveryLaterRequestAtOnce) {
    FakeServer server([](MessageSocket& s) {
        handshake(s);
        (void)next(s);  // take a request and die without answering
    });
    VfioUserOptions slow;
    slow.reply_timeout = std::chrono::seconds(120);
    auto t = open_vfio_user(std::move(server.client_end), "fake", slow);
    ASSERT_TRUE(t.has_value());
    const auto start = std::chrono::steady_clock::now();
    auto r = (*t)->irq_info(2);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, ECONNRESET);
    auto again = (*t)->reset();
    ASSERT_FALSE(again.has_value());
    EXPECT_NE(again.error().message.find("connection to the server lost"), std::string::npos) << again.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(60)) << "the 120 s timeout was waited out";
}

TEST(MalformedServer, WindowsGoWithTheConnectionSoUnmappingThemAfterItSucceeds) {
    FakeServer server([](MessageSocket& s) {
        handshake(s);
        auto map = next(s);
        reply(s, map, {});
        // and the server goes, taking the window with it
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    std::vector<std::byte> memory(4096);
    ASSERT_TRUE((*t)->dma_map(DmaMapping{0x10000, memory.size(), memory.data()}));
    server.thread.join();
    // At once, whether or not the client's receiver has seen the end of the stream yet.
    auto r = (*t)->dma_unmap(0x10000, memory.size());
    EXPECT_TRUE(r) << r.error().message;
    // What was never mapped, or is unmapped already, is still an error.
    auto again = (*t)->dma_unmap(0x10000, memory.size());
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ENOENT);
}

TEST(MalformedServer, AServerThatBreaksTheFramingIsHungUpOn) {
    bool hung_up = false;
    FakeServer server([&hung_up](MessageSocket& s) {
        handshake(s);
        const Header bad{1, static_cast<uint16_t>(Command::kDmaRead), 4, kFlagTypeCommand, 0};  // smaller than a header
        ASSERT_EQ(::write(s.fd(), &bad, sizeof(bad)), static_cast<ssize_t>(sizeof(bad)));
        // The client must close its end, not keep a connection whose stream it can no longer read.
        auto m = s.receive(milliseconds(10000));
        hung_up = !m && m.error().code != ETIMEDOUT;
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    server.thread.join();
    EXPECT_TRUE(hung_up);
    auto r = (*t)->reset();
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("connection to the server lost"), std::string::npos) << r.error().message;
}

// DMA_READ and DMA_WRITE must be served for every window, fd-backed ones too (servers may use them rather
// than map the fd), and memory the process can no longer reach is refused, never a crash.
std::vector<Message> serve_script(MessageSocket& s, const std::vector<std::pair<Command, DmaAccessPayload>>& script,
                                  const std::vector<std::byte>& data, std::future<void>* go) {
    handshake(s);
    auto map = next(s);
    reply(s, map, {});
    if (go) go->wait();
    uint16_t id = 200;
    for (const auto& [command, access] : script) {
        std::vector<std::byte> payload = bytes(access);
        if (command == Command::kDmaWrite) payload.insert(payload.end(), data.begin(), data.begin() + access.count);
        (void)s.send(Header{id++, static_cast<uint16_t>(command), 0, kFlagTypeCommand, 0}, payload);
    }
    std::vector<Message> answers;
    for (size_t i = 0; i < script.size(); ++i) answers.push_back(next(s));
    return answers;
}

TEST(ScriptedServer, DmaReadAndWriteAreServedForFdBackedWindowsToo) {
    UniqueFd memfd(::memfd_create("window", MFD_CLOEXEC));
    ASSERT_EQ(::ftruncate(memfd.get(), 4096), 0);
    auto* mem = static_cast<char*>(::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0));
    ASSERT_NE(mem, MAP_FAILED);
    std::memcpy(mem, "0123456789abcdef", 16);
    const std::vector<std::byte> data{std::byte{'W'}, std::byte{'X'}, std::byte{'Y'}, std::byte{'Z'}};
    std::vector<Message> answers;
    FakeServer server([&](MessageSocket& s) {
        answers = serve_script(s, {{Command::kDmaWrite, {0x20008, 4}}, {Command::kDmaRead, {0x20000, 16}}}, data,
                               nullptr);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    ASSERT_TRUE((*t)->dma_map(DmaMapping{0x20000, 4096, mem, memfd.get(), 0, true, true}));
    server.thread.join();  // once it has every answer
    ASSERT_EQ(answers.size(), 2u);
    EXPECT_FALSE(answers[0].is_error()) << std::strerror(static_cast<int>(answers[0].header.error_reply));
    EXPECT_EQ(std::string(mem, 16), "01234567WXYZcdef");
    ASSERT_FALSE(answers[1].is_error()) << std::strerror(static_cast<int>(answers[1].header.error_reply));
    ASSERT_EQ(answers[1].payload.size(), sizeof(DmaAccessPayload) + 16);
    EXPECT_EQ(std::memcmp(answers[1].payload.data() + sizeof(DmaAccessPayload), "01234567WXYZcdef", 16), 0);
    ::munmap(mem, 4096);
}

TEST(ScriptedServer, DmaToMemoryTheProcessCanNoLongerReachIsRefusedNotACrash) {
    auto* mem = static_cast<char*>(
        ::mmap(nullptr, 2 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(mem, MAP_FAILED);
    std::promise<void> go;
    auto went = go.get_future();
    const std::vector<std::byte> data(16, std::byte{0x5a});
    std::vector<Message> answers;
    FakeServer server([&](MessageSocket& s) {
        answers = serve_script(s,
                               {{Command::kDmaWrite, {0x40000, 16}},
                                {Command::kDmaRead, {0x40000, 16}},
                                {Command::kDmaRead, {0x41000, 16}}},
                               data, &went);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value());
    ASSERT_TRUE((*t)->dma_map(DmaMapping{0x40000, 2 * 4096, mem, -1, 0, true, true}));
    // After the mapping: the first page becomes read-only, the second goes.
    ASSERT_EQ(::mprotect(mem, 4096, PROT_READ), 0);
    ASSERT_EQ(::munmap(mem + 4096, 4096), 0);
    go.set_value();
    server.thread.join();  // once it has every answer
    ASSERT_EQ(answers.size(), 3u);
    EXPECT_TRUE(answers[0].is_error());
    EXPECT_EQ(answers[0].header.error_reply, static_cast<uint32_t>(EFAULT));
    EXPECT_FALSE(answers[1].is_error()) << "still readable";
    EXPECT_TRUE(answers[2].is_error());
    EXPECT_EQ(answers[2].header.error_reply, static_cast<uint32_t>(EFAULT));
    ::munmap(mem, 4096);
}

// A UNIX socket path that cannot be connected to names its own cause, and never blocks for ever.
class SocketPath : public ::testing::Test {
protected:
    void SetUp() override {
        char dir[] = "/tmp/vfioq-connect-XXXXXX";
        ASSERT_NE(::mkdtemp(dir), nullptr);
        dir_ = dir;
        path_ = dir_ + "/sock";
    }
    void TearDown() override {
        ::unlink(path_.c_str());
        ::rmdir(dir_.c_str());
    }
    std::string dir_, path_;
};

TEST_F(SocketPath, APathThatIsNotASocketSaysSo) {
    UniqueFd file(::open(path_.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(file);
    auto t = connect_vfio_user(path_);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code, ENOTSOCK);
    EXPECT_NE(t.error().message.find("regular file, not a socket"), std::string::npos) << t.error().message;
}

TEST_F(SocketPath, AServerWhoseBacklogIsFullTimesOutWithAMessage) {
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
    ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    ASSERT_EQ(::listen(listener.get(), 0), 0);
    // A first client waits in the backlog, never accepted: it fills it.
    UniqueFd first(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    ASSERT_EQ(::connect(first.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    VfioUserOptions o;
    o.connect_timeout = milliseconds(300);
    o.reply_timeout = milliseconds(300);
    auto t = connect_vfio_user(path_, o);
    ASSERT_FALSE(t);
    EXPECT_EQ(t.error().code, ETIMEDOUT);
    EXPECT_NE(t.error().message.find("backlog"), std::string::npos) << t.error().message;
}

}  // namespace
}  // namespace vfioq

namespace vfioq {
namespace {

using namespace vfio_user;

// Not malformed, but only a scripted server can advertise a tiny limit: region
// accesses are split at the server's max_data_xfer_size.
TEST(ScriptedServer, RegionAccessIsSplitAtTheServersTransferLimit) {
    std::vector<RegionAccessPayload> seen;
    FakeServer server([&seen](MessageSocket& s) {
        auto v = next(s);
        auto p = bytes(VersionPayload{0, 1});
        const char json[] = "{\"capabilities\":{\"max_data_xfer_size\":4}}";
        p.insert(p.end(), reinterpret_cast<const std::byte*>(json),
                 reinterpret_cast<const std::byte*>(json) + sizeof(json));
        reply(s, v, p);
        reply(s, next(s), bytes(DeviceInfoPayload{16, VFIO_DEVICE_FLAGS_PCI, 9, 5}));
        reply(s, next(s), bytes(RegionInfoPayload{32, VFIO_REGION_INFO_FLAG_READ, 0, 0, 0x4000, 0}));
        for (int i = 0; i < 3; ++i) {
            auto m = next(s);
            auto req = *read_struct<RegionAccessPayload>(m.payload);
            seen.push_back(req);
            auto out = bytes(req);
            for (uint32_t b = 0; b < req.count; ++b) out.push_back(static_cast<std::byte>(req.offset + b));
            reply(s, m, out);
        }
        wait_closed(s);
    });
    auto t = open_vfio_user(std::move(server.client_end), "fake", quick());
    ASSERT_TRUE(t.has_value()) << t.error().message;
    std::array<std::byte, 10> buf{};
    ASSERT_TRUE((*t)->region_read(0, 0x100, buf).has_value());
    for (size_t i = 0; i < buf.size(); ++i) EXPECT_EQ(buf[i], static_cast<std::byte>(0x100 + i));
    t->reset();
    server.thread.join();
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[0].offset, 0x100u);
    EXPECT_EQ(seen[0].count, 4u);
    EXPECT_EQ(seen[1].offset, 0x104u);
    EXPECT_EQ(seen[2].offset, 0x108u);
    EXPECT_EQ(seen[2].count, 2u);
}

}  // namespace
}  // namespace vfioq
