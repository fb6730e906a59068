// SPDX-License-Identifier: MIT
// Result<T>: a value or an Error, shaped like std::expected so that it can
// become an alias once the toolchain offers C++23.
#pragma once

#include <cerrno>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace vfioq {

// An error: an errno-style code and a message that names the device, region,
// register or message at fault. Back-pressure on the fast path (EAGAIN from a
// full queue) costs no formatting or allocation: it carries a static `reason`
// and leaves `message` empty. text() is whichever is there.
struct Error {
    int code = EIO;
    std::string message;
    const char* reason = nullptr;  // static; set when `message` is empty

    [[nodiscard]] std::string text() const { return message.empty() && reason ? std::string(reason) : message; }
    // Prefixes context ("device model: ") to the text, keeping the code.
    [[nodiscard]] Error with_context(const std::string& context) const { return Error{code, context + ": " + text()}; }
};

template <typename T>
class [[nodiscard]] Result {
public:
    Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit like expected
    Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}  // NOLINT

    [[nodiscard]] bool has_value() const noexcept { return v_.index() == 0; }
    explicit operator bool() const noexcept { return has_value(); }

    T& value() & { return std::get<0>(v_); }
    const T& value() const& { return std::get<0>(v_); }
    T&& value() && { return std::get<0>(std::move(v_)); }
    T& operator*() & { return value(); }
    const T& operator*() const& { return value(); }
    T&& operator*() && { return std::move(*this).value(); }
    T* operator->() { return &value(); }
    const T* operator->() const { return &value(); }

    const Error& error() const& { return std::get<1>(v_); }
    Error&& error() && { return std::get<1>(std::move(v_)); }

    template <typename U>
    T value_or(U&& fallback) const& {
        return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
    }

private:
    std::variant<T, Error> v_;
};

template <>
class [[nodiscard]] Result<void> {
public:
    Result() = default;
    Result(Error error) : error_(std::move(error)), ok_(false) {}  // NOLINT

    [[nodiscard]] bool has_value() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    void value() const {}
    const Error& error() const& { return error_; }
    Error&& error() && { return std::move(error_); }

private:
    Error error_;
    bool ok_ = true;
};

// Shorthand for building errors at the point of failure.
inline Error make_error(int code, std::string message) { return Error{code, std::move(message)}; }
// An error with a static reason and no message: nothing is formatted or allocated.
inline Error static_error(int code, const char* reason) { return Error{code, {}, reason}; }

}  // namespace vfioq
