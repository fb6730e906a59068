// SPDX-License-Identifier: MIT
#include "vfioq/log.hpp"

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <map>
#include <mutex>

namespace vfioq::log {
namespace {

struct Registry {
    std::mutex mutex;
    spdlog::level::level_enum default_level = spdlog::level::warn;
    std::map<std::string, spdlog::level::level_enum, std::less<>> overrides;
    std::map<std::string, std::shared_ptr<spdlog::logger>, std::less<>> loggers;
    std::shared_ptr<spdlog::sinks::stderr_color_sink_mt> sink = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    bool environment_applied = false;

    spdlog::level::level_enum level_for(std::string_view name) const {
        auto it = overrides.find(name);
        return it == overrides.end() ? default_level : it->second;
    }
};

Registry& registry() {
    static Registry* r = new Registry();  // never destroyed: loggers may be used from exit paths
    return *r;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

Result<spdlog::level::level_enum> parse_level(std::string_view text) {
    static const std::pair<std::string_view, spdlog::level::level_enum> names[] = {
        {"trace", spdlog::level::trace},       {"debug", spdlog::level::debug},  {"info", spdlog::level::info},
        {"warn", spdlog::level::warn},         {"warning", spdlog::level::warn}, {"error", spdlog::level::err},
        {"critical", spdlog::level::critical}, {"off", spdlog::level::off},
    };
    for (const auto& [name, level] : names)
        if (name == text) return level;
    return make_error(
        EINVAL, "unknown log level '" + std::string(text) + "' (use trace, debug, info, warn, error, critical or off)");
}

std::shared_ptr<spdlog::logger> get_locked(Registry& r, std::string_view subsystem) {
    auto it = r.loggers.find(subsystem);
    if (it != r.loggers.end()) return it->second;
    auto logger = std::make_shared<spdlog::logger>(std::string(subsystem), r.sink);
    logger->set_level(r.level_for(subsystem));
    logger->set_pattern("[%H:%M:%S.%e] [%n] [%^%l%$] %v");
    r.loggers.emplace(std::string(subsystem), logger);
    return logger;
}

}  // namespace

std::shared_ptr<spdlog::logger> get(std::string_view subsystem) {
    auto& r = registry();
    {
        std::lock_guard lock(r.mutex);
        if (r.environment_applied) return get_locked(r, subsystem);
    }
    (void)apply_environment();
    std::lock_guard lock(r.mutex);
    return get_locked(r, subsystem);
}

Result<void> set_levels(std::string_view spec) {
    spdlog::level::level_enum new_default;
    std::map<std::string, spdlog::level::level_enum, std::less<>> new_overrides;
    bool has_default = false;
    while (!spec.empty()) {
        auto comma = spec.find(',');
        auto item = trim(spec.substr(0, comma));
        spec = comma == std::string_view::npos ? std::string_view{} : spec.substr(comma + 1);
        if (item.empty()) continue;
        auto eq = item.find('=');
        if (eq == std::string_view::npos) {
            auto level = parse_level(item);
            if (!level) return level.error();
            new_default = *level;
            has_default = true;
        } else {
            auto name = trim(item.substr(0, eq));
            auto level = parse_level(trim(item.substr(eq + 1)));
            if (!level) return level.error().with_context("log level for '" + std::string(name) + "'");
            new_overrides[std::string(name)] = *level;
        }
    }
    auto& r = registry();
    std::lock_guard lock(r.mutex);
    if (has_default) r.default_level = new_default;
    for (auto& [name, level] : new_overrides) r.overrides[name] = level;
    for (auto& [name, logger] : r.loggers) logger->set_level(r.level_for(name));
    return {};
}

Result<void> apply_environment() {
    {
        auto& r = registry();
        std::lock_guard lock(r.mutex);
        if (r.environment_applied) return {};
        r.environment_applied = true;
    }
    const char* env = std::getenv("VFIOQ_LOG");
    if (env == nullptr) return {};
    auto result = set_levels(env);
    if (!result) return result.error().with_context("VFIOQ_LOG");
    return {};
}

}  // namespace vfioq::log
