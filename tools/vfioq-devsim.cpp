// SPDX-License-Identifier: MIT
// vfioq-devsim: the reference model of the SGQ card as a standalone vfio-user
// server. One client at a time; a client that goes away leaves a reset card
// for the next one. SIGINT and SIGTERM end it cleanly.
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include "cli.hpp"
#include "vfioq/log.hpp"
#include "vfioq/model.hpp"

namespace {

constexpr std::string_view kTool = "vfioq-devsim";
vfioq::model::Server* g_server = nullptr;

void on_signal(int) {
    if (g_server) g_server->stop();
}

void usage(FILE* out) {
    fmt::print(out,
               "usage: vfioq-devsim --socket PATH [options]\n"
               "       vfioq-devsim --fd N [options]        (serve an already connected socket)\n"
               "\n"
               "  --vendor-id ID       PCI vendor id (0x1234)\n"
               "  --device-id ID       PCI device id (0x5147)\n"
               "  --devmem-size BYTES  on-card memory (64 MiB)\n"
               "  --queue-pairs N      queue pairs, 1..256 (16)\n"
               "  --mqes N             maximum entries per queue minus 1 (65535)\n"
               "  --timeout N          CAP.TO, 100 ms units (5)\n"
               "  --dstrd N            doorbell stride 4 << N (0)\n"
               "  --sge-align N        SGL alignment, log2 bytes (0)\n"
               "  --max-xfer N         maximum bytes per command, log2 (24)\n"
               "  --max-sge N          maximum DATA descriptors per command (1024)\n"
               "  --ready-delay-ms N   time from CTRL.EN to STATUS.RDY (0)\n"
               "  --workers N          threads executing commands; 0 runs them on the doorbell thread (0)\n"
               "  --latency-us N       each command completes no sooner than N us after it is fetched (0)\n"
               "  --out-of-order       post the completions that are ready together in random order\n"
               "  --seed N             seed for out-of-order completion (1)\n"
               "  --null-data          complete READs and WRITEs without moving data (for measuring the driver)\n"
               "  --fault SPEC         a misbehaving card, repeatable: KIND=RATE (a chance per completion)\n"
               "                       or N:KIND (the Nth completion); KIND is status, drop, duplicate,\n"
               "                       wrong-cid, stale-phase or late (a completion gone wrong), or\n"
               "                       cfs (fatal status), hang (silent until a reset), all-ones\n"
               "                       (registers read all-ones) or\n"
               "                       disconnect (all-ones and the connection closes): the card fails\n"
               "                       instead of posting that completion. A slow card: --latency-us\n"
               "  --fault-seed N       seed for the fault rates (1)\n"
               "  --fault-status N     the status an injected error completes with (9, INTERNAL)\n"
               "  --fault-late-us N    how late a late completion comes (100000)\n"
               "  --fault-dma-iova A   DMA that touches IOVA A fails (DMA_FAULT, ERR_ADDR = A)\n"
               "  --cpu N              run the doorbell thread on CPU N\n"
               "  --idle-spin-us N     how long the doorbell thread spins before it sleeps (200)\n"
               "  --corrupt-reads-every N  flip one bit in every Nth READ (a broken card; 0 = never)\n"
               "  --log-level LEVEL    trace, debug, info, warn, error (or VFIOQ_LOG)\n"
               "\n"
               "exit status: 0 stopped by SIGTERM or SIGINT (the socket removed); 1 the socket could\n"
               "not be set up (in use, not a socket, no permission) or the model not made; 2 a usage\n"
               "error.\n");
}

// Creates the listening socket, private to its owner (0600). A stale socket
// file nobody listens on is replaced; a live one is an error. The socket is
// bound under a name of its own and renamed to PATH once it listens, so that
// PATH appears only when it accepts: a client that waits for the file and
// connects at once is never refused.
vfioq::UniqueFd listen_on(const std::string& path) {
    sockaddr_un addr{};
    const std::string binding = path + fmt::format(".{}", ::getpid());
    if (path.empty() || binding.size() >= sizeof(addr.sun_path))
        vfioq::cli::fail(kTool, fmt::format("socket path must be 1 to {} characters",
                                            sizeof(addr.sun_path) - 1 - (binding.size() - path.size())),
                         2);
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());

    struct stat st{};
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) vfioq::cli::fail(kTool, fmt::format("{} exists and is not a socket", path));
        vfioq::UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
        if (::connect(probe.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0)
            vfioq::cli::fail(kTool, fmt::format("{} is in use by another server", path));
        ::unlink(path.c_str());
    }
    vfioq::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) vfioq::cli::fail(kTool, fmt::format("socket() failed: {}", std::strerror(errno)));
    sockaddr_un bind_addr{};
    bind_addr.sun_family = AF_UNIX;
    std::memcpy(bind_addr.sun_path, binding.c_str(), binding.size());
    ::unlink(binding.c_str());
    const mode_t old_mask = ::umask(0177);
    const int bound = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&bind_addr), sizeof(bind_addr));
    const int bind_errno = errno;
    ::umask(old_mask);
    if (bound != 0) vfioq::cli::fail(kTool, fmt::format("cannot bind {}: {}", binding, std::strerror(bind_errno)));
    auto give_up = [&](const std::string& why) {
        ::unlink(binding.c_str());
        vfioq::cli::fail(kTool, why);
    };
    if (::chmod(binding.c_str(), 0600) != 0)
        give_up(fmt::format("cannot make {} private: {}", binding, std::strerror(errno)));
    if (::listen(fd.get(), 4) != 0) give_up(fmt::format("listen failed: {}", std::strerror(errno)));
    if (::rename(binding.c_str(), path.c_str()) != 0)
        give_up(fmt::format("cannot name the socket {}: {}", path, std::strerror(errno)));
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    vfioq::model::ModelConfig config;
    std::string socket_path;
    int serve_fd = -1;
    std::optional<std::string_view> log_level;

    auto number = [&](std::string_view name, std::string_view value, uint64_t max) {
        auto v = vfioq::cli::parse_u64(value);
        if (!v || *v > max) vfioq::cli::fail(kTool, fmt::format("{} takes a number up to {}", name, max), 2);
        return *v;
    };
    const std::map<std::string_view, std::function<void(std::string_view)>> options = {
        {"--socket", [&](std::string_view v) { socket_path = v; }},
        {"--socket-path", [&](std::string_view v) { socket_path = v; }},
        {"--fd", [&](std::string_view v) { serve_fd = static_cast<int>(number("--fd", v, 65535)); }},
        {"--vendor-id", [&](std::string_view v) { config.vendor_id = static_cast<uint16_t>(number("--vendor-id", v, 0xFFFF)); }},
        {"--device-id", [&](std::string_view v) { config.device_id = static_cast<uint16_t>(number("--device-id", v, 0xFFFF)); }},
        {"--devmem-size", [&](std::string_view v) { config.devmem_size = number("--devmem-size", v, 1ull << 40); }},
        {"--queue-pairs",
         [&](std::string_view v) {
             const auto n = number("--queue-pairs", v, 256);
             if (n == 0) vfioq::cli::fail(kTool, "--queue-pairs takes 1 to 256", 2);
             config.nqp = static_cast<uint8_t>(n - 1);
         }},
        {"--mqes", [&](std::string_view v) { config.mqes = static_cast<uint16_t>(number("--mqes", v, 0xFFFF)); }},
        {"--timeout", [&](std::string_view v) { config.timeout = static_cast<uint8_t>(number("--timeout", v, 255)); }},
        {"--dstrd", [&](std::string_view v) { config.dstrd = static_cast<uint8_t>(number("--dstrd", v, 15)); }},
        {"--sge-align", [&](std::string_view v) { config.sge_align = static_cast<uint8_t>(number("--sge-align", v, 15)); }},
        {"--max-xfer", [&](std::string_view v) { config.max_xfer = static_cast<uint8_t>(number("--max-xfer", v, 255)); }},
        {"--max-sge", [&](std::string_view v) { config.max_sge = static_cast<uint16_t>(number("--max-sge", v, 0xFFFF)); }},
        {"--ready-delay-ms",
         [&](std::string_view v) { config.ready_delay = std::chrono::milliseconds(number("--ready-delay-ms", v, 60000)); }},
        {"--workers", [&](std::string_view v) { config.workers = static_cast<uint32_t>(number("--workers", v, 64)); }},
        {"--latency-us",
         [&](std::string_view v) { config.latency = std::chrono::microseconds(number("--latency-us", v, 10000000)); }},
        {"--out-of-order", [&](std::string_view) { config.out_of_order = true; }},
        {"--seed", [&](std::string_view v) { config.seed = number("--seed", v, ~0ull); }},
        {"--idle-spin-us",
         [&](std::string_view v) { config.idle_spin = std::chrono::microseconds(number("--idle-spin-us", v, 10000000)); }},
        {"--null-data", [&](std::string_view) { config.null_data = true; }},
        {"--fault",
         [&](std::string_view v) {
             if (auto r = config.faults.add(v); !r) vfioq::cli::fail(kTool, r.error().message, 2);
         }},
        {"--fault-seed", [&](std::string_view v) { config.faults.seed = number("--fault-seed", v, ~0ull); }},
        {"--fault-status",
         [&](std::string_view v) { config.faults.status = static_cast<uint16_t>(number("--fault-status", v, 0x7FFF)); }},
        {"--fault-late-us",
         [&](std::string_view v) { config.faults.late_by_us = static_cast<uint32_t>(number("--fault-late-us", v, 60000000)); }},
        {"--fault-dma-iova", [&](std::string_view v) { config.faults.dma_fault_iova = number("--fault-dma-iova", v, ~0ull); }},
        {"--cpu", [&](std::string_view v) { config.cpu = static_cast<int>(number("--cpu", v, 4095)); }},
        {"--corrupt-reads-every",
         [&](std::string_view v) { config.corrupt_reads_every = number("--corrupt-reads-every", v, ~0ull); }},
        {"--log-level", [&](std::string_view v) { log_level = v; }},
    };
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        if (arg == "-h" || arg == "--help") {
            usage(stdout);
            return 0;
        }
        std::string_view name = arg, value;
        bool has_value = false;
        if (auto eq = arg.find('='); eq != std::string_view::npos) {
            name = arg.substr(0, eq);
            value = arg.substr(eq + 1);
            has_value = true;
        }
        auto it = options.find(name);
        if (it == options.end()) {
            fmt::print(stderr, "{}: unknown option '{}'\n", kTool, arg);
            usage(stderr);
            return 2;
        }
        const bool flag = name == "--out-of-order" || name == "--null-data";
        if (!has_value && !flag) {
            if (i + 1 >= argc) vfioq::cli::fail(kTool, fmt::format("{} needs a value", name), 2);
            value = argv[++i];
        }
        it->second(value);
    }
    vfioq::cli::setup_logging(kTool, log_level.value_or("info"));
    if (socket_path.empty() == (serve_fd < 0)) {
        usage(stderr);
        return 2;
    }

    auto created = vfioq::model::Server::create(config);
    if (!created) vfioq::cli::fail(kTool, created.error().message);
    vfioq::model::Server& server = **created;
    g_server = &server;
    struct sigaction sa{};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    auto logger = vfioq::log::get(vfioq::log::kModel);

    if (serve_fd >= 0) {
        server.serve(vfioq::UniqueFd(serve_fd));
        return 0;
    }

    vfioq::UniqueFd listener = listen_on(socket_path);
    logger->info("SGQ model {:04x}:{:04x}, {} queue pairs, {} bytes of card memory; listening on {}",
                 config.vendor_id, config.device_id, config.vector_count(), config.devmem_size, socket_path);
    while (!server.stopped()) {
        pollfd fds[2] = {{listener.get(), POLLIN, 0}, {server.stop_fd(), POLLIN, 0}};
        if (::poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            logger->error("poll failed: {}", std::strerror(errno));
            break;
        }
        if (fds[1].revents) break;
        vfioq::UniqueFd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) continue;
        server.serve(std::move(client), listener.get());
    }
    listener.reset();
    ::unlink(socket_path.c_str());
    logger->info("stopped; removed {}", socket_path);
    g_server = nullptr;
    return 0;
}
