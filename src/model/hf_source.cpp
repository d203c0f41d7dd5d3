// Hugging Face source: config.json + safetensors, presented in GGUF layout.
//
// What changes on the way (so values match what llama.cpp's converter writes, before any
// rounding to the file type):
//  - shapes are reversed into ggml order (HF [rows, cols] → ne [cols, rows]);
//  - for families with normal RoPE (RopeStyle::Normal: Llama, Mistral, Mixtral) the rows of
//    attn_q and attn_k are permuted per head from HF's half-split RoPE layout to llama.cpp's
//    interleaved one: view rows as (n_head, 2, head_dim/2) and swap the last two axes
//    (n_kv_heads for attn_k);
//  - per-expert matrices are stacked, expert e at ne[2] = e;
//  - MLA's kv_b_proj [H·(nope + v), kv_lora] becomes attn_k_b (ne [nope, kv_lora, H]: each
//    head's k rows transposed) and attn_v_b (ne [kv_lora, v, H]), as the converter splits it;
//  - tensors of layers past num_hidden_layers (multi-token-prediction layers, which the
//    converter skips for DeepSeek) are left out when the config declares them.
//  - Gated DeltaNet hybrids: the converter's splits, head reorders and A_log → −exp(A_log)
//    (model/deltanet_layout.h); their MTP tensors (mtp.*) are dropped as the converter does.
//  - tensors the family derives (Family::derive_hf: gpt-oss's stacked, transposed,
//    interleaved or MXFP4 experts) are built by model/hf_derived.cpp.
#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "core/error.h"
#include "core/hash.h"
#include "formats/safetensors.h"
#include "model/deltanet_layout.h"
#include "model/names.h"
#include "model/sources.h"

namespace quantlens::detail {

namespace {

namespace fs = std::filesystem;

// Where a GGUF-layout tensor's values come from.
struct Parts {
    std::vector<const StTensor*> parts;  // one, or one per expert in expert order
    int64_t permute_heads = 0;           // > 0: apply the llama q/k row permutation
    float norm_offset = 0.0f;            // added to every value (Gemma's norms: 1 + w)
    std::optional<HfGather> gather;      // a hybrid's converter rearrangement
    // A tensor the family derives (Family::derive_hf, gpt-oss): parts[0] is the HF tensor.
    std::optional<HfDerivedTensor> derived;
    const StTensor* mxfp4_scales = nullptr;
    DerivedShape shape;
    enum class MlaSplit { None, KB, VB } mla_split = MlaSplit::None;  // part of kv_b_proj
};

// attn_k_b / attn_v_b from kv_b_proj rows [H][nope + v][L] (see the file comment).
void split_kv_b(const float* kv_b, float* out, Parts::MlaSplit part, int64_t H, int64_t nope,
                int64_t v, int64_t L) {
    const int64_t per_head = nope + v;
    for (int64_t h = 0; h < H; ++h) {
        const float* rows = kv_b + h * per_head * L;
        if (part == Parts::MlaSplit::KB) {
            for (int64_t r = 0; r < L; ++r)
                for (int64_t j = 0; j < nope; ++j) out[(h * L + r) * nope + j] = rows[j * L + r];
        } else {
            std::copy(rows + nope * L, rows + per_head * L, out + h * v * L);
        }
    }
}

// Permutes rows [n_head][2][half] → [n_head][half][2] (see the file comment).
void permute_rows(const float* in, float* out, int64_t rows, int64_t cols, int64_t n_head) {
    const int64_t per_head = rows / n_head;
    const int64_t half = per_head / 2;
    for (int64_t h = 0; h < n_head; ++h) {
        for (int64_t j = 0; j < 2; ++j) {
            for (int64_t i = 0; i < half; ++i) {
                const float* src = in + (h * per_head + j * half + i) * cols;
                float* dst = out + (h * per_head + i * 2 + j) * cols;
                std::copy(src, src + cols, dst);
            }
        }
    }
}

// "model.layers.N.…" with N ≥ the config's layer count: a multi-token-prediction layer.
bool is_nextn_layer_of(const std::string& name, int64_t n_layers) {
    static const std::string kPrefix = "model.layers.";
    if (!name.starts_with(kPrefix)) return false;
    const size_t dot = name.find('.', kPrefix.size());
    if (dot == std::string::npos || dot == kPrefix.size() || dot - kPrefix.size() > 6) return false;
    int64_t layer = 0;
    for (size_t i = kPrefix.size(); i < dot; ++i) {
        if (name[i] < '0' || name[i] > '9') return false;
        layer = layer * 10 + (name[i] - '0');
    }
    return layer >= n_layers;
}

class HfModel final : public Model {
  public:
    explicit HfModel(const std::string& dir) {
        path_ = dir;
        const std::string config_path = (fs::path(dir) / "config.json").string();
        QL_CHECK(fs::exists(config_path), "{}: no config.json in this directory", dir);
        config_ = load_hf_config(config_path);
        st_ = SafetensorsModel::open(dir);
        build(config_path);
    }

    Source source() const override { return Source::HuggingFace; }

    void decode_f32(const TensorInfo& tensor, std::span<float> out) const override {
        QL_ASSERT(out.size() == static_cast<size_t>(tensor.n_elements()));
        const auto it = sources_.find(tensor.name);
        QL_ASSERT(it != sources_.end());
        const HfSource& s = it->second;
        if (s.derived) {
            derived_read_f32(*s.derived, *s.parts.front(), s.shape, raw(tensor), out);
            return;
        }
        size_t at = 0;
        for (const StTensor* part : s.parts) {
            const auto n = static_cast<size_t>(part->n_elements());
            if (s.gather) {  // one HF tensor onto the whole GGUF tensor (maybe a part of it)
                std::vector<float> tmp(n);
                SafetensorsModel::to_f32(*part, tmp);
                apply_hf_gather(*s.gather, tmp.data(), part->shape[0],
                                part->n_elements() / part->shape[0], out.data());
                for (float& x : out) x += s.norm_offset;
                return;
            }
            std::span<float> dst = out.subspan(at, n);
            if (s.mla_split != Parts::MlaSplit::None) {
                std::vector<float> tmp(static_cast<size_t>(part->n_elements()));
                SafetensorsModel::to_f32(*part, tmp);
                split_kv_b(tmp.data(), out.data(), s.mla_split, config_.n_heads,
                           config_.qk_nope_dim, config_.v_head_dim, config_.kv_lora_rank);
                return;
            } else if (s.permute_heads > 0) {
                std::vector<float> tmp(n);
                SafetensorsModel::to_f32(*part, tmp);
                permute_rows(tmp.data(), dst.data(), part->shape[0], part->shape[1],
                             s.permute_heads);
            } else {
                SafetensorsModel::to_f32(*part, dst);
            }
            if (s.norm_offset != 0.0f)
                for (float& x : dst) x += s.norm_offset;
            at += n;
        }
    }

    // MXFP4 experts of a released gpt-oss checkpoint, repacked into ggml's blocks on first
    // use (and kept: the engine and the GGUF writer both read them).
    std::span<const uint8_t> raw(const TensorInfo& tensor) const override {
        const auto it = sources_.find(tensor.name);
        if (it == sources_.end() || !it->second.derived || !it->second.mxfp4_scales) return {};
        const HfSource& s = it->second;
        std::lock_guard<std::mutex> lock(packed_mutex_);
        auto [at, inserted] = packed_.try_emplace(tensor.name);
        if (inserted)
            at->second = mxfp4_to_ggml(*s.parts.front(), *s.mxfp4_scales, s.derived->stride,
                                       s.derived->offset);
        return at->second;
    }

    std::string content_hash() const override { return hash_.get(st_.files()); }
    std::string tokenizer_path() const override {
        return (fs::path(path_) / "tokenizer.json").string();
    }

  private:
    using HfSource = Parts;

    bool is_nextn_layer(const std::string& name) const {
        return is_nextn_layer_of(name, config_.n_layers);
    }

    void build(const std::string& config_path) {
        struct Pending {
            TensorInfo info;
            std::map<int, const StTensor*> experts;
            const StTensor* single = nullptr;
        };
        std::map<std::string, Pending> pending;
        std::map<std::string, Parts::MlaSplit> splits;  // GGUF name → part of kv_b_proj
        std::vector<std::pair<HfDerivedTensor, const StTensor*>> derived;
        const Family& family = family_of(config_.arch);
        for (const StTensor& t : st_.tensors()) {
            if (t.name.ends_with("rotary_emb.inv_freq")) continue;  // buffer, not a weight
            if (config_.is_hybrid() && t.name.starts_with("mtp.")) continue;  // as the converter
            if (config_.n_nextn_layers > 0 && is_nextn_layer(t.name)) continue;
            if (family.derive_hf) {
                if (auto d = family.derive_hf(t.name)) {
                    for (HfDerivedTensor& x : *d) derived.emplace_back(std::move(x), &t);
                    continue;
                }
            }
            const auto all = hf_to_gguf_all(t.name, config_.arch);
            QL_CHECK(!all.empty(), "{}: tensor '{}' is not a known {} tensor name", t.file, t.name,
                     config_.hf_architecture);
            for (const HfName& one : all) {
                const auto mapped = &one;
                Pending& p = pending[mapped->gguf];
                p.info.name = mapped->gguf;
                p.info.layer = mapped->layer;
                if (mapped->expert >= 0) {
                    QL_CHECK(p.experts.emplace(mapped->expert, &t).second,
                             "{}: expert {} of '{}' appears twice", t.file, mapped->expert,
                             mapped->gguf);
                } else {
                    p.single = &t;
                    p.info.hf_name = t.name;
                }
                // kv_b_proj maps to both attn_k_b and attn_v_b: each takes its part.
                if (config_.mla && mapped->gguf.ends_with(".attn_k_b.weight"))
                    splits[mapped->gguf] = Parts::MlaSplit::KB;
                if (config_.mla && mapped->gguf.ends_with(".attn_v_b.weight"))
                    splits[mapped->gguf] = Parts::MlaSplit::VB;
            }
        }

        for (auto& [name, p] : pending) {
            TensorInfo& info = p.info;
            info.role = role_from_gguf_name(name);
            HfSource src;
            if (!p.experts.empty()) {
                QL_CHECK(p.single == nullptr, "{}: '{}' is both a stacked and a plain tensor",
                         path_, name);
                const StTensor* first = p.experts.begin()->second;
                QL_CHECK(static_cast<int64_t>(p.experts.size()) == config_.n_experts &&
                             p.experts.rbegin()->first == config_.n_experts - 1,
                         "{}: {} has {} experts, config.json says {}", first->file, name,
                         p.experts.size(), config_.n_experts);
                for (const auto& [e, t] : p.experts) {
                    QL_CHECK(t->shape == first->shape && t->dtype == first->dtype,
                             "{}: tensor '{}': shape {} {} differs from expert 0's {} {}", t->file,
                             t->name, format_shape(t->shape), st_dtype_name(t->dtype),
                             format_shape(first->shape), st_dtype_name(first->dtype));
                    src.parts.push_back(t);
                }
                info.hf_name = gguf_to_hf(name, config_.arch);
                info.ne.assign(first->shape.rbegin(), first->shape.rend());
                info.ne.push_back(config_.n_experts);
                info.type = st_float_type(*first);
            } else if (auto split = splits.find(name); split != splits.end()) {
                src.parts.push_back(p.single);
                src.mla_split = split->second;
                const int64_t H = config_.n_heads, L = config_.kv_lora_rank;
                const std::vector<int64_t> kv_b_shape = {
                    H * (config_.qk_nope_dim + config_.v_head_dim), L};
                QL_CHECK(p.single->shape == kv_b_shape,
                         "{}: tensor '{}' has shape {}, but config.json implies [{}, {}]",
                         p.single->file, p.single->name, format_shape(p.single->shape),
                         H * (config_.qk_nope_dim + config_.v_head_dim), L);
                info.ne = split->second == Parts::MlaSplit::KB
                              ? std::vector<int64_t>{config_.qk_nope_dim, L, H}
                              : std::vector<int64_t>{L, config_.v_head_dim, H};
                info.type = st_float_type(*p.single);
            } else {
                src.parts.push_back(p.single);
                info.ne.assign(p.single->shape.rbegin(), p.single->shape.rend());
                info.type = st_float_type(*p.single);
            }
            if (config_.is_hybrid() && p.single) {
                const std::string hf_rest = info.hf_name.substr(info.hf_name.find('.', 13) + 1);
                const std::string base = name.substr(name.find('.', 4) + 1);
                const auto dot = base.find(".weight");
                src.gather = deltanet_hf_gather(
                    config_, dot == std::string::npos ? base : base.substr(0, dot),
                    hf_rest.ends_with(".weight") ? hf_rest.substr(0, hf_rest.size() - 7) : hf_rest,
                    p.single->shape);
                if (src.gather) info.ne = src.gather->ne;
                // −exp(A_log) is no longer a BF16 value; the converter stores it in F32.
                if (src.gather && src.gather->neg_exp) info.type = GgmlType::F32;
            }
            const std::string& file = src.parts.front()->file;
            QL_CHECK(!info.ne.empty() && info.ne.size() <= 4,
                     "{}: tensor '{}' has {} dimensions, expected 1 to 4", file, info.hf_name,
                     info.ne.size());
            check_shape(info, config_, file, "config.json");
            if (config_.rope == RopeStyle::Normal &&
                (info.role == TensorRole::AttnQ || info.role == TensorRole::AttnK)) {
                src.permute_heads =
                    info.role == TensorRole::AttnQ ? config_.n_heads : config_.n_kv_heads;
            }
            // The converter adds the offset to every tensor whose HF name ends in norm.weight.
            // (Qwen3-Next's gated linear_attn.norm is a plain weight, which it leaves alone.)
            if (config_.hf_norm_offset != 0.0 && info.hf_name.ends_with("norm.weight") &&
                !info.hf_name.ends_with("linear_attn.norm.weight"))
                src.norm_offset = static_cast<float>(config_.hf_norm_offset);
            info.quantizable = is_quantizable(info.role, info.ne);
            sources_.emplace(name, std::move(src));
            tensors_.push_back(std::move(info));
        }

        for (auto& [d, t] : derived) {
            QL_CHECK(sources_.count(d.gguf) == 0, "{}: '{}' comes from '{}' and another tensor",
                     t->file, d.gguf, t->name);
            HfSource src;
            src.parts.push_back(t);
            if (!d.mxfp4_scales.empty()) src.mxfp4_scales = st_.find(d.mxfp4_scales);
            src.shape = derived_shape(d, *t, src.mxfp4_scales);
            TensorInfo info;
            info.name = d.gguf;
            info.hf_name = t->name;
            info.ne = src.shape.ne;
            info.type = src.shape.type;
            info.layer = d.layer;
            info.role = role_from_gguf_name(d.gguf);
            check_shape(info, config_, t->file, "config.json");
            info.quantizable = is_quantizable(info.role, info.ne);
            src.derived = std::move(d);
            sources_.emplace(info.name, std::move(src));
            tensors_.push_back(std::move(info));
        }

        QL_CHECK(find("token_embd.weight") != nullptr, "{}: no model.embed_tokens.weight", path_);
        QL_CHECK(config_.tie_embeddings || find("output.weight") != nullptr,
                 "{}: no lm_head.weight and tie_word_embeddings is false", config_path);
        for (int64_t l = 0; l < config_.n_layers && !config_.is_hybrid(); ++l) {
            if (config_.is_gemma4()) break;  // K/V per layer: the engine checks them
            const auto bases =
                config_.mla ? std::vector<const char*>{"attn_norm",     "attn_q_a", "attn_q_b",
                                                       "attn_kv_a_mqa", "attn_k_b", "attn_v_b",
                                                       "attn_output"}
                : config_.fused_qkv
                    ? std::vector<const char*>{"attn_norm", "attn_qkv", "attn_output"}
                    : std::vector<const char*>{"attn_norm", "attn_q", "attn_k", "attn_v",
                                               "attn_output"};
            for (const char* base : bases) {
                const std::string n = fmt::format("blk.{}.{}.weight", l, base);
                QL_CHECK(find(n) != nullptr, "{}: layer {} has no {} ({})", path_, l, base,
                         gguf_to_hf(n, config_.arch));
            }
        }

        // Forward-pass order: embedding, blocks in order (each in the order the block uses
        // its tensors), then the head.
        auto rank = [](const TensorInfo& t) {
            static constexpr TensorRole kOrder[] = {
                TensorRole::AttnNorm,     TensorRole::AttnQKV,     TensorRole::AttnGate,
                TensorRole::SsmBetaAlpha, TensorRole::SsmBeta,     TensorRole::SsmAlpha,
                TensorRole::SsmConv,      TensorRole::SsmDt,       TensorRole::SsmA,
                TensorRole::SsmNorm,      TensorRole::SsmOut,      TensorRole::AttnQ,
                TensorRole::AttnQBias,    TensorRole::AttnK,       TensorRole::AttnKBias,
                TensorRole::AttnV,        TensorRole::AttnVBias,   TensorRole::AttnQNorm,
                TensorRole::AttnKNorm,    TensorRole::AttnO,       TensorRole::AttnPostNorm,
                TensorRole::FfnNorm,      TensorRole::FfnGate,     TensorRole::FfnUp,
                TensorRole::FfnDown,      TensorRole::FfnPostNorm, TensorRole::Router,
                TensorRole::ExpertGate,   TensorRole::ExpertUp,    TensorRole::ExpertDown,
                TensorRole::SharedRouter, TensorRole::SharedGate,  TensorRole::SharedUp,
                TensorRole::SharedDown,   TensorRole::Embed,       TensorRole::OutputNorm,
                TensorRole::Output,       TensorRole::Other};
            // MLA's tensors sit with the attention, exp_probs_b with the router (additions
            // of the DeepSeek family, ranked by their place in the layer).
            static constexpr std::pair<TensorRole, TensorRole> kAfter[] = {
                {TensorRole::AttnQA, TensorRole::AttnNorm},
                {TensorRole::AttnQANorm, TensorRole::AttnNorm},
                {TensorRole::AttnQB, TensorRole::AttnNorm},
                {TensorRole::AttnKVAMqa, TensorRole::AttnNorm},
                {TensorRole::AttnKVANorm, TensorRole::AttnNorm},
                {TensorRole::AttnKB, TensorRole::AttnNorm},
                {TensorRole::AttnVB, TensorRole::AttnNorm},
                {TensorRole::ExpertProbsBias, TensorRole::Router}};
            const int64_t block = t.role == TensorRole::Embed ? -1
                                  : t.layer < 0               ? (int64_t{1} << 40)
                                                              : t.layer;
            for (size_t i = 0; i < std::size(kAfter); ++i) {
                if (t.role != kAfter[i].first) continue;
                const auto* at = std::find(std::begin(kOrder), std::end(kOrder), kAfter[i].second);
                return std::pair<int64_t, int64_t>{
                    block, (at - std::begin(kOrder)) * 16 + 1 + static_cast<int64_t>(i)};
            }
            const auto* pos = std::find(std::begin(kOrder), std::end(kOrder), t.role);
            return std::pair<int64_t, int64_t>{block, (pos - std::begin(kOrder)) * 16};
        };
        std::stable_sort(
            tensors_.begin(), tensors_.end(),
            [&](const TensorInfo& a, const TensorInfo& b) { return rank(a) < rank(b); });
    }

    SafetensorsModel st_;
    std::map<std::string, HfSource> sources_;
    mutable std::map<std::string, std::vector<uint8_t>> packed_;  // raw(): MXFP4 blocks
    mutable std::mutex packed_mutex_;
    FilesHashOnce hash_;
};

}  // namespace

std::unique_ptr<Model> open_hf_model(const std::string& dir) {
    return std::make_unique<HfModel>(dir);
}

}  // namespace quantlens::detail
