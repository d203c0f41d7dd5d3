#include "core/error.h"

namespace quantlens::detail {

void assertion_failed(const char* condition, const char* file, int line) {
    throw InternalError(fmt::format("internal error: assertion '{}' failed at {}:{}", condition,
                                    file, line));
}

}  // namespace quantlens::detail
