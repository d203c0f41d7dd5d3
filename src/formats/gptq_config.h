// The `quantization_config` of a GPTQ checkpoint written from a GPTQ recipe (recipe.h,
// `plan --format gptq --export-gptq FILE`), in the form GPTQModel writes and vLLM and
// transformers read:
//   { "quant_method": "gptq", "checkpoint_format": "gptq", "bits": 4, "group_size": 128,
//     "sym": true, "desc_act": false, "lm_head": false, "damp_percent": 0.01,
//     "true_sequential": true,
//     "dynamic": { "+:^model\\.layers\\.0\\.mlp\\.down_proj$": {"bits": 8, "group_size": 128,
//                                                             "sym": true},
//                  "-:^model\\.embed_tokens$": {}, ... } }
// Rules (each a refusal naming the tensor when the recipe breaks it):
//  - only GPTQ's formats: bits 2/3/4/8, groups 32/64/128/−1 (core/gptq_format.h); a ggml
//    recipe's quantized types have no GPTQ equivalent and are refused, never rounded to one;
//  - one anchored pattern per module (`^…$`, every metacharacter escaped), so GPTQModel's
//    and vLLM's first-match lookups agree whatever the order;
//  - vLLM fuses q/k/v into qkv_proj and gate/up into gate_up_proj and looks the fused name up:
//    their formats must agree, and one pattern names the parts and the fused module;
//  - vLLM picks one kernel for the model from the base: Marlin when the base is symmetric 4
//    or 8-bit, and Marlin takes nothing else. When any module uses another format, the base
//    is one of those (the most common), so the GPTQ (ExLlama) kernel serves every module;
//  - every module the recipe leaves unquantized (embeddings, lm_head, router `mlp.gate`,
//    norms, anything else) is excluded with `-:`; lm_head is quantized only when the recipe
//    says so (then "lm_head": true).
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "formats/recipe.h"

namespace quantlens {

// model_tensors: (GGUF name, Hugging Face tensor name) of every tensor of the model.
std::string gptq_quantization_config(
    const Recipe& recipe, const std::vector<std::pair<std::string, std::string>>& model_tensors);

// vLLM's fused module for a HF module path ("…self_attn.q_proj" → "…self_attn.qkv_proj"),
// or "" when vLLM keeps it as it is.
std::string vllm_fused_module(const std::string& hf_module);

}  // namespace quantlens
