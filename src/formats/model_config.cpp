// ModelConfig from a Hugging Face config.json or from llama.cpp GGUF metadata.
#include "formats/model_config.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"

namespace quantlens {

using nlohmann::json;

namespace {

// Integer field, or `fallback` when absent or null. Present but not an integer is an error.
int64_t get_int(const json& j, const char* key, int64_t fallback, const std::string& path) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    QL_CHECK(it->is_number_integer(), "{}: \"{}\" is {}, expected an integer", path, key,
             it->dump());
    return it->get<int64_t>();
}

double get_float(const json& j, const char* key, double fallback, const std::string& path) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    QL_CHECK(it->is_number(), "{}: \"{}\" is {}, expected a number", path, key, it->dump());
    return it->get<double>();
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& path) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    QL_CHECK(it->is_boolean(), "{}: \"{}\" is {}, expected true or false", path, key, it->dump());
    return it->get<bool>();
}

int64_t require_positive(const json& j, const char* key, const std::string& path) {
    const int64_t v = get_int(j, key, -1, path);
    QL_CHECK(v > 0, "{}: \"{}\" is missing or not a positive integer", path, key);
    return v;
}

// eos_token_id may be a list in newer configs; the first entry is the primary one.
int64_t token_id(const json& j, const char* key, const std::string& path) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return -1;
    if (it->is_array()) {
        if (it->empty()) return -1;
        QL_CHECK((*it)[0].is_number_integer(), "{}: \"{}\" is {}, expected integers", path, key,
                 it->dump());
        return (*it)[0].get<int64_t>();
    }
    return get_int(j, key, -1, path);
}

}  // namespace

void check_config_consistent(const ModelConfig& c, const std::string& path) {
    QL_CHECK(c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0,
             "{}: {} attention heads are not a multiple of {} key/value heads", path, c.n_heads,
             c.n_kv_heads);
    QL_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0,
             "{}: head dimension {} is not positive and even", path, c.head_dim);
    QL_CHECK(!c.is_moe() || (c.n_experts_used > 0 && c.n_experts_used <= c.n_experts),
             "{}: {} experts used per token, expected 1 to {}", path, c.n_experts_used,
             c.n_experts);
    QL_CHECK(c.rms_eps > 0 && c.rope_theta > 0, "{}: rms_norm_eps and rope_theta must be positive",
             path);
}

namespace {

// A list of numbers (longrope's factors), naming `where` in errors.
std::vector<double> get_float_list(const json& j, const char* key, const std::string& where,
                                   const std::string& path) {
    auto it = j.find(key);
    QL_CHECK(it != j.end() && it->is_array() && !it->empty(),
             "{}: {}.{} is missing or not a list of numbers", path, where, key);
    std::vector<double> out;
    for (const auto& v : *it) {
        QL_CHECK(v.is_number(), "{}: {}.{} holds {}, expected numbers", path, where, key, v.dump());
        out.push_back(v.get<double>());
    }
    return out;
}

double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
}

// Whether a family implements DeepSeek's yarn variant (mscale / mscale_all_dim: cos/sin
// scaled by their ratio, the scores by mscale(factor, mscale_all_dim)²): the MLA attention.
bool family_has_yarn_mscale(Arch arch) {
    return arch == Arch::DeepseekV3;
}

// YaRN as transformers' _compute_yarn_parameters reads it: factor (else max_position /
// original), original_max_position_embeddings (in the object or at the top), beta_fast /
// beta_slow (32 / 1 when absent or zero), truncate (default true), attention_factor (else
// 0.1·ln(factor) + 1, or DeepSeek's mscale(factor, mscale) / mscale(factor, mscale_all_dim)).
// mscale / mscale_all_dim are refused for a family without DeepSeek's attention.
void parse_yarn(const json& rp, const json& top, const std::string& where, const std::string& path,
                ModelConfig& c, RopeScaling& s) {
    s.kind = RopeScaling::Kind::Yarn;
    const int64_t orig_in_object = get_int(rp, "original_max_position_embeddings", 0, path);
    s.original_max_positions = orig_in_object > 0
                                   ? orig_in_object
                                   : get_int(top, "original_max_position_embeddings", 0, path);
    QL_CHECK(s.original_max_positions > 0,
             "{}: yarn rope needs original_max_position_embeddings (in {} or at the top)", path,
             where);
    s.factor = get_float(
        rp, "factor",
        static_cast<double>(c.max_positions) / static_cast<double>(s.original_max_positions), path);
    QL_CHECK(s.factor >= 1.0, "{}: {}.factor is {}, expected ≥ 1 for yarn rope", path, where,
             s.factor);
    if (!family_has_yarn_mscale(c.arch))
        for (const char* k : {"mscale", "mscale_all_dim"})
            QL_CHECK(get_float(rp, k, 0.0, path) == 0.0,
                     "{}: {}.{} is set; quantlens's yarn implements the attention factor "
                     "0.1·ln(factor) + 1 (or an explicit attention_factor) only, DeepSeek's "
                     "mscale for DeepSeek-V3's attention only",
                     path, where, k);
    // transformers (4.5x) replaces factor by max_position_embeddings / original when the
    // latter is given, llama.cpp reads factor: a model where they differ is computed two ways.
    if (orig_in_object > 0 && c.max_positions > 0) {
        const double ratio =
            static_cast<double>(c.max_positions) / static_cast<double>(orig_in_object);
        QL_CHECK(std::fabs(ratio - s.factor) <= 1e-9 * s.factor,
                 "{}: {}.factor is {} but max_position_embeddings / "
                 "original_max_position_embeddings is {}; transformers and llama.cpp would use "
                 "different yarn factors",
                 path, where, s.factor, ratio);
    }
    s.mscale = get_float(rp, "mscale", 0.0, path);
    s.mscale_all_dim = get_float(rp, "mscale_all_dim", 0.0, path);
    c.hf_has_yarn_betas = rp.contains("beta_fast") || rp.contains("beta_slow");
    const double fast = get_float(rp, "beta_fast", 0.0, path);
    const double slow = get_float(rp, "beta_slow", 0.0, path);
    s.yarn_beta_fast = fast != 0.0 ? fast : 32.0;  // transformers: `or 32`, `or 1`
    s.yarn_beta_slow = slow != 0.0 ? slow : 1.0;
    s.yarn_truncate = get_bool(rp, "truncate", true, path);
    for (const char* k : {"extrapolation_factor", "attn_factor"})
        QL_CHECK(!rp.contains(k) || rp.at(k).is_null(),
                 "{}: {}.{} is set; quantlens's yarn does not implement it", path, where, k);
    const double from_mscale =
        s.mscale > 0 && s.mscale_all_dim > 0
            ? yarn_mscale(s.factor, s.mscale) / yarn_mscale(s.factor, s.mscale_all_dim)
            : yarn_mscale(s.factor, 1.0);
    s.attention_factor = get_float(rp, "attention_factor", from_mscale, path);
    QL_CHECK(s.attention_factor > 0 && s.yarn_beta_fast > 0 && s.yarn_beta_slow > 0 &&
                 s.mscale >= 0 && s.mscale_all_dim >= 0,
             "{}: {} for yarn rope needs positive attention_factor, beta_fast and beta_slow and "
             "non-negative mscale, mscale_all_dim; found {}",
             path, where, rp.dump());
}

// One rope object (v4 rope_scaling, v5 rope_parameters or one of its per-layer-type
// entries) into θ and scaling. `top` is the whole config (original_max_position_embeddings
// and max_position_embeddings live there for Phi-3).
void parse_rope_object(const json& rp, const json& top, const std::string& where,
                       const std::string& path, ModelConfig& c, double& theta, RopeScaling& s) {
    theta = get_float(rp, "rope_theta", theta, path);
    std::string type = "default";
    std::string type_key = where + ".rope_type";
    for (const char* k : {"rope_type", "type"}) {
        if (auto it = rp.find(k); it != rp.end() && !it->is_null()) {
            QL_CHECK(it->is_string(), "{}: {}.{} is {}, expected a string", path, where, k,
                     it->dump());
            type = it->get<std::string>();
            type_key = where + "." + k;
            break;
        }
    }
    if (type == "default") return;
    if (type == "proportional") {  // Gemma 4's global layers; the family reads the rest
        c.rope_proportional = true;
        QL_CHECK(get_float(rp, "factor", 1.0, path) == 1.0,
                 "{}: {}.factor is {}; quantlens implements proportional rope unscaled only", path,
                 where, rp.dump());
        return;
    }
    if (type == "linear") {
        s.kind = RopeScaling::Kind::Linear;
        s.factor = get_float(rp, "factor", 0.0, path);
        QL_CHECK(s.factor > 0, "{}: {}.factor is {}, expected a positive number for linear rope",
                 path, where, s.factor);
        return;
    }
    if (type == "llama3") {
        s.kind = RopeScaling::Kind::Llama3;
        s.factor = get_float(rp, "factor", 0.0, path);
        s.low_freq_factor = get_float(rp, "low_freq_factor", 0.0, path);
        s.high_freq_factor = get_float(rp, "high_freq_factor", 0.0, path);
        s.original_max_positions = get_int(rp, "original_max_position_embeddings", 0, path);
        QL_CHECK(s.factor >= 1.0 && s.low_freq_factor > 0 &&
                     s.high_freq_factor > s.low_freq_factor && s.original_max_positions > 0,
                 "{}: {} for llama3 rope needs factor ≥ 1, 0 < low_freq_factor < "
                 "high_freq_factor and a positive original_max_position_embeddings; found {}",
                 path, where, rp.dump());
        return;
    }
    if (type == "longrope" || type == "su") {
        s.kind = RopeScaling::Kind::LongRope;
        s.short_factor = get_float_list(rp, "short_factor", where, path);
        s.long_factor = get_float_list(rp, "long_factor", where, path);
        s.original_max_positions =
            get_int(rp, "original_max_position_embeddings",
                    get_int(top, "original_max_position_embeddings", c.max_positions, path), path);
        QL_CHECK(s.original_max_positions > 0,
                 "{}: longrope needs original_max_position_embeddings (in {} or at the top)", path,
                 where);
        for (const auto* f : {&s.short_factor, &s.long_factor})
            for (double x : *f)
                QL_CHECK(std::isfinite(x) && x > 0,
                         "{}: {} holds the rope factor {}, expected positive numbers", path, where,
                         x);
        // transformers: the ratio of the two context lengths sets the default attention factor.
        const double scale =
            static_cast<double>(c.max_positions) / static_cast<double>(s.original_max_positions);
        s.attention_factor = get_float(
            rp, "attention_factor",
            scale > 1.0
                ? std::sqrt(1.0 + std::log(scale) /
                                      std::log(static_cast<double>(s.original_max_positions)))
                : 1.0,
            path);
        QL_CHECK(s.attention_factor > 0, "{}: {}.attention_factor is {}, expected positive", path,
                 where, s.attention_factor);
        return;
    }
    if (type == "yarn") {
        parse_yarn(rp, top, where, path, c, s);
        return;
    }
    fail(
        "{}: {} is \"{}\"; quantlens implements \"default\", \"linear\", \"llama3\", "
        "\"longrope\" and \"yarn\" rope only, so this model's positions would be computed "
        "wrongly",
        path, type_key, type);
}

// v4 configs keep θ at the top and the scaling in "rope_scaling" ("type" or "rope_type");
// v5 configs keep both in "rope_parameters", which per-layer-type models (Gemma 3, gpt-oss)
// make a dictionary of such objects keyed by layer type.
void parse_rope(const json& j, ModelConfig& c, const std::string& path) {
    c.rope_theta = get_float(j, "rope_theta", 10000.0, path);
    c.rope_theta_swa = get_float(j, "rope_local_base_freq", 0.0, path);  // v4 Gemma 3
    double partial = get_float(j, "partial_rotary_factor", 1.0, path);
    const char* key = nullptr;
    for (const char* k : {"rope_parameters", "rope_scaling"}) {
        auto it = j.find(k);
        if (it == j.end() || it->is_null()) continue;
        QL_CHECK(it->is_object(), "{}: \"{}\" is {}, expected an object", path, k, it->dump());
        key = k;
        break;
    }
    if (key) {
        const json& rp = j.at(key);
        bool per_layer_type = false;
        for (const auto& [name, value] : rp.items()) per_layer_type |= value.is_object();
        if (!per_layer_type) {
            partial = get_float(rp, "partial_rotary_factor", partial, path);
            parse_rope_object(rp, j, key, path, c, c.rope_theta, c.rope_scaling);
        } else {
            for (const auto& [name, value] : rp.items()) {
                const std::string where = std::string(key) + "." + name;
                QL_CHECK(
                    value.is_object() && (name == "full_attention" || name == "sliding_attention"),
                    "{}: \"{}\" mixes per-layer-type entries with \"{}\"; quantlens knows the "
                    "layer types full_attention and sliding_attention only",
                    path, key, name);
                partial = get_float(value, "partial_rotary_factor", partial, path);
                if (name == "full_attention") {
                    parse_rope_object(value, j, where, path, c, c.rope_theta, c.rope_scaling);
                } else {
                    double theta = c.rope_theta_swa > 0 ? c.rope_theta_swa : c.rope_theta;
                    RopeScaling local;
                    parse_rope_object(value, j, where, path, c, theta, local);
                    QL_CHECK(local.kind == RopeScaling::Kind::None,
                             "{}: {} scales the sliding layers' rope; quantlens implements an "
                             "unscaled rope with its own rope_theta there only",
                             path, where);
                    c.rope_theta_swa = theta;
                }
            }
        }
    }
    QL_CHECK(partial > 0.0 && partial <= 1.0,
             "{}: partial_rotary_factor is {}, expected a fraction in (0, 1]", path, partial);
    const auto dims = static_cast<int64_t>(static_cast<double>(c.head_dim) * partial);
    QL_CHECK(dims > 0 && dims % 2 == 0,
             "{}: partial_rotary_factor {} of head_dim {} gives {} rotated channels, expected a "
             "positive even number",
             path, partial, c.head_dim, dims);
    c.rope_dims = dims == c.head_dim ? 0 : dims;
    const auto n_pairs = static_cast<size_t>(c.rotary_dims() / 2);
    const RopeScaling& s = c.rope_scaling;
    QL_CHECK(s.kind != RopeScaling::Kind::LongRope ||
                 (s.short_factor.size() == n_pairs && s.long_factor.size() == n_pairs),
             "{}: longrope has {} short and {} long factors, expected {} each (rotated channels / "
             "2)",
             path, s.short_factor.size(), s.long_factor.size(), n_pairs);
}

// The gate activation: transformers' Gemma reads hidden_activation, the others hidden_act.
void parse_activation(const json& j, ModelConfig& c, const std::string& path) {
    for (const char* k : {"hidden_activation", "hidden_act"}) {
        auto it = j.find(k);
        if (it == j.end() || it->is_null()) continue;
        const std::string act = it->is_string() ? it->get<std::string>() : it->dump();
        if (act == "silu" || act == "swish") {
            c.act = Activation::SiLU;
        } else if (act == "gelu_pytorch_tanh") {
            c.act = Activation::GeluTanh;
        } else {
            fail(
                "{}: \"{}\" is \"{}\"; the engine implements gated MLPs with silu and "
                "gelu_pytorch_tanh only",
                path, k, act);
        }
        return;
    }
}

// Keys whose non-default values change the computation, in every family, in ways the
// engine does not model. Family-specific ones (o_proj bias, sliding windows) are refused by
// the family.
void refuse_unimplemented(const json& j, const std::string& path) {
    QL_CHECK(!get_bool(j, "mlp_bias", false, path),
             "{}: \"mlp_bias\" is true; the engine applies no MLP biases", path);
}

}  // namespace

std::vector<float> llama3_rope_freq_factors(const ModelConfig& c) {
    const RopeScaling& s = c.rope_scaling;
    if (s.kind != RopeScaling::Kind::Llama3) return {};
    const int64_t dims = c.rotary_dims(), half = dims / 2;
    const double old_ctx = static_cast<double>(s.original_max_positions);
    const double low_wavelen = old_ctx / s.low_freq_factor;
    const double high_wavelen = old_ctx / s.high_freq_factor;
    std::vector<float> divisor(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
        const double base =
            std::pow(c.rope_theta, -2.0 * static_cast<double>(i) / static_cast<double>(dims));
        const double wavelen = 2.0 * std::numbers::pi / base;
        double d = 1.0;
        if (wavelen > low_wavelen) {
            d = s.factor;
        } else if (wavelen >= high_wavelen) {
            const double smooth =
                (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            d = 1.0 / ((1.0 - smooth) / s.factor + smooth);
        }
        divisor[static_cast<size_t>(i)] = static_cast<float>(d);
    }
    return divisor;
}

double rope_attention_factor(const ModelConfig& c) {
    const RopeScaling::Kind k = c.rope_scaling.kind;
    return k == RopeScaling::Kind::LongRope || k == RopeScaling::Kind::Yarn
               ? c.rope_scaling.attention_factor
               : 1.0;
}

std::vector<double> yarn_extrapolation_weights(const ModelConfig& c) {
    const RopeScaling& s = c.rope_scaling;
    const int64_t dims = c.rotary_dims(), half = dims / 2;
    // The pair index at which a wavelength makes `rotations` turns over the original context.
    auto correction_dim = [&](double rotations) {
        return static_cast<double>(dims) *
               std::log(static_cast<double>(s.original_max_positions) /
                        (rotations * 2.0 * std::numbers::pi)) /
               (2.0 * std::log(c.rope_theta));
    };
    double low = correction_dim(s.yarn_beta_fast), high = correction_dim(s.yarn_beta_slow);
    if (s.yarn_truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0);
    high = std::min(high, static_cast<double>(dims - 1));
    if (low == high) high += 0.001;  // both implementations avoid the division by zero so
    std::vector<double> w(static_cast<size_t>(half));
    for (int64_t i = 0; i < half; ++i) {
        const double ramp = std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0);
        w[static_cast<size_t>(i)] = 1.0 - ramp;
    }
    return w;
}

double yarn_score_scale(const ModelConfig& c) {
    const RopeScaling& s = c.rope_scaling;
    if (s.kind != RopeScaling::Kind::Yarn || s.mscale_all_dim <= 0) return 1.0;
    const double m = yarn_mscale(s.factor, s.mscale_all_dim);
    return m * m;
}

std::vector<double> rope_frequencies(const ModelConfig& c, int64_t T, bool sliding) {
    const int64_t dims = c.rotary_dims(), half = dims / 2;
    const bool local = sliding && c.rope_theta_swa > 0;  // own θ, unscaled
    const double theta = local ? c.rope_theta_swa : c.rope_theta;
    const RopeScaling& s = c.rope_scaling;
    std::vector<double> freq(static_cast<size_t>(half));
    // llama.cpp applies its divisors in float: keep them as the file or the converter gives
    // them, so a GGUF and its HF source rotate identically.
    const std::vector<float> llama3 = local                         ? std::vector<float>{}
                                      : c.rope_freq_factors.empty() ? llama3_rope_freq_factors(c)
                                                                    : c.rope_freq_factors;
    const std::vector<double>* longrope = nullptr;
    if (!local && s.kind == RopeScaling::Kind::LongRope)
        longrope = T > s.original_max_positions ? &s.long_factor : &s.short_factor;
    for (int64_t i = 0; i < half; ++i) {
        const auto k = static_cast<size_t>(i);
        freq[k] = std::pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(dims));
        if (!llama3.empty()) freq[k] /= llama3[k];
        if (longrope) freq[k] /= (*longrope)[k];
        if (!local && s.kind == RopeScaling::Kind::Linear) freq[k] /= s.factor;
    }
    if (!local && s.kind == RopeScaling::Kind::Yarn) {
        const std::vector<double> extrapolate = yarn_extrapolation_weights(c);
        for (size_t k = 0; k < freq.size(); ++k)
            freq[k] = freq[k] / s.factor * (1.0 - extrapolate[k]) + freq[k] * extrapolate[k];
    }
    return freq;
}

int64_t HfConfigJson::get_int(const char* key, int64_t fallback) const {
    return quantlens::get_int(j, key, fallback, path);
}
double HfConfigJson::get_float(const char* key, double fallback) const {
    return quantlens::get_float(j, key, fallback, path);
}
bool HfConfigJson::get_bool(const char* key, bool fallback) const {
    return quantlens::get_bool(j, key, fallback, path);
}
int64_t HfConfigJson::require_positive(const char* key) const {
    return quantlens::require_positive(j, key, path);
}

void read_hf_shared_fields(const HfConfigJson& cfg, ModelConfig& c) {
    const json& j = cfg.j;
    const std::string& path = cfg.path;
    c.hidden = require_positive(j, "hidden_size", path);
    c.n_layers = require_positive(j, "num_hidden_layers", path);
    c.n_heads = require_positive(j, "num_attention_heads", path);
    c.n_kv_heads = get_int(j, "num_key_value_heads", c.n_heads, path);
    c.head_dim = get_int(j, "head_dim", 0, path);
    if (c.head_dim == 0) {
        QL_CHECK(c.hidden % c.n_heads == 0,
                 "{}: hidden_size {} is not a multiple of num_attention_heads {}", path, c.hidden,
                 c.n_heads);
        c.head_dim = c.hidden / c.n_heads;
    }
    c.vocab = require_positive(j, "vocab_size", path);
    c.max_positions = get_int(j, "max_position_embeddings", 0, path);
    c.rms_eps = get_float(j, "rms_norm_eps", 1e-6, path);
    parse_rope(j, c, path);
    parse_activation(j, c, path);
    refuse_unimplemented(j, path);
    c.tie_embeddings = get_bool(j, "tie_word_embeddings", false, path);
    c.bos_token_id = token_id(j, "bos_token_id", path);
    c.eos_token_id = token_id(j, "eos_token_id", path);
    for (const char* key : {"dtype", "torch_dtype"}) {
        if (auto d = j.find(key); d != j.end() && d->is_string()) {
            c.torch_dtype = d->get<std::string>();
            break;
        }
    }
}

void read_gguf_shared_fields(const GgufFile& g, ModelConfig& c) {
    const std::string& path = g.path();
    const std::string p = c.gguf_arch + ".";
    auto int_key = [&](const std::string& key, int64_t fallback) -> int64_t {
        const GgufValue* v = g.find(p + key);
        return v ? v->as_int() : fallback;
    };
    auto required = [&](const std::string& key) -> int64_t {
        const int64_t v = g.get(p + key).as_int();
        QL_CHECK(v > 0, "{}: {}{} is {}, expected a positive integer", path, p, key, v);
        return v;
    };
    c.n_experts = int_key("expert_count", 0);
    c.n_experts_used = int_key("expert_used_count", 0);
    c.n_layers = required("block_count");
    c.hidden = required("embedding_length");
    c.n_heads = required("attention.head_count");
    if (const GgufValue* kv = g.find(p + "attention.head_count_kv");
        kv && kv->type == GgufValueType::ARRAY && !kv->array.empty())
        c.n_kv_heads = kv->array[0].as_int();  // one per layer (Gemma 4): the family reads them
    else
        c.n_kv_heads = int_key("attention.head_count_kv", c.n_heads);
    c.head_dim = int_key("attention.key_length", 0);
    if (c.head_dim == 0) {
        QL_CHECK(c.hidden % c.n_heads == 0, "{}: embedding_length {} is not a multiple of {} heads",
                 path, c.hidden, c.n_heads);
        c.head_dim = c.hidden / c.n_heads;
    }
    c.max_positions = int_key("context_length", 0);
    if (const GgufValue* v = g.find(p + "attention.layer_norm_rms_epsilon"))
        c.rms_eps = v->as_float();
    if (const GgufValue* v = g.find(p + "rope.freq_base")) c.rope_theta = v->as_float();
    if (const GgufValue* v = g.find(p + "rope.dimension_count")) {
        const int64_t dims = v->as_int();
        QL_CHECK(dims > 0 && dims <= c.head_dim && dims % 2 == 0,
                 "{}: {}rope.dimension_count is {}, expected an even number up to the head size {}",
                 path, p, dims, c.head_dim);
        c.rope_dims = dims == c.head_dim ? 0 : dims;
    }
    if (const GgufValue* v = g.find(p + "rope.freq_base_swa")) c.rope_theta_swa = v->as_float();
    // A float vector tensor of `n` positive values, or empty when the file has none.
    auto factors = [&](const char* name, int64_t n) -> std::vector<float> {
        const GgufTensorInfo* t = g.find_tensor(name);
        if (!t) return {};
        QL_CHECK(t->type == GgmlType::F32 && t->n_elements() == n,
                 "{}: {} is {} with {} values, expected F32 with {} (rotated channels / 2)", path,
                 name, ggml_type_display_name(t->type), t->n_elements(), n);
        const std::span<const uint8_t> raw = g.tensor_data(*t);
        std::vector<float> out(static_cast<size_t>(n));
        std::memcpy(out.data(), raw.data(), out.size() * 4);
        for (float d : out)
            QL_CHECK(std::isfinite(d) && d > 0, "{}: {} holds {}, expected positive finite values",
                     path, name, d);
        return out;
    };
    const int64_t n_pairs = c.rotary_dims() / 2;
    RopeScaling& s = c.rope_scaling;
    if (const GgufValue* v = g.find(p + "rope.scaling.type")) {
        const std::string type = v->as_string();
        const GgufValue* factor = g.find(p + "rope.scaling.factor");
        if (type == "yarn" && factor) {  // llama.cpp floors/ceils the ramp's ends
            s.kind = RopeScaling::Kind::Yarn;
            s.factor = factor->as_float();
            s.original_max_positions = int_key("rope.scaling.original_context_length", 0);
            QL_CHECK(s.factor >= 1.0 && s.original_max_positions > 0,
                     "{}: yarn rope needs {}rope.scaling.factor ≥ 1 and "
                     "{}rope.scaling.original_context_length",
                     path, p, p);
            if (const GgufValue* b = g.find(p + "rope.scaling.yarn_beta_fast"))
                s.yarn_beta_fast = b->as_float();
            if (const GgufValue* b = g.find(p + "rope.scaling.yarn_beta_slow"))
                s.yarn_beta_slow = b->as_float();
            s.yarn_truncate = true;
            // A yarn_log_multiplier is DeepSeek's mscale_all_dim / 10, whose graph leaves
            // cos/sin unscaled (mscale = mscale_all_dim) and scales the scores.
            const GgufValue* log_mul = g.find(p + "rope.scaling.yarn_log_multiplier");
            if (log_mul && log_mul->as_float() > 0) {
                s.mscale_all_dim = s.mscale = log_mul->as_float() / 0.1;
                s.attention_factor = 1.0;
            } else {
                s.attention_factor = 0.1 * std::log(s.factor) + 1.0;
            }
            if (const GgufValue* a = g.find(p + "rope.scaling.yarn_attn_factor"))
                s.attention_factor *= a->as_float();
        } else if (type == "linear" && factor && factor->as_float() != 1.0) {
            s.kind = RopeScaling::Kind::Linear;
            s.factor = factor->as_float();
            QL_CHECK(s.factor > 0, "{}: {}rope.scaling.factor is {}, expected positive", path, p,
                     s.factor);
        } else {
            QL_CHECK(type == "none" || type == "longrope" || (factor && factor->as_float() == 1.0),
                     "{}: {}rope.scaling.type is \"{}\"; quantlens implements unscaled, linear, "
                     "yarn and longrope rope and llama3 scaling (rope_freqs.weight) only",
                     path, p, type);
        }
    }
    // llama.cpp uses longrope whenever the factor tensors are there (Phi-3's converter writes
    // no rope.scaling.type): long ones when the context exceeds the original one.
    const std::vector<float> long_f = factors("rope_factors_long.weight", n_pairs);
    const std::vector<float> short_f = factors("rope_factors_short.weight", n_pairs);
    if (!long_f.empty() || !short_f.empty()) {
        QL_CHECK(!long_f.empty() && !short_f.empty() && s.kind == RopeScaling::Kind::None,
                 "{}: rope_factors_long.weight and rope_factors_short.weight come together, "
                 "without another rope scaling",
                 path);
        s.kind = RopeScaling::Kind::LongRope;
        s.long_factor.assign(long_f.begin(), long_f.end());
        s.short_factor.assign(short_f.begin(), short_f.end());
        s.original_max_positions = int_key("rope.scaling.original_context_length", 0);
        QL_CHECK(s.original_max_positions > 0,
                 "{}: longrope factors without {}rope.scaling.original_context_length", path, p);
        if (const GgufValue* v = g.find(p + "rope.scaling.attn_factor"))
            s.attention_factor = v->as_float();
    }
    c.rope_freq_factors = factors("rope_freqs.weight", n_pairs);  // llama3 scaling
    if (const GgufValue* v = g.find(p + "attention.sliding_window")) c.sliding_window = v->as_int();
    c.vocab = int_key("vocab_size", 0);
    if (c.vocab == 0) {
        if (const GgufValue* t = g.find("tokenizer.ggml.tokens")) c.vocab = t->array.size();
    }
    if (c.vocab == 0) {
        if (const GgufTensorInfo* e = g.find_tensor("token_embd.weight"); e && e->ne.size() == 2)
            c.vocab = e->ne[1];
    }
    QL_CHECK(c.vocab > 0, "{}: vocabulary size unknown (no {}vocab_size, tokenizer.ggml.tokens)",
             path, p);
    c.tie_embeddings = g.find_tensor("output.weight") == nullptr;
    c.qkv_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
    c.qk_norm = g.find_tensor("blk.0.attn_q_norm.weight") != nullptr;
    if (const GgufValue* v = g.find("tokenizer.ggml.bos_token_id")) c.bos_token_id = v->as_int();
    if (const GgufValue* v = g.find("tokenizer.ggml.eos_token_id")) c.eos_token_id = v->as_int();
}

}  // namespace quantlens
