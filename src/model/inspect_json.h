// A checkpoint's structure as one JSON object: what `quantlens inspect --json` prints and
// what the web app's Models view shows (GET /api/models), from one function so the two
// cannot differ. Fields:
//   "source": "gguf" | "huggingface",
//   "config": { arch, hf_architecture, gguf_arch, n_layers, hidden, n_heads, n_kv_heads,
//               head_dim, ffn, vocab, n_experts, n_experts_used, rope_theta, rms_eps,
//               tie_embeddings },
//   "tensors": [ { name (GGUF), hf_name, ne (ggml order), type, params, bytes, layer, role,
//                  quantizable } ],
//   "totals": { tensors, layers, params, bytes, bits_per_weight }
#pragma once

#include <nlohmann/json.hpp>

#include "model/model.h"

namespace quantlens {

nlohmann::ordered_json model_inspect_json(const Model& model);

}  // namespace quantlens
