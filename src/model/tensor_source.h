// A dequantizing tensor source: the weights of a (possibly quantized) checkpoint, addressed
// by GGUF tensor name and returned as floats in GGUF layout, whatever the file stores.
//
// This is what `quantlens compare` reads its QUANT side through, so a new checkpoint format
// only has to implement this interface:
//  - GGUF files (any mix of ggml types) are the first implementation, through Model;
//  - GPTQ / AWQ safetensors checkpoints (qweight/qzeros/scales/g_idx per linear layer) are
//    the planned next ones: such a source maps its HF module names to GGUF names with
//    model/names.h, dequantizes each linear layer to float and reports a storage
//    description such as "GPTQ-4b-g128" with the bits per weight of its packing. Their
//    non-quantized tensors (norms, embeddings) come from the same safetensors files.
//
// Promises of every implementation:
//  - tensors() lists every tensor once, in a stable order, with ne in ggml order;
//  - read_f32 fills exactly n_elements floats, is thread-safe, and throws Error naming the
//    file and the tensor on anything it cannot decode;
//  - a tensor that llama.cpp would permute (llama q/k rows) is returned permuted, as
//    Model does, so values compare element by element with Model::read_f32 of the FP model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "formats/model_config.h"

namespace quantlens {

class Model;

struct SourceTensor {
    std::string name;         // GGUF name
    std::vector<int64_t> ne;  // ggml order
    // Storage as a ggml type when the format has one (GGUF); nullopt for foreign packings.
    std::optional<GgmlType> ggml_type;
    std::string storage;  // "Q4_K", "F32", "GPTQ-4b-g128", ...
    uint64_t nbytes = 0;  // bytes the tensor occupies in the checkpoint
    int64_t n_elements() const;
    double bpw() const;  // 8 · nbytes / n_elements
};

class TensorSource {
  public:
    virtual ~TensorSource() = default;
    virtual const std::string& path() const = 0;
    virtual std::string format() const = 0;  // "gguf", later "gptq", "awq"
    // The architecture the checkpoint declares, when it declares one.
    virtual std::optional<ModelConfig> config() const = 0;
    virtual const std::vector<SourceTensor>& tensors() const = 0;
    const SourceTensor* find(const std::string& name) const;
    virtual void read_f32(const SourceTensor& tensor, std::span<float> out) const = 0;
    std::vector<float> read_f32(const SourceTensor& tensor) const;
    // The stored bytes in GGUF layout when the checkpoint holds the tensor as a ggml type
    // (GGUF files; valid while the source lives), empty otherwise.
    virtual std::span<const uint8_t> raw(const SourceTensor& tensor) const { return {}; }
    // Identifies the checkpoint's bytes (xxHash64 hex), for job stores.
    virtual std::string content_hash() const = 0;
};

// Opens a quantized checkpoint: a .gguf file (any types). A Hugging Face directory whose
// config.json declares a quantization_config (GPTQ, AWQ, ...) is recognised and rejected
// with an Error naming its quant_method until a reader for it exists; a plain HF directory
// is read through Model (unquantized, every tensor F32/F16/BF16).
std::unique_ptr<TensorSource> open_tensor_source(const std::string& path);
// Adapts an opened Model (the GGUF implementation); the source owns it.
std::unique_ptr<TensorSource> tensor_source_of(std::unique_ptr<Model> model);

}  // namespace quantlens
