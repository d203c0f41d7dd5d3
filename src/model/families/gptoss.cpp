// gpt-oss (GptOssForCausalLM, GGUF "gpt-oss"): every layer RMSNorm → GQA attention with
// q/k/v/o biases, neox YaRN rope and a learned sink logit per head in the softmax, sliding
// (every even layer, layer_types) or full → residual; RMSNorm (post_attention_layernorm,
// GGUF post_attention_norm) → router (biased linear, top-k logits, softmax over those k)
// → experts computing (up + 1)·gate·σ(α·gate) with gate ≤ limit and |up| ≤ limit, all with
// biases → residual.
//
// Tensors as llama.cpp's converter (GptOssModel) writes them: sinks → attn_sinks.weight;
// mlp.router → ffn_gate_inp (+bias); experts.gate_up_proj [E, C, 2F], gate and up
// interleaved by column, → ffn_gate_exps / ffn_up_exps [C, F, E] (even / odd columns,
// transposed), with their biases split the same way; experts.down_proj [E, F, C] →
// ffn_down_exps [F, C, E]. The released MXFP4 form (*_blocks, *_scales) is repacked into
// ggml's block_mxfp4 rows byte for byte (model/hf_source.cpp).
//
// Keys as TextModel.set_gguf_parameters writes them for this config (yarn included), then
// attention.sliding_window and expert_feed_forward_length. llama.cpp's loader fixes what
// the GGUF cannot say: sliding layers every other one from layer 0, the SwiGLU limit 7 and
// α 1.702, and the yarn ramp's ends floored/ceiled (ggml_rope_yarn_corr_dims), where
// transformers follows the config's "truncate": false; a GGUF is therefore evaluated with
// truncation, as llama.cpp does.
#include <cmath>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/families/blocks.h"

namespace quantlens {

namespace {

constexpr double kLlamaCppLimit = 7.0;    // llama.cpp's gpt-oss graph: fixed SwiGLU limit
constexpr double kLlamaCppAlpha = 1.702;  // and gain

void set_layer(ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.attn_sinks = true;
    c.ffn_norm_is_post_attention_norm = true;
    c.moe_renormalize = true;  // softmax over the top-k logits = renormalized top-k softmax
}

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    const nlohmann::json& j = cfg.j;
    blocks::read_hf_experts(cfg, c);
    c.ffn = cfg.require_positive("intermediate_size");
    c.qkv_bias = cfg.get_bool("attention_bias", true);
    set_layer(c);
    c.swiglu_limit = cfg.get_float("swiglu_limit", kLlamaCppLimit);
    c.swiglu_alpha = cfg.get_float("swiglu_alpha", kLlamaCppAlpha);
    QL_CHECK(c.swiglu_limit > 0 && c.swiglu_alpha > 0,
             "{}: swiglu_limit {} and swiglu_alpha {} must be positive", cfg.path, c.swiglu_limit,
             c.swiglu_alpha);
    // transformers' GptOssConfig without any rope entry: θ 150000 and its yarn defaults.
    const bool has_rope = (j.contains("rope_parameters") && !j["rope_parameters"].is_null()) ||
                          (j.contains("rope_scaling") && !j["rope_scaling"].is_null());
    if (!has_rope) {
        c.rope_theta = cfg.get_float("rope_theta", 150000.0);
        RopeScaling& s = c.rope_scaling;
        s.kind = RopeScaling::Kind::Yarn;
        s.factor = 32.0;
        s.original_max_positions = 4096;
        s.yarn_beta_fast = 32.0;
        s.yarn_beta_slow = 1.0;
        s.yarn_truncate = false;
        s.attention_factor = 0.1 * std::log(s.factor) + 1.0;
    }
    c.sliding_window = cfg.get_int("sliding_window", 128);
    QL_CHECK(c.sliding_window >= 0, "{}: \"sliding_window\" is {}, expected ≥ 0", cfg.path,
             c.sliding_window);
    c.layer_sliding =
        blocks::read_hf_layer_types(cfg, c.n_layers, "sliding_attention",
                                    "gpt-oss has sliding_attention and full_attention layers only",
                                    [] { return int64_t{2}; });  // transformers: (l + 1) % 2 slides
    if (const auto q = j.find("quantization_config"); q != j.end() && !q->is_null()) {
        const std::string method =
            q->is_object() && q->contains("quant_method") && (*q)["quant_method"].is_string()
                ? (*q)["quant_method"].get<std::string>()
                : q->dump();
        QL_CHECK(method == "mxfp4",
                 "{}: quantization_config.quant_method is \"{}\"; quantlens reads gpt-oss "
                 "checkpoints in BF16/F16/F32 or with MXFP4 experts only",
                 cfg.path, method);
    }
}

void read_gguf(const GgufFile& g, ModelConfig& c) {
    c.ffn = blocks::gguf_required(g, c, "expert_feed_forward_length");
    set_layer(c);
    c.swiglu_limit = kLlamaCppLimit;
    c.swiglu_alpha = kLlamaCppAlpha;
    c.layer_sliding.assign(static_cast<size_t>(c.n_layers), false);
    for (int64_t l = 0; l < c.n_layers; ++l)  // llama.cpp: swa pattern 2, layer 0 slides
        c.layer_sliding[static_cast<size_t>(l)] = l % 2 == 0;
}

void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    QL_CHECK(c.swiglu_limit == kLlamaCppLimit && c.swiglu_alpha == kLlamaCppAlpha,
             "{}: swiglu_limit {} / swiglu_alpha {}, but llama.cpp's gpt-oss graph uses 7 and "
             "1.702 and has no key for them; a GGUF of this model would be evaluated wrongly",
             c.hf_architecture, c.swiglu_limit, c.swiglu_alpha);
    for (int64_t l = 0; l < c.n_layers; ++l)
        QL_CHECK(c.is_sliding(l) == (c.sliding_window > 0 && l % 2 == 0),
                 "{}: layer_types[{}] is {}, but llama.cpp's gpt-oss loader makes the even "
                 "layers sliding and the odd ones full; a GGUF of this model would be evaluated "
                 "wrongly",
                 c.hf_architecture, l, c.is_sliding(l) ? "sliding_attention" : "full_attention");
    const RopeScaling& s = c.rope_scaling;
    QL_CHECK(s.kind == RopeScaling::Kind::None || s.kind == RopeScaling::Kind::Yarn,
             "{}: only unscaled or yarn rope is written for gpt-oss", c.hf_architecture);
    blocks::write_gguf_sizes(c, keys);
    if (s.kind == RopeScaling::Kind::Yarn) blocks::add_yarn_keys(keys, c, true);
    blocks::add_keys(keys, c,
                     {"rope.freq_base", "attention.layer_norm_rms_epsilon", "expert_count",
                      "expert_used_count"});
    blocks::write_gguf_head_size(c, keys);
    blocks::add_keys(keys, c, {"attention.sliding_window"});
    blocks::add_u32(keys, c, "expert_feed_forward_length", c.ffn);
}

// "model.layers.N.<rest>" → (N, rest), or nullopt.
std::optional<std::pair<int, std::string>> split_layer(const std::string& hf) {
    static const std::string kPrefix = "model.layers.";
    if (hf.rfind(kPrefix, 0) != 0) return std::nullopt;
    const size_t dot = hf.find('.', kPrefix.size());
    if (dot == std::string::npos || dot == kPrefix.size() || dot - kPrefix.size() > 6)
        return std::nullopt;
    int layer = 0;
    for (size_t i = kPrefix.size(); i < dot; ++i) {
        if (hf[i] < '0' || hf[i] > '9') return std::nullopt;
        layer = layer * 10 + (hf[i] - '0');
    }
    return std::pair{layer, hf.substr(dot + 1)};
}

std::optional<std::vector<HfDerivedTensor>> derive_hf(const std::string& hf) {
    const auto split = split_layer(hf);
    if (!split) return std::nullopt;
    const auto& [layer, rest] = *split;
    const std::string blk = "blk." + std::to_string(layer) + ".";
    const std::string experts = "model.layers." + std::to_string(layer) + ".mlp.experts.";
    auto one = [&](const std::string& gguf, int stride, int offset,
                   const std::string& scales = "") {
        return HfDerivedTensor{blk + gguf, layer, stride, offset, scales};
    };
    if (rest == "self_attn.sinks") return std::vector{one("attn_sinks.weight", 0, 0)};
    if (rest == "mlp.experts.gate_up_proj")
        return std::vector{one("ffn_gate_exps.weight", 2, 0), one("ffn_up_exps.weight", 2, 1)};
    if (rest == "mlp.experts.gate_up_proj_bias")
        return std::vector{one("ffn_gate_exps.bias", 2, 0), one("ffn_up_exps.bias", 2, 1)};
    if (rest == "mlp.experts.down_proj") return std::vector{one("ffn_down_exps.weight", 1, 0)};
    if (rest == "mlp.experts.down_proj_bias") return std::vector{one("ffn_down_exps.bias", 1, 0)};
    if (rest == "mlp.experts.gate_up_proj_blocks") {
        const std::string scales = experts + "gate_up_proj_scales";
        return std::vector{one("ffn_gate_exps.weight", 2, 0, scales),
                           one("ffn_up_exps.weight", 2, 1, scales)};
    }
    if (rest == "mlp.experts.down_proj_blocks")
        return std::vector{one("ffn_down_exps.weight", 1, 0, experts + "down_proj_scales")};
    if (rest == "mlp.experts.gate_up_proj_scales" || rest == "mlp.experts.down_proj_scales")
        return std::vector<HfDerivedTensor>{};  // read with their blocks
    return std::nullopt;
}

}  // namespace

const Family& gptoss_family() {
    static const Family f{
        {Arch::GptOss, "gpt-oss", "GptOssForCausalLM", "gpt_oss", "gpt-oss"},
        {.read_hf = read_hf,
         .read_gguf = read_gguf,
         .write_gguf = write_gguf,
         .derive_hf = derive_hf},
        blocks::concat({blocks::post_norm_attention(), {{"mlp.router", "ffn_gate_inp"}}})};
    return f;
}

}  // namespace quantlens
