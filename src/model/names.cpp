// HF ↔ GGUF names, roles, quantizability and expected shapes (see names.h).
#include "model/names.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
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
    for (const auto& r : kRoles)
        if (r.role == role) return r.name;
    return "other";
}

std::optional<TensorRole> role_from_name(const std::string& name) {
    for (const auto& r : kRoles)
        if (name == r.name) return r.role;
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

std::optional<HfName> family_hf_to_gguf(const std::string& hf, const Family& f) {
    for (const auto& g : f.globals)
        if (hf == g.hf) return HfName{g.gguf};
    static const std::string kPrefix = "model.layers.";
    if (hf.rfind(kPrefix, 0) != 0) return std::nullopt;
    const size_t dot = hf.find('.', kPrefix.size());
    if (dot == std::string::npos) return std::nullopt;
    HfName out;
    if (!parse_index(hf.substr(kPrefix.size(), dot - kPrefix.size()), out.layer))
        return std::nullopt;
    const auto [rest, suffix] = split_suffix(hf.substr(dot + 1));  // "self_attn.q_proj"
    if (suffix.empty()) return std::nullopt;
    for (const auto& t : f.layer_tensors) {
        if (!match_hf(rest, t.hf, out.expert)) continue;
        out.gguf = "blk." + std::to_string(out.layer) + "." + t.gguf + suffix;
        return out;
    }
    return std::nullopt;
}

}  // namespace

std::optional<HfName> hf_to_gguf(const std::string& hf, Arch arch) {
    return family_hf_to_gguf(hf, family_of(arch));
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
    for (const auto& t : f.layer_tensors) {
        if (rest != t.gguf) continue;
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
            return {c.hidden, q + 2 * kv};
        case TensorRole::AttnQ:
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
        case TensorRole::Other:
            return {};
    }
    return {};
}

std::string format_shape(const std::vector<int64_t>& dims) {
    std::string s = "[";
    for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
    return s + "]";
}

}  // namespace quantlens
