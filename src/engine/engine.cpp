// The forward pass: see engine.h for the contract and kernels.h for the kernels.
#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "engine/ggml_ops.h"
#include "engine/kernels.h"
#include "engine/layers/attention_sinks.h"
#include "engine/layers/clamped_swiglu.h"
#include "engine/layers/gemma4_layer.h"
#include "model/model.h"
#include "model/names.h"
#include "quant/quant.h"
#include "quant/vec_dot.h"

namespace quantlens {

struct Engine::LayerNames {
    std::string attn_norm, q, k, v, qkv, o, q_bias, k_bias, v_bias, q_norm, k_norm, post_attn_norm;
    std::string ffn_norm, gate, up, down, post_ffw_norm, router, gate_exps, up_exps, down_exps;
    // gpt-oss: sinks and the biases of o_proj, the router and the experts.
    std::string sinks, o_bias, router_bias, gate_exps_bias, up_exps_bias, down_exps_bias;
};

// vec_dot::row_finite reads the scales; a row it refuses is dequantized to name the first bad
// element.
void check_blocks_finite(const std::string& file, const TensorInfo& t, const uint8_t* data,
                         size_t row_bytes) {
    const int64_t cols = t.n_per_row();
    parallel_for(
        static_cast<size_t>(t.n_rows()),
        [&](size_t begin, size_t end) {
            for (size_t r = begin; r < end; ++r) {
                if (vec_dot::row_finite(t.type, data + r * row_bytes, cols)) continue;
                std::vector<float> row(static_cast<size_t>(cols));
                dequantize(t.type, data + r * row_bytes, row.data(), 1, cols);
                for (int64_t c = 0; c < cols; ++c)
                    QL_CHECK(std::isfinite(row[c]),
                             "{}: tensor '{}' holds {} at element {} (row {}, column {}); a model "
                             "with non-finite weights cannot be measured or quantized",
                             file, t.name, row[c], static_cast<int64_t>(r) * cols + c, r, c);
                QL_CHECK(false, "{}: tensor '{}' row {}: a non-finite block scale", file, t.name,
                         r);
            }
        },
        64);
}

void check_layer_supported(const ModelConfig& c, const std::string& what,
                           [[maybe_unused]] EngineKind kind, bool ggml_numerics) {
    QL_CHECK(!ggml_numerics || !c.mla,
             "{}: llama.cpp's numerics (F16 KV cache, quantized matmuls) are not modelled for "
             "multi-head latent attention; evaluate without them",
             what);
    if (c.is_gemma4()) return;  // gemma4_layer.cpp and the CUDA engine implement all of it
    QL_CHECK(c.shared_expert != SharedExpert::SigmoidGated || c.is_hybrid(),
             "{}: {} layers add a sigmoid-gated shared expert to the routed ones, which the "
             "engine does not implement yet",
             what, arch_name(c.arch));
    QL_CHECK(!c.is_moe() || (c.act == Activation::SiLU && !c.fused_gate_up && !c.post_norms),
             "{}: {} experts with GeGLU, fused gate/up or post-norms are not implemented", what,
             arch_name(c.arch));
}

Engine::Engine(const Model& model, EngineOptions options)
    : model_(model), config_(model.config()), options_(options) {
    engine_init_blas();
    const ModelConfig& c = config_;
    check_layer_supported(c, model.path(), EngineKind::Cpu, options.ggml_numerics);
    QL_CHECK(c.n_layers > 0 && c.hidden > 0 && c.n_heads > 0 && c.n_kv_heads > 0 &&
                 c.head_dim > 0 && c.vocab > 0 && c.n_heads % c.n_kv_heads == 0 &&
                 c.head_dim % 2 == 0,
             "{}: inconsistent config: layers {}, hidden {}, heads {}/{} (kv), head_dim {}, "
             "vocab {}",
             model.path(), c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab);
    QL_CHECK(!c.is_moe() || (c.n_experts_used > 0 && c.n_experts_used <= c.n_experts),
             "{}: {} experts with {} used per token", model.path(), c.n_experts, c.n_experts_used);

    names_.resize(c.n_layers);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerNames& n = names_[l];
        n.attn_norm = p + "attn_norm.weight";
        n.q = p + "attn_q.weight";
        n.k = p + "attn_k.weight";
        n.v = p + "attn_v.weight";
        n.qkv = p + "attn_qkv.weight";
        n.post_attn_norm = p + "post_attention_norm.weight";
        n.post_ffw_norm = p + "post_ffw_norm.weight";
        n.o = p + "attn_output.weight";
        n.q_bias = p + "attn_q.bias";
        n.k_bias = p + "attn_k.bias";
        n.v_bias = p + "attn_v.bias";
        n.q_norm = p + "attn_q_norm.weight";
        n.k_norm = p + "attn_k_norm.weight";
        n.ffn_norm =
            p + (c.ffn_norm_post_attention ? "post_attention_norm" : "ffn_norm") + ".weight";
        n.gate = p + "ffn_gate.weight";
        n.up = p + "ffn_up.weight";
        n.down = p + "ffn_down.weight";
        n.router = p + "ffn_gate_inp.weight";
        n.gate_exps = p + "ffn_gate_exps.weight";
        n.up_exps = p + "ffn_up_exps.weight";
        n.down_exps = p + "ffn_down_exps.weight";
        n.sinks = p + "attn_sinks.weight";
        n.o_bias = p + "attn_output.bias";
        n.router_bias = p + "ffn_gate_inp.bias";
        n.gate_exps_bias = p + "ffn_gate_exps.bias";
        n.up_exps_bias = p + "ffn_up_exps.bias";
        n.down_exps_bias = p + "ffn_down_exps.bias";
        if (c.ffn_norm_is_post_attention_norm) n.ffn_norm = p + "post_attention_norm.weight";
    }
    output_name_ = model.find("output.weight") ? "output.weight" : "token_embd.weight";
    // llama.cpp's float order for the layer itself where ggml_ops.h models it exactly.
    const RopeScaling::Kind rope_kind = c.rope_scaling.kind;
    ggml_layer_ = options.ggml_numerics && !c.is_gemma4() && !c.is_hybrid() && !c.mla &&
                  !c.attn_sinks && c.attn_softcap == 0 && c.head_dim % 8 == 0 &&
                  c.rope_theta_swa == 0 &&
                  (rope_kind == RopeScaling::Kind::None || rope_kind == RopeScaling::Kind::Linear ||
                   rope_kind == RopeScaling::Kind::Llama3);
    if (rope_kind == RopeScaling::Kind::Linear)
        ggml_freq_scale_ = 1.0f / static_cast<float>(c.rope_scaling.factor);
    ggml_freq_factors_ =
        c.rope_freq_factors.empty() ? llama3_rope_freq_factors(c) : c.rope_freq_factors;
    width_ = c.hidden;
    if (c.is_gemma4()) {
        gemma4_init();
        gemma4_check_shapes();
    } else if (c.is_hybrid()) {
        check_hybrid_shapes();
    } else {
        check_shapes();
    }

    // ggml_numerics on a GGUF: matrices ggml multiplies in their blocks stay in the mapping.
    const bool in_place = options.ggml_numerics && model.source() == Model::Source::Gguf;
    std::vector<const TensorInfo*> infos;
    for (const TensorInfo& t : model.tensors()) {
        if (in_place && t.ne.size() >= 2 && vec_dot::supported(t.type)) {
            const std::span<const uint8_t> data = model.raw(t);
            const size_t row_bytes = ggml_row_size(t.type, t.n_per_row());
            QL_ASSERT(data.size() >= row_bytes * static_cast<size_t>(t.n_rows()));
            check_blocks_finite(model.path(), t, data.data(), row_bytes);
            quantized_.emplace(t.name, QuantizedWeight{t.type, data.data(), row_bytes});
            types_.emplace(t.name, t.type);
            continue;
        }
        infos.push_back(&t);
    }
    std::vector<std::vector<float>> buffers(infos.size());
    // Tensors are converted in parallel; each read_f32 may itself use the pool (then inline).
    parallel_for(infos.size(), [&](size_t begin, size_t end) {
        for (size_t i = begin; i < end; ++i) {
            buffers[i] = model.read_f32(*infos[i]);
            if (options.f16_weights)
                for (float& x : buffers[i]) x = round_to_f16(x);
        }
    });
    for (size_t i = 0; i < infos.size(); ++i) {
        weights_.emplace(infos[i]->name, std::move(buffers[i]));
        types_.emplace(infos[i]->name, held_weight_type(*infos[i], options.f16_weights));
    }
}

GgmlType held_weight_type(const TensorInfo& t, bool f16_weights) {
    // The type ggml would multiply by: F16 after f16_weights rounding of 2-D weights.
    const bool rounded =
        f16_weights && t.ne.size() >= 2 && (t.type == GgmlType::F32 || t.type == GgmlType::BF16);
    return rounded ? GgmlType::F16 : t.type;
}

Engine::~Engine() = default;

void Engine::expect_shape(const std::string& name, const std::vector<int64_t>& ne, bool required,
                          const std::string& implied_by) const {
    const TensorInfo* t = model_.find(name);
    if (!t) {
        QL_CHECK(!required, "{}: tensor '{}' is missing (expected shape {} from the config)",
                 model_.path(), name, format_shape(ne));
        return;
    }
    QL_CHECK(t->ne == ne, "{}: tensor '{}' has shape {}, but {} implies {}", model_.path(), name,
             format_shape(t->ne), implied_by, format_shape(ne));
}

void Engine::check_shapes() const {
    const ModelConfig& c = config_;
    const int64_t C = c.hidden, HD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
    const std::string implied_by = fmt::format(
        "the config (hidden {}, heads {}/{}, head_dim {}, ffn {}, vocab {}, experts {})", c.hidden,
        c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.vocab, c.n_experts);
    auto expect = [&](const std::string& name, const std::vector<int64_t>& ne, bool required) {
        expect_shape(name, ne, required, implied_by);
    };
    expect("token_embd.weight", {C, c.vocab}, true);
    expect("output_norm.weight", {C}, true);
    expect("output.weight", {C, c.vocab}, false);
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const LayerNames& n = names_[l];
        expect(n.attn_norm, {C}, true);
        if (c.mla) {  // checked with the MLA tensors (engine_deepseek.cpp)
        } else if (c.fused_qkv) {
            expect(n.qkv, {C, HD + 2 * KD}, true);
        } else {
            expect(n.q, {C, HD}, true);
            expect(n.k, {C, KD}, true);
            expect(n.v, {C, KD}, true);
        }
        expect(n.o, {c.mla ? c.n_heads * c.v_head_dim : HD, C}, true);
        expect(n.post_attn_norm, {C}, c.post_norms);
        expect(n.post_ffw_norm, {C}, c.post_norms);
        expect(n.q_bias, {HD}, c.qkv_bias);
        expect(n.k_bias, {KD}, c.qkv_bias);
        expect(n.v_bias, {KD}, c.qkv_bias);
        expect(n.q_norm, {c.head_dim}, c.qk_norm);
        expect(n.k_norm, {c.head_dim}, c.qk_norm);
        expect(n.ffn_norm, {C}, true);
        expect(n.sinks, {c.n_heads}, c.attn_sinks);
        expect(n.o_bias, {C}, false);
        if (c.is_moe_layer(l)) {  // biases: gpt-oss
            expect(n.router_bias, {c.n_experts}, false);
            expect(n.gate_exps_bias, {c.ffn, c.n_experts}, false);
            expect(n.up_exps_bias, {c.ffn, c.n_experts}, false);
            expect(n.down_exps_bias, {C, c.n_experts}, false);
        }
        if (c.is_moe_layer(l)) {
            expect(n.router, {C, c.n_experts}, true);
            expect(n.gate_exps, {C, c.ffn, c.n_experts}, true);
            expect(n.up_exps, {C, c.ffn, c.n_experts}, true);
            expect(n.down_exps, {c.ffn, C, c.n_experts}, true);
        } else if (c.fused_gate_up) {
            expect(n.up, {C, 2 * c.ffn}, true);
            expect(n.down, {c.ffn, C}, true);
        } else {
            expect(n.gate, {C, c.dense_ffn_width()}, true);
            expect(n.up, {C, c.dense_ffn_width()}, true);
            expect(n.down, {c.dense_ffn_width(), C}, true);
        }
    }
    if (c.mla || c.moe_sigmoid || c.shared_expert == SharedExpert::Ungated) check_deepseek_shapes();
}

const float* Engine::weight_opt(const std::string& name) const {
    QL_ASSERT(block_overrides_.count(name) == 0);  // blocks are read through linear()/embed()
    if (auto it = overrides_.find(name); it != overrides_.end()) return it->second.data();
    if (auto it = weights_.find(name); it != weights_.end()) return it->second.data();
    if (quantized_.count(name)) return original(name).data();  // a float reader of a mapped weight
    return nullptr;
}

const Engine::QuantizedWeight* Engine::quantized(const std::string& name) const {
    if (overrides_.count(name)) return nullptr;
    if (auto it = block_overrides_.find(name); it != block_overrides_.end()) return &it->second;
    auto it = quantized_.find(name);
    return it != quantized_.end() ? &it->second : nullptr;
}

bool Engine::set_override_blocks(const std::string& name, GgmlType type,
                                 std::span<const uint8_t> blocks, const std::string& source) {
    const TensorInfo& t = model_.get(name);
    if (!options_.ggml_numerics || blocks.empty() || t.ne.size() < 2 || !vec_dot::supported(type))
        return false;
    const size_t row_bytes = ggml_row_size(type, t.n_per_row());
    QL_CHECK(blocks.size() == row_bytes * static_cast<size_t>(t.n_rows()),
             "{}: tensor '{}': {} bytes of {}, expected {} for shape {}", source, name,
             blocks.size(), ggml_type_display_name(type), row_bytes * t.n_rows(),
             format_shape(t.ne));
    TensorInfo stored = t;
    stored.type = type;
    check_blocks_finite(source, stored, blocks.data(), row_bytes);
    overrides_.erase(name);
    override_types_.erase(name);
    block_overrides_[name] = QuantizedWeight{type, blocks.data(), row_bytes};
    return true;
}

void Engine::linear(float* out, const std::string& name, const float* in, const float* bias,
                    int64_t N, int64_t IN, int64_t OUT, int64_t expert) const {
    if (const QuantizedWeight* q = quantized(name)) {
        vec_dot::matmul(out, in, q->type, q->data + expert * OUT * q->row_bytes, bias, N, IN, OUT);
        return;
    }
    std::vector<float> scratch;
    const float* w = weight(name) + expert * OUT * IN;
    // An F32 matrix of a GGUF (a MoE router, typically): ggml sums a prompt in tinyBLAS's order.
    if (ggml_layer_ && model_.source() == Model::Source::Gguf && !overrides_.count(name) &&
        types_.at(name) == GgmlType::F32 && matmul_f32_ggml_applies(N, IN, OUT)) {
        matmul_f32_ggml(out, in, w, N, IN, OUT);
        if (bias)
            for (int64_t r = 0; r < N; ++r)
                for (int64_t o = 0; o < OUT; ++o) out[r * OUT + o] += bias[o];
        return;
    }
    matmul_forward(out, mm_input(name, in, N, IN, scratch), w, bias, N, IN, OUT);
}

void Engine::linear_shared(const float* in, int64_t N, int64_t IN,
                           std::initializer_list<LinearOut> outs) const {
    const QuantizedWeight* first = quantized(*outs.begin()->name);
    bool shared = first != nullptr;
    for (const LinearOut& o : outs) {
        const QuantizedWeight* q = quantized(*o.name);
        shared = shared && q && vec_dot::act_type(q->type) == vec_dot::act_type(first->type) &&
                 vec_dot::act_row_size(q->type, IN) == vec_dot::act_row_size(first->type, IN);
    }
    if (!shared) {
        for (const LinearOut& o : outs) linear(o.out, *o.name, in, o.bias, N, IN, o.OUT);
        return;
    }
    vec_dot::QuantizedRows& rows = vec_dot::thread_rows();  // reused: no allocation per layer
    vec_dot::quantize_rows(first->type, in, N, IN, rows);
    for (const LinearOut& o : outs) {
        const QuantizedWeight* q = quantized(*o.name);
        vec_dot::matmul(o.out, rows, q->type, q->data, o.bias, o.OUT);
    }
}

const float* Engine::weight(const std::string& name) const {
    const float* w = weight_opt(name);
    QL_ASSERT(w != nullptr);  // check_shapes guarantees every weight the pass reads
    return w;
}

const std::vector<float>& Engine::original(const std::string& name) const {
    if (auto it = weights_.find(name); it != weights_.end()) return it->second;
    QL_CHECK(quantized_.count(name), "{}: no tensor named '{}'", model_.path(), name);
    std::lock_guard<std::mutex> lock(dequantized_mutex_);
    auto [it, inserted] = dequantized_.try_emplace(name);
    if (inserted) it->second = model_.read_f32(model_.get(name));
    return it->second;
}

void Engine::set_override(const std::string& name, std::vector<float> values, GgmlType type) {
    // The size only: a weight read in place need not be dequantized to be replaced.
    const size_t expected =
        quantized_.count(name) ? model_.get(name).n_elements() : original(name).size();
    QL_CHECK(values.size() == expected, "override for tensor '{}': {} values, expected {}", name,
             values.size(), expected);
    overrides_[name] = std::move(values);
    override_types_[name] = type;
    block_overrides_.erase(name);
}

void Engine::clear_override(const std::string& name) {
    overrides_.erase(name);
    override_types_.erase(name);
    block_overrides_.erase(name);
}
void Engine::clear_overrides() {
    overrides_.clear();
    override_types_.clear();
    block_overrides_.clear();
}

const float* Engine::mm_input(const std::string& name, const float* in, int64_t N, int64_t C,
                              std::vector<float>& scratch) const {
    if (!options_.ggml_numerics) return in;
    auto it = override_types_.find(name);
    const GgmlType type = it != override_types_.end() ? it->second : types_.at(name);
    const ActRounding kind = ggml_act_rounding(type);
    if (kind == ActRounding::None) return in;
    scratch.assign(in, in + N * C);
    round_activations(scratch.data(), N, C, kind);
    return scratch.data();
}

void Engine::override_with_type(const std::string& name, GgmlType type, const float* importance) {
    const std::vector<float>& base = original(name);
    const TensorInfo& info = model_.get(name);
    std::vector<float> q(base.size());
    fake_quantize(type, base.data(), q.data(), info.n_rows(), info.n_per_row(), importance);
    overrides_[name] = std::move(q);
    override_types_[name] = type;
    block_overrides_.erase(name);
}

void Engine::emit(HookEvent::Kind kind, int layer, const std::string* tensor, int expert,
                  const float* data, int64_t rows, int64_t cols) const {
    if (hook_) hook_(HookEvent{kind, layer, tensor, expert, data, rows, cols});
}

std::vector<float> Engine::embed(std::span<const int32_t> tokens) const {
    const int64_t C = config_.hidden, N = static_cast<int64_t>(tokens.size());
    const QuantizedWeight* blocks = quantized("token_embd.weight");       // ggml's get_rows
    const float* table = blocks ? nullptr : weight("token_embd.weight");  // [V, C]
    std::vector<float> h(N * C);                                          // [N, C]
    for (int64_t n = 0; n < N; ++n) {
        const int32_t id = tokens[n];
        QL_CHECK(id >= 0 && id < config_.vocab,
                 "{}: token id {} at position {} is outside the vocabulary of {}", model_.path(),
                 id, n, config_.vocab);
        if (blocks) {
            dequantize(blocks->type, blocks->data + id * blocks->row_bytes, h.data() + n * C, 1, C);
        } else {
            std::copy_n(table + static_cast<int64_t>(id) * C, C, h.data() + n * C);
        }
    }
    if (config_.embed_scale) {  // Gemma: × sqrt(hidden), in float as llama.cpp and torch
        const float scale = std::sqrt(static_cast<float>(C));
        for (float& x : h) x *= scale;
    }
    emit(HookEvent::Kind::Embedding, -1, nullptr, -1, h.data(), N, C);
    if (gemma4_) return gemma4_widen(tokens, std::move(h));
    return h;
}

void Engine::qkv_projections(int64_t l, const float* xn, int64_t N, std::vector<float>& q,
                             std::vector<float>& k, std::vector<float>& v) const {
    const ModelConfig& c = config_;
    const LayerNames& n = names_[l];
    const int64_t C = c.hidden, HD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
    q.resize(N * HD), k.resize(N * KD), v.resize(N * KD);
    if (c.fused_qkv) {  // one product [N, HD + 2·KD], split into q | k | v per row
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.qkv, -1, xn, N, C);
        const int64_t W = HD + 2 * KD;
        std::vector<float> qkv(N * W);  // [N, W]
        linear(qkv.data(), n.qkv, xn, nullptr, N, C, W);
        for (int64_t r = 0; r < N; ++r) {
            const float* row = qkv.data() + r * W;
            std::copy_n(row, HD, q.data() + r * HD);
            std::copy_n(row + HD, KD, k.data() + r * KD);
            std::copy_n(row + HD + KD, KD, v.data() + r * KD);
        }
        return;
    }
    if (hook_) {
        for (const std::string* w : {&n.q, &n.k, &n.v})
            emit(HookEvent::Kind::LinearInput, static_cast<int>(l), w, -1, xn, N, C);
    }
    linear_shared(xn, N, C,
                  {{&n.q, q.data(), weight_opt(n.q_bias), HD},
                   {&n.k, k.data(), weight_opt(n.k_bias), KD},
                   {&n.v, v.data(), weight_opt(n.v_bias), KD}});
}

void Engine::rmsnorm(float* out, const float* in, const std::string& weight_name, int64_t N,
                     int64_t C) const {
    const auto eps = static_cast<float>(config_.rms_eps);
    if (options_.ggml_numerics)
        rmsnorm_ggml(out, in, weight(weight_name), N, C, eps);
    else
        rmsnorm_forward(out, in, weight(weight_name), N, C, eps);
}

void Engine::attention_ggml_block(int64_t l, float* h, float* xn, int64_t B, int64_t T) const {
    const ModelConfig& c = config_;
    const LayerNames& n = names_[l];
    const int64_t N = B * T, C = c.hidden, H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim;
    rmsnorm(xn, h, n.attn_norm, N, C);
    std::vector<float> q, k, v;  // [N, H|KV, D]
    qkv_projections(l, xn, N, q, k, v);
    if (c.qk_norm) {
        rmsnorm(q.data(), q.data(), n.q_norm, N * H, D);
        rmsnorm(k.data(), k.data(), n.k_norm, N * KV, D);
    }
    RopeGgml rope;
    rope.freq_base = static_cast<float>(c.rope_theta);
    rope.freq_scale = ggml_freq_scale_;
    rope.freq_factors = ggml_freq_factors_;
    rope.dims = c.rotary_dims();
    rope.neox = c.rope_neox();
    rope_ggml(q.data(), B, T, H, D, rope);
    rope_ggml(k.data(), B, T, KV, D, rope);
    // llama.cpp: kq_scale = 1.0f/sqrtf(float(n_embd_head)) unless the model sets one.
    const float scale = c.attn_scale > 0 ? static_cast<float>(c.attn_scale)
                                         : 1.0f / std::sqrt(static_cast<float>(D));
    std::vector<float> att(N * H * D);  // [N, H, D]
    attention_ggml(att.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, scale,
                   c.is_sliding(l) ? c.sliding_window : 0);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.o, -1, att.data(), N, H * D);
    std::vector<float> proj(N * C);  // [N, C]
    linear(proj.data(), n.o, att.data(), weight_opt(n.o_bias), N, H * D, C);
    if (c.post_norms) rmsnorm(proj.data(), proj.data(), n.post_attn_norm, N, C);
    residual_forward(h, proj.data(), N * C);
}

void Engine::attention_block(int64_t l, float* h, float* xn, int64_t B, int64_t T) const {
    const ModelConfig& c = config_;
    const LayerNames& n = names_[l];
    const int64_t N = B * T, C = c.hidden, H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim;
    if (c.mla) {
        mla_attention_block(l, h, xn, B, T);
        return;
    }
    if (ggml_layer_) {
        attention_ggml_block(l, h, xn, B, T);
        return;
    }
    rmsnorm(xn, h, n.attn_norm, N, C);
    std::vector<float> q, k, v;  // [N, H|KV, D]
    qkv_projections(l, xn, N, q, k, v);
    if (c.qk_norm) {  // Qwen3, Gemma 3: RMSNorm over each head's D channels before RoPE
        rmsnorm(q.data(), q.data(), n.q_norm, N * H, D);
        rmsnorm(k.data(), k.data(), n.k_norm, N * KV, D);
    }
    const bool sliding = c.is_sliding(l);
    const std::vector<double> freqs = rope_frequencies(c, T, sliding);
    const double mscale = rope_attention_factor(c);
    rope_forward(q.data(), B, T, H, D, freqs, c.rope_neox(), options_.rope_bf16_freqs, mscale);
    rope_forward(k.data(), B, T, KV, D, freqs, c.rope_neox(), options_.rope_bf16_freqs, mscale);
    if (options_.ggml_numerics) {  // F16 KV cache; Q meets F16 K in the KQ product
        round_activations(q.data(), N, H * D, ActRounding::F16);
        round_activations(k.data(), N, KV * D, ActRounding::F16);
        round_activations(v.data(), N, KV * D, ActRounding::F16);
    }
    AttentionParams params;
    params.scale = static_cast<float>(c.attn_scale);
    params.softcap = static_cast<float>(c.attn_softcap);
    params.window = sliding ? c.sliding_window : 0;
    params.f16_probs = options_.ggml_numerics;
    std::vector<float> att(N * H * D);  // [N, H, D]
    if (c.attn_sinks)
        attention_sinks_forward(att.data(), q.data(), k.data(), v.data(), weight(n.sinks), B, T, H,
                                KV, D, params);
    else
        attention_forward(att.data(), q.data(), k.data(), v.data(), B, T, H, KV, D, params);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.o, -1, att.data(), N, H * D);
    std::vector<float> proj(N * C);  // [N, C]
    linear(proj.data(), n.o, att.data(), weight_opt(n.o_bias), N, H * D, C);
    if (c.post_norms) rmsnorm(proj.data(), proj.data(), n.post_attn_norm, N, C);
    residual_forward(h, proj.data(), N * C);
}

void Engine::ffn_dense(int64_t l, const float* xn, float* out, int64_t N) const {
    // With weights read in place, rows go through in blocks of 512 (llama.cpp's micro-batch):
    // every row's result is the same, and the [rows, F] buffers stay a quarter of a
    // 4-chunk batch's (memory about the file size). Hooks see the whole batch at once.
    const LayerNames& n = names_[l];
    const bool in_place =
        quantized(n.down) && (config_.fused_gate_up || quantized(n.gate)) && quantized(n.up);
    const int64_t block = in_place && !hook_ ? 512 : N, C = config_.hidden;
    for (int64_t r0 = 0; r0 < N; r0 += block)
        ffn_dense_rows(l, xn + r0 * C, out + r0 * C, std::min(block, N - r0));
}

void Engine::ffn_dense_rows(int64_t l, const float* xn, float* out, int64_t N) const {
    const LayerNames& n = names_[l];
    const int64_t C = config_.hidden, F = config_.dense_ffn_width();
    std::vector<float> gate(N * F), up(N * F);  // [N, F]
    if (config_.fused_gate_up) {                // ffn_up [N, 2F]: gate | up per row
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.up, -1, xn, N, C);
        std::vector<float> both(N * 2 * F);  // [N, 2F]
        linear(both.data(), n.up, xn, nullptr, N, C, 2 * F);
        for (int64_t r = 0; r < N; ++r) {
            std::copy_n(both.data() + r * 2 * F, F, gate.data() + r * F);
            std::copy_n(both.data() + r * 2 * F + F, F, up.data() + r * F);
        }
    } else {
        if (hook_) {
            emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.gate, -1, xn, N, C);
            emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.up, -1, xn, N, C);
        }
        linear_shared(xn, N, C,
                      {{&n.gate, gate.data(), nullptr, F}, {&n.up, up.data(), nullptr, F}});
    }
    if (config_.act == Activation::GeluTanh)
        geglu_tanh_forward(gate.data(), gate.data(), up.data(), N * F);
    else if (ggml_layer_)
        swiglu_ggml(gate.data(), up.data(), N, F);
    else
        swiglu_forward(gate.data(), gate.data(), up.data(), N * F);
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.down, -1, gate.data(), N, F);
    linear(out, n.down, gate.data(), nullptr, N, F, C);
}

void Engine::ffn_moe(int64_t l, const float* xn, float* out, int64_t N) const {
    const LayerNames& n = names_[l];
    const int64_t C = config_.hidden, F = config_.ffn, E = config_.n_experts;
    const int64_t K = config_.n_experts_used;
    emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.router, -1, xn, N, C);
    std::vector<float> logits(N * E);  // [N, E]
    linear(logits.data(), n.router, xn, weight_opt(n.router_bias), N, C, E);
    // Routing: softmax over all experts, keep the top K, renormalize their weights to sum 1
    // (moe_renormalize) or keep their softmax probabilities.
    std::vector<std::vector<std::pair<int64_t, float>>> routed(E);  // expert → (row, weight)
    std::vector<int64_t> order(E);
    std::vector<float> chosen(hook_ ? N * K : 0);  // [N, K] expert ids, for the Routing hook
    if (config_.moe_sigmoid) route_sigmoid(l, logits.data(), N, routed);
    // ggml's order (ggml_soft_max, top-k, weights / their float sum, each expert's output
    // times its weight, added in rank order) where the layer is otherwise ggml's.
    const bool ggml_moe = ggml_layer_ && !config_.moe_sigmoid && config_.swiglu_limit == 0 &&
                          config_.shared_expert == SharedExpert::None &&
                          config_.act == Activation::SiLU;
    std::vector<int32_t> rank(ggml_moe ? N * E : 0, -1);  // [N, E]: slot of a chosen expert
    for (int64_t r = 0; r < N && ggml_moe; ++r) {
        std::vector<float> p(logits.data() + r * E, logits.data() + (r + 1) * E);
        softmax_ggml(p.data(), E);
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return p[a] > p[b]; });
        double kept = 0.0;
        for (int64_t i = 0; i < K; ++i) kept += static_cast<double>(p[order[i]]);
        const auto kept_f = static_cast<float>(kept);
        for (int64_t i = 0; i < K; ++i) {
            const float w = config_.moe_renormalize ? p[order[i]] / kept_f : p[order[i]];
            routed[order[i]].emplace_back(r, w);
            rank[r * E + order[i]] = static_cast<int32_t>(i);
            if (hook_) chosen[r * K + i] = static_cast<float>(order[i]);
        }
    }
    for (int64_t r = 0; r < N && !config_.moe_sigmoid && !ggml_moe; ++r) {
        const float* z = logits.data() + r * E;
        const float mx = *std::max_element(z, z + E);
        std::vector<double> p(E);
        double sum = 0.0;
        for (int64_t e = 0; e < E; ++e) sum += (p[e] = std::exp(static_cast<double>(z[e] - mx)));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return p[a] > p[b]; });
        double kept = 0.0;
        for (int64_t i = 0; i < K; ++i) kept += p[order[i]];
        const double denominator = config_.moe_renormalize ? kept : sum;
        for (int64_t i = 0; i < K; ++i)
            routed[order[i]].emplace_back(r, static_cast<float>(p[order[i]] / denominator));
        if (hook_)
            for (int64_t i = 0; i < K; ++i) chosen[r * K + i] = static_cast<float>(order[i]);
    }
    if (hook_ && config_.moe_sigmoid) {  // each row's experts in expert order
        std::vector<int64_t> filled(N, 0);
        for (int64_t e = 0; e < E; ++e)
            for (const auto& [r, w] : routed[e])
                if (filled[r] < K) chosen[r * K + filled[r]++] = static_cast<float>(e);
    }
    if (hook_)
        emit(HookEvent::Kind::Routing, static_cast<int>(l), nullptr, -1, chosen.data(), N, K);
    std::fill(out, out + N * C, 0.0f);
    std::vector<float> slots(ggml_moe ? N * K * C : 0);  // [N, K, C] weighted expert outputs
    // Stacked experts: gate/up [E, F, C], down [E, C, F]; linear() picks expert e's slice.
    for (int64_t e = 0; e < E; ++e) {
        const auto& rows = routed[e];
        const auto M = static_cast<int64_t>(rows.size());
        if (M == 0) continue;
        std::vector<float> x(M * C), gate(M * F), up(M * F), y(M * C);
        for (int64_t i = 0; i < M; ++i) std::copy_n(xn + rows[i].first * C, C, x.data() + i * C);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.gate_exps, static_cast<int>(e),
             x.data(), M, C);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.up_exps, static_cast<int>(e),
             x.data(), M, C);
        // Stacked expert biases (gpt-oss): [E, F] and [E, C]; expert e's row.
        auto bias = [&](const std::string& name, int64_t width) {
            const float* b = weight_opt(name);
            return b ? b + e * width : nullptr;
        };
        linear(gate.data(), n.gate_exps, x.data(), bias(n.gate_exps_bias, F), M, C, F, e);
        linear(up.data(), n.up_exps, x.data(), bias(n.up_exps_bias, F), M, C, F, e);
        if (config_.swiglu_limit > 0)
            clamped_swiglu_forward(gate.data(), gate.data(), up.data(), M * F,
                                   static_cast<float>(config_.swiglu_limit),
                                   static_cast<float>(config_.swiglu_alpha));
        else if (ggml_moe)
            swiglu_ggml(gate.data(), up.data(), M, F);
        else
            swiglu_forward(gate.data(), gate.data(), up.data(), M * F);
        emit(HookEvent::Kind::LinearInput, static_cast<int>(l), &n.down_exps, static_cast<int>(e),
             gate.data(), M, F);
        linear(y.data(), n.down_exps, gate.data(), bias(n.down_exps_bias, C), M, F, C, e);
        if (ggml_moe) {
            for (int64_t i = 0; i < M; ++i) {
                const int64_t r = rows[i].first;
                float* slot = slots.data() + (r * K + rank[r * E + e]) * C;
                for (int64_t ch = 0; ch < C; ++ch) slot[ch] = y[i * C + ch] * rows[i].second;
            }
            continue;
        }
        for (int64_t i = 0; i < M; ++i) {
            float* o = out + rows[i].first * C;
            const float w = rows[i].second;
            for (int64_t ch = 0; ch < C; ++ch) o[ch] += w * y[i * C + ch];
        }
    }
    for (int64_t r = 0; r < N && ggml_moe; ++r) {  // slot 0, then + slot 1, + slot 2, …
        float* o = out + r * C;
        const float* slot = slots.data() + r * K * C;
        std::copy_n(slot, C, o);
        for (int64_t k = 1; k < K; ++k)
            for (int64_t ch = 0; ch < C; ++ch) o[ch] = o[ch] + slot[k * C + ch];
    }
    if (config_.shared_expert == SharedExpert::Ungated) ungated_shared_expert_add(l, xn, out, N);
}

void Engine::run_layer(int64_t l, float* h, int64_t B, int64_t T) const {
    QL_ASSERT(l >= 0 && l < config_.n_layers);
    if (gemma4_) return gemma4_run_layer(l, h, B, T);
    if (config_.is_hybrid()) return hybrid_layer(l, h, B, T);
    const int64_t N = B * T, C = config_.hidden;
    std::vector<float> xn(N * C), ffn(N * C);  // [N, C]
    attention_block(l, h, xn.data(), B, T);
    rmsnorm(xn.data(), h, names_[l].ffn_norm, N, C);
    if (config_.is_moe_layer(l)) {
        ffn_moe(l, xn.data(), ffn.data(), N);
    } else {
        ffn_dense(l, xn.data(), ffn.data(), N);
    }
    if (config_.post_norms) rmsnorm(ffn.data(), ffn.data(), names_[l].post_ffw_norm, N, C);
    residual_forward(h, ffn.data(), N * C);
    emit(HookEvent::Kind::LayerOutput, static_cast<int>(l), nullptr, -1, h, N, C);
}

std::vector<float> Engine::head(const float* h, int64_t B, int64_t T, int64_t t0) const {
    QL_ASSERT(t0 >= 0 && t0 < T);
    const int64_t C = config_.hidden, V = config_.vocab, S = T - t0, N = B * S;
    std::vector<float> xn(N * C);  // [B, S, C]
    for (int64_t b = 0; b < B; ++b) {
        const float* rows = h + (b * T + t0) * width_;
        std::vector<float> compact;  // the hidden part of wider state rows
        if (width_ != C) {
            compact.resize(S * C);
            for (int64_t s = 0; s < S; ++s)
                std::copy_n(rows + s * width_, C, compact.data() + s * C);
            rows = compact.data();
        }
        rmsnorm(xn.data() + b * S * C, rows, "output_norm.weight", S, C);
    }
    emit(HookEvent::Kind::FinalNorm, static_cast<int>(config_.n_layers), nullptr, -1, xn.data(), N,
         C);
    emit(HookEvent::Kind::LinearInput, -1, &output_name_, -1, xn.data(), N, C);
    std::vector<float> logits(N * V);  // [B, S, V]
    linear(logits.data(), output_name_, xn.data(), nullptr, N, C, V);
    if (config_.final_softcap > 0)
        softcap_forward(logits.data(), N * V, static_cast<float>(config_.final_softcap));
    return logits;
}

std::string Engine::source_path() const {
    return model_.path();
}

std::vector<float> Engine::forward(std::span<const int32_t> tokens, int64_t B, int64_t T,
                                   int64_t t0) const {
    QL_ASSERT(static_cast<int64_t>(tokens.size()) == B * T);
    std::vector<float> h = embed(tokens);
    for (int64_t l = 0; l < config_.n_layers; ++l) run_layer(l, h.data(), B, T);
    return head(h.data(), B, T, t0);
}

}  // namespace quantlens
