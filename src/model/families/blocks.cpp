// Shared pieces of the families (see blocks.h).
#include "model/families/blocks.h"

#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace quantlens {

std::vector<GlobalTensorName> llama_globals() {
    return {{"model.embed_tokens.weight", "token_embd.weight"},
            {"model.norm.weight", "output_norm.weight"},
            {"lm_head.weight", "output.weight"}};
}

}  // namespace quantlens

namespace quantlens::blocks {

std::vector<TensorName> attention() {
    return {{"self_attn.q_proj", "attn_q"},
            {"self_attn.k_proj", "attn_k"},
            {"self_attn.v_proj", "attn_v"},
            {"self_attn.o_proj", "attn_output"}};
}

std::vector<TensorName> norms_and_attention() {
    return concat({{{"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "ffn_norm"}},
                   attention()});
}

std::vector<TensorName> post_norm_attention() {
    return concat(
        {{{"input_layernorm", "attn_norm"}, {"post_attention_layernorm", "post_attention_norm"}},
         attention()});
}

std::vector<TensorName> qk_norm() {
    return {{"self_attn.q_norm", "attn_q_norm"}, {"self_attn.k_norm", "attn_k_norm"}};
}

std::vector<TensorName> dense_mlp() {
    return {
        {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"}, {"mlp.down_proj", "ffn_down"}};
}

namespace {

// The router and the stacked experts' gate, up and down projections (HF names under
// `experts`, whose "{E}" is the expert index).
std::vector<TensorName> routed_experts(const std::string& router, const std::string& experts,
                                       const char* gate, const char* up, const char* down) {
    return {{router, "ffn_gate_inp"},
            {experts + gate, "ffn_gate_exps"},
            {experts + up, "ffn_up_exps"},
            {experts + down, "ffn_down_exps"}};
}

}  // namespace

std::vector<TensorName> mixtral_moe() {
    return routed_experts("block_sparse_moe.gate", "block_sparse_moe.experts.{E}.", "w1", "w3",
                          "w2");
}

std::vector<TensorName> qwen_moe() {
    return routed_experts("mlp.gate", "mlp.experts.{E}.", "gate_proj", "up_proj", "down_proj");
}

std::vector<TensorName> qwen_moe_with_shared_expert() {
    return concat({qwen_moe(),
                   {{"mlp.shared_expert.gate_proj", "ffn_gate_shexp"},
                    {"mlp.shared_expert.up_proj", "ffn_up_shexp"},
                    {"mlp.shared_expert.down_proj", "ffn_down_shexp"},
                    {"mlp.shared_expert_gate", "ffn_gate_inp_shexp"}}});
}

std::vector<TensorName> fused_attention_and_mlp() {
    return {{"input_layernorm", "attn_norm"},    {"self_attn.qkv_proj", "attn_qkv"},
            {"self_attn.o_proj", "attn_output"}, {"post_attention_layernorm", "ffn_norm"},
            {"mlp.gate_up_proj", "ffn_up"},      {"mlp.down_proj", "ffn_down"}};
}

std::vector<TensorName> gemma_layer() {
    return concat({{{"input_layernorm", "attn_norm"},
                    {"post_attention_layernorm", "post_attention_norm"},
                    {"pre_feedforward_layernorm", "ffn_norm"},
                    {"post_feedforward_layernorm", "post_ffw_norm"}},
                   attention(),
                   dense_mlp()});
}

std::vector<TensorName> concat(std::initializer_list<std::vector<TensorName>> groups) {
    std::vector<TensorName> out;
    for (const auto& g : groups) out.insert(out.end(), g.begin(), g.end());
    return out;
}

void read_hf_dense_ffn(const HfConfigJson& cfg, ModelConfig& c) {
    c.ffn = cfg.require_positive("intermediate_size");
}

void read_hf_experts(const HfConfigJson& cfg, ModelConfig& c) {
    c.n_experts = cfg.get_int("num_local_experts", cfg.get_int("num_experts", 0));
    c.n_experts_used = cfg.get_int("num_experts_per_tok", 0);
    QL_CHECK(c.n_experts > 0, "{}: MoE architecture without num_local_experts/num_experts",
             cfg.path);
}

void read_hf_llama_attention(const HfConfigJson& cfg, ModelConfig& c) {
    const bool attention_bias = cfg.get_bool("attention_bias", false);
    QL_CHECK(!attention_bias,
             "{}: \"attention_bias\" is true; {} then also biases o_proj, which the engine does "
             "not apply",
             cfg.path, cfg.family);
    c.qkv_bias = cfg.get_bool("use_qkv_bias", false);
}

void refuse_hf_sliding_window(const HfConfigJson& cfg) {
    QL_CHECK(!cfg.get_bool("use_sliding_window", false),
             "{}: \"use_sliding_window\" is true; per-layer sliding windows of {} are not "
             "implemented",
             cfg.path, cfg.family);
}

void read_hf_llama(const HfConfigJson& cfg, ModelConfig& c) {
    read_hf_llama_attention(cfg, c);
    refuse_hf_sliding_window(cfg);
    read_hf_dense_ffn(cfg, c);
}

void read_hf_mistral_attention(const HfConfigJson& cfg, ModelConfig& c) {
    read_hf_llama_attention(cfg, c);
    c.sliding_window = cfg.get_int("sliding_window", 0);
}

namespace {

void set_gemma_layer(ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.act = Activation::GeluTanh;
    c.post_norms = true;
    c.embed_scale = true;
}

// llama.cpp's Gemma score scale: 1/sqrt(head_dim), except 1/sqrt(hidden/heads) for the 27B
// models, which it recognises by their layer count.
double llama_cpp_gemma_scale(const ModelConfig& c, int64_t layers_27b) {
    const double d = c.n_layers == layers_27b ? static_cast<double>(c.hidden / c.n_heads)
                                              : static_cast<double>(c.head_dim);
    return 1.0 / std::sqrt(d);
}

}  // namespace

void read_hf_gemma(const HfConfigJson& cfg, ModelConfig& c, int64_t default_pattern) {
    read_hf_llama_attention(cfg, c);
    read_hf_dense_ffn(cfg, c);
    set_gemma_layer(c);
    c.hf_norm_offset = 1.0;  // Gemma's RMSNorm scales by 1 + w; the GGUF stores 1 + w
    QL_CHECK(!cfg.get_bool("use_bidirectional_attention", false),
             "{}: \"use_bidirectional_attention\" is true; the engine implements causal "
             "attention only",
             cfg.path);
    const double scalar = cfg.get_float("query_pre_attn_scalar", static_cast<double>(c.head_dim));
    QL_CHECK(scalar > 0, "{}: \"query_pre_attn_scalar\" is {}, expected positive", cfg.path,
             scalar);
    c.attn_scale = 1.0 / std::sqrt(scalar);
    c.attn_softcap = cfg.get_float("attn_logit_softcapping", 0.0);
    c.final_softcap = cfg.get_float("final_logit_softcapping", 0.0);
    QL_CHECK(c.attn_softcap >= 0 && c.final_softcap >= 0,
             "{}: soft-capping values must be positive or null (attn {}, final {})", cfg.path,
             c.attn_softcap, c.final_softcap);
    c.sliding_window = cfg.get_int("sliding_window", 0);
    QL_CHECK(c.sliding_window >= 0, "{}: \"sliding_window\" is {}, expected ≥ 0", cfg.path,
             c.sliding_window);
    c.layer_sliding = read_hf_layer_types(
        cfg, c.n_layers, "sliding_attention",
        "quantlens knows sliding_attention and full_attention only", [&] {
            const int64_t pattern = cfg.get_int("sliding_window_pattern", default_pattern);
            QL_CHECK(pattern > 0, "{}: \"sliding_window_pattern\" is {}, expected positive",
                     cfg.path, pattern);
            return pattern;
        });
}

std::vector<bool> read_hf_layer_types(const HfConfigJson& cfg, int64_t n_layers, const char* marked,
                                      const std::string& known,
                                      const std::function<int64_t()>& period) {
    std::vector<bool> out(static_cast<size_t>(n_layers), false);
    const auto types = cfg.j.find("layer_types");
    if (types == cfg.j.end() || types->is_null()) {
        const int64_t p = period();
        for (int64_t l = 0; l < n_layers; ++l) out[static_cast<size_t>(l)] = (l + 1) % p != 0;
        return out;
    }
    QL_CHECK(types->is_array() && static_cast<int64_t>(types->size()) == n_layers,
             "{}: \"layer_types\" is {}, expected a list of {} layer types", cfg.path,
             types->dump(), n_layers);
    for (int64_t l = 0; l < n_layers; ++l) {
        const auto& t = (*types)[static_cast<size_t>(l)];
        const std::string type = t.is_string() ? t.get<std::string>() : t.dump();
        QL_CHECK(type == marked || type == "full_attention", "{}: layer_types[{}] is \"{}\"; {}",
                 cfg.path, l, type, known);
        out[static_cast<size_t>(l)] = type == marked;
    }
    return out;
}

void read_gguf_gemma(const GgufFile& g, ModelConfig& c, int64_t pattern, int64_t layers_27b,
                     double attn_softcap_default, double final_softcap_default) {
    read_gguf_dense_ffn(g, c);
    set_gemma_layer(c);
    c.attn_scale = llama_cpp_gemma_scale(c, layers_27b);
    auto float_key = [&](const char* key, double fallback) {
        const GgufValue* v = g.find(c.gguf_arch + "." + key);
        return v ? v->as_float() : fallback;
    };
    c.attn_softcap = float_key("attn_logit_softcapping", attn_softcap_default);
    c.final_softcap = float_key("final_logit_softcapping", final_softcap_default);
    c.layer_sliding.assign(static_cast<size_t>(c.n_layers), false);
    for (int64_t l = 0; l < c.n_layers; ++l)  // llama.cpp: il % pattern < pattern − 1 slides
        c.layer_sliding[static_cast<size_t>(l)] = l % pattern < pattern - 1;
}

FamilyHooks gemma_hooks(decltype(FamilyHooks::read_hf) read_hf,
                        decltype(FamilyHooks::read_gguf) read_gguf,
                        decltype(FamilyHooks::write_gguf) write_gguf) {
    return {.read_hf = read_hf,
            .read_gguf = read_gguf,
            .write_gguf = write_gguf,
            .activation = Activation::GeluTanh};
}

void check_gemma_for_llama_cpp(const ModelConfig& c, int64_t pattern, int64_t layers_27b) {
    const double expected = llama_cpp_gemma_scale(c, layers_27b);
    QL_CHECK(std::fabs(c.attn_scale - expected) <= 1e-9 * expected,
             "{}: query_pre_attn_scalar gives the score scale {}, but llama.cpp's {} loader uses "
             "{} (1/sqrt of the head size, or of hidden/heads at {} layers) and has no key for "
             "it; a GGUF of this model would be evaluated wrongly",
             c.hf_architecture, c.attn_scale, c.gguf_arch, expected, layers_27b);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const bool llama_cpp = c.sliding_window > 0 && l % pattern < pattern - 1;
        QL_CHECK(c.is_sliding(l) == llama_cpp,
                 "{}: layer_types[{}] is {}, but llama.cpp's {} loader makes every layer il with "
                 "il % {} < {} sliding and has no key for layer types; a GGUF of this model would "
                 "be evaluated wrongly",
                 c.hf_architecture, l, c.is_sliding(l) ? "sliding_attention" : "full_attention",
                 c.gguf_arch, pattern, pattern - 1);
    }
}

int64_t gguf_int(const GgufFile& g, const ModelConfig& c, const char* key, int64_t fallback) {
    const GgufValue* v = g.find(c.gguf_arch + "." + key);
    return v ? v->as_int() : fallback;
}

int64_t gguf_required(const GgufFile& g, const ModelConfig& c, const char* key) {
    const std::string name = c.gguf_arch + "." + key;
    const int64_t v = g.get(name).as_int();
    QL_CHECK(v > 0, "{}: {} is {}, expected a positive integer", g.path(), name, v);
    return v;
}

void read_gguf_dense_ffn(const GgufFile& g, ModelConfig& c) {
    c.ffn = gguf_required(g, c, "feed_forward_length");
}

void read_gguf_dense_neox(const GgufFile& g, ModelConfig& c) {
    read_gguf_dense_ffn(g, c);
    c.rope = RopeStyle::Neox;
}

void add_u32(GgufKeys& keys, const ModelConfig& c, const char* key, int64_t value) {
    keys.emplace_back(c.gguf_arch + "." + key, GgufValue::u32(static_cast<uint32_t>(value)));
}

void add_f32(GgufKeys& keys, const ModelConfig& c, const char* key, double value) {
    keys.emplace_back(c.gguf_arch + "." + key, GgufValue::f32(static_cast<float>(value)));
}

namespace {

GgufValue u32_of(int64_t v) {
    return GgufValue::u32(static_cast<uint32_t>(v));
}

GgufValue f32_of(double v) {
    return GgufValue::f32(static_cast<float>(v));
}

using SharedKey = std::pair<std::string_view, GgufValue (*)(const ModelConfig&)>;

// The ARCH.* keys whose value is one ModelConfig field in every family that writes them.
// clang-format off
const SharedKey kSharedKeys[] = {
    {"block_count", [](const ModelConfig& c) { return u32_of(c.n_layers); }},
    {"context_length", [](const ModelConfig& c) { return u32_of(c.max_positions); }},
    {"embedding_length", [](const ModelConfig& c) { return u32_of(c.hidden); }},
    {"feed_forward_length", [](const ModelConfig& c) { return u32_of(c.ffn); }},
    {"attention.head_count", [](const ModelConfig& c) { return u32_of(c.n_heads); }},
    {"attention.head_count_kv", [](const ModelConfig& c) { return u32_of(c.n_kv_heads); }},
    {"attention.layer_norm_rms_epsilon", [](const ModelConfig& c) { return f32_of(c.rms_eps); }},
    {"attention.sliding_window", [](const ModelConfig& c) { return u32_of(c.sliding_window); }},
    {"rope.freq_base", [](const ModelConfig& c) { return f32_of(c.rope_theta); }},
    {"rope.dimension_count", [](const ModelConfig& c) { return u32_of(c.rotary_dims()); }},
    {"expert_count", [](const ModelConfig& c) { return u32_of(c.n_experts); }},
    {"expert_used_count", [](const ModelConfig& c) { return u32_of(c.n_experts_used); }},
    {"attn_logit_softcapping", [](const ModelConfig& c) { return f32_of(c.attn_softcap); }},
    {"final_logit_softcapping", [](const ModelConfig& c) { return f32_of(c.final_softcap); }},
};
// clang-format on

}  // namespace

void add_keys(GgufKeys& keys, const ModelConfig& c, std::initializer_list<std::string_view> names) {
    for (const std::string_view name : names) {
        const SharedKey* found = nullptr;
        for (const SharedKey& k : kSharedKeys)
            if (k.first == name) found = &k;
        QL_ASSERT(found != nullptr);  // a key of the table above
        keys.emplace_back(c.gguf_arch + "." + std::string(name), found->second(c));
    }
}

void add_expert_counts(GgufKeys& keys, const ModelConfig& c) {
    if (c.is_moe()) add_keys(keys, c, {"expert_count", "expert_used_count"});
}

void add_yarn_keys(GgufKeys& keys, const ModelConfig& c, bool betas) {
    const RopeScaling& s = c.rope_scaling;
    keys.emplace_back(c.gguf_arch + ".rope.scaling.type", GgufValue::string("yarn"));
    add_f32(keys, c, "rope.scaling.factor", s.factor);
    add_u32(keys, c, "rope.scaling.original_context_length", s.original_max_positions);
    if (!betas) return;
    add_f32(keys, c, "rope.scaling.yarn_beta_fast", s.yarn_beta_fast);
    add_f32(keys, c, "rope.scaling.yarn_beta_slow", s.yarn_beta_slow);
}

void write_gguf_sizes(const ModelConfig& c, GgufKeys& keys) {
    add_keys(keys, c,
             {"block_count", "context_length", "embedding_length", "feed_forward_length",
              "attention.head_count", "attention.head_count_kv"});
}

void write_gguf_head(const ModelConfig& c, GgufKeys& keys) {
    write_gguf_sizes(c, keys);
    // TextModel.set_gguf_parameters: linear scaling as keys (llama3's is rope_freqs.weight);
    // longrope factors and partial rotary are written by Phi-3's converter only.
    QL_CHECK(c.rope_scaling.kind != RopeScaling::Kind::Yarn,
             "{}: yarn rope, which quantlens writes for gpt-oss only; a GGUF of this model would "
             "be evaluated wrongly",
             c.hf_architecture);
    QL_CHECK(c.rope_scaling.kind != RopeScaling::Kind::LongRope && c.rope_dims == 0,
             "{}: longrope scaling or partial_rotary_factor, which llama.cpp's {} converter does "
             "not write; a GGUF of this model would be evaluated wrongly",
             c.hf_architecture, c.gguf_arch);
    if (c.rope_scaling.kind == RopeScaling::Kind::Linear) {
        keys.emplace_back(c.gguf_arch + ".rope.scaling.type", GgufValue::string("linear"));
        add_f32(keys, c, "rope.scaling.factor", c.rope_scaling.factor);
    }
    add_keys(keys, c, {"rope.freq_base", "attention.layer_norm_rms_epsilon"});
    add_expert_counts(keys, c);
}

void write_gguf_head_size(const ModelConfig& c, GgufKeys& keys) {
    add_u32(keys, c, "attention.key_length", c.head_dim);
    add_u32(keys, c, "attention.value_length", c.head_dim);
}

void write_gguf_llama(const ModelConfig& c, GgufKeys& keys) {
    write_gguf_head(c, keys);
    write_gguf_head_size(c, keys);
    add_u32(keys, c, "vocab_size", c.vocab);
    add_u32(keys, c, "rope.dimension_count", c.head_dim);
}

void write_gguf_plain(const ModelConfig& c, GgufKeys& keys) {
    write_gguf_head(c, keys);
    write_gguf_head_size(c, keys);
}

}  // namespace quantlens::blocks
