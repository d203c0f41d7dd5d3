// GPTQ formats applied to a model: see gptq_formats.h.
#include "analysis/write/gptq_formats.h"

#include <map>

#include "analysis/write/gptq_rounding.h"
#include "core/error.h"
#include "model/model.h"
#include "model/names.h"
#include "quant/gptq_pack.h"

namespace quantlens {
namespace {

// The fused unit a tensor belongs to ("attn_qkv", "ffn_gate_up"), or "" for its own unit.
const char* fused_unit(TensorRole role) {
    switch (role) {
        case TensorRole::AttnQ:
        case TensorRole::AttnK:
        case TensorRole::AttnV:
            return "attn_qkv";
        case TensorRole::FfnGate:
        case TensorRole::FfnUp:
            return "ffn_gate_up";
        case TensorRole::SharedGate:
        case TensorRole::SharedUp:
            return "ffn_gate_up_shexp";
        default:
            return "";
    }
}

}  // namespace

bool gptq_quantizes(const TensorInfo& t) {
    if (t.ne.size() != 2 || t.layer < 0 || !t.quantizable) return false;
    // Linear layers only: not the routed experts, stacked into one 3-D tensor.
    return is_attention_projection(t.role) || is_dense_mlp(t.role) || is_shared_expert(t.role);
}

std::vector<GptqUnit> gptq_units(const Model& model) {
    std::vector<GptqUnit> units;
    std::map<std::string, size_t> index;
    for (const auto& t : model.tensors()) {
        if (!gptq_quantizes(t)) continue;
        const std::string fused = fused_unit(t.role);
        const std::string key =
            fused.empty() ? t.name : "blk." + std::to_string(t.layer) + "." + fused;
        auto it = index.find(key);
        if (it == index.end()) {
            index[key] = units.size();
            units.push_back({key, t.layer, fused.empty() ? role_name(t.role) : fused, {}, 0});
            it = index.find(key);
        }
        units[it->second].tensors.push_back(t.name);
        units[it->second].n_params += t.n_elements();
    }
    QL_CHECK(!units.empty(), "{}: the model has no Linear weight GPTQ quantizes", model.path());
    return units;
}

GptqFakeQuant gptq_fake_quant(const TensorInfo& t, const std::vector<float>& w,
                              const GptqFormat& format, const GptqRounding* gptq, bool act_order) {
    QL_CHECK(gptq_quantizes(t), "tensor '{}' is not a Linear weight GPTQ quantizes", t.name);
    const int64_t in = t.n_per_row(), out = t.n_rows();
    const GptqPacked packed = gptq && gptq->has_hessian(t.name)
                                  ? gptq->pack_format(t.name, format, w.data(), out, in, act_order)
                                  : gptq_pack_rtn(format, w.data(), out, in, t.name);
    GptqFakeQuant q;
    q.values.resize(w.size());
    gptq_unpack(packed, q.values.data());
    q.bytes = gptq_packed_bytes(packed);
    return q;
}

uint64_t gptq_unquantized_bytes(const Model& model) {
    uint64_t bytes = 0;
    for (const auto& t : model.tensors())
        if (!gptq_quantizes(t)) bytes += 2 * static_cast<uint64_t>(t.n_elements());
    return bytes;
}

}  // namespace quantlens
