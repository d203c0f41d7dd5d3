// DeepSeek-V3-style MoE pieces (see sigmoid_moe.h).
#include "model/families/sigmoid_moe.h"

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/families/blocks.h"

namespace quantlens::sigmoid_moe {

std::vector<TensorName> tensors() {
    return blocks::concat({blocks::dense_mlp(),
                           blocks::qwen_moe(),
                           {{"mlp.shared_experts.gate_proj", "ffn_gate_shexp"},
                            {"mlp.shared_experts.up_proj", "ffn_up_shexp"},
                            {"mlp.shared_experts.down_proj", "ffn_down_shexp"},
                            {"mlp.gate.e_score_correction", "exp_probs_b"}}});
}

namespace {

// A string-valued key, "" when absent or null.
std::string get_string(const HfConfigJson& cfg, const char* key) {
    const auto it = cfg.j.find(key);
    if (it == cfg.j.end() || it->is_null()) return "";
    QL_CHECK(it->is_string(), "{}: \"{}\" is {}, expected a string", cfg.path, key, it->dump());
    return it->get<std::string>();
}

void check_groups(const ModelConfig& c, const std::string& where) {
    QL_CHECK(c.n_expert_groups > 0 && c.n_experts % c.n_expert_groups == 0 &&
                 c.n_expert_groups_used > 0 && c.n_expert_groups_used <= c.n_expert_groups,
             "{}: {} experts in {} groups with {} used; expected equal groups and 1 to {} used",
             where, c.n_experts, c.n_expert_groups, c.n_expert_groups_used, c.n_expert_groups);
    // A group's score is the sum of its two best experts' (transformers' topk(2)).
    QL_CHECK(c.n_expert_groups == 1 || c.n_experts / c.n_expert_groups >= 2,
             "{}: {} experts in {} groups leaves fewer than the two per group that group scores "
             "add",
             where, c.n_experts, c.n_expert_groups);
    QL_CHECK(c.n_experts_used <= (c.n_experts / c.n_expert_groups) * c.n_expert_groups_used,
             "{}: {} experts used per token, but the {} chosen groups hold only {}", where,
             c.n_experts_used, c.n_expert_groups_used,
             (c.n_experts / c.n_expert_groups) * c.n_expert_groups_used);
    QL_CHECK(c.n_dense_layers >= 0 && c.n_dense_layers <= c.n_layers,
             "{}: {} leading dense layers of {}", where, c.n_dense_layers, c.n_layers);
}

}  // namespace

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    c.n_experts = cfg.require_positive("n_routed_experts");
    c.n_experts_used = cfg.require_positive("num_experts_per_tok");
    c.ffn = cfg.require_positive("moe_intermediate_size");
    c.dense_ffn = cfg.require_positive("intermediate_size");
    c.n_dense_layers = cfg.get_int("first_k_dense_replace", 0);
    const int64_t shared = cfg.get_int("n_shared_experts", 0);
    QL_CHECK(shared >= 0, "{}: \"n_shared_experts\" is {}, expected ≥ 0", cfg.path, shared);
    c.shared_expert_ffn = shared * c.ffn;
    c.shared_expert = shared > 0 ? SharedExpert::Ungated : SharedExpert::None;
    c.hf_has_expert_groups = cfg.j.contains("n_group") || cfg.j.contains("topk_group");
    c.n_expert_groups = cfg.get_int("n_group", 1);
    c.n_expert_groups_used = cfg.get_int("topk_group", 1);
    c.moe_renormalize = cfg.get_bool("norm_topk_prob", true);
    c.moe_weights_scale = cfg.get_float("routed_scaling_factor", 1.0);
    c.moe_sigmoid = true;
    QL_CHECK(c.moe_weights_scale > 0, "{}: \"routed_scaling_factor\" is {}, expected positive",
             cfg.path, c.moe_weights_scale);
    // transformers routes these models by sigmoid whatever the config says; llama.cpp follows
    // scoring_func. Anything else would be computed two ways.
    const std::string scoring = get_string(cfg, "scoring_func");
    c.hf_has_scoring_func = !scoring.empty();
    QL_CHECK(scoring.empty() || scoring == "sigmoid",
             "{}: \"scoring_func\" is \"{}\"; {} routes by sigmoid scores only", cfg.path, scoring,
             cfg.family);
    const std::string method = get_string(cfg, "topk_method");
    QL_CHECK(method.empty() || method == "noaux_tc",
             "{}: \"topk_method\" is \"{}\"; quantlens implements noaux_tc (grouped top-k with "
             "e_score_correction_bias) only",
             cfg.path, method);
    QL_CHECK(cfg.get_int("moe_layer_freq", 1) == 1,
             "{}: \"moe_layer_freq\" is {}; MoE layers every other layer are not implemented",
             cfg.path, cfg.get_int("moe_layer_freq", 1));
    if (const auto it = cfg.j.find("mlp_layer_types"); it != cfg.j.end() && !it->is_null()) {
        bool matches = it->is_array() && static_cast<int64_t>(it->size()) == c.n_layers;
        for (size_t l = 0; matches && l < it->size(); ++l)
            matches = (*it)[l] == (static_cast<int64_t>(l) < c.n_dense_layers ? "dense" : "sparse");
        QL_CHECK(matches,
                 "{}: \"mlp_layer_types\" is {}; quantlens implements {} leading dense layers "
                 "(first_k_dense_replace) followed by sparse ones only",
                 cfg.path, it->dump(), c.n_dense_layers);
    }
    c.n_nextn_layers = cfg.get_int("num_nextn_predict_layers", 0);
    c.hf_has_nextn = cfg.j.contains("num_nextn_predict_layers");
    check_groups(c, cfg.path);
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    const std::string p = c.gguf_arch + ".";
    QL_CHECK(c.n_experts > 0 && c.n_experts_used > 0,
             "{}: {} without {}expert_count / {}expert_used_count is not implemented", g.path(),
             c.gguf_arch, p, p);
    c.ffn = blocks::gguf_required(g, c, "expert_feed_forward_length");
    c.dense_ffn = blocks::gguf_int(g, c, "feed_forward_length", 0);
    c.n_dense_layers = blocks::gguf_int(g, c, "leading_dense_block_count", 0);
    QL_CHECK(c.n_dense_layers == 0 || c.dense_ffn > 0, "{}: {} leading dense layers without {}",
             g.path(), c.n_dense_layers, p + "feed_forward_length");
    const int64_t shared = blocks::gguf_int(g, c, "expert_shared_count", 0);
    c.shared_expert_ffn = shared * c.ffn;
    c.shared_expert = shared > 0 ? SharedExpert::Ungated : SharedExpert::None;
    c.n_expert_groups = std::max<int64_t>(1, blocks::gguf_int(g, c, "expert_group_count", 1));
    c.n_expert_groups_used =
        std::max<int64_t>(1, blocks::gguf_int(g, c, "expert_group_used_count", 1));
    const GgufValue* scale = g.find(p + "expert_weights_scale");
    c.moe_weights_scale = scale ? scale->as_float() : 1.0;
    const GgufValue* norm = g.find(p + "expert_weights_norm");
    c.moe_renormalize = norm ? norm->as_bool() : false;
    // llama.cpp: an absent gating function means softmax for deepseek2 (V2 files).
    const int64_t gating = blocks::gguf_int(g, c, "expert_gating_func", 0);
    QL_CHECK(gating == 2,
             "{}: {}expert_gating_func is {}; quantlens implements this architecture's sigmoid "
             "routing (2) only",
             g.path(), p,
             gating == 0 ? std::string("absent (softmax for llama.cpp)") : std::to_string(gating));
    c.moe_sigmoid = true;
    const int64_t nextn = blocks::gguf_int(g, c, "nextn_predict_layers", 0);
    QL_CHECK(nextn == 0,
             "{}: {}nextn_predict_layers is {}: the file's last blocks are multi-token-prediction "
             "layers, which quantlens does not implement",
             g.path(), p, nextn);
    check_groups(c, g.path());
}

void put(GgufKeys& keys, const ModelConfig& c, const char* key, GgufValue value) {
    const std::string name = c.gguf_arch + "." + key;
    for (auto& [k, v] : keys) {
        if (k != name) continue;
        v = std::move(value);
        return;
    }
    keys.emplace_back(name, std::move(value));
}

void write_gguf_text_model(const ModelConfig& c, GgufKeys& keys, int64_t head_count_kv,
                           int64_t block_count) {
    blocks::add_u32(keys, c, "block_count", block_count);
    blocks::add_keys(keys, c, {"context_length", "embedding_length"});
    blocks::add_u32(keys, c, "feed_forward_length", c.dense_ffn_width());
    blocks::add_keys(keys, c, {"attention.head_count"});
    blocks::add_u32(keys, c, "attention.head_count_kv", head_count_kv);
    const RopeScaling& s = c.rope_scaling;
    QL_CHECK(s.kind == RopeScaling::Kind::None || s.kind == RopeScaling::Kind::Yarn,
             "{}: a rope scaling other than yarn, which llama.cpp's {} converter does not write",
             c.hf_architecture, c.gguf_arch);
    // llama.cpp floors/ceils the ramp's ends (ggml_rope_yarn_corr_dims) for these graphs.
    QL_CHECK(s.kind != RopeScaling::Kind::Yarn || s.yarn_truncate,
             "{}: yarn with \"truncate\": false, which llama.cpp's {} graph does not compute",
             c.hf_architecture, c.gguf_arch);
    if (s.kind == RopeScaling::Kind::Yarn) blocks::add_yarn_keys(keys, c, c.hf_has_yarn_betas);
    blocks::add_keys(keys, c,
                     {"rope.freq_base", "attention.layer_norm_rms_epsilon", "expert_count",
                      "expert_used_count"});
    if (c.hf_has_expert_groups) {
        blocks::add_u32(keys, c, "expert_group_count", c.n_expert_groups);
        blocks::add_u32(keys, c, "expert_group_used_count", c.n_expert_groups_used);
    }
    if (c.hf_has_scoring_func) blocks::add_u32(keys, c, "expert_gating_func", 2);  // sigmoid
    if (c.hf_has_head_dim) {
        blocks::add_u32(keys, c, "attention.key_length", c.head_dim);
        blocks::add_u32(keys, c, "attention.value_length", c.head_dim);
    }
}

void check_for_llama_cpp(const ModelConfig& c) {
    // llama.cpp groups experts only with both keys; the converter writes them only when
    // config.json has them.
    QL_CHECK(c.hf_has_expert_groups || c.n_expert_groups == 1,
             "{}: expert groups without n_group/topk_group in config.json, which llama.cpp's "
             "converter would not write",
             c.hf_architecture);
}

}  // namespace quantlens::sigmoid_moe
