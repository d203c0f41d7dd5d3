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
    // The layer features beyond Llama's, so a user sees what the engine will compute.
    j["rope_dims"] = c.rotary_dims();
    j["rope_scaling"] = c.rope_scaling.kind == RopeScaling::Kind::None     ? "none"
                        : c.rope_scaling.kind == RopeScaling::Kind::Linear ? "linear"
                        : c.rope_scaling.kind == RopeScaling::Kind::Llama3 ? "llama3"
                        : c.rope_scaling.kind == RopeScaling::Kind::Yarn   ? "yarn"
                                                                           : "longrope";
    if (c.rope_theta_swa > 0) j["rope_theta_sliding"] = c.rope_theta_swa;
    j["activation"] = c.act == Activation::SiLU ? "silu" : "gelu_pytorch_tanh";
    j["sliding_window"] = c.sliding_window;
    nlohmann::ordered_json sliding = nlohmann::ordered_json::array();
    for (int64_t l = 0; l < c.n_layers; ++l)
        if (c.is_sliding(l)) sliding.push_back(l);
    j["sliding_layers"] = sliding;
    if (c.attn_softcap > 0) j["attn_softcap"] = c.attn_softcap;
    if (c.final_softcap > 0) j["final_softcap"] = c.final_softcap;
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
