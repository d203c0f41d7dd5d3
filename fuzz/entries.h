// Fuzz entry points, one per parser. Each feeds arbitrary bytes to a parser and exercises
// what a caller would do with the result. Bad input must end in quantlens::Error; any
// other exception, a crash or a sanitizer report is a bug. Shared by the libFuzzer targets
// (fuzz_*.cpp) and the corpus replay test in ctest (tests/formats/test_fuzz_corpus.cpp).
//
// Inputs made of several files are split on separators a fuzzer learns from the seeds:
//   tokenizer:  tokenizer.json, a NUL byte, then the text to encode (any bytes);
//   st_index:   model.safetensors.index.json, then per shard "\n--- NAME\n" and its bytes;
//   server:     "METHOD TARGET" (first line), then the request body.
// Entries that read files (tokenizer, st_index, zoo, server) work in a scratch folder of
// their own under $TMPDIR, removed at exit, so parallel fuzzer processes do not collide.
#pragma once

#include <cstddef>
#include <cstdint>

namespace quantlens::fuzz {

// Return true when the input parsed, false when it was rejected with quantlens::Error.
bool gguf_entry(const uint8_t* data, size_t size);
bool safetensors_entry(const uint8_t* data, size_t size);
bool config_entry(const uint8_t* data, size_t size);
bool imatrix_entry(const uint8_t* data, size_t size);  // legacy .dat or GGUF, by magic
bool recipe_entry(const uint8_t* data, size_t size);   // JSON or YAML
bool tokenizer_entry(const uint8_t* data, size_t size);
bool st_index_entry(const uint8_t* data, size_t size);
bool zoo_entry(const uint8_t* data, size_t size);
bool params_entry(const uint8_t* data, size_t size);  // a job's params column
bool mixes_entry(const uint8_t* data, size_t size);   // a sweep job's stored mixes (JSON)
// True when the reply is a 2xx; false for 4xx. A 5xx (internal error) is a bug.
bool server_entry(const uint8_t* data, size_t size);

}  // namespace quantlens::fuzz
