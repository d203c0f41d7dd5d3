// How llama.cpp's converter rearranges a Gated DeltaNet hybrid's Hugging Face tensors
// (Qwen3-Next, Qwen3.5), as index maps an HF source applies when it reads them, so the
// model is seen in GGUF layout (model.h) and quantization sees the rows and blocks
// llama.cpp's file has:
//  - Qwen3-Next's in_proj_qkvz, grouped per q/k head as [q, k, v, z], becomes attn_qkv
//    (all q rows, all k rows, all v rows) and attn_gate (all z rows);
//  - Qwen3.5's value heads go from grouped (per q/k head) to tiled order: the v rows of
//    in_proj_qkv and the conv channels, the rows of in_proj_z/b/a, the elements of A_log and
//    dt_bias, and the columns of out_proj;
//  - conv1d [channels, 1, K] is squeezed to ne [K, channels]; A_log becomes −exp(A_log).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "formats/model_config.h"

namespace quantlens {

// out[r][c] = map(in[rows[r]][cols[c]]) over the HF tensor seen as [rows][cols] (its first
// dimension by the product of the others); an empty rows/cols is the identity.
struct HfGather {
    std::vector<int64_t> rows, cols;
    bool neg_exp = false;     // map = −exp (A_log → ssm_a), else the identity
    std::vector<int64_t> ne;  // the GGUF tensor's shape (ggml order)
};

// The gather for the GGUF tensor `gguf_base` ("attn_qkv", "ssm_conv1d", ...) read from the HF
// tensor `hf_rest` ("linear_attn.in_proj_qkvz") of HF shape `hf_shape`; nullopt when the
// converter copies it unchanged. `config` must be a hybrid (ModelConfig::is_hybrid).
std::optional<HfGather> deltanet_hf_gather(const ModelConfig& config, const std::string& gguf_base,
                                           const std::string& hf_rest,
                                           const std::vector<int64_t>& hf_shape);

// Applies a gather: `in` is the HF tensor as [in_rows][in_cols] floats; `out` receives
// rows.size() (or in_rows) × cols.size() (or in_cols) values.
void apply_hf_gather(const HfGather& g, const float* in, int64_t in_rows, int64_t in_cols,
                     float* out);

}  // namespace quantlens
