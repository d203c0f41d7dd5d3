// GGUF source: a llama.cpp file is already in GGUF layout; tensors are exposed in file
// order, float values come from converting F32/F16/BF16 or dequantizing block types.

#include "core/error.h"
#include "core/half.h"
#include "core/hash.h"
#include "formats/gguf.h"
#include "model/names.h"
#include "model/sources.h"
#include "quant/quant.h"

namespace quantlens::detail {

namespace {

class GgufModel final : public Model {
  public:
    explicit GgufModel(const std::string& path) : gguf_(GgufFile::open(path)) {
        path_ = path;
        config_ = config_from_gguf(gguf_);
        for (const GgufTensorInfo& g : gguf_.tensors()) {
            TensorInfo t;
            t.name = g.name;
            t.hf_name = gguf_to_hf(g.name, config_.arch);
            t.ne = g.ne;
            t.type = g.type;
            t.layer = layer_from_gguf_name(g.name);
            t.role = role_from_gguf_name(g.name);
            t.quantizable = is_quantizable(t.role, t.ne);
            check_shape(t, config_, path, "GGUF metadata");
            tensors_.push_back(std::move(t));
        }
        QL_CHECK(find("token_embd.weight") != nullptr, "{}: no token_embd.weight tensor", path);
    }

    Source source() const override { return Source::Gguf; }

    void decode_f32(const TensorInfo& tensor, std::span<float> out) const override {
        QL_ASSERT(out.size() == static_cast<size_t>(tensor.n_elements()));
        const std::span<const uint8_t> data = raw(tensor);
        const size_t n = out.size();
        if (n == 0) return;
        switch (tensor.type) {
            case GgmlType::F32:
                std::memcpy(out.data(), data.data(), n * 4);
                return;
            case GgmlType::F16:
            case GgmlType::BF16: {
                const bool f16 = tensor.type == GgmlType::F16;
                for (size_t i = 0; i < n; ++i) {
                    uint16_t h;
                    std::memcpy(&h, data.data() + 2 * i, 2);
                    out[i] = f16 ? f16_to_f32(h) : bf16_to_f32(h);
                }
                return;
            }
            default:
                break;
        }
        QL_CHECK(ggml_type_info(tensor.type).quantized,
                 "{}: tensor '{}': cannot read {} data as floats", path_, tensor.name,
                 ggml_type_info(tensor.type).name);
        dequantize(tensor.type, data.data(), out.data(), tensor.n_rows(), tensor.n_per_row());
    }

    std::span<const uint8_t> raw(const TensorInfo& tensor) const override {
        return gguf_.tensor_data(gguf_.tensor(tensor.name));
    }

    std::string content_hash() const override { return hash_.get({path_}); }
    std::string tokenizer_path() const override { return path_; }
    const GgufFile* gguf() const override { return &gguf_; }

  private:
    GgufFile gguf_;
    FilesHashOnce hash_;
};

}  // namespace

std::unique_ptr<Model> open_gguf_model(const std::string& path) {
    return std::make_unique<GgufModel>(path);
}

}  // namespace quantlens::detail
