#include "model/inspect_json.h"

#include "core/ggml_type.h"

namespace quantlens {

namespace {

nlohmann::ordered_json config_json(const ModelConfig& c) {
    nlohmann::ordered_json j;
    j["arch"] = arch_name(c.arch);
    j["hf_architecture"] = c.hf_architecture;
    j["gguf_arch"] = c.gguf_arch;
    j["n_layers"] = c.n_layers;
    j["hidden"] = c.hidden;
    j["n_heads"] = c.n_heads;
    j["n_kv_heads"] = c.n_kv_heads;
    j["head_dim"] = c.head_dim;
    j["ffn"] = c.ffn;
    j["vocab"] = c.vocab;
    j["n_experts"] = c.n_experts;
    j["n_experts_used"] = c.n_experts_used;
    j["rope_theta"] = c.rope_theta;
    j["rms_eps"] = c.rms_eps;
    j["tie_embeddings"] = c.tie_embeddings;
    return j;
}

}  // namespace

nlohmann::ordered_json model_inspect_json(const Model& m) {
    const ModelConfig& c = m.config();
    nlohmann::ordered_json j;
    j["source"] = m.source() == Model::Source::Gguf ? "gguf" : "huggingface";
    j["config"] = config_json(c);
    nlohmann::ordered_json tensors = nlohmann::ordered_json::array();
    for (const TensorInfo& t : m.tensors()) {
        nlohmann::ordered_json e;
        e["name"] = t.name;
        e["hf_name"] = t.hf_name;
        e["ne"] = t.ne;
        e["type"] = ggml_type_display_name(t.type);
        e["params"] = t.n_elements();
        e["bytes"] = t.nbytes();
        e["layer"] = t.layer;
        e["role"] = role_name(t.role);
        e["quantizable"] = t.quantizable;
        tensors.push_back(std::move(e));
    }
    j["tensors"] = std::move(tensors);
    j["totals"] = {{"tensors", m.tensors().size()},
                   {"layers", c.n_layers},
                   {"params", m.total_params()},
                   {"bytes", m.total_bytes()},
                   {"bits_per_weight", bits_per_weight(static_cast<double>(m.total_bytes()),
                                                       static_cast<double>(m.total_params()))}};
    return j;
}

}  // namespace quantlens
