// Two tiers of failure (STYLE.md habit 5):
//  - QL_ASSERT(cond): our own bug. Prints file:line and the condition, then throws
//    InternalError so library code never exits the process.
//  - quantlens::Error: bad input. The message names the file, the tensor (when there is
//    one), what was found and what was expected. The CLI prints it as one line, exit 1.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace quantlens {

class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

class InternalError : public std::logic_error {
public:
    explicit InternalError(const std::string& message) : std::logic_error(message) {}
};

// Throws Error with a fmt-formatted message: fail("{}: tensor '{}': expected {}, found {}", ...)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
    throw Error(fmt::format(format, std::forward<Args>(args)...));
}

namespace detail {
[[noreturn]] void assertion_failed(const char* condition, const char* file, int line);
}  // namespace detail

}  // namespace quantlens

#define QL_ASSERT(cond)                                                        \
    do {                                                                       \
        if (!(cond)) ::quantlens::detail::assertion_failed(#cond, __FILE__, __LINE__); \
    } while (0)

// Validates input at a boundary: QL_CHECK(n < limit, "{}: tensor '{}' ...", path, name)
#define QL_CHECK(cond, ...)                                  \
    do {                                                     \
        if (!(cond)) ::quantlens::fail(__VA_ARGS__);         \
    } while (0)
