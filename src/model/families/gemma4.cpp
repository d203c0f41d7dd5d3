// Gemma 4 text (Gemma4ForCausalLM, model_type gemma4_text, GGUF "gemma4"), dense and MoE.
//
// The layer (engine/layers/gemma4_layer.cpp): RMSNorm → attention with per-layer-type
// shapes (sliding layers: head_dim, num_key_value_heads, default rope with the sliding θ;
// global layers: global_head_dim, num_global_key_value_heads when attention_k_eq_v, where
// V is the raw K projection, and proportional rope rotating the first
// partial_rotary_factor·D/2 pairs at θ^(-2i/D)), per-head q/k RMSNorm with weights, a
// weightless RMSNorm of v, score scale 1, and on the last num_kv_shared_layers layers the
// K/V of the last earlier layer of the same type → post-attention norm → residual;
// pre-MLP norm → GeGLU (double-wide on the shared layers with use_double_wide_mlp), and with
// enable_moe_block a routed MoE beside it (router on the weightless-normed residual × scale
// × hidden^-½, softmax → top-k → renormalized × per_expert_scale; experts on their own
// pre-norm; each branch post-normed, summed) → post-MLP norm → residual; then the per-layer
// embedding (PLE) branch: gelu(inp_gate · h) ⊙ ple_l → proj → post_norm → residual; and the
// whole layer output × layer_scalar. Embeddings × √hidden; PLE inputs from
// embed_tokens_per_layer (× √P) and per_layer_model_projection (× hidden^-½, RMSNorm over P),
// summed × 2^-½. Norms multiply by w itself (no 1 + w). Final logits soft-capped.
//
// GGUF names and keys follow llama.cpp's converter (conversion/gemma.py, Gemma4Model, and
// gguf-py's tensor names): layer_scalar → layer_output_scale.weight, router.scale →
// ffn_gate_inp.scale, router.per_expert_scale → ffn_down_exps.scale, experts.gate_up_proj →
// ffn_gate_up_exps (kept fused), per-layer arrays for feed_forward_length (double-wide) and
// head_count_kv, a rope_freqs tensor of 1 / 1e30 for the proportional rope
// (analysis/write/gguf_metadata.cpp). A gemma4 GGUF is read back from those keys and tensors.
#include <algorithm>
#include <cmath>
#include <map>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "model/families/blocks.h"

namespace quantlens {

namespace {

constexpr int64_t kPattern = 6;  // transformers' default: five sliding layers, then a global one

// Reads the per-layer shapes, KV sharing and the global layers' rope; `c` has the shared
// fields and read_hf_gemma's (sliding layers, soft-capping).
void read_layers(const HfConfigJson& cfg, ModelConfig& c) {
    const int64_t global_head_dim = cfg.get_int("global_head_dim", c.head_dim);
    const bool k_eq_v = cfg.get_bool("attention_k_eq_v", false);
    const int64_t global_kv =
        k_eq_v ? cfg.get_int("num_global_key_value_heads", c.n_kv_heads) : c.n_kv_heads;
    const int64_t shared = cfg.get_int("num_kv_shared_layers", 0);
    const bool double_wide = cfg.get_bool("use_double_wide_mlp", false);
    QL_CHECK(shared >= 0 && shared < c.n_layers,
             "{}: \"num_kv_shared_layers\" is {}, expected 0 to {}", cfg.path, shared,
             c.n_layers - 1);
    QL_CHECK(global_head_dim > 0 && global_head_dim % 2 == 0 && global_kv > 0 &&
                 c.n_heads % global_kv == 0,
             "{}: global_head_dim {} / num_global_key_value_heads {} do not fit {} heads", cfg.path,
             global_head_dim, global_kv, c.n_heads);
    // transformers 5.17 writes the global layers' shape as per_layer_config {"2": {"head_dim":
    // 64, "num_key_value_heads": 1}, ...}, the layer numbers zero-padded to the widest ("04"
    // of 35 layers), a key left out where it equals the model's; older configs as
    // global_head_dim and num_global_key_value_heads.
    const auto plc = cfg.j.find("per_layer_config");
    const bool per_layer = plc != cfg.j.end() && !plc->is_null();
    QL_CHECK(!per_layer || plc->is_object(), "{}: \"per_layer_config\" is {}, expected an object",
             cfg.path, plc->dump());
    std::map<int64_t, const nlohmann::json*> overrides;  // layer → its entry
    if (per_layer) {
        for (const auto& [key, entry] : plc->items()) {
            const bool digits =
                !key.empty() && key.size() <= 9 &&
                std::all_of(key.begin(), key.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
            const int64_t l = digits ? std::stoll(key) : -1;
            QL_CHECK(l >= 0 && l < c.n_layers && entry.is_object(),
                     "{}: per_layer_config[\"{}\"] is not an object for a layer 0..{}", cfg.path,
                     key, c.n_layers - 1);
            QL_CHECK(overrides.emplace(l, &entry).second,
                     "{}: per_layer_config names layer {} twice", cfg.path, l);
            for (const auto& [k, v] : entry.items())
                QL_CHECK((k == "head_dim" || k == "num_key_value_heads") && v.is_number_integer() &&
                             v.get<int64_t>() > 0,
                         "{}: per_layer_config[\"{}\"].{} is {}; quantlens implements positive "
                         "head_dim and num_key_value_heads overrides only",
                         cfg.path, key, k, v.dump());
        }
    }
    const int64_t first_shared = c.n_layers - shared;
    c.gemma4_layers.assign(static_cast<size_t>(c.n_layers), {});
    for (int64_t l = 0; l < c.n_layers; ++l) {
        ModelConfig::Gemma4Layer& g = c.gemma4_layers[static_cast<size_t>(l)];
        const bool sliding = c.layer_sliding[static_cast<size_t>(l)];
        if (per_layer) {
            const auto entry = overrides.find(l);
            const bool has = entry != overrides.end();
            g.head_dim = has ? entry->second->value("head_dim", c.head_dim) : c.head_dim;
            g.n_kv_heads =
                has ? entry->second->value("num_key_value_heads", c.n_kv_heads) : c.n_kv_heads;
        } else {
            g.head_dim = sliding ? c.head_dim : global_head_dim;
            g.n_kv_heads = sliding ? c.n_kv_heads : global_kv;
        }
        QL_CHECK(g.head_dim % 2 == 0 && c.n_heads % g.n_kv_heads == 0,
                 "{}: layer {}: head_dim {} / {} KV heads do not fit {} heads", cfg.path, l,
                 g.head_dim, g.n_kv_heads, c.n_heads);
        g.v_is_k = k_eq_v && !sliding;
        g.ffn = c.ffn * (double_wide && l >= first_shared && first_shared > 0 ? 2 : 1);
        g.kv_source = l;
        if (l < first_shared) continue;
        g.kv_source = -1;
        for (int64_t s = 0; s < first_shared; ++s)
            if (c.layer_sliding[static_cast<size_t>(s)] == sliding) g.kv_source = s;
        QL_CHECK(g.kv_source >= 0,
                 "{}: layer {} shares the K/V of an earlier {} layer (num_kv_shared_layers {}), "
                 "but layers 0..{} have none",
                 cfg.path, l, sliding ? "sliding" : "full-attention", shared, first_shared - 1);
    }
}

// rope_parameters: the sliding layers' default rope (θ in rope_theta_swa) and the global
// layers' proportional one; the shared parser has read both θ and flagged "proportional".
void read_rope(const HfConfigJson& cfg, ModelConfig& c) {
    const auto rp = cfg.j.find("rope_parameters");
    QL_CHECK(rp != cfg.j.end() && rp->is_object() && rp->contains("full_attention"),
             "{}: Gemma 4 needs rope_parameters with full_attention and sliding_attention entries",
             cfg.path);
    const auto& full = rp->at("full_attention");
    const std::string type = full.value("rope_type", std::string("default"));
    QL_CHECK(type == "proportional",
             "{}: rope_parameters.full_attention.rope_type is \"{}\"; quantlens implements "
             "Gemma 4's global layers with \"proportional\" rope only",
             cfg.path, type);
    c.rope_partial_global = full.value("partial_rotary_factor", 1.0);
    QL_CHECK(c.rope_partial_global > 0 && c.rope_partial_global <= 1,
             "{}: rope_parameters.full_attention.partial_rotary_factor is {}, expected (0, 1]",
             cfg.path, c.rope_partial_global);
    if (auto sl = rp->find("sliding_attention"); sl != rp->end()) {
        QL_CHECK(sl->value("partial_rotary_factor", 1.0) == 1.0,
                 "{}: rope_parameters.sliding_attention.partial_rotary_factor is set; quantlens "
                 "rotates every channel of Gemma 4's sliding layers",
                 cfg.path);
    }
    if (c.rope_theta_swa <= 0) c.rope_theta_swa = 10000.0;
    c.rope_proportional = false;  // implemented here
    c.rope_dims = 0;              // the shared partial factor is the global layers' own
    QL_CHECK(c.rope_scaling.kind == RopeScaling::Kind::None,
             "{}: Gemma 4 with a scaled global rope is not implemented", cfg.path);
}

void read_hf(const HfConfigJson& cfg, ModelConfig& c) {
    // use_bidirectional_attention is a string in Gemma 4 ("vision": image tokens only, which
    // a text model never sees; "all": refused); read_hf_gemma expects a boolean there.
    nlohmann::json j = cfg.j;
    if (auto b = j.find("use_bidirectional_attention"); b != j.end()) {
        QL_CHECK(b->is_null() || (b->is_string() && b->get<std::string>() == "vision"),
                 "{}: \"use_bidirectional_attention\" is {}; the engine implements causal "
                 "attention only",
                 cfg.path, b->dump());
        j.erase(b);
    }
    const HfConfigJson inner{j, cfg.path, cfg.family};
    blocks::read_hf_gemma(inner, c, kPattern);
    c.hf_norm_offset = 0.0;  // Gemma4RMSNorm multiplies by w; the converter stores w
    c.qk_norm = true;
    c.attn_scale = 1.0;  // transformers' Gemma 4 attention: scaling = 1 (q/k are normed)
    QL_CHECK(c.attn_softcap == 0, "{}: attention soft-capping is not part of Gemma 4", cfg.path);
    QL_CHECK(c.sliding_window > 0, "{}: Gemma 4 needs a positive sliding_window", cfg.path);
    read_rope(cfg, c);
    read_layers(cfg, c);
    c.ple_dim = cfg.get_int("hidden_size_per_layer_input", 0);
    QL_CHECK(c.ple_dim >= 0, "{}: \"hidden_size_per_layer_input\" is {}, expected ≥ 0", cfg.path,
             c.ple_dim);
    if (cfg.get_bool("enable_moe_block", false)) {
        c.n_experts = cfg.require_positive("num_experts");
        c.n_experts_used = cfg.require_positive("top_k_experts");
        c.expert_ffn = cfg.require_positive("moe_intermediate_size");
        c.moe_renormalize = true;
    }
}

// One value per layer: an array key, or one integer for every layer.
std::vector<int64_t> per_layer_ints(const GgufFile& g, const ModelConfig& c, const char* key) {
    const GgufValue& v = g.get(c.gguf_arch + "." + key);
    std::vector<int64_t> out;
    if (v.type == GgufValueType::ARRAY)
        for (const auto& x : v.array) out.push_back(x.as_int());
    else
        out.assign(static_cast<size_t>(c.n_layers), v.as_int());
    QL_CHECK(static_cast<int64_t>(out.size()) == c.n_layers,
             "{}: {}.{} has {} values, expected one per layer ({})", g.path(), c.gguf_arch, key,
             out.size(), c.n_layers);
    return out;
}

// What llama.cpp's gemma4 loader reads (models/gemma4.cpp load_arch_hparams) and the
// tensors it finds: attn_v absent on a global layer means V = K.
void read_gguf(const GgufFile& g, ModelConfig& c) {
    c.rope = RopeStyle::Neox;
    c.act = Activation::GeluTanh;
    c.post_norms = true;
    c.embed_scale = true;
    c.qk_norm = true;
    c.attn_scale = 1.0;
    c.attn_softcap = 0.0;
    c.hf_norm_offset = 0.0;
    const std::string a = c.gguf_arch + ".";
    const std::vector<int64_t> ffn = per_layer_ints(g, c, "feed_forward_length");
    const std::vector<int64_t> kv = per_layer_ints(g, c, "attention.head_count_kv");
    const GgufValue& pattern = g.get(a + "attention.sliding_window_pattern");
    QL_CHECK(pattern.type == GgufValueType::ARRAY &&
                 static_cast<int64_t>(pattern.array.size()) == c.n_layers,
             "{}: {}attention.sliding_window_pattern is not one boolean per layer", g.path(), a);
    c.layer_sliding.clear();
    for (const auto& v : pattern.array) c.layer_sliding.push_back(v.as_bool());
    c.sliding_window = blocks::gguf_required(g, c, "attention.sliding_window");
    const int64_t d_full = blocks::gguf_required(g, c, "attention.key_length");
    const int64_t d_swa = blocks::gguf_required(g, c, "attention.key_length_swa");
    c.head_dim = d_swa;
    c.rope_dims = 0;
    c.ffn = ffn.front();
    c.ple_dim = blocks::gguf_int(g, c, "embedding_length_per_layer_input", 0);
    if (const GgufValue* v = g.find(a + "final_logit_softcapping")) c.final_softcap = v->as_float();
    if (c.rope_theta_swa <= 0) c.rope_theta_swa = 10000.0;
    if (c.is_moe()) c.expert_ffn = blocks::gguf_required(g, c, "expert_feed_forward_length");
    // rope_freqs.weight: 1 for the rotated pairs of a global head, 1e30 (no rotation) after.
    int64_t rotated = d_full / 2;
    if (!c.rope_freq_factors.empty()) {
        rotated = 0;
        for (float f : c.rope_freq_factors) {
            QL_CHECK(f == 1.0f || f >= 1e29f,
                     "{}: rope_freqs.weight holds {}; quantlens reads Gemma 4's proportional rope "
                     "(factors 1 and 1e30) only",
                     g.path(), f);
            rotated += f == 1.0f;
        }
        c.rope_freq_factors.clear();
    }
    c.rope_partial_global = 2.0 * static_cast<double>(rotated) / static_cast<double>(d_full);
    const int64_t shared = blocks::gguf_int(g, c, "attention.shared_kv_layers", 0);
    const int64_t first_shared = c.n_layers - shared;
    c.gemma4_layers.assign(static_cast<size_t>(c.n_layers), {});
    for (int64_t l = 0; l < c.n_layers; ++l) {
        ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
        const bool sliding = c.is_sliding(l);
        s.head_dim = sliding ? d_swa : d_full;
        s.n_kv_heads = kv[static_cast<size_t>(l)];
        s.ffn = ffn[static_cast<size_t>(l)];
        s.kv_source = l;
        if (l >= first_shared) {
            s.kv_source = -1;
            for (int64_t src = 0; src < first_shared; ++src)
                if (c.is_sliding(src) == sliding) s.kv_source = src;
            QL_CHECK(s.kv_source >= 0, "{}: layer {} shares K/V but no earlier layer has its type",
                     g.path(), l);
        }
        const std::string v = "blk." + std::to_string(l) + ".attn_v.weight";
        s.v_is_k = !sliding && s.kv_source == l && g.find_tensor(v) == nullptr;
    }
    for (int64_t l = 0; l < c.n_layers; ++l) {
        auto& s = c.gemma4_layers[static_cast<size_t>(l)];
        if (s.kv_source != l) s.v_is_k = c.gemma4_layers[static_cast<size_t>(s.kv_source)].v_is_k;
    }
}

GgufValue array_of(GgufValueType type, std::vector<GgufValue> values) {
    GgufValue a;
    a.type = GgufValueType::ARRAY;
    a.array_type = type;
    a.array = std::move(values);
    return a;
}

GgufValue u32_array(const std::vector<int64_t>& v) {
    std::vector<GgufValue> out;
    for (int64_t x : v) out.push_back(GgufValue::u32(static_cast<uint32_t>(x)));
    return array_of(GgufValueType::UINT32, std::move(out));
}

// Replaces the value of an existing key in place (the converter's GGUFWriter overwrites a
// key it writes twice without moving it), or appends it.
void put(GgufKeys& keys, const std::string& key, GgufValue value) {
    for (auto& [k, v] : keys)
        if (k == key) {
            v = std::move(value);
            return;
        }
    keys.emplace_back(key, std::move(value));
}

int64_t global_head_dim(const ModelConfig& c) {
    for (int64_t l = 0; l < c.n_layers; ++l)
        if (!c.is_sliding(l)) return c.gemma4_layers[static_cast<size_t>(l)].head_dim;
    return c.head_dim;
}

// Gemma3Model's keys (TextModel's base first), then Gemma4Model's additions and overrides.
void write_gguf(const ModelConfig& c, GgufKeys& keys) {
    const std::string a = c.gguf_arch + ".";
    int64_t shared = 0;
    for (int64_t l = 0; l < c.n_layers; ++l)
        shared += c.gemma4_layers[static_cast<size_t>(l)].kv_source != l;
    blocks::write_gguf_sizes(c, keys);
    blocks::add_keys(keys, c, {"rope.freq_base"});
    blocks::add_f32(keys, c, "rope.freq_base_swa", c.rope_theta_swa);
    blocks::add_keys(keys, c, {"attention.layer_norm_rms_epsilon"});
    blocks::add_expert_counts(keys, c);
    blocks::write_gguf_head_size(c, keys);
    if (c.final_softcap > 0) blocks::add_keys(keys, c, {"final_logit_softcapping"});
    blocks::add_keys(keys, c, {"attention.sliding_window"});
    // Gemma4Model.set_gguf_parameters
    blocks::add_u32(keys, c, "attention.shared_kv_layers", shared);
    blocks::add_u32(keys, c, "embedding_length_per_layer_input", c.ple_dim);
    std::vector<GgufValue> pattern;
    for (int64_t l = 0; l < c.n_layers; ++l) pattern.push_back(GgufValue::boolean(c.is_sliding(l)));
    keys.emplace_back(a + "attention.sliding_window_pattern",
                      array_of(GgufValueType::BOOL, std::move(pattern)));
    const int64_t d_full = global_head_dim(c);
    put(keys, a + "attention.key_length", GgufValue::u32(static_cast<uint32_t>(d_full)));
    put(keys, a + "attention.value_length", GgufValue::u32(static_cast<uint32_t>(d_full)));
    blocks::add_u32(keys, c, "attention.key_length_swa", c.head_dim);
    blocks::add_u32(keys, c, "attention.value_length_swa", c.head_dim);
    if (c.is_moe()) blocks::add_u32(keys, c, "expert_feed_forward_length", c.expert_ffn);
    std::vector<int64_t> ffn, kv;
    bool wide = false;
    for (const auto& g : c.gemma4_layers) {
        ffn.push_back(g.ffn);
        kv.push_back(g.n_kv_heads);
        wide |= g.ffn != c.ffn;
    }
    if (wide) put(keys, a + "feed_forward_length", u32_array(ffn));
    put(keys, a + "attention.head_count_kv", u32_array(kv));
    blocks::add_u32(keys, c, "rope.dimension_count", d_full);
    blocks::add_u32(keys, c, "rope.dimension_count_swa", c.head_dim);
}

// Llama's model-level tensors, then the per-layer-input embedding and its projection.
std::vector<GlobalTensorName> globals() {
    auto g = llama_globals();
    g.insert(g.end(), {{"model.embed_tokens_per_layer.weight", "per_layer_token_embd.weight"},
                       {"model.per_layer_model_projection.weight", "per_layer_model_proj.weight"},
                       {"model.per_layer_projection_norm.weight", "per_layer_proj_norm.weight"}});
    return g;
}

}  // namespace

const Family& gemma4_family() {
    static const Family f{
        {Arch::Gemma4, "gemma4", "Gemma4ForCausalLM", "gemma4_text", "gemma4"},
        {.read_hf = read_hf,
         .read_gguf = read_gguf,
         .write_gguf = write_gguf,
         .activation = Activation::GeluTanh},
        // Entries whose GGUF name carries its suffix map an HF name without one (buffers and
        // parameters not called .weight), as the converter's filter_tensors renames them.
        blocks::concat({blocks::gemma_layer(),
                        blocks::qk_norm(),
                        {{"per_layer_input_gate", "inp_gate"},
                         {"per_layer_projection", "proj"},
                         {"post_per_layer_input_norm", "post_norm"},
                         {"layer_scalar", "layer_output_scale.weight"},
                         {"router.proj", "ffn_gate_inp"},
                         {"router.scale", "ffn_gate_inp.scale"},
                         {"router.per_expert_scale", "ffn_down_exps.scale"},
                         {"experts.gate_up_proj", "ffn_gate_up_exps.weight"},
                         {"experts.down_proj", "ffn_down_exps.weight"},
                         {"pre_feedforward_layernorm_2", "pre_ffw_norm_2"},
                         {"post_feedforward_layernorm_1", "post_ffw_norm_1"},
                         {"post_feedforward_layernorm_2", "post_ffw_norm_2"}}}),
        globals()};
    return f;
}

}  // namespace quantlens
