// Importance matrices (imatrix) as llama.cpp writes them: per weight tensor, the per-column
// mean of x² over the calibration tokens that reached it (the input's second moment), which
// the quantizers use as per-column importance weights.
//
// Formats read:
//  - legacy .dat (little-endian): i32 n_entries; n_entries × { i32 name_len, name bytes,
//    i32 n_calls, i32 n_values, f32 values[n_values] } where values are stored as
//    mean × n_calls; optionally followed by i32 last_chunk, i32 dataset_len, dataset bytes.
//    n_values = n_per_row × n_mat (n_mat = experts for stacked MoE tensors).
//  - GGUF (general.type = "imatrix"): per weight NAME.in_sum2 F32 [n_per_row, n_mat] and
//    NAME.counts F32 [1, n_mat]; value = in_sum2 / count per matrix, and 1 in every column
//    of a matrix whose count is 0 (an expert no calibration token was routed to), as
//    llama.cpp's quantize loads it; zero_count_matrices() lists those fallbacks.
// Values kept here are already divided: the per-column mean of x².
//
// Writers (write_imatrix_legacy / write_imatrix_gguf) produce what llama-imatrix writes:
// entries sorted by name; legacy n_calls = ceil(max tokens / chunk_size) and values
// mean × n_calls (a matrix no token reached stores 1 × n_calls, as llama.cpp does), then the
// chunk count and the dataset name; GGUF general.type, imatrix.datasets, imatrix.chunk_count,
// imatrix.chunk_size (u32) and per entry NAME.in_sum2 = mean × tokens, NAME.counts = tokens.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/output_file.h"

namespace quantlens {

struct ImatrixEntry {
    std::string name;             // GGUF tensor name, e.g. blk.0.attn_q.weight
    int64_t n_values = 0;         // n_per_row × n_mat
    std::vector<int64_t> counts;  // calls (legacy: one for all) or tokens per matrix (GGUF)
    std::vector<float> values;    // per-column mean of x², [n_mat][n_per_row]
};

// One matrix (expert) of a tensor whose importance is the fallback 1 (count 0).
struct ImatrixFallback {
    std::string tensor;
    int64_t matrix = 0;
};

class Imatrix {
  public:
    // Detects the format by its first bytes; throws Error naming the file and the problem.
    static Imatrix load(const std::string& path);
    static Imatrix parse_legacy(std::span<const uint8_t> bytes, const std::string& name);
    // An in-memory GGUF imatrix (fuzzing, tests); values are copied out of `bytes`.
    static Imatrix parse_gguf(std::span<const uint8_t> bytes, const std::string& name);

    const std::string& path() const { return path_; }
    const std::vector<ImatrixEntry>& entries() const { return entries_; }
    const std::vector<std::string>& datasets() const { return datasets_; }
    int64_t chunk_count() const { return chunk_count_; }

    const ImatrixEntry* find(const std::string& tensor) const;
    // GGUF imatrix matrices with a token count of 0, whose importance is the fallback 1.
    std::vector<ImatrixFallback> zero_count_matrices() const;
    // Importance weights (n_per_row floats) of matrix `mat` of a tensor holding n_mat
    // matrices (experts) of rows of n_per_row; nullptr when the imatrix has no entry for it.
    // Throws Error naming the file and the tensor when the entry's length is not
    // n_per_row × n_mat.
    const float* importance(const std::string& tensor, int64_t n_per_row, int64_t n_mat = 1,
                            int64_t mat = 0) const;

  private:
    std::string path_;
    std::vector<ImatrixEntry> entries_;
    std::vector<std::string> datasets_;
    int64_t chunk_count_ = 0;
    bool gguf_ = false;  // per-matrix token counts (GGUF) rather than shared call counts
};

// What the writers need besides the entries. Entry counts given to a writer are TOKENS per
// matrix (n_mat of them, or one shared by all matrices), as GGUF stores them; an Imatrix
// loaded from a legacy file holds call counts instead (multiply by chunk_size first).
struct ImatrixWriteInfo {
    int64_t chunk_size = 512;                 // tokens per chunk (llama.cpp: n_ctx / n_parallel)
    int64_t chunk_count = 0;                  // chunks processed
    std::vector<std::string> datasets;        // calibration text names (legacy keeps the last)
    Overwrite overwrite = Overwrite::refuse;  // an existing file: refused unless replace
};

// Throw Error naming the path (and the entry) when an entry is inconsistent or the file
// cannot be written. Both write through OutputFile (core/output_file.h).
void write_imatrix_legacy(const std::string& path, const std::vector<ImatrixEntry>& entries,
                          const ImatrixWriteInfo& info);
void write_imatrix_gguf(const std::string& path, const std::vector<ImatrixEntry>& entries,
                        const ImatrixWriteInfo& info);
// GGUF when the path ends in ".gguf", legacy otherwise.
void write_imatrix(const std::string& path, const std::vector<ImatrixEntry>& entries,
                   const ImatrixWriteInfo& info);

}  // namespace quantlens
