// SPDX-License-Identifier: MIT
// The client against vfioq-devsim running as a separate process.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "vfioq/device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class Devsim : public ::testing::Test {
protected:
    void SetUp() override {
        const char* exe = std::getenv("VFIOQ_DEVSIM");
        ASSERT_NE(exe, nullptr) << "VFIOQ_DEVSIM must name the vfioq-devsim binary";
        char tmpl[] = "/tmp/vfioq-devsim-test-XXXXXX";
        ASSERT_NE(::mkdtemp(tmpl), nullptr);
        dir = tmpl;
        socket = (dir / "card.sock").string();
        pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::execl(exe, exe, "--socket", socket.c_str(), "--log-level", "error", static_cast<char*>(nullptr));
            std::_Exit(127);
        }
        // Ready once a client can connect.
        for (int i = 0; i < 500 && !fs::exists(socket); ++i) std::this_thread::sleep_for(10ms);
        ASSERT_TRUE(fs::exists(socket)) << "vfioq-devsim did not create " << socket;
    }
    void TearDown() override {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
        fs::remove_all(dir);
    }
    std::string address() const { return "vfio-user:" + socket; }
    static OpenOptions quick() {
        OpenOptions o;
        o.vfio_user.reply_timeout = 2s;
        return o;
    }

    fs::path dir;
    std::string socket;
    pid_t pid = -1;
};

TEST_F(Devsim, SocketIsPrivateToItsOwner) {
    struct stat st{};
    ASSERT_EQ(::stat(socket.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(Devsim, TheSocketAppearsOnlyOnceItAcceptsAndLeavesNoOtherName) {
    // SetUp waited for the file and nothing else: a connection now must be accepted, never refused.
    auto dev = Device::open(address(), quick());
    ASSERT_TRUE(dev.has_value()) << dev.error().message;
    for (const auto& entry : fs::directory_iterator(dir))
        EXPECT_EQ(entry.path().filename(), "card.sock") << "a name the socket was bound under is left behind";
}

TEST_F(Devsim, RegistersThroughASeparateProcess) {
    auto dev = Device::open(address(), quick());
    ASSERT_TRUE(dev.has_value()) << dev.error().message;
    EXPECT_EQ(*(*dev)->read32(0, sgq::kRegId), sgq::kIdValue);
    ASSERT_TRUE((*dev)->write32(0, sgq::kRegScratch, 0x1234).has_value());
    EXPECT_EQ(*(*dev)->read32(0, sgq::kRegScratch), 0x1234u);
    // The doorbell page is shared across the process boundary.
    EXPECT_NE((*dev)->mapped(0, sgq::kDoorbellBase, 4), nullptr);
}

TEST_F(Devsim, OneClientAtATimeAndTheNextFindsAQuietCard) {
    auto first = Device::open(address(), quick());
    ASSERT_TRUE(first.has_value()) << first.error().message;
    ASSERT_TRUE((*first)->write32(0, sgq::kRegScratch, 77).has_value());
    ASSERT_TRUE((*first)->write32(0, sgq::kRegCtrl, sgq::kCtrlEn).has_value());
    auto second = Device::open(address(), quick());
    ASSERT_FALSE(second.has_value());
    EXPECT_NE(second.error().message.find(socket), std::string::npos) << second.error().message;
    first->reset();
    std::unique_ptr<Device> third;
    for (int i = 0; i < 50 && !third; ++i) {
        auto d = Device::open(address(), quick());
        if (d) third = std::move(*d);
        else std::this_thread::sleep_for(20ms);
    }
    ASSERT_TRUE(third);
    EXPECT_EQ(*third->read32(0, sgq::kRegScratch), 0u);
}

// A client that closes and at once opens again (one test after another) is served every time:
// the server hears the old connection's hang-up before it takes the new one for a second client.
TEST_F(Devsim, ACardClosedAndOpenedAgainAtOnceIsServedEveryTime) {
    for (int i = 0; i < 100; ++i) {
        auto dev = Device::open(address(), quick());
        ASSERT_TRUE(dev.has_value()) << "open " << i << ": " << dev.error().message;
        ASSERT_TRUE((*dev)->write32(0, sgq::kRegScratch, static_cast<uint32_t>(i)).has_value());
        // The server still busy with the client's last messages when the client goes.
        for (int k = 0; k < 4; ++k) (void)(*dev)->dma().allocate(1 << 20);
    }
}

TEST_F(Devsim, KilledServerGivesAClearErrorNotAHang) {
    OpenOptions patient;
    patient.vfio_user.reply_timeout = 120s;
    auto dev = Device::open(address(), patient);
    ASSERT_TRUE(dev.has_value()) << dev.error().message;
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
    const auto start = std::chrono::steady_clock::now();
    auto r = (*dev)->read32(0, sgq::kRegScratch);
    ASSERT_FALSE(r.has_value());
    // Either the request saw the connection drop, or the device was already marked gone.
    EXPECT_TRUE(r.error().code == ECONNRESET || r.error().code == ENODEV) << r.error().message;
    for (int i = 0; i < 100 && !(*dev)->gone(); ++i) std::this_thread::sleep_for(10ms);
    EXPECT_TRUE((*dev)->gone());
    auto again = (*dev)->read32(0, sgq::kRegScratch);
    ASSERT_FALSE(again.has_value());
    EXPECT_EQ(again.error().code, ENODEV);
    EXPECT_NE(again.error().message.find("gone"), std::string::npos) << again.error().message;
    EXPECT_NE(r.error().message.find(address()), std::string::npos) << r.error().message;
    EXPECT_LT(std::chrono::steady_clock::now() - start, 60s) << "the 120 s timeout was waited out";
}

TEST_F(Devsim, SigtermExitsCleanlyAndRemovesTheSocket) {
    auto dev = Device::open(address(), quick());
    ASSERT_TRUE(dev.has_value());
    ASSERT_EQ(::kill(pid, SIGTERM), 0);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    pid = -1;
    EXPECT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
    EXPECT_FALSE(fs::exists(socket));
}

}  // namespace
}  // namespace vfioq
