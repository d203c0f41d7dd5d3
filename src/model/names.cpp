// HF ↔ GGUF names, roles, quantizability and expected shapes (see names.h).
#include "model/names.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "core/table_lookup.h"
#include "model/families/family.h"

namespace quantlens {

namespace {

struct RoleEntry {
    TensorRole role;
    const char* name;  // role_name()
    const char* gguf;  // GGUF base name ("attn_q"); suffix .weight or .bias follows
};

// Biases share the GGUF base name with their weight, so their entries come after the
// weights; role_from_gguf_name() picks the bias role by suffix.
constexpr RoleEntry kRoles[] = {
    {TensorRole::Embed, "embed", "token_embd"},
    {TensorRole::Output, "output", "output"},
    {TensorRole::OutputNorm, "output_norm", "output_norm"},
    {TensorRole::AttnNorm, "attn_norm", "attn_norm"},
    {TensorRole::FfnNorm, "ffn_norm", "ffn_norm"},
    {TensorRole::AttnQ, "attn_q", "attn_q"},
    {TensorRole::AttnK, "attn_k", "attn_k"},
    {TensorRole::AttnV, "attn_v", "attn_v"},
    {TensorRole::AttnO, "attn_o", "attn_output"},
    {TensorRole::AttnQNorm, "attn_q_norm", "attn_q_norm"},
    {TensorRole::AttnKNorm, "attn_k_norm", "attn_k_norm"},
    {TensorRole::AttnQBias, "attn_q_bias", "attn_q"},
    {TensorRole::AttnKBias, "attn_k_bias", "attn_k"},
    {TensorRole::AttnVBias, "attn_v_bias", "attn_v"},
    {TensorRole::FfnGate, "ffn_gate", "ffn_gate"},
    {TensorRole::FfnUp, "ffn_up", "ffn_up"},
    {TensorRole::FfnDown, "ffn_down", "ffn_down"},
    {TensorRole::Router, "router", "ffn_gate_inp"},
    {TensorRole::ExpertGate, "expert_gate", "ffn_gate_exps"},
    {TensorRole::ExpertUp, "expert_up", "ffn_up_exps"},
    {TensorRole::ExpertDown, "expert_down", "ffn_down_exps"},
    {TensorRole::SharedGate, "shared_gate", "ffn_gate_shexp"},
    {TensorRole::SharedUp, "shared_up", "ffn_up_shexp"},
    {TensorRole::SharedDown, "shared_down", "ffn_down_shexp"},
    {TensorRole::SharedRouter, "shared_router", "ffn_gate_inp_shexp"},
    {TensorRole::AttnQKV, "attn_qkv", "attn_qkv"},
    {TensorRole::AttnPostNorm, "attn_post_norm", "post_attention_norm"},
    {TensorRole::FfnPostNorm, "ffn_post_norm", "post_ffw_norm"},
    {TensorRole::PleTokenEmbd, "ple_token_embd", "per_layer_token_embd"},
    {TensorRole::PleModelProj, "ple_model_proj", "per_layer_model_proj"},
    {TensorRole::PleProjNorm, "ple_proj_norm", "per_layer_proj_norm"},
    {TensorRole::PleInpGate, "ple_inp_gate", "inp_gate"},
    {TensorRole::PleProj, "ple_proj", "proj"},
    {TensorRole::PlePostNorm, "ple_post_norm", "post_norm"},
    {TensorRole::LayerOutputScale, "layer_output_scale", "layer_output_scale"},
    {TensorRole::FfnPreNorm2, "ffn_pre_norm_2", "pre_ffw_norm_2"},
    {TensorRole::FfnPostNorm1, "ffn_post_norm_1", "post_ffw_norm_1"},
    {TensorRole::FfnPostNorm2, "ffn_post_norm_2", "post_ffw_norm_2"},
    {TensorRole::ExpertGateUp, "expert_gate_up", "ffn_gate_up_exps"},
    {TensorRole::RouterScale, "router_scale", "ffn_gate_inp.scale"},
    {TensorRole::ExpertScale, "expert_scale", "ffn_down_exps.scale"},
    {TensorRole::RopeFreqs, "rope_freqs", "rope_freqs"},
    {TensorRole::AttnGate, "attn_gate", "attn_gate"},
    {TensorRole::SsmConv, "ssm_conv1d", "ssm_conv1d"},
    {TensorRole::SsmA, "ssm_a", "ssm_a"},
    {TensorRole::SsmDt, "ssm_dt", "ssm_dt"},
    {TensorRole::SsmNorm, "ssm_norm", "ssm_norm"},
    {TensorRole::SsmOut, "ssm_out", "ssm_out"},
    {TensorRole::SsmBetaAlpha, "ssm_ba", "ssm_ba"},
    {TensorRole::SsmBeta, "ssm_beta", "ssm_beta"},
    {TensorRole::SsmAlpha, "ssm_alpha", "ssm_alpha"},
    {TensorRole::AttnQA, "attn_q_a", "attn_q_a"},
    {TensorRole::AttnQANorm, "attn_q_a_norm", "attn_q_a_norm"},
    {TensorRole::AttnQB, "attn_q_b", "attn_q_b"},
    {TensorRole::AttnKVAMqa, "attn_kv_a_mqa", "attn_kv_a_mqa"},
    {TensorRole::AttnKVANorm, "attn_kv_a_norm", "attn_kv_a_norm"},
    {TensorRole::AttnKB, "attn_k_b", "attn_k_b"},
    {TensorRole::AttnVB, "attn_v_b", "attn_v_b"},
    {TensorRole::ExpertProbsBias, "exp_probs_b", "exp_probs_b"},
    {TensorRole::Other, "other", ""},
};

bool parse_index(const std::string& s, int& out) {
    if (s.empty() || s.size() > 6) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    out = std::atoi(s.c_str());
    return true;
}

}  // namespace

const char* role_name(TensorRole role) {
    const RoleEntry* r = find_entry(kRoles, &RoleEntry::role, role);
    return r ? r->name : "other";
}

std::optional<TensorRole> role_from_name(const std::string& name) {
    if (const RoleEntry* r = find_entry(kRoles, &RoleEntry::name, name)) return r->role;
    return std::nullopt;
}

namespace {

// transformers names DeepSeek's routing bias buffer "...gate.e_score_correction_bias"; the
// converter renames it "...gate.e_score_correction.bias" before mapping (exp_probs_b.bias).
constexpr const char* kScoreBiasHf = "e_score_correction_bias";
constexpr const char* kScoreBiasMapped = "e_score_correction.bias";

// Splits "name.weight" / "name.bias" into base and suffix; the suffix is "" for neither.
std::pair<std::string, std::string> split_suffix(const std::string& raw) {
    std::string name = raw;
    if (name.ends_with(kScoreBiasHf))
        name.replace(name.size() - std::strlen(kScoreBiasHf), std::string::npos, kScoreBiasMapped);
    for (const char* s : {".weight", ".bias"}) {
        const std::string sf = s;
        if (name.size() > sf.size() && name.compare(name.size() - sf.size(), sf.size(), sf) == 0)
            return {name.substr(0, name.size() - sf.size()), sf};
    }
    return {name, ""};
}

// Matches `rest` against a family's HF pattern, reading the expert index at "{E}".
bool match_hf(const std::string& rest, const std::string& pattern, int& expert) {
    const size_t at = pattern.find("{E}");
    if (at == std::string::npos) return rest == pattern;
    const std::string head = pattern.substr(0, at), tail = pattern.substr(at + 3);
    if (rest.size() <= head.size() + tail.size() || rest.compare(0, head.size(), head) != 0 ||
        rest.compare(rest.size() - tail.size(), tail.size(), tail) != 0)
        return false;
    return parse_index(rest.substr(head.size(), rest.size() - head.size() - tail.size()), expert);
}

// `skip`: how many earlier matches to pass over (an HF tensor the converter splits into
// several GGUF tensors matches once per part).
std::optional<HfName> family_hf_to_gguf(const std::string& hf, const Family& f, int skip = 0) {
    for (const auto& g : f.globals)
        if (hf == g.hf && skip-- <= 0) return HfName{g.gguf};
    static const std::string kPrefix = "model.layers.";
    if (hf.rfind(kPrefix, 0) != 0) return std::nullopt;
    const size_t dot = hf.find('.', kPrefix.size());
    if (dot == std::string::npos) return std::nullopt;
    HfName out;
    if (!parse_index(hf.substr(kPrefix.size(), dot - kPrefix.size()), out.layer))
        return std::nullopt;
    const auto [rest, suffix] = split_suffix(hf.substr(dot + 1));  // "self_attn.q_proj"
    for (const auto& t : f.layer_tensors) {
        // An entry whose GGUF name has its suffix maps an HF name without one (Gemma 4's
        // layer_scalar → layer_output_scale.weight, router.scale → ffn_gate_inp.scale).
        if (!t.bare && t.gguf.find('.') != std::string::npos) {
            if (hf.substr(dot + 1) != t.hf || skip-- > 0) continue;
            out.gguf = "blk." + std::to_string(out.layer) + "." + t.gguf;
            return out;
        }
        if (t.bare ? !suffix.empty() || rest != t.hf
                   : suffix.empty() || !match_hf(rest, t.hf, out.expert))
            continue;
        if (skip-- > 0) continue;
        out.gguf = "blk." + std::to_string(out.layer) + "." + t.gguf + suffix;
        return out;
    }
    return std::nullopt;
}

}  // namespace

std::optional<HfName> hf_to_gguf(const std::string& hf, Arch arch) {
    return family_hf_to_gguf(hf, family_of(arch));
}

std::vector<HfName> hf_to_gguf_all(const std::string& hf, Arch arch) {
    std::vector<HfName> out;
    for (int skip = 0;; ++skip) {
        auto one = family_hf_to_gguf(hf, family_of(arch), skip);
        if (!one) return out;
        out.push_back(std::move(*one));
    }
}

std::optional<HfName> hf_to_gguf(const std::string& hf) {
    for (const Family* f : families())
        if (auto out = family_hf_to_gguf(hf, *f)) return out;
    return std::nullopt;
}

std::string gguf_to_hf(const std::string& gguf, Arch arch) {
    const Family& f = family_of(arch);
    for (const auto& g : f.globals)
        if (gguf == g.gguf) return g.hf;
    const int layer = layer_from_gguf_name(gguf);
    if (layer < 0) return "";
    const std::string blk = "blk." + std::to_string(layer) + ".";
    const auto [rest, suffix] = split_suffix(gguf.substr(blk.size()));
    const std::string whole = gguf.substr(blk.size());  // "ssm_a", "ssm_dt.bias"
    for (const auto& t : f.layer_tensors) {
        if (t.bare && whole == t.gguf) return "model.layers." + std::to_string(layer) + "." + t.hf;
        if (!t.bare && t.gguf.find('.') != std::string::npos && whole == t.gguf)
            return "model.layers." + std::to_string(layer) + "." + t.hf;
        if (t.bare || rest != t.gguf) continue;
        std::string hf = "model.layers." + std::to_string(layer) + "." + t.hf + suffix;
        if (hf.ends_with(kScoreBiasMapped))
            hf.replace(hf.size() - std::strlen(kScoreBiasMapped), std::string::npos, kScoreBiasHf);
        return hf;
    }
    return "";
}

int layer_from_gguf_name(const std::string& gguf) {
    if (gguf.rfind("blk.", 0) != 0) return -1;
    const size_t dot = gguf.find('.', 4);
    int layer = -1;
    if (dot == std::string::npos || !parse_index(gguf.substr(4, dot - 4), layer)) return -1;
    return layer;
}

TensorRole role_from_gguf_name(const std::string& gguf) {
    std::string base = gguf;
    bool bias = false;
    if (base.size() > 5 && base.compare(base.size() - 5, 5, ".bias") == 0) {
        bias = true;
        base.resize(base.size() - 5);
    } else if (base.size() > 7 && base.compare(base.size() - 7, 7, ".weight") == 0) {
        base.resize(base.size() - 7);
    }
    if (const int layer = layer_from_gguf_name(gguf); layer >= 0)
        base = base.substr(base.find('.', 4) + 1);
    if (bias) {
        if (base == "attn_q") return TensorRole::AttnQBias;
        if (base == "attn_k") return TensorRole::AttnKBias;
        if (base == "attn_v") return TensorRole::AttnVBias;
        if (base == "ssm_dt") return TensorRole::SsmDt;
        if (base == "exp_probs_b") return TensorRole::ExpertProbsBias;
        return TensorRole::Other;
    }
    for (const auto& r : kRoles) {
        if (r.role == TensorRole::AttnQBias) break;  // bias entries follow; weights only here
        if (base == r.gguf) return r.role;
    }
    for (const auto& r : kRoles)
        if (r.role > TensorRole::AttnVBias && base == r.gguf) return r.role;
    return TensorRole::Other;
}

bool is_attention_projection(TensorRole r) {
    return r == TensorRole::AttnQ || r == TensorRole::AttnK || r == TensorRole::AttnV ||
           r == TensorRole::AttnO;
}

bool is_dense_mlp(TensorRole r) {
    return r == TensorRole::FfnGate || r == TensorRole::FfnUp || r == TensorRole::FfnDown;
}

bool is_routed_experts(TensorRole r) {
    return r == TensorRole::ExpertGate || r == TensorRole::ExpertUp || r == TensorRole::ExpertDown;
}

bool is_shared_expert(TensorRole r) {
    return r == TensorRole::SharedGate || r == TensorRole::SharedUp || r == TensorRole::SharedDown;
}

bool is_quantizable(TensorRole role, const std::vector<int64_t>& ne) {
    if (ne.size() < 2) return false;
    switch (role) {
        case TensorRole::OutputNorm:
        case TensorRole::AttnNorm:
        case TensorRole::FfnNorm:
        case TensorRole::AttnQNorm:
        case TensorRole::AttnKNorm:
        case TensorRole::AttnPostNorm:
        case TensorRole::FfnPostNorm:
        case TensorRole::AttnQBias:
        case TensorRole::AttnKBias:
        case TensorRole::AttnVBias:
        case TensorRole::Router:
        case TensorRole::SharedRouter:
        case TensorRole::PleModelProj:  // llama-quantize: "not too big so keep them as it is"
        case TensorRole::PleProjNorm:
        case TensorRole::PlePostNorm:
        case TensorRole::LayerOutputScale:
        case TensorRole::FfnPreNorm2:
        case TensorRole::FfnPostNorm1:
        case TensorRole::FfnPostNorm2:
        case TensorRole::RouterScale:
        case TensorRole::ExpertScale:
        case TensorRole::RopeFreqs:
        case TensorRole::SsmConv:  // llama-quantize keeps ssm_conv1d.weight as it is
        case TensorRole::SsmA:
        case TensorRole::SsmDt:
        case TensorRole::SsmNorm:
        case TensorRole::AttnQANorm:
        case TensorRole::AttnKVANorm:
        case TensorRole::ExpertProbsBias:
        case TensorRole::Other:
            return false;
        default:
            return true;
    }
}

std::vector<int64_t> expected_ne(TensorRole role, const ModelConfig& c) {
    const int64_t q = c.n_heads * c.head_dim;
    const int64_t kv = c.n_kv_heads * c.head_dim;
    switch (role) {
        case TensorRole::Embed:
        case TensorRole::Output:
            return {c.hidden, c.vocab};
        case TensorRole::OutputNorm:
        case TensorRole::AttnNorm:
        case TensorRole::FfnNorm:
        case TensorRole::AttnPostNorm:
        case TensorRole::FfnPostNorm:
            return {c.hidden};
        case TensorRole::AttnQKV:
            if (c.is_hybrid()) return {c.hidden, c.ssm_conv_dim()};  // the DeltaNet's q|k|v
            return {c.hidden, q + 2 * kv};
        case TensorRole::AttnQ:
            if (c.is_hybrid()) return {c.hidden, 2 * q};  // each head's query then its gate
            return {c.hidden, q};
        case TensorRole::AttnK:
        case TensorRole::AttnV:
            return {c.hidden, kv};
        case TensorRole::AttnO:
            return {c.mla ? c.n_heads * c.v_head_dim : q, c.hidden};
        case TensorRole::AttnQNorm:
        case TensorRole::AttnKNorm:
            return {c.head_dim};
        case TensorRole::AttnQBias:
            return {q};
        case TensorRole::AttnKBias:
        case TensorRole::AttnVBias:
            return {kv};
        case TensorRole::FfnGate:  // in an MoE model, a leading dense layer's
            return {c.hidden, c.dense_ffn_width()};
        case TensorRole::FfnUp:
            return {c.hidden, c.fused_gate_up ? 2 * c.ffn : c.dense_ffn_width()};
        case TensorRole::FfnDown:
            return {c.dense_ffn_width(), c.hidden};
        case TensorRole::Router:
            return {c.hidden, c.n_experts};
        case TensorRole::ExpertGate:
        case TensorRole::ExpertUp:
            return {c.hidden, c.ffn, c.n_experts};
        case TensorRole::ExpertDown:
            return {c.ffn, c.hidden, c.n_experts};
        case TensorRole::SharedGate:
        case TensorRole::SharedUp:
            return {c.hidden, c.shared_expert_ffn};
        case TensorRole::SharedDown:
            return {c.shared_expert_ffn, c.hidden};
        case TensorRole::SharedRouter:
            return {c.hidden};
        case TensorRole::AttnQA:
            return {c.hidden, c.q_lora_rank};
        case TensorRole::AttnQANorm:
            return {c.q_lora_rank};
        case TensorRole::AttnQB:
            return {c.q_lora_rank, c.n_heads * (c.qk_nope_dim + c.head_dim)};
        case TensorRole::AttnKVAMqa:
            return {c.hidden, c.kv_lora_rank + c.head_dim};
        case TensorRole::AttnKVANorm:
            return {c.kv_lora_rank};
        case TensorRole::AttnKB:
            return {c.qk_nope_dim, c.kv_lora_rank, c.n_heads};
        case TensorRole::AttnVB:
            return {c.kv_lora_rank, c.v_head_dim, c.n_heads};
        case TensorRole::ExpertProbsBias:
            return {c.n_experts};
        case TensorRole::AttnGate:
            return {c.hidden, c.ssm_v_heads * c.ssm_v_dim};
        case TensorRole::SsmConv:
            return {c.ssm_conv_kernel, c.ssm_conv_dim()};
        case TensorRole::SsmA:
        case TensorRole::SsmDt:
            return {c.ssm_v_heads};
        case TensorRole::SsmNorm:
            return {c.ssm_v_dim};
        case TensorRole::SsmOut:
            return {c.ssm_v_heads * c.ssm_v_dim, c.hidden};
        case TensorRole::SsmBetaAlpha:
            return {c.hidden, 2 * c.ssm_v_heads};
        case TensorRole::SsmBeta:
        case TensorRole::SsmAlpha:
            return {c.hidden, c.ssm_v_heads};
        case TensorRole::PleTokenEmbd:
            return {c.n_layers * c.ple_dim, c.vocab};
        case TensorRole::PleModelProj:
            return {c.hidden, c.n_layers * c.ple_dim};
        case TensorRole::PleProjNorm:
            return {c.ple_dim};
        case TensorRole::PleInpGate:
            return {c.hidden, c.ple_dim};
        case TensorRole::PleProj:
            return {c.ple_dim, c.hidden};
        case TensorRole::PlePostNorm:
        case TensorRole::FfnPreNorm2:
        case TensorRole::FfnPostNorm1:
        case TensorRole::FfnPostNorm2:
        case TensorRole::RouterScale:
            return {c.hidden};
        case TensorRole::LayerOutputScale:
            return {1};
        case TensorRole::ExpertGateUp:
            return {c.hidden, 2 * c.expert_ffn, c.n_experts};
        case TensorRole::ExpertScale:
            return {c.n_experts};
        case TensorRole::RopeFreqs:
        case TensorRole::Other:
            return {};
    }
    return {};
}

std::vector<int64_t> expected_ne_in_layer(TensorRole role, const ModelConfig& c, int layer) {
    if (!c.is_gemma4() || layer < 0 || layer >= c.n_layers) return expected_ne(role, c);
    const ModelConfig::Gemma4Layer& g = c.gemma4_layers[static_cast<size_t>(layer)];
    const int64_t q = c.n_heads * g.head_dim, kv = g.n_kv_heads * g.head_dim;
    switch (role) {
        case TensorRole::AttnQ:
            return {c.hidden, q};
        case TensorRole::AttnK:
        case TensorRole::AttnV:
            return {c.hidden, kv};
        case TensorRole::AttnO:
            return {q, c.hidden};
        case TensorRole::AttnQNorm:
        case TensorRole::AttnKNorm:
            return {g.head_dim};
        case TensorRole::FfnGate:
        case TensorRole::FfnUp:
            return {c.hidden, g.ffn};
        case TensorRole::FfnDown:
            return {g.ffn, c.hidden};
        case TensorRole::ExpertDown:
            return {c.expert_ffn, c.hidden, c.n_experts};
        default:
            return expected_ne(role, c);
    }
}

std::string format_shape(const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

bool same_shape(std::vector<int64_t> a, std::vector<int64_t> b) {
    for (auto* v : {&a, &b})
        while (v->size() > 1 && v->back() == 1) v->pop_back();
    return a == b;
}

}  // namespace quantlens
