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
//    NAME.counts F32 [1, n_mat]; value = in_sum2 / count per matrix.
// Values kept here are already divided: the per-column mean of x².
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace quantlens {

struct ImatrixEntry {
    std::string name;             // GGUF tensor name, e.g. blk.0.attn_q.weight
    int64_t n_values = 0;         // n_per_row × n_mat
    std::vector<int64_t> counts;  // calls (legacy: one for all) or tokens per matrix (GGUF)
    std::vector<float> values;    // per-column mean of x², [n_mat][n_per_row]
};

class Imatrix {
  public:
    // Detects the format by its first bytes; throws Error naming the file and the problem.
    static Imatrix load(const std::string& path);
    static Imatrix parse_legacy(std::span<const uint8_t> bytes, const std::string& name);

    const std::string& path() const { return path_; }
    const std::vector<ImatrixEntry>& entries() const { return entries_; }
    const std::vector<std::string>& datasets() const { return datasets_; }
    int64_t chunk_count() const { return chunk_count_; }

    const ImatrixEntry* find(const std::string& tensor) const;
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
};

}  // namespace quantlens
