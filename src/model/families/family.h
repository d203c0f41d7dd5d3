// Model families: each supported architecture is one `Family` value, defined in one file of
// this folder (llama.cpp, qwen2moe.cpp, ...) by a function `const Family& <name>_family()`,
// listed once in registry.cpp, with its id in `Arch` (formats/model_config.h).
//
// A family is data plus a few hooks:
//  - identity: HF architectures[0], config.json model_type, GGUF general.architecture and a
//    display name;
//  - config: what it reads beyond the shared fields (read_hf / read_gguf, after
//    read_hf_shared_fields / read_gguf_shared_fields), which sets its LayerSpec (the layer
//    description the engines consume), its FFN width and experts, and refuses its own
//    unimplemented keys; and the ARCH.* keys it writes to a GGUF (write_gguf);
//  - tensors: its HF ↔ GGUF name pairs, whose roles and shapes are the shared ones of
//    model/names.h.
// Families are assembled from the shared pieces in blocks.h, never copied from each other.
//
// Contract: exactly one family has a given HF architecture and a given model_type; for a
// GGUF general.architecture, at most one family's claims_gguf() accepts a given file.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "formats/model_config.h"

namespace quantlens {

// One tensor of a layer: the HF name after "model.layers.N." and the GGUF base name after
// "blk.N.", both without the ".weight"/".bias" suffix (which carries over unchanged).
// "{E}" in `hf` stands for an expert index: the GGUF tensor stacks all experts. Several
// entries may share an `hf` when the converter splits that tensor (Qwen3-Next's in_proj_qkvz).
struct TensorName {
    std::string hf;    // "self_attn.q_proj", "block_sparse_moe.experts.{E}.w1"
    std::string gguf;  // "attn_q", "ffn_gate_exps"
    // A bare parameter: the HF name has no .weight/.bias and maps to `gguf` as written
    // (Qwen3-Next's linear_attn.A_log ↔ ssm_a, linear_attn.dt_bias ↔ ssm_dt.bias).
    bool bare = false;
};

// A model-level tensor (outside the layers), with full names.
struct GlobalTensorName {
    std::string hf;    // "model.embed_tokens.weight"
    std::string gguf;  // "token_embd.weight"
};

// ARCH.* GGUF keys in the converter's order (same type as analysis' GgufKvList).
using GgufKeys = std::vector<std::pair<std::string, GgufValue>>;

// A GGUF tensor that is more than a renamed (or per-expert stacked) HF tensor: gpt-oss
// stores its experts stacked and transposed, gate and up interleaved in one tensor, biases
// without a ".bias" name, and in its released form as MXFP4 blocks plus scales.
struct HfDerivedTensor {
    std::string gguf;  // full GGUF name: "blk.3.ffn_up_exps.weight"
    int layer = -1;
    // Expert tensors [E, IN, OUT·stride] (biases [E, OUT·stride]): GGUF row o of expert e is
    // HF column o·stride + offset (stride 2 splits interleaved gate/up), so the matrix is
    // transposed into ne [IN, OUT, E] (biases: ne [OUT, E]). stride 0: copied as it is.
    int stride = 0;
    int offset = 0;
    // Set for MXFP4 weights: the HF tensor holds the blocks [E, OUT·stride, IN/32, 16]
    // (uint8, element 2j in byte j's low nibble, 2j+1 in its high nibble) and this names
    // its E8M0 scales [E, OUT·stride, IN/32]; rows are already output features.
    std::string mxfp4_scales;
};

// Who a family is.
struct FamilyIdentity {
    Arch id;
    std::string name;             // display name: "llama", "qwen2moe"
    std::string hf_architecture;  // "LlamaForCausalLM"
    std::string model_type;       // "llama", "qwen2_moe"
    std::string gguf_arch;        // "llama"; Mistral and Mixtral files are "llama" too
};

// The default of FamilyHooks::claims_gguf: a family with a GGUF architecture of its own.
inline bool claims_every_gguf(const ModelConfig&) {
    return true;
}

// How a family reads and writes its config. The defaults are what most families have, so a
// family names only the hooks it sets and those that differ.
struct FamilyHooks {
    // Fields beyond read_hf_shared_fields: FFN width, experts, the LayerSpec, refusals.
    void (*read_hf)(const HfConfigJson& cfg, ModelConfig& config) = nullptr;
    // Whether a GGUF whose general.architecture is gguf_arch is this family, given the shared
    // fields already read (Mixtral is "llama" with experts). nullptr: never chosen from a GGUF
    // (a Mistral GGUF is read back as Llama, as llama.cpp does).
    bool (*claims_gguf)(const ModelConfig& shared) = claims_every_gguf;
    // Fields beyond read_gguf_shared_fields.
    void (*read_gguf)(const GgufFile& gguf, ModelConfig& config) = nullptr;
    // Every ARCH.* key, in the converter's order (the shared ones through blocks.h). Throws
    // Error for a config llama.cpp would evaluate differently from transformers (a value its
    // loader derives instead of reading), naming the config key.
    void (*write_gguf)(const ModelConfig& config, GgufKeys& keys) = nullptr;
    // ARCH.* keys the converter writes while generating its extra tensors, which come right
    // after general.architecture (Phi-3's rope.scaling.attn_factor); nullptr: none.
    void (*write_gguf_early)(const ModelConfig& config, GgufKeys& keys) = nullptr;
    // The gated MLP's activation in this family's transformers code; another value of
    // hidden_act / hidden_activation is refused.
    Activation activation = Activation::SiLU;
    // HF tensors this family derives rather than renames (gpt-oss): nullopt for a tensor
    // mapped through layer_tensors/globals, an empty list for one read as another's
    // companion (MXFP4 scales), else the GGUF tensors made from it. nullptr: none.
    std::optional<std::vector<HfDerivedTensor>> (*derive_hf)(const std::string& hf_name) = nullptr;
};

// model.embed_tokens / model.norm / lm_head ↔ token_embd / output_norm / output: the
// model-level tensors of every family but Gemma 4.
std::vector<GlobalTensorName> llama_globals();

// A family, written in its file as `static const Family f{{identity}, {hooks}, layer tensors}`
// (plus its globals where they are not Llama's).
struct Family : FamilyIdentity, FamilyHooks {
    Family(FamilyIdentity identity, FamilyHooks hooks, std::vector<TensorName> layer_tensors,
           std::vector<GlobalTensorName> globals = llama_globals())
        : FamilyIdentity(std::move(identity)),
          FamilyHooks(hooks),
          layer_tensors(std::move(layer_tensors)),
          globals(std::move(globals)) {}

    std::vector<TensorName> layer_tensors;
    std::vector<GlobalTensorName> globals;
};

// The registered families, in registry order (the order of messages listing them).
std::span<const Family* const> families();
const Family& family_of(Arch id);
// The family of this HF architecture, or when `hf_architecture` is empty of this
// model_type; nullptr when none is registered.
const Family* find_hf_family(const std::string& hf_architecture, const std::string& model_type);
// "LlamaForCausalLM, MistralForCausalLM, ...", and the GGUF architectures that can be read
// ("llama, qwen2, ..."), for refusals.
std::string registered_hf_architectures();
std::string registered_gguf_architectures();

}  // namespace quantlens
