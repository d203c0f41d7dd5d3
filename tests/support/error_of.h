// Test helper (header-only): the message of the quantlens::Error a call throws, so a test can
// assert what the message names (file, key, tensor, expectation).
#pragma once

#include <functional>
#include <string>

#include "core/error.h"

namespace quantlens::test_support {

// The what() of the Error `fn` throws, or `none` when it returns normally (any other
// exception propagates and fails the test).
inline std::string error_of(const std::function<void()>& fn, const std::string& none = "") {
    try {
        fn();
    } catch (const Error& e) {
        return e.what();
    }
    return none;
}

}  // namespace quantlens::test_support
