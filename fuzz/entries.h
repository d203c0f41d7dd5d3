// Fuzz entry points, one per parser. Each feeds arbitrary bytes to a parser and exercises
// what a caller would do with the result. Bad input must end in quantlens::Error; any
// other exception, a crash or a sanitizer report is a bug. Shared by the libFuzzer targets
// (fuzz_*.cpp) and the corpus replay test in ctest (tests/formats/test_fuzz_corpus.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace quantlens::fuzz {

// Return true when the input parsed, false when it was rejected with quantlens::Error.
bool gguf_entry(const uint8_t* data, size_t size);
bool safetensors_entry(const uint8_t* data, size_t size);
bool config_entry(const uint8_t* data, size_t size);

}  // namespace quantlens::fuzz
