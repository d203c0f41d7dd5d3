// What the CUDA test files share: the skip on a machine without a usable GPU (CI has none) and
// the example model they run.
#pragma once

#include <gtest/gtest.h>

#include <string>

#include "engine/cuda/cuda_engine.h"

namespace quantlens::test_support {

inline const std::string kExampleLlama = std::string(QL_SOURCE_DIR) + "/examples/models/llama-8m";

}  // namespace quantlens::test_support

#define SKIP_WITHOUT_GPU()                                 \
    do {                                                   \
        std::string why;                                   \
        if (!::quantlens::cuda::device_available(&why))    \
            GTEST_SKIP() << "CUDA tests skipped: " << why; \
    } while (0)
