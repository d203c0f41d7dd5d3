// Hugging Face ↔ llama.cpp GGUF tensor names, and what each tensor is (role, layer,
// whether llama.cpp would quantize it). The mapping follows llama.cpp's converter
// (gguf-py tensor_mapping) for the architectures we support.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "formats/model_config.h"
#include "model/model.h"

namespace quantlens {

struct HfName {
    std::string gguf;  // "blk.3.attn_q.weight"; for an expert "blk.3.ffn_gate_exps.weight"
    int layer = -1;
    int expert = -1;  // ≥ 0 for one expert's slice of a stacked tensor
};

// Maps an HF tensor name of a model of this family (model/families); nullopt for names the
// family does not have (the caller reports them).
std::optional<HfName> hf_to_gguf(const std::string& hf_name, Arch arch);
// Every GGUF tensor an HF tensor becomes: one, or several when the converter splits it
// (Qwen3-Next's in_proj_qkvz → attn_qkv and attn_gate); empty for unknown names.
std::vector<HfName> hf_to_gguf_all(const std::string& hf_name, Arch arch);
// The same for a name of any registered family (the first one that has it).
std::optional<HfName> hf_to_gguf(const std::string& hf_name);

// The HF name (or, for stacked experts, the pattern with "{E}") of a GGUF tensor in a
// model of this architecture; "" when there is none.
std::string gguf_to_hf(const std::string& gguf_name, Arch arch);

// Role and layer from a GGUF name ("blk.3.ffn_down.weight" → FfnDown, 3).
TensorRole role_from_gguf_name(const std::string& gguf_name);
int layer_from_gguf_name(const std::string& gguf_name);  // -1 outside blocks

// Inverse of role_name(); nullopt if unknown. Lets recipes and CLI filters name roles.
std::optional<TensorRole> role_from_name(const std::string& name);

// Groups of a layer's matrices, for the selections that name them (the sweep's placement
// units, the Linear layers GPTQ quantizes).
bool is_attention_projection(TensorRole role);  // attn_q, attn_k, attn_v, attn_output
bool is_dense_mlp(TensorRole role);             // ffn_gate, ffn_up, ffn_down
bool is_routed_experts(TensorRole role);        // ffn_{gate,up,down}_exps (stacked)
bool is_shared_expert(TensorRole role);         // ffn_{gate,up,down}_shexp

// llama.cpp quantizes 2-D+ weights except norms, the MoE routers and Gemma's
// per_layer_model_proj (llama-quantize keeps it as it is).
bool is_quantizable(TensorRole role, const std::vector<int64_t>& ne);

// Expected ggml shape (ne) of a tensor of this role in a model with this config; empty
// when the role has no fixed shape (Other).
std::vector<int64_t> expected_ne(TensorRole role, const ModelConfig& config);

// The same for a tensor of block `layer` (-1 outside blocks): Gemma 4's layers have their
// own head size, KV heads and MLP width (ModelConfig::gemma4_layers).
std::vector<int64_t> expected_ne_in_layer(TensorRole role, const ModelConfig& config, int layer);

std::string format_shape(const std::vector<int64_t>& dims);  // "[256, 4096]"

// Whether two ggml shapes are equal but for trailing 1s (HF's Linear(C, 1) is [C, 1] where
// llama.cpp's converter may write [C]).
bool same_shape(std::vector<int64_t> a, std::vector<int64_t> b);

}  // namespace quantlens
