// llama-quantize's per-tensor type choices for each preset (see presets.h).
#include "analysis/write/presets.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <numeric>

#include <fmt/format.h>

#include "core/error.h"
#include "core/table_lookup.h"
#include "quant/quant.h"

namespace quantlens {

namespace {

// llama_ftype ids (llama.h); append-only there, so frozen here.
enum Ftype : uint32_t {
    ALL_F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q8_0 = 7,
    Q5_0 = 8,
    Q5_1 = 9,
    Q2_K = 10,
    Q3_K_S = 11,
    Q3_K_M = 12,
    Q3_K_L = 13,
    Q4_K_S = 14,
    Q4_K_M = 15,
    Q5_K_S = 16,
    Q5_K_M = 17,
    Q6_K = 18,
    IQ2_XXS = 19,
    IQ2_XS = 20,
    Q2_K_S = 21,
    IQ3_XS = 22,
    IQ3_XXS = 23,
    IQ1_S = 24,
    IQ4_NL = 25,
    IQ3_S = 26,
    IQ3_M = 27,
    IQ2_S = 28,
    IQ2_M = 29,
    IQ4_XS = 30,
    IQ1_M = 31,
    BF16 = 32,
    TQ1_0 = 36,
    TQ2_0 = 37,
    MXFP4_MOE = 38,
};

using T = GgmlType;

const std::vector<Preset> kPresets = {
    {"F32", ALL_F32, T::F32, false},
    {"F16", F16, T::F16, false},
    {"BF16", BF16, T::BF16, false},
    {"Q8_0", Q8_0, T::Q8_0, false},
    {"Q6_K", Q6_K, T::Q6_K, false},
    {"Q5_K_M", Q5_K_M, T::Q5_K, false},
    {"Q5_K_S", Q5_K_S, T::Q5_K, false},
    {"Q5_1", Q5_1, T::Q5_1, false},
    {"Q5_0", Q5_0, T::Q5_0, false},
    {"Q4_K_M", Q4_K_M, T::Q4_K, false},
    {"Q4_K_S", Q4_K_S, T::Q4_K, false},
    {"Q4_1", Q4_1, T::Q4_1, false},
    {"Q4_0", Q4_0, T::Q4_0, false},
    {"IQ4_NL", IQ4_NL, T::IQ4_NL, false},
    {"IQ4_XS", IQ4_XS, T::IQ4_XS, false},
    {"Q3_K_L", Q3_K_L, T::Q3_K, false},
    {"Q3_K_M", Q3_K_M, T::Q3_K, false},
    {"Q3_K_S", Q3_K_S, T::Q3_K, false},
    {"IQ3_M", IQ3_M, T::IQ3_S, false},
    {"IQ3_S", IQ3_S, T::IQ3_S, false},
    {"IQ3_XS", IQ3_XS, T::IQ3_S, false},
    {"IQ3_XXS", IQ3_XXS, T::IQ3_XXS, false},
    {"Q2_K", Q2_K, T::Q2_K, false},
    {"Q2_K_S", Q2_K_S, T::Q2_K, true},
    {"IQ2_M", IQ2_M, T::IQ2_S, false},
    {"IQ2_S", IQ2_S, T::IQ2_XS, false},
    {"IQ2_XS", IQ2_XS, T::IQ2_XS, true},
    {"IQ2_XXS", IQ2_XXS, T::IQ2_XXS, true},
    {"IQ1_M", IQ1_M, T::IQ1_M, true},
    {"IQ1_S", IQ1_S, T::IQ1_S, true},
    {"TQ2_0", TQ2_0, T::TQ2_0, false},
    {"TQ1_0", TQ1_0, T::TQ1_0, false},
    {"MXFP4_MOE", MXFP4_MOE, T::MXFP4, false},
};

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::toupper(static_cast<unsigned char>(x)) ==
                      std::toupper(static_cast<unsigned char>(y));
           });
}

bool contains(const std::string& s, const char* part) {
    return s.find(part) != std::string::npos;
}

int block_of(const std::string& name) {
    int layer = -1;
    if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
    return layer;
}

// Broad tensor families the rules speak about (matched by substring, as llama.cpp does,
// so stacked experts and shared experts fall in their FFN family).
enum class Family {
    Output,
    TokenEmbd,
    AttnQkv,
    AttnKvB,
    AttnV,
    AttnK,
    AttnQ,
    AttnOut,
    FfnUp,
    FfnGate,
    FfnDown,
    Other
};

Family family_of(const std::string& name) {
    if (name == "output.weight") return Family::Output;
    if (name == "token_embd.weight") return Family::TokenEmbd;
    if (contains(name, "attn_qkv.weight")) return Family::AttnQkv;
    if (contains(name, "attn_kv_b.weight")) return Family::AttnKvB;
    if (contains(name, "attn_v.weight")) return Family::AttnV;
    if (contains(name, "attn_k.weight")) return Family::AttnK;
    if (contains(name, "attn_q.weight")) return Family::AttnQ;
    if (contains(name, "attn_output.weight")) return Family::AttnOut;
    if (contains(name, "ffn_up")) return Family::FfnUp;
    if (contains(name, "ffn_gate")) return Family::FfnGate;
    if (contains(name, "ffn_down")) return Family::FfnDown;
    return Family::Other;
}

bool is_value_like(Family f) {
    return f == Family::AttnV || f == Family::AttnQkv || f == Family::AttnKvB;
}

// The layers that get extra bits: the first and last eighth, and every third in between.
bool use_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

// Everything the rules read besides the tensor itself.
struct RuleState {
    uint32_t ftype = 0;
    bool has_imatrix = false;
    bool has_output = false;
    int n_gqa = 1;
    int n_expert = 0;
    int n_layer = 0;
    bool is_70b = false;
    int n_attn_v = 0;
    int i_attn_v = 0;
    int i_ffn_down = 0;
    int i_ffn_gate = 0;
    int i_ffn_up = 0;
};

bool any_of(uint32_t f, std::initializer_list<uint32_t> set) {
    return std::find(set.begin(), set.end(), f) != set.end();
}

// Layer index for the ffn rules: the running counter for dense models; for MoE models the
// block number in the name (experts are not consecutive in every file).
int ffn_layer(const RuleState& s, int counter, const std::string& name) {
    if (s.n_expert > 1) {
        const int layer = block_of(name);
        QL_CHECK(layer >= 0 && layer < s.n_layer, "preset: cannot determine the layer of '{}'",
                 name);
        return layer;
    }
    return counter;
}

GgmlType output_type(const RuleState& s, GgmlType t, int64_t row) {
    if (s.ftype == MXFP4_MOE) return T::Q8_0;
    if (row % 256 != 0) return T::Q8_0;
    if (any_of(s.ftype, {IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ2_S, IQ2_M, IQ1_M})) return T::Q5_K;
    return t == T::Q8_0 ? t : T::Q6_K;
}

GgmlType very_low_bit_type(RuleState& s, GgmlType t, Family f) {
    const uint32_t ft = s.ftype;
    const bool iq2s_family = ft == IQ2_S || ft == IQ2_M;
    if (f == Family::AttnV) {
        if (s.n_gqa >= 4 || s.n_expert >= 4)
            t = T::Q4_K;
        else
            t = iq2s_family ? T::IQ3_S : T::Q2_K;
        ++s.i_attn_v;
    } else if (s.n_expert == 8 && f == Family::AttnK) {
        t = T::Q4_K;
    } else if (f == Family::FfnDown) {
        if (s.i_ffn_down < s.n_layer / 8) t = iq2s_family ? T::IQ3_S : T::Q2_K;
        ++s.i_ffn_down;
    } else if (f == Family::AttnOut) {
        if (s.n_expert == 8)
            t = T::Q5_K;
        else if (ft == IQ1_S || ft == IQ1_M)
            t = T::IQ2_XXS;
        else if (iq2s_family)
            t = T::IQ3_S;
    }
    return t;
}

GgmlType value_type(RuleState& s, GgmlType t) {
    const uint32_t ft = s.ftype;
    if (ft == Q2_K)
        t = s.n_gqa >= 4 ? T::Q4_K : T::Q3_K;
    else if (ft == Q2_K_S && s.n_gqa >= 4)
        t = T::Q4_K;
    else if (ft == IQ3_XXS)
        t = s.n_gqa >= 4 ? T::Q4_K : (!s.has_imatrix ? T::IQ3_S : T::IQ3_XXS);
    else if ((ft == IQ3_XS || ft == IQ3_S) && s.n_gqa >= 4)
        t = T::Q4_K;
    else if (ft == IQ3_M)
        t = T::Q4_K;
    else if (ft == Q3_K_M)
        t = s.i_attn_v < 2 ? T::Q5_K : T::Q4_K;
    else if (ft == Q3_K_L)
        t = T::Q5_K;
    else if ((ft == IQ4_NL || ft == IQ4_XS) && s.n_gqa >= 4)
        t = T::Q5_K;
    else if ((ft == Q4_K_M || ft == Q5_K_M) && use_more_bits(s.i_attn_v, s.n_attn_v))
        t = T::Q6_K;
    else if (ft == Q4_K_S && s.i_attn_v < 4)
        t = T::Q5_K;
    // 70B: 8 query heads share each value head, so attn_v is small and cheap to widen.
    if (s.is_70b && (t == T::Q3_K || t == T::Q4_K)) t = T::Q5_K;
    if (s.n_expert == 8) t = T::Q8_0;
    ++s.i_attn_v;
    return t;
}

GgmlType ffn_down_type(RuleState& s, GgmlType t, const std::string& name) {
    const uint32_t ft = s.ftype;
    const int i = ffn_layer(s, s.i_ffn_down, name);
    const int n = s.n_layer;
    if (ft == Q2_K)
        t = T::Q3_K;
    else if (ft == Q2_K_S) {
        if (i < n / 8) t = T::Q4_K;
    } else if (ft == IQ3_XXS && !s.has_imatrix)
        t = i < n / 8 ? T::Q4_K : T::Q3_K;
    else if (ft == Q3_K_M)
        t = i < n / 16 ? T::Q5_K : T::Q4_K;  // (non-Falcon: always at least Q4_K)
    else if (ft == IQ3_M && (i < n / 8 || (s.n_expert == 8 && use_more_bits(i, n))))
        t = T::Q4_K;
    else if (ft == Q3_K_L)
        t = T::Q5_K;
    else if (ft == Q4_K_M) {
        if (use_more_bits(i, n)) t = T::Q6_K;
    } else if (i < n / 8 && (ft == IQ4_NL || ft == IQ4_XS) && !s.has_imatrix)
        t = T::Q5_K;
    else if (ft == Q5_K_M && use_more_bits(i, n))
        t = T::Q6_K;
    else if (ft == Q4_K_S && i < n / 8)
        t = T::Q5_K;
    else if ((ft == Q4_0 || ft == Q5_0) && s.has_imatrix && i < n / 8)
        t = ft == Q4_0 ? T::Q4_1 : T::Q5_1;  // early ffn_down misbehaves even with an imatrix
    ++s.i_ffn_down;
    return t;
}

GgmlType attn_output_type(const RuleState& s, GgmlType t) {
    const uint32_t ft = s.ftype;
    if (s.n_expert == 8) {
        if (any_of(ft, {Q2_K, IQ3_XS, IQ3_XXS, Q3_K_S, Q3_K_M, IQ4_NL, Q4_K_S, Q4_K_M, IQ3_S, IQ3_M,
                        IQ4_XS}))
            t = T::Q5_K;
        return t;
    }
    if (ft == Q2_K) return T::Q3_K;
    if (ft == IQ3_XXS) return T::IQ3_S;
    if (ft == Q3_K_M || ft == IQ3_M) return T::Q4_K;
    if (ft == Q3_K_L) return T::Q5_K;
    return t;
}

// The type llama-quantize picks for one quantizable tensor, before the row-length fallback.
GgmlType rule_type(RuleState& s, GgmlType t, const std::string& name, int64_t row) {
    const uint32_t ft = s.ftype;
    const Family f = family_of(name);
    if (f == Family::Output || (!s.has_output && f == Family::TokenEmbd))
        return output_type(s, t, row);
    if (ft == MXFP4_MOE) return t;  // handled by the caller (depends on the shape)
    if (f == Family::TokenEmbd) {
        if (any_of(ft, {IQ2_XXS, IQ2_XS, IQ1_S, IQ1_M})) return T::Q2_K;
        if (any_of(ft, {IQ2_S, IQ2_M, IQ3_XXS})) return T::IQ3_S;
        if (ft == TQ1_0 || ft == TQ2_0) return T::Q4_K;
        return t;
    }
    if (any_of(ft, {IQ2_XXS, IQ2_XS, IQ1_S, IQ2_S, IQ2_M, IQ1_M}))
        return very_low_bit_type(s, t, f);
    // The 2025-02 rules: only attn_v takes the value rule; a fused attn_qkv has its own
    // (both count towards the number of value tensors).
    if (f == Family::AttnV) return value_type(s, t);
    if (f == Family::AttnQkv) {
        if (ft == Q3_K_M || ft == Q3_K_L || ft == IQ3_M) return T::Q4_K;
        if (ft == Q4_K_M) return T::Q5_K;
        if (ft == Q5_K_M) return T::Q6_K;
        return t;
    }
    if (f == Family::AttnK) {
        if (s.n_expert == 8) return T::Q8_0;
        if (ft == IQ3_XS) return T::IQ3_XXS;
        if (ft == IQ3_XXS) return T::IQ2_S;
        return t;
    }
    if (f == Family::AttnQ) {
        if (ft == IQ3_XS) return T::IQ3_XXS;
        if (ft == IQ3_XXS) return T::IQ2_S;
        return t;
    }
    if (f == Family::FfnDown) return ffn_down_type(s, t, name);
    if (f == Family::AttnOut) return attn_output_type(s, t);
    if (f == Family::FfnGate || f == Family::FfnUp) {
        int& counter = f == Family::FfnGate ? s.i_ffn_gate : s.i_ffn_up;
        const int i = ffn_layer(s, counter, name);
        if (ft == IQ3_XS && i >= s.n_layer / 8 && i < 7 * s.n_layer / 8) t = T::IQ3_XXS;
        ++counter;
        return t;
    }
    return t;
}

int64_t n_dims(const std::vector<int64_t>& ne) {
    int64_t n = static_cast<int64_t>(ne.size());
    while (n > 1 && ne[static_cast<size_t>(n - 1)] == 1) --n;
    return n;
}

}  // namespace

const std::vector<Preset>& all_presets() {
    return kPresets;
}

const Preset* find_preset(std::string_view name) {
    for (const auto& p : kPresets)
        if (iequals(p.name, name)) return &p;
    return nullptr;
}

const Preset& get_preset(std::string_view name) {
    if (const Preset* p = find_preset(name)) return *p;
    std::string known;
    for (const auto& p : kPresets) known += fmt::format("{}{}", known.empty() ? "" : ", ", p.name);
    fail("unknown preset '{}' (known: {})", name, known);
}

std::string ftype_name(uint32_t ftype) {
    if (const Preset* p = find_entry(kPresets, &Preset::ftype, ftype)) return p->name;
    return fmt::format("ftype {}", ftype);
}

uint32_t ftype_for_dominant_type(GgmlType type) {
    switch (type) {
        case T::F32:
            return ALL_F32;
        case T::F16:
            return F16;
        case T::BF16:
            return BF16;
        case T::Q4_0:
            return Q4_0;
        case T::Q4_1:
            return Q4_1;
        case T::Q5_0:
            return Q5_0;
        case T::Q5_1:
            return Q5_1;
        case T::Q8_0:
            return Q8_0;
        case T::Q2_K:
            return Q2_K;
        case T::Q3_K:
            return Q3_K_M;
        case T::Q4_K:
            return Q4_K_M;
        case T::Q5_K:
            return Q5_K_M;
        case T::Q6_K:
            return Q6_K;
        case T::IQ2_XXS:
            return IQ2_XXS;
        case T::IQ2_XS:
            return IQ2_XS;
        case T::IQ2_S:
            return IQ2_S;
        case T::IQ3_XXS:
            return IQ3_XXS;
        case T::IQ3_S:
            return IQ3_S;
        case T::IQ1_S:
            return IQ1_S;
        case T::IQ1_M:
            return IQ1_M;
        case T::IQ4_NL:
            return IQ4_NL;
        case T::IQ4_XS:
            return IQ4_XS;
        case T::TQ1_0:
            return TQ1_0;
        case T::TQ2_0:
            return TQ2_0;
        case T::MXFP4:
            return MXFP4_MOE;
        default:
            return ALL_F32;
    }
}

bool llama_quantizes(const std::string& name, const std::vector<int64_t>& ne) {
    if (n_dims(ne) < 2) return false;
    const std::string suffix = "weight";
    if (name.size() < suffix.size() ||
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
        return false;
    if (contains(name, "_norm.weight")) return false;
    if (contains(name, "ffn_gate_inp.weight")) return false;   // MoE router stays in float
    if (contains(name, "per_layer_model_proj")) return false;  // Gemma: kept as it is
    if (contains(name, "ssm_conv1d.weight")) return false;     // Gated DeltaNet / Mamba conv
    return true;
}

std::vector<size_t> llama_tensor_order(const std::vector<std::string>& names) {
    std::vector<size_t> order(names.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        const int la = block_of(names[a]);
        const int lb = block_of(names[b]);
        if (la != lb) return la < lb;
        return names[a] < names[b];
    });
    return order;
}

Recipe preset_recipe(const Preset& preset, const ModelConfig& config,
                     const std::vector<TensorInfo>& tensors, bool has_imatrix) {
    std::vector<std::string> names;
    for (const auto& t : tensors) names.push_back(t.name);
    const std::vector<size_t> order = llama_tensor_order(names);

    RuleState s;
    s.ftype = preset.ftype;
    s.has_imatrix = has_imatrix;
    s.n_gqa = config.n_kv_heads > 0 ? static_cast<int>(config.n_heads / config.n_kv_heads) : 1;
    s.n_expert = static_cast<int>(config.n_experts);
    s.n_layer = static_cast<int>(config.n_layers);
    // llama.cpp calls an 80-layer llama with grouped-query attention "70B".
    s.is_70b =
        config.gguf_arch == "llama" && config.n_layers == 80 && config.n_heads != config.n_kv_heads;
    for (const auto& n : names) {
        if (n == "output.weight") s.has_output = true;
        if (is_value_like(family_of(n))) ++s.n_attn_v;
    }

    Recipe r;
    r.budget_kind = "preset";
    r.budget_value = preset.ftype;
    r.metric = "";
    r.default_type = preset.default_type;
    const bool quantized_default = ggml_type_info(preset.default_type).quantized;
    for (size_t idx : order) {
        const TensorInfo& t = tensors[idx];
        if (!llama_quantizes(t.name, t.ne)) continue;
        GgmlType type = preset.default_type;
        if (quantized_default) {
            if (preset.ftype == MXFP4_MOE && family_of(t.name) != Family::Output &&
                !(family_of(t.name) == Family::TokenEmbd && !s.has_output))
                type = (t.ne.size() > 2 && t.ne[2] > 1) ? T::MXFP4 : T::Q8_0;
            else
                type = rule_type(s, type, t.name, t.n_per_row());
            const GgmlType fb = fallback_type(type, t.n_per_row());
            if (fb != type) {
                r.notes.push_back(fmt::format(
                    "{}: {} → {} (row of {} is not a multiple of {}, llama.cpp's fallback)", t.name,
                    ggml_type_display_name(type), ggml_type_display_name(fb), t.n_per_row(),
                    ggml_type_info(type).block_size));
                type = fb;
            }
        }
        r.tensors[t.name] = type;
    }
    return r;
}

Recipe preset_recipe(std::string_view preset, const Model& model, bool has_imatrix) {
    Recipe r = preset_recipe(get_preset(preset), model.config(), model.tensors(), has_imatrix);
    r.model = model.path();
    return r;
}

}  // namespace quantlens
