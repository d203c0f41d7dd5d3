// The CUDA forward pass: see cuda_engine.h for the contract. Host code only; the kernels are
// in cuda_kernels.cu and fake_quant.cu, the GEMMs are cuBLAS.
//
// Weight storage: each GGUF tensor is a member of a slot (one device allocation). q|k|v share
// a slot, and gate|up, so each is one GEMM; an override copies the slot once into a scratch
// buffer and edits the member's range there, so the original stays for clear_override and for
// fake quantization.
//
// Streaming: when the weights exceed the budget (CudaEngineOptions::weight_budget_bytes, or
// automatically when they would not fit in free GPU memory), every slot's values live in pinned
// host memory and a slot is copied to the GPU when a pass needs it (its layer, the embedding,
// the head), evicting the least recently used slots. The copy of the next step's slots (layer
// l+1, or the head after the last layer) starts on a copy stream while the current step
// computes; the compute stream waits on an event per slot. Arithmetic is unchanged: a streamed
// engine gives bit-identical results, only slower where the copies outlast the compute.
#include "engine/cuda/cuda_engine.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <span>
#include <string>
#include <unordered_map>

#include "core/error.h"
#include "core/profile.h"
#include "engine/cuda/cuda_common.cuh"
#include "engine/cuda/cuda_kernels.h"
#include "engine/cuda/deltanet.h"
#include "engine/cuda/dequant.h"
#include "engine/cuda/fake_quant.h"
#include "engine/cuda/flash_attention.h"
#include "engine/engine.h"
#include "engine/kernels.h"
#include "engine/layers/gated_deltanet.h"
#include "engine/layers/gemma4_layer.h"
#include "engine/layers/mla.h"
#include "engine/layers/moe_routing.h"
#include "model/model.h"
#include "model/names.h"
#include "quant/quant.h"

namespace quantlens::cuda {
namespace {

static_assert(static_cast<int>(ActRound::None) == static_cast<int>(ActRounding::None) &&
                  static_cast<int>(ActRound::F16) == static_cast<int>(ActRounding::F16) &&
                  static_cast<int>(ActRound::BF16) == static_cast<int>(ActRounding::BF16) &&
                  static_cast<int>(ActRound::Q8_0) == static_cast<int>(ActRounding::Q8_0) &&
                  static_cast<int>(ActRound::Q8_K) == static_cast<int>(ActRounding::Q8_K),
              "act_rounding_for casts ActRounding to ActRound");

constexpr int64_t kQueryBlock = 128;  // attention(): queries per causal block

struct Member {
    std::string name;
    int slot = -1;
    int64_t offset = 0;  // elements into the slot
    int64_t n = 0;
    std::vector<int64_t> ne;
    bool required = true;
    bool loaded = false;
    bool overridden = false;
    // What the stored values stand for, and what the current ones do (an override's type);
    // ggml_numerics rounds the matmul input for the current type.
    GgmlType stored_type = GgmlType::F32, type = GgmlType::F32;
    // In a packed slot (Slot::packed): the GGUF type of its blocks and where its rows lie in
    // the slot's bytes.
    GgmlType block_type = GgmlType::F32;
    size_t row_bytes = 0, byte_offset = 0;
};

struct PinnedFree {
    void operator()(char* p) const {
        if (p) cudaFreeHost(p);
    }
};

struct Slot {
    bool f32 = false;  // 1-D weights (norms, biases) stay f32
    // The members' GGUF blocks (CudaEngineOptions::quantized_storage), dequantized per GEMM
    // tile; `bytes` is then their size in the file, and `n` still counts values.
    bool packed = false;
    int64_t n = 0;
    size_t bytes = 0;
    DeviceBuffer orig, scratch;  // orig: empty while a streamed slot is not resident
    int n_overridden = 0;
    std::unique_ptr<char, PinnedFree> host;  // streaming: the values, in pinned memory
    bool dirty = false;                      // the resident copy changed since it came in
    // ggml_numerics: the original values in 16 bits, for members whose type is F16 or BF16
    // (exact there), so their GEMMs run on tensor cores; stale once `orig` is written.
    DeviceBuffer half;
    bool half_valid = false;
    cudaEvent_t ready = nullptr;  // the copy bringing it in, until the compute stream waited
    uint64_t last_use = 0;
    const void* active() const {
        QL_ASSERT(n_overridden || orig);
        return n_overridden ? scratch.as() : orig.as();
    }
};

struct LayerSlots {
    int attn_norm = -1, qkv = -1, qkv_bias = -1, q_norm = -1, k_norm = -1, o = -1;
    int post_attn_norm = -1, ffn_norm = -1, gate_up = -1, down = -1, post_ffw_norm = -1;
    int router = -1, gate_exps = -1, up_exps = -1, down_exps = -1;
    // gpt-oss: sinks, and the biases of o_proj, the router and the experts.
    int sinks = -1, o_bias = -1, router_bias = -1, gate_exps_bias = -1, up_exps_bias = -1,
        down_exps_bias = -1;
    // DeepSeek-V3 / GLM-4.5: the routing bias and the shared expert (gate | up fused as above).
    int exp_probs_b = -1, gate_up_shexp = -1, down_shexp = -1;
    // DeepSeek-V3's MLA (in place of qkv): the q bottleneck, the latent kv and its rope key,
    // and the per-head maps between a head's channels and the latent space.
    int q_a = -1, q_a_norm = -1, q_b = -1, kv_a = -1, kv_a_norm = -1, k_b = -1, v_b = -1;
    // Gated DeltaNet hybrids: a linear layer's qkv slot holds attn_qkv | attn_gate | ssm_ba (or
    // ssm_beta | ssm_alpha), a full layer's attn_q (query | gate per head) | attn_k | attn_v,
    // and o is ssm_out or attn_output; conv, ssm_dt.bias | ssm_a, and ssm_norm beside them,
    // and the shared expert's sigmoid gate (ffn_gate_inp_shexp).
    int ssm_conv = -1, ssm_dt_a = -1, ssm_norm = -1, shexp_gate = -1;
    // Gemma 4: fused routed experts (gate | up rows per expert) with the router's input scale
    // and the experts' output scales, the MoE branch's three norms, the per-layer embedding's
    // gate, projection and norm, and the layer's output scalar.
    int gate_up_exps = -1, router_scale = -1, expert_scale = -1, pre_norm_2 = -1, post_norm_1 = -1,
        post_norm_2 = -1, ple_gate = -1, ple_proj = -1, ple_norm = -1, out_scale = -1;
};

uint64_t name_hash(const std::string& s) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    return h;
}

}  // namespace

struct CudaEngine::Impl {
    ModelConfig c;
    CudaEngineOptions opt;
    bool flash = false;  // attention() takes flash_attention.h's kernel
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F;  // every GEMM's (see CudaEngineOptions::tf32)
    Dtype dt = Dtype::BF16;
    cudaDataType_t cdt = CUDA_R_16BF;
    size_t esize = 2;  // bytes per stored element
    cublasHandle_t blas = nullptr;

    std::vector<Slot> slots;
    std::vector<Member> members;
    std::unordered_map<std::string, int> member_of;
    std::vector<std::vector<int>> slot_members;  // members of each slot, in offset order
    std::vector<LayerSlots> layers;
    int token_embd = -1, output_norm = -1, output = -1;
    // Floats per row of the state the layers pass along: the hidden size, or Gemma 4's wider
    // rows (gemma4_layer.h: the per-layer embedding inputs and shared K/V beside h).
    int64_t width = 0;
    Gemma4RowLayout g4_rows;
    int ple_table = -1, ple_model_proj = -1, ple_proj_norm = -1;  // Gemma 4's, when ple_dim > 0
    // Gemma 4: the rows' hidden part, contiguous (f32); the MoE branch's sum (f32); a slice of
    // the rows (stored K/V, a layer's per-layer input) as f32 and in the storage type; the
    // per-layer inputs at embed and the tokens' rows of their table (f32 [N, L·P]); the
    // router's input scale.
    DeviceBuffer g4_h, g4_moe, g4_f32, g4_16, g4_ple, g4_tok, g4_router_w;
    DeviceBuffer embed_rows;  // a packed table's rows of the batch's tokens, dequantized
    DeviceBuffer spare;       // a freed scratch kept for the next override

    // Activation scratch, sized for opt.max_tokens rows.
    DeviceBuffer xn, qkv, q, k, v, att, gu, act, scores, probs, logits;
    DeviceBuffer router_in;  // the router's input in f32 (router_logits_f32)
    DeviceBuffer router_logits, route_ids, route_w, route_rows, route_rw, xe, ye;
    DeviceBuffer rope_cos, rope_sin, staging, importance;
    DeviceBuffer rope_cos_swa, rope_sin_swa;  // sliding layers with their own θ (Gemma 3)
    DeviceBuffer proj;                        // post-norms: a projection before its norm
    // MLA: q_a's output (f32) and its norm, kv_a's output (f32), the nope queries [H, N, P],
    // the attention's latent output [N, H, L] (f32) and the same as [H, N, L] (16-bit); q and k
    // hold [q_lat | q_rope] and [c | k_rope] in f32, qkv q_b's output.
    DeviceBuffer mla_qa32, mla_qa, mla_kv32, mla_qn, mla_ol, mla_head;
    // Hybrids: the fused projection's output (f32), a full layer's gates (f32 [N, H·D]), and a
    // linear layer's conv output, decay and β, and recurrence output (f32).
    DeviceBuffer hy_in, hy_gate, dn_conv, dn_g, dn_beta, dn_out;
    int64_t ffn = 0;  // the widest MLP (an expert, a dense layer, the shared expert): buffers
    DeviceBuffer act_round;              // ggml_numerics: a matmul input rounded for its weight
    DeviceBuffer act16;                  // ggml_numerics: the same, in 16 bits, for a 16-bit weight
    DeviceBuffer tile;                   // a packed slot's rows, dequantized for one GEMM
    DeviceBuffer iota;                   // 0, 1, 2, ...: rows of a gathered embedding, in order
    DeviceBuffer nll_logits, nll_state;  // next_token_nll's logits tile and per-row state

    // QUANTLENS_PROFILE: the device time of each step of a layer, over layers 100 to 199 run
    // (after warm-up), printed when the engine ends.
    struct LayerProfile {
        static constexpr int kSteps = 9;
        static constexpr const char* kNames[kSteps] = {
            "norm", "QKV GEMM",     "QKV post (rope)", "attention", "O GEMM",
            "norm", "gate|up GEMM", "SwiGLU",          "down GEMM"};
        int64_t calls = 0, sampled = 0, tokens = 0;
        cudaEvent_t ev[kSteps + 1] = {};
        double ms[kSteps] = {};
        bool sampling() const { return calls >= 100 && calls < 200; }
        void mark(int i) {
            if (!sampling()) return;
            if (!ev[i]) QL_CUDA(cudaEventCreate(&ev[i]));
            QL_CUDA(cudaEventRecord(ev[i], nullptr));
        }
        void end_layer(int64_t n_tokens) {
            if (sampling()) {
                mark(kSteps);
                QL_CUDA(cudaEventSynchronize(ev[kSteps]));
                for (int i = 0; i < kSteps; ++i) {
                    float t = 0;
                    QL_CUDA(cudaEventElapsedTime(&t, ev[i], ev[i + 1]));
                    ms[i] += t;
                }
                ++sampled;
                tokens = n_tokens;
            }
            ++calls;
        }
        ~LayerProfile() {
            if (sampled > 0) {
                std::fprintf(stderr, "profile: a layer of %lld tokens, mean of %lld, device ms:",
                             static_cast<long long>(tokens), static_cast<long long>(sampled));
                double total = 0;
                for (int i = 0; i < kSteps; ++i) {
                    std::fprintf(stderr, " %s %.3f;", kNames[i], ms[i] / sampled);
                    total += ms[i] / sampled;
                }
                std::fprintf(stderr, " total %.3f\n", total);
            }
            for (cudaEvent_t e : ev)
                if (e) cudaEventDestroy(e);
        }
    };
    std::unique_ptr<LayerProfile> layer_profile =
        profiling() ? std::make_unique<LayerProfile>() : nullptr;
    void mark_step(int i) {
        if (layer_profile) layer_profile->mark(i);
    }
    bool half_refused = false;  // no memory for a 16-bit copy: F32 GEMMs from then on
    // Activation taps: the function and, per layer, the names each tapped input feeds.
    ActivationTapFn tap;
    RoutingObserver routing_observer;
    struct TapNames {
        std::vector<std::string> qkv, o, gate_up, down, router, gate_up_exps, down_exps,
            gate_up_shexp, down_shexp, mla_a, q_b, k_b, v_b, ple_gate, ple_proj;
    };
    std::vector<TapNames> tap_names;
    DeviceBuffer tap_f32;
    int64_t rope_T = -1;
    struct PtrKey {
        int64_t B = -1, T = -1, H = -1, KV = -1, Dqk = -1, Dv = -1, ldv = -1, elem = -1;
        const void *q = nullptr, *k = nullptr, *v = nullptr, *s = nullptr, *p = nullptr,
                   *o = nullptr;
        bool operator==(const PtrKey&) const = default;
    };
    // The batched GEMMs' pointer arrays of the last few attention shapes (Gemma 4 alternates
    // sliding and global layers of different head sizes; one entry would be re-uploaded, a
    // synchronous copy, at every layer).
    static constexpr size_t kPtrCacheEntries = 4;
    std::vector<std::pair<PtrKey, DeviceBuffer>> ptr_cache;
    size_t ptr_cache_next = 0;

    // Allocation waits for place_weights(), which knows the total.
    int add_slot(bool f32, int64_t n) {
        Slot s;
        s.f32 = f32;
        s.n = n;
        s.bytes = static_cast<size_t>(n) * (f32 ? 4 : esize);
        slots.push_back(std::move(s));
        return static_cast<int>(slots.size()) - 1;
    }

    // ---- residency (streaming) ----
    bool streaming = false;
    int64_t budget = 0, resident = 0;
    uint64_t clock = 0;

    void place_weights() {
        int64_t total = 0, largest_pass = 0;
        for (const Slot& sl : slots) total += static_cast<int64_t>(sl.bytes);
        for (size_t l = 0; l < layers.size(); ++l) {
            int64_t b = 0;
            for (int i : layer_slots(static_cast<int64_t>(l)))
                b += static_cast<int64_t>(slots[static_cast<size_t>(i)].bytes);
            largest_pass = std::max(largest_pass, b);
        }
        budget = opt.weight_budget_bytes;
        if (budget == 0) {
            size_t free_b = 0, total_b = 0;
            QL_CUDA(cudaMemGetInfo(&free_b, &total_b));
            // Activations, the sweep's cached hidden states and cuBLAS workspaces need room too.
            const auto usable = static_cast<int64_t>(static_cast<double>(free_b) * 0.7);
            if (total > usable) budget = usable;
        }
        streaming = budget > 0 && total > budget;
        // F32 slots start at zero: an optional bias the checkpoint lacks then adds nothing.
        if (!streaming) {
            for (Slot& sl : slots) {
                sl.orig.resize(sl.bytes);
                if (sl.f32) QL_CUDA(cudaMemset(sl.orig.as(), 0, sl.bytes));
            }
            return;
        }
        int64_t head_b = static_cast<int64_t>(slots[static_cast<size_t>(token_embd)].bytes);
        if (output >= 0) head_b += static_cast<int64_t>(slots[static_cast<size_t>(output)].bytes);
        QL_CHECK(budget >= std::max(largest_pass, head_b),
                 "CUDA engine: a weight budget of {} bytes cannot hold one layer ({} bytes) or "
                 "the embedding and output ({} bytes)",
                 budget, largest_pass, head_b);
        for (Slot& sl : slots) {
            char* p = nullptr;
            QL_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p), sl.bytes));
            if (sl.f32) std::memset(p, 0, sl.bytes);
            sl.host.reset(p);
        }
        QL_CUDA(cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking));
    }

    std::vector<int> layer_slots(int64_t l) const {
        const LayerSlots& ls = layers[static_cast<size_t>(l)];
        std::vector<int> out;
        for (int i : {ls.attn_norm,
                      ls.qkv,
                      ls.qkv_bias,
                      ls.q_norm,
                      ls.k_norm,
                      ls.o,
                      ls.post_attn_norm,
                      ls.ffn_norm,
                      ls.gate_up,
                      ls.down,
                      ls.post_ffw_norm,
                      ls.router,
                      ls.gate_exps,
                      ls.up_exps,
                      ls.down_exps,
                      ls.sinks,
                      ls.o_bias,
                      ls.router_bias,
                      ls.gate_exps_bias,
                      ls.up_exps_bias,
                      ls.down_exps_bias,
                      ls.exp_probs_b,
                      ls.gate_up_shexp,
                      ls.down_shexp,
                      ls.ssm_conv,
                      ls.ssm_dt_a,
                      ls.ssm_norm,
                      ls.shexp_gate,
                      ls.q_a,
                      ls.q_a_norm,
                      ls.q_b,
                      ls.kv_a,
                      ls.kv_a_norm,
                      ls.k_b,
                      ls.v_b,
                      ls.gate_up_exps,
                      ls.router_scale,
                      ls.expert_scale,
                      ls.pre_norm_2,
                      ls.post_norm_1,
                      ls.post_norm_2,
                      ls.ple_gate,
                      ls.ple_proj,
                      ls.ple_norm,
                      ls.out_scale})
            if (i >= 0) out.push_back(i);
        return out;
    }

    // Copies run on their own stream so layer l+1 comes in while layer l computes. Buffers of
    // evicted slots are pooled, not freed: cudaFree would wait for the whole device. Weights
    // in use (resident slots and pooled buffers, by capacity) stay within the budget.
    cudaStream_t copy_stream = nullptr;
    std::vector<cudaEvent_t> spare_events;
    std::vector<DeviceBuffer> pool;
    int64_t pooled = 0;

    cudaEvent_t take_event() {
        if (spare_events.empty()) {
            cudaEvent_t e = nullptr;
            QL_CUDA(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
            return e;
        }
        cudaEvent_t e = spare_events.back();
        spare_events.pop_back();
        return e;
    }

    void evict(Slot& sl) {
        if (sl.dirty)
            QL_CUDA(cudaMemcpy(sl.host.get(), sl.orig.as(), sl.bytes, cudaMemcpyDeviceToHost));
        sl.dirty = false;
        if (sl.ready) spare_events.push_back(std::exchange(sl.ready, nullptr));
        resident -= static_cast<int64_t>(sl.orig.bytes());
        pooled += static_cast<int64_t>(sl.orig.bytes());
        pool.push_back(std::move(sl.orig));
    }

    Slot* lru_victim(uint64_t now) {
        Slot* victim = nullptr;
        for (Slot& o : slots)
            if (o.orig && o.last_use != now && o.n_overridden == 0 &&
                (!victim || o.last_use < victim->last_use))
                victim = &o;
        return victim;
    }

    // A device buffer of `bytes` for a slot coming in: a pooled one of that size, else a new
    // one once evictions (slots not stamped `now`) make room. Returns an
    // empty buffer, having changed nothing that matters, when `optional` and there is no room.
    DeviceBuffer acquire(size_t bytes, uint64_t now, bool optional) {
        for (;;) {
            // Same-sized only: a larger buffer would hold budget the next layer needs.
            size_t best = pool.size();
            for (size_t i = 0; i < pool.size() && best == pool.size(); ++i)
                if (pool[i].bytes() == bytes) best = i;
            if (best < pool.size()) {
                DeviceBuffer b = std::move(pool[best]);
                pool.erase(pool.begin() + static_cast<std::ptrdiff_t>(best));
                pooled -= static_cast<int64_t>(b.bytes());
                // Kernels enqueued before the eviction may still read it.
                cudaEvent_t e = take_event();
                QL_CUDA(cudaEventRecord(e, nullptr));
                QL_CUDA(cudaStreamWaitEvent(copy_stream, e, 0));
                spare_events.push_back(e);
                return b;
            }
            if (resident + pooled + static_cast<int64_t>(bytes) <= budget)
                return DeviceBuffer(bytes);
            if (Slot* victim = lru_victim(now)) {
                evict(*victim);
            } else if (!pool.empty()) {
                pooled -= static_cast<int64_t>(pool.back().bytes());
                pool.pop_back();  // a pooled buffer too small for this slot: freed
            } else {
                QL_CHECK(optional,
                         "CUDA engine: the weight budget of {} bytes is too small for the "
                         "tensors one pass needs at once",
                         budget);
                return {};
            }
        }
    }

    // Starts the copy of a slot that is not resident; false when `optional` and no room.
    bool bring_in(Slot& sl, uint64_t now, bool optional) {
        DeviceBuffer b = acquire(sl.bytes, now, optional);
        if (!b) return false;
        sl.orig = std::move(b);
        QL_CUDA(cudaMemcpyAsync(sl.orig.as(), sl.host.get(), sl.bytes, cudaMemcpyHostToDevice,
                                copy_stream));
        sl.ready = take_event();
        QL_CUDA(cudaEventRecord(sl.ready, copy_stream));
        resident += static_cast<int64_t>(sl.orig.bytes());
        return true;
    }

    // Makes these slots resident on the GPU (a no-op without streaming): later work on the
    // compute stream waits for their copies. `modify`: the caller writes the original values,
    // which go back to the host when the slot is evicted.
    void use(const std::vector<int>& wanted, bool modify = false) {
        const uint64_t now = ++clock;
        for (int i : wanted)
            if (i >= 0) {
                slots[static_cast<size_t>(i)].last_use = now;
                if (modify) slots[static_cast<size_t>(i)].half_valid = false;
            }
        if (!streaming) return;
        for (int i : wanted) {
            if (i < 0) continue;
            Slot& sl = slots[static_cast<size_t>(i)];
            sl.dirty = sl.dirty || modify;
            if (!sl.orig) bring_in(sl, now, false);
            if (sl.ready) {
                QL_CUDA(cudaStreamWaitEvent(nullptr, sl.ready, 0));
                spare_events.push_back(std::exchange(sl.ready, nullptr));
            }
        }
    }

    // Starts copying the slots the next pass step needs while the current one computes; stops
    // quietly where that would evict what the current step uses.
    void prefetch(const std::vector<int>& next) {
        if (!streaming) return;
        const uint64_t now = clock;  // the stamp of the step just issued
        for (int i : next)
            if (i >= 0) slots[static_cast<size_t>(i)].last_use = now;
        for (int i : next) {
            if (i < 0) continue;
            Slot& sl = slots[static_cast<size_t>(i)];
            if (!sl.orig && !bring_in(sl, now, true)) return;
        }
    }

    std::vector<int> head_slots() const {
        const bool has_output =
            output >= 0 && members[static_cast<size_t>(member_of.at("output.weight"))].loaded;
        return {output_norm, has_output ? output : token_embd};
    }

    void add_member(const std::string& name, int slot, int64_t offset, std::vector<int64_t> ne,
                    bool required) {
        Member m;
        m.name = name;
        m.slot = slot;
        m.offset = offset;
        m.n = 1;
        for (int64_t d : ne) m.n *= d;
        m.ne = std::move(ne);
        m.required = required;
        member_of[name] = static_cast<int>(members.size());
        if (slot_members.size() <= static_cast<size_t>(slot)) slot_members.resize(slot + 1);
        slot_members[static_cast<size_t>(slot)].push_back(static_cast<int>(members.size()));
        members.push_back(std::move(m));
    }
    // A slot holding the given tensors back to back (empty names are skipped).
    int fused(bool f32, const std::vector<std::pair<std::string, std::vector<int64_t>>>& ts,
              bool required) {
        int64_t n = 0;
        for (const auto& [name, ne] : ts) {
            int64_t e = 1;
            for (int64_t d : ne) e *= d;
            n += e;
        }
        const int s = add_slot(f32, n);
        int64_t off = 0;
        for (const auto& [name, ne] : ts) {
            add_member(name, s, off, ne, required);
            int64_t e = 1;
            for (int64_t d : ne) e *= d;
            off += e;
        }
        if (!f32) pack_if_listed(s);
        return s;
    }
    // The activation scratch for batches of `tokens` rows (buffers only grow).
    void size_activations(int64_t tokens) {
        const int64_t C = c.hidden, HD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
        const int64_t D = c.head_dim;
        const auto Nmax = static_cast<size_t>(tokens);
        xn.resize(Nmax * static_cast<size_t>(C) * esize);
        qkv.resize(Nmax * static_cast<size_t>(HD + 2 * KD) * 4);
        q.resize(Nmax * static_cast<size_t>(HD) * esize);
        k.resize(Nmax * static_cast<size_t>(KD) * esize);
        v.resize(Nmax * static_cast<size_t>(KD) * esize);
        att.resize(Nmax * static_cast<size_t>(HD) * esize);
        // The widest MLP: a dense layer of GLM-4.5 / DeepSeek-V3 or the shared expert may be wider
        // than an expert (sized by the expert's width, the dense layer's GEMM ran past the buffer).
        gu.resize(Nmax * static_cast<size_t>(2 * ffn) * esize);
        act.resize(Nmax * static_cast<size_t>(ffn) * esize);
        if (c.post_norms) proj.resize(Nmax * static_cast<size_t>(C) * 4);
        if (c.is_hybrid()) {
            const auto nv = static_cast<size_t>(c.ssm_v_heads);
            const auto CH = static_cast<size_t>(c.ssm_conv_dim());
            const size_t VD = nv * static_cast<size_t>(c.ssm_v_dim);
            const size_t full = static_cast<size_t>(2 * HD + 2 * KD), lin = CH + VD + 2 * nv;
            hy_in.resize(Nmax * std::max(full, lin) * 4);
            hy_gate.resize(Nmax * static_cast<size_t>(HD) * 4);
            dn_conv.resize(Nmax * CH * 4);
            dn_g.resize(Nmax * nv * 4);
            dn_beta.resize(Nmax * nv * 4);
            dn_out.resize(Nmax * VD * 4);
            att.resize(Nmax * std::max(VD, static_cast<size_t>(HD)) * esize);
        }
        if (c.mla) {
            const auto H = static_cast<size_t>(c.n_heads), P = static_cast<size_t>(c.qk_nope_dim);
            const auto R = static_cast<size_t>(D), L = static_cast<size_t>(c.kv_lora_rank);
            const auto Q = static_cast<size_t>(c.q_lora_rank),
                       V = static_cast<size_t>(c.v_head_dim);
            qkv.resize(Nmax * H * (P + R) * 4);
            q.resize(Nmax * H * (L + R) * 4);  // the latent attention's, in F32
            k.resize(Nmax * (L + R) * 4);
            att.resize(Nmax * H * V * esize);
            mla_qa32.resize(Nmax * Q * 4);
            mla_qa.resize(Nmax * Q * esize);
            mla_kv32.resize(Nmax * (L + R) * 4);
            mla_qn.resize(Nmax * H * P * esize);
            mla_ol.resize(Nmax * H * L * 4);
            mla_head.resize(Nmax * H * L * esize);
        }
        if (c.is_gemma4()) {  // each layer its own head size and KV heads
            const auto H = static_cast<size_t>(c.n_heads), P = static_cast<size_t>(c.ple_dim);
            size_t hd = 0, kd = 0, fused_qkv = 0;
            for (const ModelConfig::Gemma4Layer& s : c.gemma4_layers) {
                const auto d = static_cast<size_t>(s.head_dim),
                           kv = static_cast<size_t>(s.n_kv_heads);
                hd = std::max(hd, H * d);
                kd = std::max(kd, kv * d);
                fused_qkv = std::max(fused_qkv, (H + 2 * kv) * d);
            }
            qkv.resize(Nmax * fused_qkv * 4);
            q.resize(Nmax * hd * esize);
            att.resize(Nmax * hd * esize);
            k.resize(Nmax * kd * esize);
            v.resize(Nmax * kd * esize);
            g4_h.resize(Nmax * static_cast<size_t>(C) * 4);
            g4_f32.resize(Nmax * std::max(kd, P) * 4);
            g4_16.resize(Nmax * std::max(kd, P) * esize);
            if (c.is_moe()) {
                g4_moe.resize(Nmax * static_cast<size_t>(C) * 4);
                router_in.resize(Nmax * static_cast<size_t>(C) * 4);
            }
        }
        opt.max_tokens = tokens;
    }
    // Lays a new slot out as its members' GGUF blocks when quantized_storage lists every one
    // with a type the GPU dequantizes (each member 256-byte aligned).
    void pack_if_listed(int slot) {
        const std::vector<int>& ms = slot_members[static_cast<size_t>(slot)];
        for (int i : ms) {
            auto it = opt.quantized_storage.find(members[static_cast<size_t>(i)].name);
            if (it == opt.quantized_storage.end() || !gpu_dequant_supported(it->second)) return;
        }
        size_t bytes = 0;
        for (int i : ms) {
            Member& mb = members[static_cast<size_t>(i)];
            const GgmlType t = opt.quantized_storage.at(mb.name);
            QL_CHECK(mb.ne[0] % ggml_type_info(t).block_size == 0,
                     "CUDA engine: tensor '{}' ({}) has rows of {}, not whole blocks of {}",
                     mb.name, ggml_type_display_name(t), mb.ne[0], ggml_type_info(t).block_size);
            mb.block_type = t;
            mb.row_bytes = ggml_row_size(t, mb.ne[0]);
            bytes = (bytes + 255) / 256 * 256;
            mb.byte_offset = bytes;
            bytes += mb.row_bytes * static_cast<size_t>(mb.n / mb.ne[0]);
        }
        Slot& sl = slots[static_cast<size_t>(slot)];
        sl.packed = true;
        sl.bytes = bytes;
    }
    static size_t dtype_size(Dtype d) { return d == Dtype::F32 ? 4 : 2; }
    // dst[n_rows, K] (in `as`) ← the rows of a packed slot from value `elem` on, dequantized
    // (the rows may span members, each with rows of K).
    void dequantize_rows(int slot, int64_t elem, int64_t K, int64_t n_rows, void* dst, Dtype as) {
        const Slot& s = slots[static_cast<size_t>(slot)];
        const std::vector<int>& ms = slot_members[static_cast<size_t>(slot)];
        QL_ASSERT(s.packed && s.orig);
        for (int64_t done = 0; done < n_rows;) {
            const int64_t e = elem + done * K;
            const Member& mb = member_at(ms, e);
            QL_ASSERT(mb.ne[0] == K && (e - mb.offset) % K == 0);
            const int64_t row = (e - mb.offset) / K;
            const int64_t n = std::min(n_rows - done, mb.n / K - row);
            launch_dequantize_rows(mb.block_type, s.orig.as<char>() + mb.byte_offset, mb.row_bytes,
                                   K, nullptr, row, n,
                                   static_cast<char*>(dst) + done * K * dtype_size(as), as);
            done += n;
        }
    }
    // Turns a packed slot into plain values of the storage type for good (an override or a
    // fake-quantization writes values, not blocks).
    void unpack(int slot) {
        Slot& s = slots[static_cast<size_t>(slot)];
        if (!s.packed) return;
        use({slot});
        const size_t bytes = static_cast<size_t>(s.n) * esize;
        DeviceBuffer plain(bytes);
        for (int i : slot_members[static_cast<size_t>(slot)]) {
            const Member& mb = members[static_cast<size_t>(i)];
            dequantize_rows(slot, mb.offset, mb.ne[0], mb.n / mb.ne[0],
                            plain.as<char>() + mb.offset * esize, dt);
        }
        QL_CUDA(cudaDeviceSynchronize());  // the blocks' buffer is freed below
        if (streaming) {
            char* p = nullptr;
            QL_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p), bytes));
            s.host.reset(p);
            s.dirty = true;  // the host copy is written back at eviction
            resident += static_cast<int64_t>(bytes) - static_cast<int64_t>(s.orig.bytes());
        }
        s.orig = std::move(plain);
        s.bytes = bytes;
        s.packed = false;
    }

    Member& member(const std::string& name) {
        auto it = member_of.find(name);
        QL_CHECK(it != member_of.end(), "CUDA engine: no weight named '{}' in a {} model", name,
                 arch_name(c.arch));
        return members[static_cast<size_t>(it->second)];
    }
    size_t elem(const Slot& s) const { return s.f32 ? 4 : esize; }
    const void* ptr(int slot, int64_t offset_elems = 0) const {
        const Slot& s = slots[static_cast<size_t>(slot)];
        QL_ASSERT(!s.packed);  // its values exist only per tile (gemm_rows)
        return static_cast<const char*>(s.active()) + offset_elems * elem(s);
    }
    const float* f32(int slot) const {
        return slot < 0 ? nullptr : static_cast<const float*>(ptr(slot));
    }

    // Y[N, M] (ldy) = X[N, K] · W[M, K]ᵀ + beta·Y; X and W in the storage type, F32
    // accumulation.
    void gemm(const void* W, const void* X, void* Y, cudaDataType_t ytype, int64_t N, int64_t K,
              int64_t M, float beta, int64_t ldy = -1) {
        gemm_as(cdt, compute, W, X, Y, ytype, N, K, M, beta, ldy);
    }
    void gemm_as(cudaDataType_t in_type, cublasComputeType_t how, const void* W, const void* X,
                 void* Y, cudaDataType_t ytype, int64_t N, int64_t K, int64_t M, float beta,
                 int64_t ldy) {
        if (N == 0) return;
        const float alpha = 1.0f;
        QL_CUBLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(M),
                               static_cast<int>(N), static_cast<int>(K), &alpha, W, in_type,
                               static_cast<int>(K), X, in_type, static_cast<int>(K), &beta, Y,
                               ytype, static_cast<int>(ldy < 0 ? M : ldy), how,
                               CUBLAS_GEMM_DEFAULT));
    }

    // ggml_numerics, a weight slot whose rows [r0, r1) hold F16 (or BF16) values and take an
    // F16- (BF16-) rounded input: the slot's values in 16 bits, else null (an override in the
    // slot, streaming, the option off, or no memory). The products are then exact on tensor
    // cores, as in F32, and accumulate in F32, as in F32: only the summation order differs.
    const void* half_weights(int slot, ActRound kind) {
        Slot& s = slots[static_cast<size_t>(slot)];
        if (!opt.half_gemm_for_16bit_weights || streaming || s.f32 || s.packed ||
            s.n_overridden > 0)
            return nullptr;
        if (s.half_valid) return s.half.as();
        if (half_refused) return nullptr;
        const size_t bytes = static_cast<size_t>(s.n) * 2;
        if (s.half.bytes() < bytes) {
            size_t free_b = 0, total_b = 0;
            QL_CUDA(cudaMemGetInfo(&free_b, &total_b));
            if (free_b < bytes + (size_t{2} << 30)) {  // activations and cuBLAS need room
                half_refused = true;
                return nullptr;
            }
            s.half.resize(bytes);
        }
        launch_f32_to_16(s.half.as(), kind == ActRound::BF16 ? Dtype::BF16 : Dtype::F16,
                         s.orig.as<float>(), s.n);
        s.half_valid = true;
        return s.half.as();
    }

    // Y[N, M] (ldy) = X[N, K] · Wᵀ + beta·Y for the weight slot `slot` (from element offset
    // `w_off`, M rows of K). With ggml_numerics the input is rounded for each member's current
    // type first (into act_round); members needing different roundings get a GEMM each.
    void linear(int slot, int64_t w_off, const void* X, void* Y, cudaDataType_t ytype, int64_t N,
                int64_t K, int64_t M, float beta, int64_t ldy = -1) {
        if (!opt.ggml_numerics) {
            gemm_rows(slot, w_off, X, Y, ytype, N, K, 0, M, beta, ldy < 0 ? M : ldy);
            return;
        }
        const std::vector<int>& ms = slot_members[static_cast<size_t>(slot)];
        const size_t ysize = ytype == CUDA_R_32F ? 4 : esize;
        const int64_t ld = ldy < 0 ? M : ldy;
        act_round.resize(static_cast<size_t>(N * K) * 4);
        // Rows [r0, r1) of this GEMM's M, grouped by the rounding their members need.
        auto end_row = [&](int64_t r) {
            return std::min(M, (member_end(ms, w_off + r * K) - w_off) / K);
        };
        int64_t r0 = 0;
        while (r0 < M) {
            const ActRound kind = member_rounding(ms, w_off + r0 * K);
            int64_t r1 = end_row(r0);
            while (r1 < M && member_rounding(ms, w_off + r1 * K) == kind) r1 = end_row(r1);
            const void* w16 = (kind == ActRound::F16 || kind == ActRound::BF16) &&
                                      rows_all_16bit(ms, w_off + r0 * K, w_off + r1 * K, kind)
                                  ? half_weights(slot, kind)
                                  : nullptr;
            if (w16) {
                const Dtype d16 = kind == ActRound::BF16 ? Dtype::BF16 : Dtype::F16;
                act16.resize(static_cast<size_t>(N * K) * 2);
                launch_f32_to_16(act16.as(), d16, static_cast<const float*>(X), N * K);
                gemm_as(d16 == Dtype::BF16 ? CUDA_R_16BF : CUDA_R_16F, CUBLAS_COMPUTE_32F,
                        static_cast<const char*>(w16) + (w_off + r0 * K) * 2, act16.as(),
                        static_cast<char*>(Y) + r0 * ysize, ytype, N, K, r1 - r0, beta, ld);
                r0 = r1;
                continue;
            }
            const void* x = X;
            if (kind != ActRound::None) {
                QL_CUDA(cudaMemcpyAsync(act_round.as(), X, static_cast<size_t>(N * K) * 4,
                                        cudaMemcpyDeviceToDevice, nullptr));
                launch_round_activations(act_round.as<float>(), N, K, kind);
                x = act_round.as();
            }
            gemm_rows(slot, w_off, x, Y, ytype, N, K, r0, r1, beta, ld);
            r0 = r1;
        }
    }
    // Rows per tile: whole multiples of 64 where possible, so every tile's output columns start
    // 16-byte aligned (cuBLAS's tensor-core kernels need it: tiles of 1,170 rows of an 8B's
    // ffn_down ran its GEMMs 3.5× slower).
    static int64_t aligned_rows(int64_t rows) {
        return rows >= 128 ? rows / 64 * 64 : std::max<int64_t>(1, rows);
    }
    // Y[:, r0..r1) (leading dimension ld) = X · W[r0..r1)ᵀ + beta·Y for rows r0..r1 of the
    // weight at value w_off of `slot` (rows of K). A packed slot's rows are dequantized into
    // `tile`, at most opt.dequant_tile_bytes at a time, one GEMM per tile.
    void gemm_rows(int slot, int64_t w_off, const void* X, void* Y, cudaDataType_t ytype, int64_t N,
                   int64_t K, int64_t r0, int64_t r1, float beta, int64_t ld) {
        const size_t ysize = ytype == CUDA_R_32F ? 4 : esize;
        if (!slots[static_cast<size_t>(slot)].packed) {
            gemm(ptr(slot, w_off + r0 * K), X, static_cast<char*>(Y) + r0 * ysize, ytype, N, K,
                 r1 - r0, beta, ld);
            return;
        }
        const int64_t per_tile =
            aligned_rows(opt.dequant_tile_bytes / (K * static_cast<int64_t>(esize)));
        tile.resize(static_cast<size_t>(std::min(per_tile, r1 - r0) * K) * esize);
        for (int64_t a = r0; a < r1; a += per_tile) {
            const int64_t b = std::min(r1, a + per_tile);
            dequantize_rows(slot, w_off + a * K, K, b - a, tile.as(), dt);
            gemm(tile.as(), X, static_cast<char*>(Y) + a * ysize, ytype, N, K, b - a, beta, ld);
        }
    }
    const Member& member_at(const std::vector<int>& ms, int64_t elem) const {
        for (int i : ms) {
            const Member& mb = members[static_cast<size_t>(i)];
            if (elem >= mb.offset && elem < mb.offset + mb.n) return mb;
        }
        QL_ASSERT(false);
        return members.front();
    }
    // Every member over elements [e0, e1) holds values of the 16-bit type `kind` rounds to.
    bool rows_all_16bit(const std::vector<int>& ms, int64_t e0, int64_t e1, ActRound kind) const {
        const GgmlType want = kind == ActRound::BF16 ? GgmlType::BF16 : GgmlType::F16;
        for (int64_t e = e0; e < e1; e = member_end(ms, e))
            if (member_at(ms, e).type != want) return false;
        return true;
    }
    ActRound member_rounding(const std::vector<int>& ms, int64_t elem) const {
        return act_rounding_for(member_at(ms, elem).type);
    }
    int64_t member_end(const std::vector<int>& ms, int64_t elem) const {
        const Member& mb = member_at(ms, elem);
        return mb.offset + mb.n;
    }
    // ActRound is engine/kernels.h's ActRounding member for member (frozen below).
    static ActRound act_rounding_for(GgmlType t) {
        return static_cast<ActRound>(ggml_act_rounding(t));
    }

    // The CPU engine's tables for sequences of T tokens (longrope picks its factors by T, so
    // they are rebuilt when T changes), scaled by the attention factor; sliding layers with
    // their own θ get their own.
    void ensure_rope(int64_t T) {
        if (rope_T == T) return;
        auto upload = [&](bool sliding, DeviceBuffer& cos_b, DeviceBuffer& sin_b) {
            std::vector<float> cs, sn;
            if (c.is_gemma4())  // each layer type its own head size and rope, no scaling
                rope_tables(gemma4_rope_frequencies(c, sliding), T, opt.rope_bf16_freqs, cs, sn);
            else
                rope_tables(rope_frequencies(c, T, sliding), T, opt.rope_bf16_freqs, cs, sn,
                            rope_attention_factor(c));
            cos_b.resize(cs.size() * 4);
            sin_b.resize(sn.size() * 4);
            QL_CUDA(cudaMemcpy(cos_b.as(), cs.data(), cs.size() * 4, cudaMemcpyHostToDevice));
            QL_CUDA(cudaMemcpy(sin_b.as(), sn.data(), sn.size() * 4, cudaMemcpyHostToDevice));
        };
        upload(false, rope_cos, rope_sin);
        if (c.rope_theta_swa > 0 || c.is_gemma4()) upload(true, rope_cos_swa, rope_sin_swa);
        rope_T = T;
    }

    // Causal attention of H query heads over KV shared key/value heads: q[N, H, Dqk],
    // k[N, KV, Dqk], v rows of ldv elements per token holding KV heads of Dv → out[N, H, Dv].
    // MLA passes its latent form: Dqk = L + R, one kv head, v = the first L channels of k.
    // q, k, v, the probabilities and out hold `f32` floats, else the storage type.
    struct AttnShape {
        int64_t H, KV, Dqk, Dv, ldv;
        float scale;
        const DeviceBuffer &q, &k, &v, &out;
        bool f32 = false;
    };
    void attention(int64_t l, int64_t B, int64_t T) {
        const int64_t H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim;
        if (flash) {
            launch_flash_attention(q.as(), k.as(), v.as(), att.as(), B, T, H, KV, D,
                                   1.0f / std::sqrt(static_cast<float>(D)));
            return;
        }
        // The CPU engine's blocked_attention: score = scale · q·k in the GEMM.
        const float scale = c.attn_scale > 0 ? static_cast<float>(c.attn_scale)
                                             : 1.0f / std::sqrt(static_cast<float>(D));
        attention(l, B, T, {H, KV, D, D, KV * D, scale, q, k, v, att});
    }
    void attention(int64_t l, int64_t B, int64_t T, const AttnShape& a) {
        const int64_t H = a.H, KV = a.KV, D = a.Dqk, Dv = a.Dv, G = H / KV;
        const size_t es = a.f32 ? 4 : esize;
        const cudaDataType_t type = a.f32 ? CUDA_R_32F : cdt;
        // Causal: queries in blocks of kQueryBlock meet only the keys up to their block's end,
        // which skips ~3/8 of the score and P·V work at T = 512 (and the masked scores' traffic).
        const int64_t batch = B * H, Tb = std::min<int64_t>(T, kQueryBlock);
        const int64_t QB = (T + Tb - 1) / Tb;
        scores.resize(static_cast<size_t>(batch * T * T) * 4);
        probs.resize(static_cast<size_t>(batch * T * T) * es);
        const PtrKey key{B,        T,           H,           KV,        D,
                         Dv,       a.ldv,       int64_t(es), a.q.as(),  a.k.as(),
                         a.v.as(), scores.as(), probs.as(),  a.out.as()};
        DeviceBuffer* ptrs = nullptr;
        for (auto& [k_, b_] : ptr_cache)
            if (k_ == key) ptrs = &b_;
        if (!ptrs) {  // round robin over the entries
            const size_t slot = ptr_cache_next;
            ptr_cache_next = (ptr_cache_next + 1) % kPtrCacheEntries;
            if (ptr_cache.size() <= slot) ptr_cache.resize(slot + 1);
            ptr_cache[slot].first = key;
            ptrs = &ptr_cache[slot].second;
            ptrs->resize(static_cast<size_t>(6 * batch * QB) * sizeof(void*));
            std::vector<const void*> p(static_cast<size_t>(6 * batch * QB));
            auto at = [&](const DeviceBuffer& b, int64_t elems, size_t width) {
                return static_cast<const void*>(b.as<const char>() + elems * width);
            };
            const int64_t n = batch * QB;
            for (int64_t qb = 0; qb < QB; ++qb)
                for (int64_t b = 0; b < B; ++b)
                    for (int64_t h = 0; h < H; ++h) {
                        const auto i = static_cast<size_t>(qb * batch + b * H + h);
                        const int64_t k_off = (b * T * KV + h / G) * D;
                        const int64_t v_off = b * T * a.ldv + h / G * Dv;
                        const int64_t q_off = (b * T * H + h) * D + qb * Tb * H * D;
                        const int64_t o_off = (b * T * H + h) * Dv + qb * Tb * H * Dv;
                        const int64_t s_off = (b * H + h) * T * T + qb * Tb * T;
                        p[i] = at(a.k, k_off, es);
                        p[n + i] = at(a.q, q_off, es);
                        p[2 * n + i] = at(scores, s_off, 4);
                        p[3 * n + i] = at(a.v, v_off, es);
                        p[4 * n + i] = at(probs, s_off, es);
                        p[5 * n + i] = at(a.out, o_off, es);
                    }
            QL_CUDA(
                cudaMemcpy(ptrs->as(), p.data(), p.size() * sizeof(void*), cudaMemcpyHostToDevice));
        }
        auto arr = [&](int i, int64_t qb) {
            return ptrs->as<const void*>() + (i * QB + qb) * batch;
        };
        const float zero = 0.0f, one = 1.0f;
        for (int64_t qb = 0; qb < QB; ++qb) {
            const auto rows = static_cast<int>(std::min(Tb, T - qb * Tb));
            const auto keys = static_cast<int>(std::min(T, (qb + 1) * Tb));
            // Sᵀ (keys × queries, column-major) = K · Qᵀ: row-major S[query][key].
            QL_CUBLAS(cublasGemmBatchedEx(
                blas, CUBLAS_OP_T, CUBLAS_OP_N, keys, rows, static_cast<int>(D), &a.scale,
                arr(0, qb), type, static_cast<int>(KV * D), arr(1, qb), type,
                static_cast<int>(H * D), &zero, const_cast<void**>(arr(2, qb)), CUDA_R_32F,
                static_cast<int>(T), static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT));
        }
        launch_causal_softmax(scores.as<float>(), probs.as(), a.f32 ? Dtype::F32 : dt, batch * T, T,
                              Tb, c.is_sliding(l) ? c.sliding_window : 0,
                              static_cast<float>(c.attn_softcap),
                              f32(layers[static_cast<size_t>(l)].sinks), H);
        if (opt.ggml_numerics)  // F32 storage: round as ggml's F16 probabilities
            launch_round_activations(probs.as<float>(), batch * T, T, ActRound::F16);
        for (int64_t qb = 0; qb < QB; ++qb) {
            const auto rows = static_cast<int>(std::min(Tb, T - qb * Tb));
            const auto keys = static_cast<int>(std::min(T, (qb + 1) * Tb));
            // Oᵀ (Dv × queries) = Vᵀ · Pᵀ.
            QL_CUBLAS(cublasGemmBatchedEx(
                blas, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(Dv), rows, keys, &one, arr(3, qb),
                type, static_cast<int>(a.ldv), arr(4, qb), type, static_cast<int>(T), &zero,
                const_cast<void**>(arr(5, qb)), type, static_cast<int>(H * Dv),
                static_cast<int>(batch), compute, CUBLAS_GEMM_DEFAULT));
        }
    }

    // DeepSeek-V3's multi-head latent attention in the absorbed form of the CPU engine
    // (engine/engine_deepseek.cpp, engine/layers/mla.h): from xn (the attention norm's output)
    // to att[N, H, V], the o-projection's input.
    void mla_attention(int64_t l, const LayerSlots& ls, int64_t B, int64_t T, const TapNames* tn) {
        const int64_t N = B * T, C = c.hidden, H = c.n_heads, R = c.head_dim, P = c.qk_nope_dim;
        const int64_t L = c.kv_lora_rank, Q = c.q_lora_rank, V = c.v_head_dim;
        auto tap_input = [&](std::vector<std::string> TapNames::*names, const void* x, int64_t cols,
                             int expert = -1) {
            if (tn)
                tap({ActivationTap::Kind::LinearInput, static_cast<int>(l), &(tn->*names), x, false,
                     N, cols, expert});
        };
        tap_input(&TapNames::mla_a, xn.as(), C);
        linear(ls.q_a, 0, xn.as(), mla_qa32.as(), CUDA_R_32F, N, C, Q, 0.0f);
        linear(ls.kv_a, 0, xn.as(), mla_kv32.as(), CUDA_R_32F, N, C, L + R, 0.0f);
        launch_rmsnorm(mla_qa.as(), dt, mla_qa32.as<float>(), f32(ls.q_a_norm), N, Q,
                       kMlaLatentNormEps, T, T, 0);
        tap_input(&TapNames::q_b, mla_qa.as(), Q);
        linear(ls.q_b, 0, mla_qa.as(), qkv.as(), CUDA_R_32F, N, Q, H * (P + R), 0.0f);
        launch_mla_post(qkv.as<float>(), mla_kv32.as<float>(), f32(ls.kv_a_norm), kMlaLatentNormEps,
                        rope_cos.as<float>(), rope_sin.as<float>(), c.rope_neox(), mla_qn.as(),
                        q.as<float>(), k.as<float>(), dt, N, T, H, P, R, L);
        // Each head's nope query into the latent space: q_lat = k_bₕ · q_nope, beside its
        // rotated rope part. The latent attention runs in F32 whatever the storage: a score
        // sums L + R products of a q_lat that k_b may make large, and in 16 bits the rounding
        // of those products moved the fixture's F16 KLD against transformers to 6.5e-4
        // (bench/RESULTS.md).
        for (int64_t hd = 0; hd < H; ++hd) {
            const char* q_nope = mla_qn.as<char>() + hd * N * P * esize;
            tap_input(&TapNames::k_b, q_nope, P, static_cast<int>(hd));
            linear(ls.k_b, hd * L * P, q_nope, q.as<float>() + hd * (L + R), CUDA_R_32F, N, P, L,
                   0.0f, H * (L + R));
        }
        attention(l, B, T, {H, 1, L + R, L, L + R, mla_score_scale(c), q, k, k, mla_ol, true});
        // Back to v_head_dim per head: v = v_bₕ · out_lat.
        launch_heads_to_16(mla_head.as(), dt, mla_ol.as<float>(), N, H, L);
        for (int64_t hd = 0; hd < H; ++hd) {
            const char* out_lat = mla_head.as<char>() + hd * N * L * esize;
            tap_input(&TapNames::v_b, out_lat, L, static_cast<int>(hd));
            linear(ls.v_b, hd * V * L, out_lat, att.as<char>() + hd * V * esize, cdt, N, L, V, 0.0f,
                   H * V);
        }
    }

    // The mixer of a Gated DeltaNet hybrid's layer (engine/layers/hybrid_layer.cpp), from xn
    // (the attention norm's output) to att, the o-projection's input; returns att's width.
    int64_t hybrid_mixer(int64_t l, const LayerSlots& ls, int64_t B, int64_t T) {
        const int64_t N = B * T, C = c.hidden;
        const auto eps = static_cast<float>(c.rms_eps);
        if (!c.is_linear_layer(l)) {  // gated full attention
            const int64_t H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim, HD = H * D;
            linear(ls.qkv, 0, xn.as(), hy_in.as(), CUDA_R_32F, N, C, 2 * HD + 2 * KV * D, 0.0f);
            launch_split_query_gate(qkv.as<float>(), hy_gate.as<float>(), hy_in.as<float>(), N, H,
                                    KV, D);
            launch_qkv_post(qkv.as<float>(), nullptr, f32(ls.q_norm), f32(ls.k_norm), eps,
                            rope_cos.as<float>(), rope_sin.as<float>(), c.rope_neox(), q.as(),
                            k.as(), v.as(), dt, N, T, H, KV, D, c.rotary_dims() / 2);
            if (opt.ggml_numerics) {  // as run_layer: ggml's F16 KV cache
                launch_round_activations(q.as<float>(), N, HD, ActRound::F16);
                launch_round_activations(k.as<float>(), N, KV * D, ActRound::F16);
                launch_round_activations(v.as<float>(), N, KV * D, ActRound::F16);
            }
            attention(l, B, T);
            launch_sigmoid_gate(att.as(), dt, hy_gate.as<float>(), N * HD);
            return HD;
        }
        const int64_t nk = c.ssm_k_heads, nv = c.ssm_v_heads, dk = c.ssm_k_dim, dv = c.ssm_v_dim;
        const int64_t CH = c.ssm_conv_dim(), VD = nv * dv, W = CH + VD + 2 * nv, QK = nk * dk;
        // One GEMM for q|k|v (the conv's channels), z and b|a.
        linear(ls.qkv, 0, xn.as(), hy_in.as(), CUDA_R_32F, N, C, W, 0.0f);
        float* conv = dn_conv.as<float>();
        launch_causal_conv1d_silu(conv, hy_in.as<float>(), W, f32(ls.ssm_conv), N, T, CH,
                                  c.ssm_conv_kernel);
        launch_l2norm_heads(conv, CH, N, nk, dk, kDeltaNetL2NormEps,
                            1.0f / std::sqrt(static_cast<float>(dk)));
        launch_l2norm_heads(conv + QK, CH, N, nk, dk, kDeltaNetL2NormEps, 1.0f);
        const float* dt_bias = f32(ls.ssm_dt_a);  // then ssm_a, nv values each
        launch_deltanet_gates(dn_g.as<float>(), dn_beta.as<float>(), hy_in.as<float>() + CH + VD, W,
                              dt_bias + nv, dt_bias, N, nk, nv, c.ssm_fused_ba);
        const DeltaRuleArgs rule{
            conv, CH, 0,  QK, 2 * QK, dn_g.as<float>(), dn_beta.as<float>(), dn_out.as<float>(), B,
            T,    nk, nv, dk, dv,     c.ssm_v_tiled};
        if (opt.deltanet_sequential)
            launch_gated_delta_rule_sequential(rule);
        else
            launch_gated_delta_rule_chunked(rule);
        launch_gated_rmsnorm(att.as(), dt, dn_out.as<float>(), hy_in.as<float>() + CH, W,
                             f32(ls.ssm_norm), N, nv, dv, eps);
        return VD;
    }

    // Router logits [N, E] f32 from the router input x[N, C] f32. The router multiplies in F32
    // whatever the storage, as llama.cpp keeps ffn_gate_inp (an F32 weight times F32
    // activations), so only the layers before it round in 16 bits. (A near-tied router still
    // flips where they do: Qwen3-Next's fixture, 2 tokens in 510, as llama.cpp's F16 numerics.)
    void router_logits_f32(int64_t l, const LayerSlots& ls, const float* x, int64_t N) {
        const int64_t C = c.hidden, E = c.n_experts;
        router_logits.resize(static_cast<size_t>(N * E) * 4);
        if (tap)
            tap({ActivationTap::Kind::LinearInput, static_cast<int>(l),
                 &tap_names[static_cast<size_t>(l)].router, x, true, N, C});
        if (opt.ggml_numerics)  // F32 storage: linear() rounds the input for the router's type
            linear(ls.router, 0, x, router_logits.as(), CUDA_R_32F, N, C, E, 0.0f);
        else
            gemm_as(CUDA_R_32F, CUBLAS_COMPUTE_32F, ptr(ls.router), x, router_logits.as(),
                    CUDA_R_32F, N, C, E, 0.0f, E);
        if (ls.router_bias >= 0)
            launch_add_bias(router_logits.as<float>(), f32(ls.router_bias), N, E);
    }

    void ffn_moe(int64_t l, const LayerSlots& ls, float* h, int64_t N) {
        const int64_t C = c.hidden, F = c.ffn, E = c.n_experts, K = c.n_experts_used;
        QL_ASSERT(F <= ffn && c.shared_expert_ffn <= ffn);  // gu and act hold the widest MLP
        route_ids.resize(static_cast<size_t>(N * K) * 4);
        route_w.resize(static_cast<size_t>(N * K) * 4);
        // The router reads the FFN norm's output in F32: xn itself under F32 storage.
        const float* x = xn.as<float>();
        if (dt != Dtype::F32) {
            router_in.resize(static_cast<size_t>(N * C) * 4);
            launch_rmsnorm(router_in.as(), Dtype::F32, h, f32(ls.ffn_norm), N, C,
                           static_cast<float>(c.rms_eps), N, N, 0);
            x = router_in.as<float>();
        }
        router_logits_f32(l, ls, x, N);
        std::vector<int32_t> ids(static_cast<size_t>(N * K));
        std::vector<float> w(ids.size());
        if (c.moe_sigmoid) {
            // DeepSeek-V3 / GLM-4.5's grouped sigmoid choice is the CPU engine's own function
            // (engine/layers/moe_routing.h) on the downloaded logits: the ids go to the host
            // for the expert GEMMs anyway, and N × E floats are small beside them.
            std::vector<float> logits(static_cast<size_t>(N * E)), bias;
            QL_CUDA(cudaMemcpy(logits.data(), router_logits.as(), logits.size() * 4,
                               cudaMemcpyDeviceToHost));
            if (ls.exp_probs_b >= 0) {
                bias.resize(static_cast<size_t>(E));
                QL_CUDA(cudaMemcpy(bias.data(), f32(ls.exp_probs_b), bias.size() * 4,
                                   cudaMemcpyDeviceToHost));
            }
            SigmoidRouting r;
            r.n_experts = E;
            r.k = K;
            r.n_groups = c.n_expert_groups;
            r.groups_used = c.n_expert_groups_used;
            r.renormalize = c.moe_renormalize;
            r.scale = static_cast<float>(c.moe_weights_scale);
            route_sigmoid_grouped(ids.data(), w.data(), logits.data(),
                                  bias.empty() ? nullptr : bias.data(), N, r);
        } else {
            launch_router_topk(router_logits.as<float>(), route_ids.as<int32_t>(),
                               route_w.as<float>(), N, E, K, c.moe_renormalize);
            QL_CUDA(cudaMemcpy(ids.data(), route_ids.as(), ids.size() * 4, cudaMemcpyDeviceToHost));
            QL_CUDA(cudaMemcpy(w.data(), route_w.as(), w.size() * 4, cudaMemcpyDeviceToHost));
        }
        run_experts(l, ls, ids, w, N, xn.as(), h);
        shared_expert(l, ls, h, N);
    }

    // The routed experts of layer l: token n's K choices ids[n K ..] with weights w, over the
    // expert input x[N, C] (storage type), added into out[N, C] (f32). Stacked gate and up
    // (ffn_gate_exps, ffn_up_exps) or one fused gate|up (Gemma 4's ffn_gate_up_exps), each
    // expert's rows one GEMM.
    void run_experts(int64_t l, const LayerSlots& ls, const std::vector<int32_t>& ids,
                     const std::vector<float>& w, int64_t N, const void* x, float* out) {
        const int64_t C = c.hidden, E = c.n_experts, K = c.n_experts_used;
        const int64_t F = c.is_gemma4() ? c.expert_ffn : c.ffn;
        QL_ASSERT(F <= ffn);
        if (routing_observer) routing_observer(static_cast<int>(l), ids, N, K);
        // Rows of each expert in token order, all experts back to back.
        std::vector<int64_t> start(static_cast<size_t>(E + 1), 0);
        for (int32_t e : ids) ++start[static_cast<size_t>(e) + 1];
        for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
        std::vector<int32_t> rows(ids.size());
        std::vector<float> rw(ids.size());
        std::vector<int64_t> fill(start.begin(), start.end() - 1);
        for (int64_t r = 0; r < N; ++r)
            for (int64_t i = 0; i < K; ++i) {
                const auto e = static_cast<size_t>(ids[static_cast<size_t>(r * K + i)]);
                rows[static_cast<size_t>(fill[e])] = static_cast<int32_t>(r);
                rw[static_cast<size_t>(fill[e]++)] = w[static_cast<size_t>(r * K + i)];
            }
        route_rows.resize(rows.size() * 4);
        route_rw.resize(rw.size() * 4);
        QL_CUDA(cudaMemcpy(route_rows.as(), rows.data(), rows.size() * 4, cudaMemcpyHostToDevice));
        QL_CUDA(cudaMemcpy(route_rw.as(), rw.data(), rw.size() * 4, cudaMemcpyHostToDevice));
        xe.resize(static_cast<size_t>(N * C) * esize);
        ye.resize(static_cast<size_t>(N * C) * 4);
        // Expert e's bias: row e of a stacked [E, width] bias, or none.
        auto bias_row = [&](int slot, int64_t e, int64_t width) {
            return slot < 0 ? nullptr : f32(slot) + e * width;
        };
        const GateAct gate_act = c.swiglu_limit > 0              ? GateAct::ClampedSwiGLU
                                 : c.act == Activation::GeluTanh ? GateAct::GeluTanh
                                                                 : GateAct::SiLU;
        for (int64_t e = 0; e < E; ++e) {
            const int64_t M = start[e + 1] - start[e];
            if (M == 0) continue;
            const int32_t* r = route_rows.as<int32_t>() + start[e];
            launch_gather_rows(xe.as(), x, dt, r, M, C);
            auto expert_tap = [&](const std::vector<std::string>& names, const void* x,
                                  int64_t cols) {
                tap({ActivationTap::Kind::LinearInput, static_cast<int>(l), &names, x, false, M,
                     cols, static_cast<int>(e)});
            };
            if (tap) expert_tap(tap_names[static_cast<size_t>(l)].gate_up_exps, xe.as(), C);
            if (ls.gate_up_exps >= 0) {
                linear(ls.gate_up_exps, e * 2 * F * C, xe.as(), gu.as(), cdt, M, C, 2 * F, 0.0f);
            } else {
                linear(ls.gate_exps, e * F * C, xe.as(), gu.as(), cdt, M, C, F, 0.0f, 2 * F);
                linear(ls.up_exps, e * F * C, xe.as(), gu.as<char>() + F * esize, cdt, M, C, F,
                       0.0f, 2 * F);
            }
            GateExtras extras;
            extras.gate_bias = bias_row(ls.gate_exps_bias, e, F);
            extras.up_bias = bias_row(ls.up_exps_bias, e, F);
            extras.limit = static_cast<float>(c.swiglu_limit);
            extras.alpha = static_cast<float>(c.swiglu_alpha);
            launch_swiglu(act.as(), gu.as(), dt, M, F, gate_act, extras);
            if (tap) expert_tap(tap_names[static_cast<size_t>(l)].down_exps, act.as(), F);
            linear(ls.down_exps, e * C * F, act.as(), ye.as(), CUDA_R_32F, M, F, C, 0.0f);
            launch_scatter_add(out, ye.as<float>(), r, route_rw.as<float>() + start[e], M, C,
                               bias_row(ls.down_exps_bias, e, C));
        }
    }

    // ---- rows wider than the hidden state (Gemma 4) ----
    // dst[n, 0..cols) (ld_dst floats a row) ← src[n, 0..cols) (ld_src), both f32.
    static void copy_columns(float* dst, int64_t ld_dst, const float* src, int64_t ld_src,
                             int64_t cols, int64_t rows) {
        if (rows == 0) return;
        QL_CUDA(cudaMemcpy2DAsync(dst, static_cast<size_t>(ld_dst) * 4, src,
                                  static_cast<size_t>(ld_src) * 4, static_cast<size_t>(cols) * 4,
                                  static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, nullptr));
    }
    // dst[n, 0..cols) (storage type, ld_dst elements a row) ← src[n, 0..cols) f32 (ld_src).
    void load_columns(void* dst, int64_t ld_dst, const float* src, int64_t ld_src, int64_t cols,
                      int64_t rows) {
        if (dt == Dtype::F32) {
            copy_columns(static_cast<float*>(dst), ld_dst, src, ld_src, cols, rows);
            return;
        }
        copy_columns(g4_f32.as<float>(), cols, src, ld_src, cols, rows);
        launch_f32_to_16(g4_16.as(), dt, g4_f32.as<float>(), rows * cols);
        QL_CUDA(cudaMemcpy2DAsync(dst, static_cast<size_t>(ld_dst) * esize, g4_16.as(),
                                  static_cast<size_t>(cols) * esize,
                                  static_cast<size_t>(cols) * esize, static_cast<size_t>(rows),
                                  cudaMemcpyDeviceToDevice, nullptr));
    }
    // dst[n, 0..cols) f32 (ld_dst) ← src[rows, cols] (storage type, contiguous).
    void store_columns(float* dst, int64_t ld_dst, const void* src, int64_t cols, int64_t rows) {
        if (dt == Dtype::F32) {
            copy_columns(dst, ld_dst, static_cast<const float*>(src), cols, cols, rows);
            return;
        }
        launch_16_to_f32(g4_f32.as<float>(), src, dt, rows * cols);
        copy_columns(dst, ld_dst, g4_f32.as<float>(), cols, cols, rows);
    }
    // The hidden part of `rows` rows of the state, contiguous [rows, C] (the state itself when
    // its rows are the hidden state).
    const float* hidden_rows(const float* state, int64_t rows) {
        if (width == c.hidden) return state;
        g4_h.resize(static_cast<size_t>(rows * c.hidden) * 4);
        copy_columns(g4_h.as<float>(), c.hidden, state, width, c.hidden, rows);
        return g4_h.as<float>();
    }
    // out[N, cols] f32 = rows tokens[n] of the embedding table in `slot` (member `name`, rows
    // of `cols`) × scale; a packed table's rows are dequantized first.
    void gather_embedding(int slot, const std::string& name, const int32_t* d_tokens, int64_t N,
                          int64_t cols, float scale, float* out) {
        const Slot& table = slots[static_cast<size_t>(slot)];
        if (!table.packed) {
            launch_embed(out, ptr(slot), dt, d_tokens, N, cols, scale);
            return;
        }
        const Member& mb = members[static_cast<size_t>(member_of.at(name))];
        embed_rows.resize(static_cast<size_t>(N * cols) * esize);
        launch_dequantize_rows(mb.block_type, table.orig.as<char>() + mb.byte_offset, mb.row_bytes,
                               cols, d_tokens, 0, N, embed_rows.as(), dt);
        if (iota.bytes() < static_cast<size_t>(N) * 4) {
            std::vector<int32_t> ids(static_cast<size_t>(std::max(N, opt.max_tokens)));
            for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(i);
            iota.resize(ids.size() * 4);
            QL_CUDA(cudaMemcpy(iota.as(), ids.data(), ids.size() * 4, cudaMemcpyHostToDevice));
        }
        launch_embed(out, embed_rows.as(), dt, iota.as<int32_t>(), N, cols, scale);
    }
    bool loaded(int slot) const {
        return slot >= 0 &&
               members[static_cast<size_t>(slot_members[static_cast<size_t>(slot)][0])].loaded;
    }

    // ---- Gemma 4 (engine/layers/gemma4_layer.cpp: the CPU's layer, the equations) ----
    void add_gemma4_layer(int64_t l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
        const int64_t C = c.hidden, D = s.head_dim, HD = c.n_heads * D, KD = s.n_kv_heads * D;
        const bool own_kv = s.kv_source == l;
        LayerSlots& ls = layers[static_cast<size_t>(l)];
        auto norm = [&](const char* base, int64_t n, bool required = true) {
            return fused(true, {{p + base + ".weight", {n}}}, required);
        };
        ls.attn_norm = norm("attn_norm", C);
        std::vector<std::pair<std::string, std::vector<int64_t>>> qkv_in{
            {p + "attn_q.weight", {C, HD}}};
        if (own_kv) {  // a KV-shared layer reads its source layer's K and V from the rows
            qkv_in.push_back({p + "attn_k.weight", {C, KD}});
            if (!s.v_is_k) qkv_in.push_back({p + "attn_v.weight", {C, KD}});
        }
        ls.qkv = fused(false, qkv_in, true);
        ls.q_norm = norm("attn_q_norm", D);
        if (own_kv) ls.k_norm = norm("attn_k_norm", D);
        ls.o = fused(false, {{p + "attn_output.weight", {HD, C}}}, true);
        ls.post_attn_norm = norm("post_attention_norm", C);
        ls.ffn_norm = norm("ffn_norm", C);
        ls.gate_up = fused(
            false, {{p + "ffn_gate.weight", {C, s.ffn}}, {p + "ffn_up.weight", {C, s.ffn}}}, true);
        ls.down = fused(false, {{p + "ffn_down.weight", {s.ffn, C}}}, true);
        ls.post_ffw_norm = norm("post_ffw_norm", C);
        ls.out_scale = norm("layer_output_scale", 1, false);
        if (c.is_moe()) {
            const int64_t E = c.n_experts, F = c.expert_ffn;
            ls.router = fused(true, {{p + "ffn_gate_inp.weight", {C, E}}}, true);
            ls.router_scale = fused(true, {{p + "ffn_gate_inp.scale", {C}}}, true);
            ls.gate_up_exps = fused(false, {{p + "ffn_gate_up_exps.weight", {C, 2 * F, E}}}, true);
            ls.down_exps = fused(false, {{p + "ffn_down_exps.weight", {F, C, E}}}, true);
            ls.expert_scale = fused(true, {{p + "ffn_down_exps.scale", {E}}}, true);
            ls.pre_norm_2 = norm("pre_ffw_norm_2", C);
            ls.post_norm_1 = norm("post_ffw_norm_1", C);
            ls.post_norm_2 = norm("post_ffw_norm_2", C);
        }
        if (const int64_t P = c.ple_dim; P > 0) {
            ls.ple_gate = fused(false, {{p + "inp_gate.weight", {C, P}}}, true);
            ls.ple_proj = fused(false, {{p + "proj.weight", {P, C}}}, true);
            ls.ple_norm = norm("post_norm", C);
        }
    }

    // The per-layer embedding inputs of every layer into the rows (the hidden part, the
    // scaled embeddings, is in g4_h): (norm(proj(e)·C^-½) + tok_ple·√P)·2^-½.
    void gemma4_embed(const int32_t* d_tokens, int64_t N, float* state) {
        const int64_t C = c.hidden, W = width, L = c.n_layers, P = c.ple_dim, LP = L * P;
        float* e = g4_h.as<float>();
        if (W > C)  // the stored K/V start at zero, as on the CPU
            QL_CUDA(cudaMemset2DAsync(state + C, static_cast<size_t>(W) * 4, 0,
                                      static_cast<size_t>(W - C) * 4, static_cast<size_t>(N),
                                      nullptr));
        copy_columns(state, W, e, C, C, N);
        if (P == 0) return;
        use({ple_table, ple_model_proj, ple_proj_norm});
        g4_tok.resize(static_cast<size_t>(N * LP) * 4);
        g4_ple.resize(static_cast<size_t>(N * LP) * 4);
        gather_embedding(ple_table, "per_layer_token_embd.weight", d_tokens, N, LP,
                         std::sqrt(static_cast<float>(P)), g4_tok.as<float>());
        static const std::vector<std::string> kProj{"per_layer_model_proj.weight"};
        if (tap) tap({ActivationTap::Kind::LinearInput, -1, &kProj, e, true, N, C});
        const void* x = e;
        if (dt != Dtype::F32) {
            xn.resize(static_cast<size_t>(N * C) * esize);
            launch_f32_to_16(xn.as(), dt, e, N * C);
            x = xn.as();
        }
        float* ple = g4_ple.as<float>();
        linear(ple_model_proj, 0, x, ple, CUDA_R_32F, N, C, LP, 0.0f);
        const float root = 1.0f / std::sqrt(static_cast<float>(C));
        const float one = 1.0f, mix = 1.0f / std::sqrt(2.0f);
        QL_CUBLAS(cublasSscal(blas, static_cast<int>(N * LP), &root, ple, 1));
        launch_rmsnorm(ple, Dtype::F32, ple, f32(ple_proj_norm), N * L, P,
                       static_cast<float>(c.rms_eps), N * L, N * L, 0);
        QL_CUBLAS(cublasSaxpy(blas, static_cast<int>(N * LP), &one, g4_tok.as<float>(), 1, ple, 1));
        QL_CUBLAS(cublasSscal(blas, static_cast<int>(N * LP), &mix, ple, 1));
        copy_columns(state + g4_rows.ple_offset, W, ple, LP, LP, N);
    }

    // Gemma 4's MoE block beside the MLP: y (the MLP's output, f32) ← post_norm_1(y) +
    // post_norm_2(Σ routed experts of pre_norm_2(h)), the router reading
    // rmsnorm(h) · router_scale · C^-½ and each expert's weight scaled by its output scale.
    void gemma4_moe(int64_t l, const LayerSlots& ls, const float* h, float* y, int64_t N) {
        const int64_t C = c.hidden, E = c.n_experts, K = c.n_experts_used;
        const auto eps = static_cast<float>(c.rms_eps);
        launch_rmsnorm(y, Dtype::F32, y, f32(ls.post_norm_1), N, C, eps, N, N, 0);
        std::vector<float> scale(static_cast<size_t>(C)), expert_scale(static_cast<size_t>(E));
        QL_CUDA(cudaMemcpy(scale.data(), f32(ls.router_scale), scale.size() * 4,
                           cudaMemcpyDeviceToHost));
        QL_CUDA(cudaMemcpy(expert_scale.data(), f32(ls.expert_scale), expert_scale.size() * 4,
                           cudaMemcpyDeviceToHost));
        const float root = 1.0f / std::sqrt(static_cast<float>(C));
        for (float& v : scale) v *= root;  // the CPU's rs[ch] * root, then × the normed input
        g4_router_w.resize(scale.size() * 4);
        QL_CUDA(
            cudaMemcpy(g4_router_w.as(), scale.data(), scale.size() * 4, cudaMemcpyHostToDevice));
        launch_rmsnorm(router_in.as(), Dtype::F32, h, g4_router_w.as<float>(), N, C, eps, N, N, 0);
        router_logits_f32(l, ls, router_in.as<float>(), N);
        route_ids.resize(static_cast<size_t>(N * K) * 4);
        route_w.resize(static_cast<size_t>(N * K) * 4);
        launch_router_topk(router_logits.as<float>(), route_ids.as<int32_t>(), route_w.as<float>(),
                           N, E, K, true);
        std::vector<int32_t> ids(static_cast<size_t>(N * K));
        std::vector<float> w(ids.size());
        QL_CUDA(cudaMemcpy(ids.data(), route_ids.as(), ids.size() * 4, cudaMemcpyDeviceToHost));
        QL_CUDA(cudaMemcpy(w.data(), route_w.as(), w.size() * 4, cudaMemcpyDeviceToHost));
        for (size_t i = 0; i < ids.size(); ++i) w[i] *= expert_scale[static_cast<size_t>(ids[i])];
        launch_rmsnorm(xn.as(), dt, h, f32(ls.pre_norm_2), N, C, eps, N, N, 0);
        QL_CUDA(cudaMemsetAsync(g4_moe.as(), 0, static_cast<size_t>(N * C) * 4, nullptr));
        run_experts(l, ls, ids, w, N, xn.as(), g4_moe.as<float>());
        launch_rmsnorm_add(y, g4_moe.as<float>(), f32(ls.post_norm_2), N, C, eps);
    }

    // Layer l over the rows of `state` (width floats each): gemma4_layer.cpp's
    // gemma4_run_layer on the GPU, the hidden part worked on contiguously in g4_h.
    void gemma4_layer(int64_t l, float* state, int64_t B, int64_t T) {
        const LayerSlots& ls = layers[static_cast<size_t>(l)];
        const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
        const int64_t N = B * T, C = c.hidden, W = width, H = c.n_heads, KV = s.n_kv_heads;
        const int64_t D = s.head_dim, HD = H * D, KD = KV * D, QKV = HD + 2 * KD, F = s.ffn;
        const auto eps = static_cast<float>(c.rms_eps);
        const bool sliding = c.is_sliding(l), own_kv = s.kv_source == l;
        const TapNames* tn = tap ? &tap_names[static_cast<size_t>(l)] : nullptr;
        auto tap_input = [&](std::vector<std::string> TapNames::*names, const void* x, bool is_f32,
                             int64_t cols) {
            if (tn)
                tap({ActivationTap::Kind::LinearInput, static_cast<int>(l), &(tn->*names), x,
                     is_f32, N, cols});
        };
        float* h = g4_h.as<float>();
        copy_columns(h, C, state, W, C, N);

        // Attention: q (and k, v unless shared) in one GEMM into rows of QKV.
        launch_rmsnorm(xn.as(), dt, h, f32(ls.attn_norm), N, C, eps, T, T, 0);
        tap_input(&TapNames::qkv, xn.as(), false, C);
        const int64_t projected = !own_kv ? HD : s.v_is_k ? HD + KD : QKV;
        float* qkv32 = qkv.as<float>();
        linear(ls.qkv, 0, xn.as(), qkv32, CUDA_R_32F, N, C, projected, 0.0f, QKV);
        if (own_kv) {
            if (s.v_is_k) copy_columns(qkv32 + HD + KD, QKV, qkv32 + HD, QKV, KD, N);
            // v-norm, an RMSNorm without weight: x·√D / √(Σx² + D·ε).
            launch_l2norm_heads(qkv32 + HD + KD, QKV, N, KV, D, eps * static_cast<float>(D),
                                std::sqrt(static_cast<float>(D)));
        }
        // A shared layer's k and v come out of here unused and are replaced below.
        launch_qkv_post(qkv32, nullptr, f32(ls.q_norm), own_kv ? f32(ls.k_norm) : nullptr, eps,
                        (sliding ? rope_cos_swa : rope_cos).as<float>(),
                        (sliding ? rope_sin_swa : rope_sin).as<float>(), true, q.as(), k.as(),
                        v.as(), dt, N, T, H, KV, D, D / 2);
        if (opt.ggml_numerics) {  // ggml's F16 KV cache, as the CPU's layer
            launch_round_activations(q.as<float>(), N, HD, ActRound::F16);
            if (own_kv) {
                launch_round_activations(k.as<float>(), N, KD, ActRound::F16);
                launch_round_activations(v.as<float>(), N, KD, ActRound::F16);
            }
        }
        const int64_t off = g4_rows.kv_offset[static_cast<size_t>(s.kv_source)];
        if (own_kv && off >= 0) {
            store_columns(state + off, W, k.as(), KD, N);
            store_columns(state + off + KD, W, v.as(), KD, N);
        } else if (!own_kv) {
            QL_ASSERT(off >= 0);
            load_columns(k.as(), KD, state + off, W, KD, N);
            load_columns(v.as(), KD, state + off + KD, W, KD, N);
        }
        const float scale = c.attn_scale > 0 ? static_cast<float>(c.attn_scale)
                                             : 1.0f / std::sqrt(static_cast<float>(D));
        attention(l, B, T, {H, KV, D, D, KD, scale, q, k, v, att});
        tap_input(&TapNames::o, att.as(), false, HD);
        float* y = proj.as<float>();
        linear(ls.o, 0, att.as(), y, CUDA_R_32F, N, HD, C, 0.0f);
        launch_rmsnorm_add(h, y, f32(ls.post_attn_norm), N, C, eps);

        // The MLP (GeGLU), and the MoE block beside it.
        QL_ASSERT(F <= ffn);
        launch_rmsnorm(xn.as(), dt, h, f32(ls.ffn_norm), N, C, eps, T, T, 0);
        tap_input(&TapNames::gate_up, xn.as(), false, C);
        linear(ls.gate_up, 0, xn.as(), gu.as(), cdt, N, C, 2 * F, 0.0f);
        launch_swiglu(act.as(), gu.as(), dt, N, F, GateAct::GeluTanh);
        tap_input(&TapNames::down, act.as(), false, F);
        linear(ls.down, 0, act.as(), y, CUDA_R_32F, N, F, C, 0.0f);
        if (c.is_moe()) gemma4_moe(l, ls, h, y, N);
        launch_rmsnorm_add(h, y, f32(ls.post_ffw_norm), N, C, eps);

        // The per-layer embedding: gelu(inp_gate · h) ⊙ ple_l → proj → post_norm → residual.
        if (const int64_t P = c.ple_dim; P > 0) {
            QL_ASSERT(P <= ffn);
            tap_input(&TapNames::ple_gate, h, true, C);
            const void* x = h;
            if (dt != Dtype::F32) {
                launch_f32_to_16(xn.as(), dt, h, N * C);
                x = xn.as();
            }
            linear(ls.ple_gate, 0, x, gu.as(), cdt, N, C, P, 0.0f, 2 * P);
            load_columns(gu.as<char>() + P * esize, 2 * P, state + g4_rows.ple_offset + l * P, W, P,
                         N);
            launch_swiglu(act.as(), gu.as(), dt, N, P, GateAct::GeluTanh);
            tap_input(&TapNames::ple_proj, act.as(), false, P);
            linear(ls.ple_proj, 0, act.as(), y, CUDA_R_32F, N, P, C, 0.0f);
            launch_rmsnorm_add(h, y, f32(ls.ple_norm), N, C, eps);
        }
        if (loaded(ls.out_scale)) {  // h ×= the layer's scalar, read where it lies
            QL_CUBLAS(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_DEVICE));
            QL_CUBLAS(cublasSscal(blas, static_cast<int>(N * C), f32(ls.out_scale), h, 1));
            QL_CUBLAS(cublasSetPointerMode(blas, CUBLAS_POINTER_MODE_HOST));
        }
        copy_columns(state, W, h, C, C, N);
        if (tn)
            tap({ActivationTap::Kind::LayerOutput, static_cast<int>(l), nullptr, h, true, N, C});
    }

    void shared_expert(int64_t l, const LayerSlots& ls, float* h, int64_t N) {
        const int64_t C = c.hidden;
        if (ls.gate_up_shexp >= 0) {  // the shared expert, on every token
            const int64_t S = c.shared_expert_ffn;
            const TapNames* tn = tap ? &tap_names[static_cast<size_t>(l)] : nullptr;
            if (tn)
                tap({ActivationTap::Kind::LinearInput, static_cast<int>(l), &tn->gate_up_shexp,
                     xn.as(), false, N, C});
            linear(ls.gate_up_shexp, 0, xn.as(), gu.as(), cdt, N, C, 2 * S, 0.0f);
            launch_swiglu(act.as(), gu.as(), dt, N, S);
            if (tn)
                tap({ActivationTap::Kind::LinearInput, static_cast<int>(l), &tn->down_shexp,
                     act.as(), false, N, S});
            if (ls.shexp_gate < 0) {
                linear(ls.down_shexp, 0, act.as(), h, CUDA_R_32F, N, S, C, 1.0f);
            } else {  // Qwen-MoE: scaled by sigmoid(ffn_gate_inp_shexp · x)
                linear(ls.down_shexp, 0, act.as(), ye.as(), CUDA_R_32F, N, S, C, 0.0f);
                launch_gated_residual(h, ye.as<float>(), xn.as(), dt, f32(ls.shexp_gate), N, C);
            }
        }
    }
};

CudaEngine::CudaEngine(const ModelConfig& config, CudaEngineOptions options)
    : impl_(std::make_unique<Impl>()) {
    Impl& m = *impl_;
    m.c = config;
    m.opt = options;
    const ModelConfig& c = m.c;
    check_layer_supported(c, "CUDA engine", EngineKind::Cuda, options.ggml_numerics);
    QL_CHECK(!c.is_hybrid() || gated_delta_rule_fits(c.ssm_k_dim, c.ssm_v_dim),
             "CUDA engine: a Gated DeltaNet head's state ({} x {} floats) does not fit a thread "
             "block's shared memory on this GPU; run it on the CPU (without --gpu)",
             c.ssm_k_dim, c.ssm_v_dim);
    QL_CHECK(c.n_layers > 0 && c.hidden > 0 && c.n_heads > 0 && c.n_kv_heads > 0 &&
                 c.head_dim > 0 && c.head_dim % 2 == 0 && c.n_heads % c.n_kv_heads == 0 &&
                 c.vocab > 0 &&
                 (!c.is_moe() ||
                  (c.n_experts <= 256 && c.n_experts_used > 0 && c.n_experts_used <= c.n_experts)),
             "CUDA engine: inconsistent config (layers {}, hidden {}, heads {}/{}, head_dim {}, "
             "vocab {}, experts {}/{})",
             c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab, c.n_experts,
             c.n_experts_used);
    QL_CHECK(!options.ggml_numerics || options.precision == Precision::F32,
             "CUDA engine: llama.cpp's numerics need F32 storage (fake-quantized values held "
             "exactly)");
    switch (options.precision) {
        case Precision::BF16:
            m.dt = Dtype::BF16, m.cdt = CUDA_R_16BF, m.esize = 2;
            break;
        case Precision::F16:
            m.dt = Dtype::F16, m.cdt = CUDA_R_16F, m.esize = 2;
            break;
        case Precision::F32:
            m.dt = Dtype::F32, m.cdt = CUDA_R_32F, m.esize = 4;
            break;
    }
    QL_CUDA(cudaSetDevice(options.device));
    const char* flash_env = std::getenv("QUANTLENS_FLASH_ATTENTION");
    const char* tf32_env = std::getenv("QUANTLENS_TF32");
    if (const char* seq_env = std::getenv("QUANTLENS_DELTANET_SEQUENTIAL"))
        m.opt.deltanet_sequential = std::string(seq_env) != "0";
    if (const char* half_env = std::getenv("QUANTLENS_HALF_GEMM"))
        m.opt.half_gemm_for_16bit_weights = std::string(half_env) != "0";
    if (m.dt == Dtype::F32 && (options.tf32 || (tf32_env && std::string(tf32_env) == "1")) &&
        !(tf32_env && std::string(tf32_env) == "0"))
        m.compute = CUBLAS_COMPUTE_32F_FAST_TF32;
    // flash_attention.h scales by 1/sqrt(D) and masks causally only.
    const bool plain_attention = c.attn_scale == 0 && c.attn_softcap == 0 &&
                                 c.sliding_window == 0 && !c.attn_sinks && !c.mla;
    m.flash = options.flash_attention && !options.ggml_numerics && plain_attention &&
              !(flash_env && std::string(flash_env) == "0") &&
              flash_attention_supports(m.dt, c.head_dim);
    QL_CUBLAS(cublasCreate(&m.blas));

    const int64_t C = c.hidden, HD = c.n_heads * c.head_dim, KD = c.n_kv_heads * c.head_dim;
    m.ffn =
        c.is_moe()
            ? std::max({c.ffn, c.n_dense_layers > 0 ? c.dense_ffn_width() : 0, c.shared_expert_ffn})
            : c.dense_ffn_width();
    m.width = C;
    if (c.is_gemma4()) {  // per-layer MLP widths, the experts', the per-layer embedding's
        m.ffn = std::max(c.expert_ffn, c.ple_dim);
        for (const ModelConfig::Gemma4Layer& s : c.gemma4_layers) m.ffn = std::max(m.ffn, s.ffn);
        m.g4_rows = gemma4_row_layout(c);
        m.width = m.g4_rows.width;
    }
    const int64_t F = c.ffn, E = c.n_experts, D = c.head_dim, F_dense = c.dense_ffn_width();
    m.token_embd = m.fused(false, {{"token_embd.weight", {C, c.vocab}}}, true);
    m.output_norm = m.fused(true, {{"output_norm.weight", {C}}}, true);
    if (!c.tie_embeddings) m.output = m.fused(false, {{"output.weight", {C, c.vocab}}}, false);
    if (c.is_gemma4() && c.ple_dim > 0) {
        const int64_t LP = c.n_layers * c.ple_dim;
        m.ple_table = m.fused(false, {{"per_layer_token_embd.weight", {LP, c.vocab}}}, true);
        m.ple_model_proj = m.fused(false, {{"per_layer_model_proj.weight", {C, LP}}}, true);
        m.ple_proj_norm = m.fused(true, {{"per_layer_proj_norm.weight", {c.ple_dim}}}, true);
    }
    m.layers.resize(static_cast<size_t>(c.n_layers));
    for (int64_t l = 0; l < c.n_layers; ++l) {
        if (c.is_gemma4()) {
            m.add_gemma4_layer(l);
            continue;
        }
        const std::string p = "blk." + std::to_string(l) + ".";
        LayerSlots& ls = m.layers[static_cast<size_t>(l)];
        ls.attn_norm = m.fused(true, {{p + "attn_norm.weight", {C}}}, true);
        const bool linear = c.is_linear_layer(l);
        if (linear) {  // Gated DeltaNet (engine/layers/hybrid_layer.cpp)
            const int64_t nv = c.ssm_v_heads, VD = nv * c.ssm_v_dim, CH = c.ssm_conv_dim();
            std::vector<std::pair<std::string, std::vector<int64_t>>> in{
                {p + "attn_qkv.weight", {C, CH}}, {p + "attn_gate.weight", {C, VD}}};
            if (c.ssm_fused_ba) {
                in.push_back({p + "ssm_ba.weight", {C, 2 * nv}});
            } else {
                in.push_back({p + "ssm_beta.weight", {C, nv}});
                in.push_back({p + "ssm_alpha.weight", {C, nv}});
            }
            ls.qkv = m.fused(false, in, true);
            ls.ssm_conv = m.fused(true, {{p + "ssm_conv1d.weight", {c.ssm_conv_kernel, CH}}}, true);
            ls.ssm_dt_a = m.fused(true, {{p + "ssm_dt.bias", {nv}}, {p + "ssm_a", {nv}}}, true);
            ls.ssm_norm = m.fused(true, {{p + "ssm_norm.weight", {c.ssm_v_dim}}}, true);
        } else if (c.is_hybrid()) {  // gated attention: each head's query rows, then its gate's
            ls.qkv = m.fused(false,
                             {{p + "attn_q.weight", {C, 2 * HD}},
                              {p + "attn_k.weight", {C, KD}},
                              {p + "attn_v.weight", {C, KD}}},
                             true);
        } else if (c.mla) {
            const int64_t H = c.n_heads, P = c.qk_nope_dim, L = c.kv_lora_rank;
            const int64_t Q = c.q_lora_rank, V = c.v_head_dim;
            ls.q_a = m.fused(false, {{p + "attn_q_a.weight", {C, Q}}}, true);
            ls.q_a_norm = m.fused(true, {{p + "attn_q_a_norm.weight", {Q}}}, true);
            ls.q_b = m.fused(false, {{p + "attn_q_b.weight", {Q, H * (P + D)}}}, true);
            ls.kv_a = m.fused(false, {{p + "attn_kv_a_mqa.weight", {C, L + D}}}, true);
            ls.kv_a_norm = m.fused(true, {{p + "attn_kv_a_norm.weight", {L}}}, true);
            ls.k_b = m.fused(false, {{p + "attn_k_b.weight", {P, L, H}}}, true);
            ls.v_b = m.fused(false, {{p + "attn_v_b.weight", {L, V, H}}}, true);
        } else if (c.fused_qkv) {  // Phi-3's attn_qkv holds q | k | v rows as one tensor
            ls.qkv = m.fused(false, {{p + "attn_qkv.weight", {C, HD + 2 * KD}}}, true);
        } else {
            ls.qkv = m.fused(false,
                             {{p + "attn_q.weight", {C, HD}},
                              {p + "attn_k.weight", {C, KD}},
                              {p + "attn_v.weight", {C, KD}}},
                             true);
        }
        if (c.qkv_bias)
            ls.qkv_bias = m.fused(
                true,
                {{p + "attn_q.bias", {HD}}, {p + "attn_k.bias", {KD}}, {p + "attn_v.bias", {KD}}},
                true);
        if (c.qk_norm && !linear) {
            ls.q_norm = m.fused(true, {{p + "attn_q_norm.weight", {D}}}, true);
            ls.k_norm = m.fused(true, {{p + "attn_k_norm.weight", {D}}}, true);
        }
        const int64_t o_in = linear  ? c.ssm_v_heads * c.ssm_v_dim
                             : c.mla ? c.n_heads * c.v_head_dim
                                     : HD;
        ls.o = m.fused(false, {{p + (linear ? "ssm_out.weight" : "attn_output.weight"), {o_in, C}}},
                       true);
        // gpt-oss (model_config.h: its sinks come with these biases, each optional as on the
        // CPU; a missing one stays zero).
        const bool gptoss_extras = c.attn_sinks;
        if (gptoss_extras) {
            ls.sinks = m.fused(true, {{p + "attn_sinks.weight", {c.n_heads}}}, true);
            ls.o_bias = m.fused(true, {{p + "attn_output.bias", {C}}}, false);
        }
        if (c.post_norms) {
            ls.post_attn_norm = m.fused(true, {{p + "post_attention_norm.weight", {C}}}, true);
            ls.post_ffw_norm = m.fused(true, {{p + "post_ffw_norm.weight", {C}}}, true);
        }
        // gpt-oss, GLM-4.5: the pre-MLP norm is stored as post_attention_norm (llama.cpp's
        // converter).
        const char* ffn_norm =
            c.ffn_norm_is_post_attention_norm || c.ffn_norm_post_attention || c.is_hybrid()
                ? "post_attention_norm.weight"
                : "ffn_norm.weight";
        ls.ffn_norm = m.fused(true, {{p + ffn_norm, {C}}}, true);
        if (c.is_moe_layer(l)) {
            // F32, as llama.cpp keeps ffn_gate_inp: see Impl::route.
            ls.router = m.fused(true, {{p + "ffn_gate_inp.weight", {C, E}}}, true);
            ls.gate_exps = m.fused(false, {{p + "ffn_gate_exps.weight", {C, F, E}}}, true);
            ls.up_exps = m.fused(false, {{p + "ffn_up_exps.weight", {C, F, E}}}, true);
            ls.down_exps = m.fused(false, {{p + "ffn_down_exps.weight", {F, C, E}}}, true);
            if (gptoss_extras) {
                ls.router_bias = m.fused(true, {{p + "ffn_gate_inp.bias", {E}}}, false);
                ls.gate_exps_bias = m.fused(true, {{p + "ffn_gate_exps.bias", {F, E}}}, false);
                ls.up_exps_bias = m.fused(true, {{p + "ffn_up_exps.bias", {F, E}}}, false);
                ls.down_exps_bias = m.fused(true, {{p + "ffn_down_exps.bias", {C, E}}}, false);
            }
            if (c.moe_sigmoid)  // optional, as on the CPU: absent, it stays zero
                ls.exp_probs_b = m.fused(true, {{p + "exp_probs_b.bias", {E}}}, false);
            if (c.shared_expert == SharedExpert::SigmoidGated)
                ls.shexp_gate = m.fused(true, {{p + "ffn_gate_inp_shexp.weight", {C}}}, true);
            if (c.shared_expert != SharedExpert::None) {
                const int64_t S = c.shared_expert_ffn;
                ls.gate_up_shexp = m.fused(
                    false,
                    {{p + "ffn_gate_shexp.weight", {C, S}}, {p + "ffn_up_shexp.weight", {C, S}}},
                    true);
                ls.down_shexp = m.fused(false, {{p + "ffn_down_shexp.weight", {S, C}}}, true);
            }
        } else {
            // Phi-3's ffn_up holds gate | up rows as one tensor: the same slot layout.
            ls.gate_up = c.fused_gate_up
                             ? m.fused(false, {{p + "ffn_up.weight", {C, 2 * F_dense}}}, true)
                             : m.fused(false,
                                       {{p + "ffn_gate.weight", {C, F_dense}},
                                        {p + "ffn_up.weight", {C, F_dense}}},
                                       true);
            ls.down = m.fused(false, {{p + "ffn_down.weight", {F_dense, C}}}, true);
        }
    }
    m.size_activations(options.max_tokens);
    m.place_weights();
}

CudaEngine::~CudaEngine() {
    if (!impl_) return;
    if (impl_->copy_stream) {
        cudaStreamSynchronize(impl_->copy_stream);
        cudaStreamDestroy(impl_->copy_stream);
    }
    for (Slot& sl : impl_->slots)
        if (sl.ready) cudaEventDestroy(sl.ready);
    for (cudaEvent_t e : impl_->spare_events) cudaEventDestroy(e);
    if (impl_->blas) cublasDestroy(impl_->blas);
}

const ModelConfig& CudaEngine::config() const {
    return impl_->c;
}
const CudaEngineOptions& CudaEngine::options() const {
    return impl_->opt;
}

std::vector<CudaEngine::WeightSpec> CudaEngine::weight_specs() const {
    std::vector<WeightSpec> out;
    for (const Member& m : impl_->members) out.push_back({m.name, m.ne, m.required});
    return out;
}

int64_t CudaEngine::n_elements(const std::string& name) const {
    return impl_->member(name).n;
}

int64_t CudaEngine::state_width() const {
    return impl_->width;
}

int64_t CudaEngine::weight_bytes() const {
    int64_t b = 0;
    for (const Slot& s : impl_->slots) b += static_cast<int64_t>(s.bytes);
    return b;
}

bool CudaEngine::streaming() const {
    return impl_->streaming;
}

int64_t CudaEngine::resident_weight_bytes() const {
    if (!impl_->streaming) return weight_bytes();
    return impl_->resident;
}

void CudaEngine::load_weight(const std::string& name, const float* host, int64_t n, GgmlType type,
                             bool round_f16) {
    Impl& m = *impl_;
    Member& mb = m.member(name);
    QL_CHECK(n == mb.n, "CUDA engine: weight '{}' has {} values, expected {}", name, n, mb.n);
    m.unpack(mb.slot);
    mb.stored_type = mb.type = type;
    Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    m.use({mb.slot}, true);
    constexpr int64_t kChunk = 1 << 24;
    for (int64_t i = 0; i < n; i += kChunk) {
        const int64_t len = std::min(kChunk, n - i);
        if (s.f32) {
            float* dst = s.orig.as<float>() + mb.offset + i;
            QL_CUDA(
                cudaMemcpy(dst, host + i, static_cast<size_t>(len) * 4, cudaMemcpyHostToDevice));
            if (round_f16) launch_round_activations(dst, 1, len, ActRound::F16);
        } else {
            m.staging.resize(static_cast<size_t>(kChunk) * 4);
            QL_CUDA(cudaMemcpy(m.staging.as(), host + i, static_cast<size_t>(len) * 4,
                               cudaMemcpyHostToDevice));
            if (round_f16) launch_round_activations(m.staging.as<float>(), 1, len, ActRound::F16);
            launch_f32_to_16(s.orig.as<char>() + (mb.offset + i) * m.esize, m.dt,
                             m.staging.as<float>(), len);
        }
    }
    QL_CUDA(cudaDeviceSynchronize());  // the staging buffer is reused
    mb.loaded = true;
}

void CudaEngine::load_random_weights(uint64_t seed) {
    Impl& m = *impl_;
    for (Member& mb : m.members) {
        m.unpack(mb.slot);
        Slot& s = m.slots[static_cast<size_t>(mb.slot)];
        m.use({mb.slot}, true);
        if (s.f32) {
            const bool is_norm = mb.name.find("norm") != std::string::npos;
            launch_fill_f32(s.orig.as<float>() + mb.offset, is_norm ? 1.0f : 0.0f, mb.n);
        } else {
            const bool embd = mb.name == "token_embd.weight";
            const float scale = embd ? 1.0f : std::sqrt(3.0f / static_cast<float>(mb.ne[0]));
            launch_random_16(s.orig.as<char>() + mb.offset * m.esize, m.dt, mb.n,
                             seed ^ name_hash(mb.name), scale);
        }
        mb.loaded = true;
    }
    QL_CUDA(cudaDeviceSynchronize());
}

void CudaEngine::load_model(const Model& model, bool round_f16) {
    Impl& m = *impl_;
    struct Work {
        Member* member;
        const TensorInfo* tensor;
    };
    std::vector<Work> work;
    int64_t largest = 0;
    for (Member& mb : m.members) {
        const TensorInfo* t = model.find(mb.name);
        if (!t) {
            QL_CHECK(!mb.required, "{}: tensor '{}' is missing", model.path(), mb.name);
            continue;
        }
        QL_CHECK(same_shape(t->ne, mb.ne),
                 "{}: tensor '{}' has shape {}, but the config implies {}", model.path(), mb.name,
                 format_shape(t->ne), format_shape(mb.ne));
        if (m.slots[static_cast<size_t>(mb.slot)].packed) {  // the file's bytes, as they are
            load_weight_blocks(mb.name, t->type, model.raw(*t), model.path());
            continue;
        }
        work.push_back({&mb, t});
        largest = std::max(largest, mb.n);
    }
    if (work.empty()) return;
    // Decoding (page faults on the mapped file, conversion, permutation) is the slow half of
    // loading, so tensor i+1 decodes on the host while tensor i is copied up. Two pinned
    // buffers take every tensor up to kPinnedFloats; larger ones (embedding, output) decode
    // into a plain vector without overlap, which keeps host memory near the checkpoint's size.
    constexpr int64_t kPinnedFloats = int64_t{1} << 26;  // 256 MiB each
    const int64_t cap = std::min(largest, kPinnedFloats);
    std::unique_ptr<char, PinnedFree> pinned[2];
    for (auto& b : pinned) {
        char* p = nullptr;
        QL_CUDA(cudaMallocHost(reinterpret_cast<void**>(&p), static_cast<size_t>(cap) * 4));
        b.reset(p);
    }
    PhaseSum decoding, waiting, uploading;  // QUANTLENS_PROFILE: what bounds a load
    auto decode = [&](const Work& w, std::span<float> out) {
        decoding.start();
        model.read_f32(*w.tensor, out);
        decoding.stop();
    };
    auto pinned_span = [&](size_t i) {
        return std::span<float>(reinterpret_cast<float*>(pinned[i % 2].get()),
                                static_cast<size_t>(work[i].member->n));
    };
    std::future<void> next;
    auto start = [&](size_t i) {
        if (i < work.size() && work[i].member->n <= cap)
            next = std::async(std::launch::async, [&, i] { decode(work[i], pinned_span(i)); });
    };
    start(0);
    for (size_t i = 0; i < work.size(); ++i) {
        Member& mb = *work[i].member;
        const GgmlType stands_for = held_weight_type(*work[i].tensor, round_f16);
        // As the CPU engine: only 2-D F32/BF16 weights become F16 (on the GPU, one pass fewer
        // over the host copy). Rounding a dequantized weight or a norm would change the file's.
        const bool rounded = stands_for == GgmlType::F16 && work[i].tensor->type != GgmlType::F16;
        if (mb.n <= cap) {
            waiting.start();
            next.get();  // rethrows a decoding error (bad tensor) here
            waiting.stop();
            start(i + 1);
            uploading.start();
            load_weight(mb.name, pinned_span(i).data(), mb.n, stands_for, rounded);
            uploading.stop();
        } else {
            std::vector<float> v(static_cast<size_t>(mb.n));
            decode(work[i], v);
            start(i + 1);
            uploading.start();
            load_weight(mb.name, v.data(), mb.n, stands_for, rounded);
            uploading.stop();
        }
    }
    if (profiling())
        std::fprintf(stderr,
                     "profile: load of %s: %zu tensors; decoding on the host %.1f s (waited for "
                     "%.1f s), upload and conversion %.1f s\n",
                     model.path().c_str(), work.size(), decoding.seconds(), waiting.seconds(),
                     uploading.seconds());
}

void CudaEngine::load_weight_blocks(const std::string& name, GgmlType type,
                                    std::span<const uint8_t> blocks, const std::string& file) {
    Impl& m = *impl_;
    Member& mb = m.member(name);
    const int64_t rows = mb.n / mb.ne[0];
    const size_t row_bytes = ggml_row_size(type, mb.ne[0]);
    QL_CHECK(blocks.size() == row_bytes * static_cast<size_t>(rows),
             "{}: tensor '{}': {} bytes of {}, expected {} ({} rows of {})", file, name,
             blocks.size(), ggml_type_display_name(type), row_bytes * static_cast<size_t>(rows),
             rows, mb.ne[0]);
    TensorInfo info;
    info.name = name;
    info.ne = mb.ne;
    info.type = type;
    check_blocks_finite(file, info, blocks.data(), row_bytes);
    Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    if (!s.packed) {
        std::vector<float> values(static_cast<size_t>(mb.n));
        dequantize(type, blocks.data(), values.data(), rows, mb.ne[0]);
        load_weight(name, values.data(), mb.n, type);
        return;
    }
    QL_CHECK(type == mb.block_type, "{}: tensor '{}' is {}, but the engine was set up for {}", file,
             name, ggml_type_display_name(type), ggml_type_display_name(mb.block_type));
    m.use({mb.slot}, true);
    QL_CUDA(cudaMemcpy(s.orig.as<char>() + mb.byte_offset, blocks.data(), blocks.size(),
                       cudaMemcpyHostToDevice));
    mb.stored_type = mb.type = type;
    mb.loaded = true;
}

void CudaEngine::reserve_tokens(int64_t tokens) {
    if (tokens > impl_->opt.max_tokens) impl_->size_activations(tokens);
}

bool CudaEngine::complete() const {
    for (const Member& m : impl_->members)
        if (m.required && !m.loaded) return false;
    return true;
}

namespace {
// Makes the member's slot use its scratch copy (allocated from the original on first use).
void* begin_override(CudaEngine::Impl& m, Member& mb) {
    m.unpack(mb.slot);
    Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    const size_t bytes = static_cast<size_t>(s.n) * m.elem(s);
    m.use({mb.slot});
    if (s.n_overridden == 0) {
        if (!s.scratch && m.spare.bytes() >= bytes) s.scratch = std::move(m.spare);
        s.scratch.resize(bytes);
        QL_CUDA(cudaMemcpy(s.scratch.as(), s.orig.as(), bytes, cudaMemcpyDeviceToDevice));
    }
    if (!mb.overridden) {
        mb.overridden = true;
        ++s.n_overridden;
    }
    return s.scratch.as<char>() + mb.offset * m.elem(s);
}
}  // namespace

void CudaEngine::set_override(const std::string& name, const float* host, int64_t n,
                              GgmlType type) {
    Impl& m = *impl_;
    Member& mb = m.member(name);
    QL_CHECK(n == mb.n, "override for tensor '{}': {} values, expected {}", name, n, mb.n);
    mb.type = type;
    const Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    void* dst = begin_override(m, mb);
    if (s.f32) {
        QL_CUDA(cudaMemcpy(dst, host, static_cast<size_t>(n) * 4, cudaMemcpyHostToDevice));
        return;
    }
    constexpr int64_t kChunk = 1 << 24;
    m.staging.resize(static_cast<size_t>(kChunk) * 4);
    for (int64_t i = 0; i < n; i += kChunk) {
        const int64_t len = std::min(kChunk, n - i);
        QL_CUDA(cudaMemcpy(m.staging.as(), host + i, static_cast<size_t>(len) * 4,
                           cudaMemcpyHostToDevice));
        launch_f32_to_16(static_cast<char*>(dst) + i * m.esize, m.dt, m.staging.as<float>(), len);
    }
}

bool CudaEngine::override_with_type(const std::string& name, GgmlType type, WeightErrorSums* sums,
                                    const FakeQuantImportanceHost* importance) {
    Impl& m = *impl_;
    Member& mb = m.member(name);
    const Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    if (s.f32 || !gpu_fake_quant_supported(type, mb.ne[0])) return false;
    const int64_t n_per_row = mb.ne[0];
    FakeQuantImportance imp;
    if (importance) {
        const auto n_imp = static_cast<int64_t>(importance->values.size());
        const int64_t n_mat = n_imp / n_per_row;
        QL_CHECK(n_imp > 0 && n_imp % n_per_row == 0 && mb.n % n_mat == 0,
                 "{}: {} importance values do not cover whole matrices of rows of {}", name, n_imp,
                 n_per_row);
        for (int64_t j = 0; j < n_imp; ++j) {
            const float a = importance->values[static_cast<size_t>(j)];
            QL_CHECK(std::isfinite(a) && a >= 0,
                     "{}: importance weight {} is {}; expected finite and >= 0", name, j, a);
        }
        m.importance.resize(static_cast<size_t>(n_imp) * 4);
        QL_CUDA(cudaMemcpy(m.importance.as(), importance->values.data(),
                           static_cast<size_t>(n_imp) * 4, cudaMemcpyHostToDevice));
        imp = {m.importance.as<float>(), n_per_row, mb.n / n_mat};
    }
    void* dst = begin_override(m, mb);  // makes the slot resident
    mb.type = type;
    const void* src = s.orig.as<char>() + mb.offset * m.esize;
    launch_fake_quant(type, src, dst, m.dt, mb.n, importance ? &imp : nullptr);
    if (sums) {
        const bool weigh = importance && importance->weigh_error;
        std::vector<double> partial(static_cast<size_t>(kWeightErrorBlocks) * kWeightErrorSums);
        m.staging.resize(partial.size() * sizeof(double));
        launch_weight_error_partials(src, dst, m.dt, mb.n, m.staging.as<double>(),
                                     weigh ? m.importance.as<float>() : nullptr, n_per_row);
        QL_CUDA(cudaMemcpy(partial.data(), m.staging.as(), partial.size() * sizeof(double),
                           cudaMemcpyDeviceToHost));
        *sums = {};
        sums->n = mb.n;
        sums->has_importance = weigh;
        for (int64_t b = 0; b < kWeightErrorBlocks; ++b) {
            const double* p = partial.data() + b * kWeightErrorSums;
            sums->sum_e2 += p[0];
            sums->sum_abs_e += p[1];
            sums->max_abs_e = std::max(sums->max_abs_e, p[2]);
            sums->sum_w2 += p[3];
            sums->sum_wh2 += p[4];
            sums->sum_w_wh += p[5];
            sums->sum_imp_e2 += p[6];
            sums->sum_imp_w2 += p[7];
        }
    }
    return true;
}

void CudaEngine::clear_override(const std::string& name) {
    Impl& m = *impl_;
    Member& mb = m.member(name);
    if (!mb.overridden) return;
    Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    const size_t es = m.elem(s);
    mb.overridden = false;
    mb.type = mb.stored_type;
    if (--s.n_overridden == 0) {
        if (s.scratch.bytes() > m.spare.bytes()) m.spare = std::move(s.scratch);
        s.scratch.reset();
    } else {
        m.use({mb.slot});
        QL_CUDA(cudaMemcpy(s.scratch.as<char>() + mb.offset * es,
                           s.orig.as<char>() + mb.offset * es, static_cast<size_t>(mb.n) * es,
                           cudaMemcpyDeviceToDevice));
    }
}

void CudaEngine::clear_overrides() {
    for (Member& mb : impl_->members)
        if (mb.overridden) clear_override(mb.name);
}

namespace {
std::vector<float> download(CudaEngine::Impl& m, int slot, int64_t offset, int64_t n) {
    m.use({slot});
    const Slot& s = m.slots[static_cast<size_t>(slot)];
    std::vector<float> out(static_cast<size_t>(n));
    if (s.packed) {  // the values a GEMM sees: dequantized, in the storage type
        const int64_t K = m.member_at(m.slot_members[static_cast<size_t>(slot)], offset).ne[0];
        DeviceBuffer values(out.size() * m.esize), tmp(out.size() * 4);
        m.dequantize_rows(slot, offset, K, n / K, values.as(), m.dt);
        if (m.dt == Dtype::F32)
            QL_CUDA(cudaMemcpy(tmp.as(), values.as(), out.size() * 4, cudaMemcpyDeviceToDevice));
        else
            launch_16_to_f32(tmp.as<float>(), values.as(), m.dt, n);
        QL_CUDA(cudaMemcpy(out.data(), tmp.as(), out.size() * 4, cudaMemcpyDeviceToHost));
        return out;
    }
    const char* src = static_cast<const char*>(s.active()) + offset * m.elem(s);
    if (s.f32) {
        QL_CUDA(cudaMemcpy(out.data(), src, out.size() * 4, cudaMemcpyDeviceToHost));
        return out;
    }
    DeviceBuffer tmp(out.size() * 4);
    launch_16_to_f32(tmp.as<float>(), src, m.dt, n);
    QL_CUDA(cudaMemcpy(out.data(), tmp.as(), out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
}
}  // namespace

std::vector<float> CudaEngine::original(const std::string& name) const {
    Impl& m = *impl_;
    const Member& mb = m.member(name);
    const Slot& s = m.slots[static_cast<size_t>(mb.slot)];
    if (!mb.overridden || s.n_overridden == 0) return download(m, mb.slot, mb.offset, mb.n);
    // The slot is on its scratch copy: read the original buffer itself.
    m.use({mb.slot});
    std::vector<float> out(static_cast<size_t>(mb.n));
    DeviceBuffer tmp(out.size() * 4);
    if (s.f32) {
        QL_CUDA(cudaMemcpy(out.data(), s.orig.as<float>() + mb.offset, out.size() * 4,
                           cudaMemcpyDeviceToHost));
        return out;
    }
    launch_16_to_f32(tmp.as<float>(), s.orig.as<char>() + mb.offset * m.esize, m.dt, mb.n);
    QL_CUDA(cudaMemcpy(out.data(), tmp.as(), out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
}

std::vector<float> CudaEngine::values(const std::string& name) const {
    const Member& mb = impl_->member(name);
    return download(*impl_, mb.slot, mb.offset, mb.n);
}

void CudaEngine::embed(const int32_t* d_tokens, int64_t N, float* d_h) {
    Impl& m = *impl_;
    m.use({m.token_embd});
    const int64_t C = m.c.hidden;
    // Gemma: × sqrt(hidden) in float, as the CPU engine.
    const float scale = m.c.embed_scale ? std::sqrt(static_cast<float>(C)) : 1.0f;
    const bool wide = m.width != C;  // Gemma 4: the embeddings into g4_h, then into the rows
    if (wide) m.g4_h.resize(static_cast<size_t>(N * C) * 4);
    m.gather_embedding(m.token_embd, "token_embd.weight", d_tokens, N, C, scale,
                       wide ? m.g4_h.as<float>() : d_h);
    if (wide) m.gemma4_embed(d_tokens, N, d_h);
    m.prefetch(m.layer_slots(0));
}

void CudaEngine::run_layer(int64_t l, float* h, int64_t B, int64_t T) {
    Impl& m = *impl_;
    const ModelConfig& c = m.c;
    QL_ASSERT(l >= 0 && l < c.n_layers && B * T <= m.opt.max_tokens);
    if (c.is_gemma4()) {
        m.ensure_rope(T);
        m.use(m.layer_slots(l));
        m.prefetch(l + 1 < c.n_layers ? m.layer_slots(l + 1) : m.head_slots());
        m.gemma4_layer(l, h, B, T);
        return;
    }
    const LayerSlots& ls = m.layers[static_cast<size_t>(l)];
    const int64_t N = B * T, C = c.hidden, H = c.n_heads, KV = c.n_kv_heads, D = c.head_dim;
    const int64_t HD = H * D, KD = KV * D, F = c.dense_ffn_width();
    const auto eps = static_cast<float>(c.rms_eps);
    m.ensure_rope(T);
    const bool own_rope = c.is_sliding(l) && c.rope_theta_swa > 0;
    m.use(m.layer_slots(l));
    m.prefetch(l + 1 < c.n_layers ? m.layer_slots(l + 1) : m.head_slots());

    const Impl::TapNames* tn = m.tap ? &m.tap_names[static_cast<size_t>(l)] : nullptr;
    auto tap = [&](const std::vector<std::string>& names, const void* x, int64_t cols) {
        if (tn)
            m.tap(
                {ActivationTap::Kind::LinearInput, static_cast<int>(l), &names, x, false, N, cols});
    };
    m.mark_step(0);
    launch_rmsnorm(m.xn.as(), m.dt, h, m.f32(ls.attn_norm), N, C, eps, T, T, 0);
    int64_t o_in = HD;  // the o-projection's input width
    if (c.is_hybrid()) {
        if (tn) tap(tn->qkv, m.xn.as(), C);
        m.mark_step(1);
        o_in = m.hybrid_mixer(l, ls, B, T);
        m.mark_step(2);
        m.mark_step(3);
    } else if (c.mla) {
        m.mark_step(1);
        m.mla_attention(l, ls, B, T, tn);
        o_in = H * c.v_head_dim;
        m.mark_step(2);
        m.mark_step(3);
    } else {
        if (tn) tap(tn->qkv, m.xn.as(), C);
        m.mark_step(1);
        m.linear(ls.qkv, 0, m.xn.as(), m.qkv.as(), CUDA_R_32F, N, C, HD + 2 * KD, 0.0f);
        m.mark_step(2);
        launch_qkv_post(m.qkv.as<float>(), m.f32(ls.qkv_bias), m.f32(ls.q_norm), m.f32(ls.k_norm),
                        eps, (own_rope ? m.rope_cos_swa : m.rope_cos).as<float>(),
                        (own_rope ? m.rope_sin_swa : m.rope_sin).as<float>(), c.rope_neox(),
                        m.q.as(), m.k.as(), m.v.as(), m.dt, N, T, H, KV, D, c.rotary_dims() / 2);
        if (m.opt.ggml_numerics) {  // ggml's F16 KV cache; Q meets F16 K in the KQ product
            launch_round_activations(m.q.as<float>(), N, HD, ActRound::F16);
            launch_round_activations(m.k.as<float>(), N, KD, ActRound::F16);
            launch_round_activations(m.v.as<float>(), N, KD, ActRound::F16);
        }
        m.mark_step(3);
        m.attention(l, B, T);
    }
    if (tn) tap(tn->o, m.att.as(), o_in);
    m.mark_step(4);
    // h += o-projection; with post-norms, h += rmsnorm(o-projection).
    auto project_into_h = [&](int slot, const void* x, int64_t K, int post_norm, int bias) {
        if (post_norm < 0) {
            m.linear(slot, 0, x, h, CUDA_R_32F, N, K, C, 1.0f);
            if (bias >= 0) launch_add_bias(h, m.f32(bias), N, C);
            return;
        }
        m.linear(slot, 0, x, m.proj.as(), CUDA_R_32F, N, K, C, 0.0f);
        if (bias >= 0) launch_add_bias(m.proj.as<float>(), m.f32(bias), N, C);
        launch_rmsnorm_add(h, m.proj.as<float>(), m.f32(post_norm), N, C, eps);
    };
    project_into_h(ls.o, m.att.as(), o_in, ls.post_attn_norm, ls.o_bias);

    m.mark_step(5);
    launch_rmsnorm(m.xn.as(), m.dt, h, m.f32(ls.ffn_norm), N, C, eps, T, T, 0);
    m.mark_step(6);
    if (c.is_moe_layer(l)) {
        m.ffn_moe(l, ls, h, N);
        m.mark_step(7);
        m.mark_step(8);
    } else {
        QL_ASSERT(F <= m.ffn);  // gu and act hold the widest MLP
        if (tn) tap(tn->gate_up, m.xn.as(), C);
        m.linear(ls.gate_up, 0, m.xn.as(), m.gu.as(), m.cdt, N, C, 2 * F, 0.0f);
        m.mark_step(7);
        launch_swiglu(m.act.as(), m.gu.as(), m.dt, N, F,
                      c.act == Activation::GeluTanh ? GateAct::GeluTanh : GateAct::SiLU);
        if (tn) tap(tn->down, m.act.as(), F);
        m.mark_step(8);
        project_into_h(ls.down, m.act.as(), F, ls.post_ffw_norm, -1);
    }
    if (m.layer_profile) m.layer_profile->end_layer(N);
    if (tn) m.tap({ActivationTap::Kind::LayerOutput, static_cast<int>(l), nullptr, h, true, N, C});
}

void CudaEngine::set_routing_observer(RoutingObserver observer) {
    impl_->routing_observer = std::move(observer);
}

void CudaEngine::set_tap(ActivationTapFn tap) {
    Impl& m = *impl_;
    m.tap = std::move(tap);
    m.tap_names.clear();
    if (!m.tap) return;
    for (int64_t l = 0; l < m.c.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        auto names = [&](std::initializer_list<const char*> bases) {
            std::vector<std::string> v;
            for (const char* b : bases) v.push_back(p + b + ".weight");
            return v;
        };
        Impl::TapNames t;
        t.qkv = m.c.fused_qkv ? names({"attn_qkv"}) : names({"attn_q", "attn_k", "attn_v"});
        t.o = names({"attn_output"});
        if (m.c.is_linear_layer(l)) {  // the fused slot's tensors, as the CPU taps them
            t.qkv = m.c.ssm_fused_ba ? names({"attn_qkv", "attn_gate", "ssm_ba"})
                                     : names({"attn_qkv", "attn_gate", "ssm_beta", "ssm_alpha"});
            t.o = names({"ssm_out"});
        }
        t.gate_up = m.c.fused_gate_up ? names({"ffn_up"}) : names({"ffn_gate", "ffn_up"});
        t.down = names({"ffn_down"});
        t.router = names({"ffn_gate_inp"});
        t.gate_up_exps = names({"ffn_gate_exps", "ffn_up_exps"});
        t.down_exps = names({"ffn_down_exps"});
        t.gate_up_shexp = m.c.shared_expert == SharedExpert::SigmoidGated
                              ? names({"ffn_gate_shexp", "ffn_up_shexp", "ffn_gate_inp_shexp"})
                              : names({"ffn_gate_shexp", "ffn_up_shexp"});
        t.down_shexp = names({"ffn_down_shexp"});
        if (m.c.is_gemma4()) {  // a shared layer projects q only; K=V layers have no attn_v
            const ModelConfig::Gemma4Layer& s = m.c.gemma4_layers[static_cast<size_t>(l)];
            t.qkv = s.kv_source != l ? names({"attn_q"})
                    : s.v_is_k       ? names({"attn_q", "attn_k"})
                                     : names({"attn_q", "attn_k", "attn_v"});
            t.gate_up_exps = names({"ffn_gate_up_exps"});
            t.ple_gate = names({"inp_gate"});
            t.ple_proj = names({"proj"});
        }
        t.mla_a = names({"attn_q_a", "attn_kv_a_mqa"});
        t.q_b = names({"attn_q_b"});
        t.k_b = names({"attn_k_b"});
        t.v_b = names({"attn_v_b"});
        m.tap_names.push_back(std::move(t));
    }
}

void CudaEngine::download_activations(const ActivationTap& tap, float* host) {
    Impl& m = *impl_;
    const int64_t n = tap.rows * tap.cols;
    const float* src = static_cast<const float*>(tap.data);
    if (!tap.f32) {
        m.tap_f32.resize(static_cast<size_t>(n) * 4);
        launch_16_to_f32(m.tap_f32.as<float>(), tap.data, m.dt, n);
        src = m.tap_f32.as<float>();
    }
    QL_CUDA(cudaMemcpy(host, src, static_cast<size_t>(n) * 4, cudaMemcpyDeviceToHost));
}

namespace {
// Checks tokens[B*T], uploads them and runs the embedding and every layer: the hidden states
// [B*T, C] on the device (run_layers, forward_logits).
DeviceBuffer embed_and_run_layers(CudaEngine& e, const CudaEngine::Impl& m,
                                  const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
    const int64_t N = B * T, C = m.width, V = m.c.vocab;
    QL_CHECK(static_cast<int64_t>(tokens.size()) == N && N <= m.opt.max_tokens,
             "CUDA engine: {} tokens for {} sequences of {} (at most {} per batch)", tokens.size(),
             B, T, m.opt.max_tokens);
    for (size_t i = 0; i < tokens.size(); ++i)
        QL_CHECK(tokens[i] >= 0 && tokens[i] < V,
                 "CUDA engine: token id {} at position {} is outside the vocabulary of {}",
                 tokens[i], i, V);
    DeviceBuffer d_tok(tokens.size() * 4), d_h(static_cast<size_t>(N * C) * 4);
    QL_CUDA(cudaMemcpy(d_tok.as(), tokens.data(), tokens.size() * 4, cudaMemcpyHostToDevice));
    e.embed(d_tok.as<int32_t>(), N, d_h.as<float>());
    for (int64_t l = 0; l < m.c.n_layers; ++l) e.run_layer(l, d_h.as<float>(), B, T);
    return d_h;
}
}  // namespace

void CudaEngine::run_layers(const std::vector<int32_t>& tokens, int64_t B, int64_t T) {
    embed_and_run_layers(*this, *impl_, tokens, B, T);
    synchronize();
}

void CudaEngine::head(const float* h, int64_t B, int64_t T, int64_t t0, float* d_logits) {
    Impl& m = *impl_;
    QL_ASSERT(t0 >= 0 && t0 < T);
    const int64_t S = T - t0, R = B * S, C = m.c.hidden;
    const bool has_output =
        m.output >= 0 && m.members[static_cast<size_t>(m.member_of.at("output.weight"))].loaded;
    m.use(m.head_slots());
    const float* hidden = m.hidden_rows(h, B * T);
    m.xn.resize(static_cast<size_t>(R * C) * m.esize);
    launch_rmsnorm(m.xn.as(), m.dt, hidden, m.f32(m.output_norm), R, C,
                   static_cast<float>(m.c.rms_eps), S, T, t0);
    if (m.tap) {  // the head's input (GPTQ Hessians), named as the CPU engine names it
        static const std::vector<std::string> kOutput{"output.weight"}, kTied{"token_embd.weight"};
        m.tap({ActivationTap::Kind::LinearInput, -1, has_output ? &kOutput : &kTied, m.xn.as(),
               false, R, C});
    }
    m.linear(has_output ? m.output : m.token_embd, 0, m.xn.as(), d_logits, CUDA_R_32F, R, C,
             m.c.vocab, 0.0f);
    if (m.c.final_softcap > 0)
        launch_softcap(d_logits, R * m.c.vocab, static_cast<float>(m.c.final_softcap));
}

std::vector<float> CudaEngine::forward_logits(const std::vector<int32_t>& tokens, int64_t B,
                                              int64_t T, int64_t t0) {
    Impl& m = *impl_;
    const int64_t V = m.c.vocab, S = T - t0, C = m.width;
    DeviceBuffer d_h = embed_and_run_layers(*this, m, tokens, B, T);
    // The head runs a few sequences at a time so the logits on the GPU stay near 256 MiB
    // (a 128k vocabulary makes 0.5 MB a row).
    const int64_t per_slice = std::max<int64_t>(1, (int64_t{256} << 20) / (S * V * 4));
    DeviceBuffer d_logits(static_cast<size_t>(std::min(B, per_slice) * S * V) * 4);
    std::vector<float> out(static_cast<size_t>(B * S * V));
    for (int64_t b0 = 0; b0 < B; b0 += per_slice) {
        const int64_t nb = std::min(per_slice, B - b0);
        head(d_h.as<float>() + b0 * T * C, nb, T, t0, d_logits.as<float>());
        QL_CUDA(cudaMemcpy(out.data() + b0 * S * V, d_logits.as(),
                           static_cast<size_t>(nb * S * V) * 4, cudaMemcpyDeviceToHost));
    }
    return out;
}

std::vector<float> CudaEngine::next_token_nll(const std::vector<int32_t>& tokens, int64_t B,
                                              int64_t T, int64_t t0, int64_t S) {
    Impl& m = *impl_;
    QL_ASSERT(t0 >= 0 && S > 0 && t0 + S < T);
    const int64_t R = B * S, C = m.c.hidden, V = m.c.vocab;
    DeviceBuffer d_h = embed_and_run_layers(*this, m, tokens, B, T);
    const bool has_output =
        m.output >= 0 && m.members[static_cast<size_t>(m.member_of.at("output.weight"))].loaded;
    m.use(m.head_slots());
    const float* hidden = m.hidden_rows(d_h.as<float>(), B * T);
    m.xn.resize(static_cast<size_t>(R * C) * m.esize);
    launch_rmsnorm(m.xn.as(), m.dt, hidden, m.f32(m.output_norm), R, C,
                   static_cast<float>(m.c.rms_eps), S, T, t0);
    std::vector<int32_t> next(static_cast<size_t>(R));
    for (int64_t b = 0; b < B; ++b)
        for (int64_t s = 0; s < S; ++s)
            next[static_cast<size_t>(b * S + s)] = tokens[static_cast<size_t>(b * T + t0 + s + 1)];
    // Per-row state in one scratch buffer reused across passes (no allocation per pass):
    // next ids, running max, target logit, NLL (4 bytes each), running sum (8).
    m.nll_state.resize(next.size() * 24);
    auto* d_next = m.nll_state.as<int32_t>();
    auto* run_max = m.nll_state.as<float>() + next.size();
    auto* target = run_max + next.size();
    auto* nll = target + next.size();
    auto* run_sum = reinterpret_cast<double*>(m.nll_state.as<char>() + next.size() * 16);
    QL_CUDA(cudaMemcpy(d_next, next.data(), next.size() * 4, cudaMemcpyHostToDevice));
    const int64_t per_tile = std::min(V, Impl::aligned_rows((int64_t{32} << 20) / (R * 4)));
    m.nll_logits.resize(static_cast<size_t>(R * per_tile) * 4);
    float* z = m.nll_logits.as<float>();
    for (int64_t v0 = 0; v0 < V; v0 += per_tile) {
        const int64_t vt = std::min(per_tile, V - v0);
        m.linear(has_output ? m.output : m.token_embd, v0 * C, m.xn.as(), z, CUDA_R_32F, R, C, vt,
                 0.0f);
        if (m.c.final_softcap > 0) launch_softcap(z, R * vt, static_cast<float>(m.c.final_softcap));
        launch_nll_tile(z, R, vt, v0, d_next, run_max, run_sum, target);
    }
    launch_nll_finish(run_max, run_sum, target, R, nll);
    std::vector<float> out(next.size());
    QL_CUDA(cudaMemcpy(out.data(), nll, out.size() * 4, cudaMemcpyDeviceToHost));
    return out;
}

void CudaEngine::synchronize() {
    QL_CUDA(cudaDeviceSynchronize());
    note_device_usage();
}

bool keeps_blocks_on_gpu(GgmlType type, size_t n_dims) {
    return n_dims >= 2 && ggml_type_info(type).quantized && gpu_dequant_supported(type);
}

std::unordered_map<std::string, GgmlType> quantized_storage_types(const Model& model) {
    std::unordered_map<std::string, GgmlType> out;
    if (const char* env = std::getenv("QUANTLENS_GPU_BLOCKS"); env && std::string(env) == "0")
        return out;
    for (const TensorInfo& t : model.tensors())
        if (keeps_blocks_on_gpu(t.type, t.ne.size()) && !model.raw(t).empty())
            out.emplace(t.name, t.type);
    return out;
}

std::vector<std::string> quantizable_weights(const ModelConfig& c) {
    std::vector<std::string> out{"token_embd.weight"};
    if (c.is_gemma4() && c.ple_dim > 0)  // per_layer_model_proj stays as it is (llama-quantize)
        out.push_back("per_layer_token_embd.weight");
    for (int64_t l = 0; l < c.n_layers; ++l) {
        const std::string p = "blk." + std::to_string(l) + ".";
        if (c.is_gemma4()) {
            const ModelConfig::Gemma4Layer& s = c.gemma4_layers[static_cast<size_t>(l)];
            std::vector<const char*> names{"attn_q"};
            if (s.kv_source == l) names.push_back("attn_k");
            if (s.kv_source == l && !s.v_is_k) names.push_back("attn_v");
            names.insert(names.end(), {"attn_output", "ffn_gate", "ffn_up", "ffn_down"});
            if (c.is_moe()) names.insert(names.end(), {"ffn_gate_up_exps", "ffn_down_exps"});
            if (c.ple_dim > 0) names.insert(names.end(), {"inp_gate", "proj"});
            for (const char* t : names) out.push_back(p + t + ".weight");
            continue;
        }
        const auto attention =
            c.is_linear_layer(l)
                ? (c.ssm_fused_ba
                       ? std::vector<const char*>{"attn_qkv", "attn_gate", "ssm_ba", "ssm_out"}
                       : std::vector<const char*>{"attn_qkv", "attn_gate", "ssm_beta", "ssm_alpha",
                                                  "ssm_out"})
            : c.mla       ? std::vector<const char*>{"attn_q_a", "attn_q_b", "attn_kv_a_mqa",
                                                     "attn_k_b", "attn_v_b", "attn_output"}
            : c.fused_qkv ? std::vector<const char*>{"attn_qkv", "attn_output"}
                          : std::vector<const char*>{"attn_q", "attn_k", "attn_v", "attn_output"};
        for (const char* t : attention) out.push_back(p + t + ".weight");
        if (c.is_moe_layer(l)) {
            for (const char* t : {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"})
                out.push_back(p + t + ".weight");
            if (c.shared_expert != SharedExpert::None)
                for (const char* t : {"ffn_gate_shexp", "ffn_up_shexp", "ffn_down_shexp"})
                    out.push_back(p + t + ".weight");
        } else if (c.fused_gate_up) {
            for (const char* t : {"ffn_up", "ffn_down"}) out.push_back(p + t + ".weight");
        } else {
            for (const char* t : {"ffn_gate", "ffn_up", "ffn_down"})
                out.push_back(p + t + ".weight");
        }
    }
    if (!c.tie_embeddings) out.push_back("output.weight");
    return out;
}

}  // namespace quantlens::cuda
