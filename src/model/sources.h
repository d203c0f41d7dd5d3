// The two Model implementations, opened by Model::open (internal to src/model).
#pragma once

#include <memory>
#include <string>

#include "formats/safetensors.h"
#include "model/families/family.h"
#include "model/model.h"

namespace quantlens::detail {

std::unique_ptr<Model> open_hf_model(const std::string& dir);
std::unique_ptr<Model> open_gguf_model(const std::string& path);

// Derived HF tensors (Family::derive_hf, model/hf_derived.cpp). derived_shape validates the
// HF tensor (and, for MXFP4 blocks, its scales) and gives the GGUF shape and storage type;
// mxfp4_to_ggml repacks the released blocks/scales of output rows offset, offset + stride, ...
// into ggml block_mxfp4 rows; derived_read_f32 fills GGUF-layout floats (from `mxfp4`, the
// repacked bytes, for MXFP4 tensors).
struct DerivedShape {
    std::vector<int64_t> ne;
    GgmlType type = GgmlType::F32;
};
DerivedShape derived_shape(const HfDerivedTensor& derived, const StTensor& hf,
                           const StTensor* mxfp4_scales);
std::vector<uint8_t> mxfp4_to_ggml(const StTensor& blocks, const StTensor& scales, int stride,
                                   int offset);
void derived_read_f32(const HfDerivedTensor& derived, const StTensor& hf, const DerivedShape& shape,
                      std::span<const uint8_t> mxfp4, std::span<float> out);

// Throws Error naming `file` and the tensor when `ne` disagrees with the shape the config
// implies for its role (trailing dimensions of 1 are ignored). `config_source` names
// where the config came from ("config.json", "GGUF metadata").
void check_shape(const TensorInfo& t, const ModelConfig& config, const std::string& file,
                 const char* config_source);

}  // namespace quantlens::detail
