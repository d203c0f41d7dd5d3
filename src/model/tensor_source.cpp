// TensorSource over Model (GGUF files and unquantized HF directories), and the detection of
// quantized HF checkpoints that have no reader yet.
#include "model/tensor_source.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/ggml_type.h"
#include "model/model.h"

namespace quantlens {
namespace {

class ModelTensorSource final : public TensorSource {
  public:
    explicit ModelTensorSource(std::unique_ptr<Model> model) : model_(std::move(model)) {
        for (const TensorInfo& t : model_->tensors()) {
            SourceTensor s;
            s.name = t.name;
            s.ne = t.ne;
            s.ggml_type = t.type;
            s.storage = ggml_type_display_name(t.type);
            s.nbytes = t.nbytes();
            tensors_.push_back(std::move(s));
        }
    }
    const std::string& path() const override { return model_->path(); }
    std::string format() const override {
        return model_->source() == Model::Source::Gguf ? "gguf" : "safetensors";
    }
    std::optional<ModelConfig> config() const override { return model_->config(); }
    const std::vector<SourceTensor>& tensors() const override { return tensors_; }
    void read_f32(const SourceTensor& tensor, std::span<float> out) const override {
        model_->read_f32(model_->get(tensor.name), out);
    }
    std::span<const uint8_t> raw(const SourceTensor& tensor) const override {
        return model_->raw(model_->get(tensor.name));
    }
    std::string content_hash() const override { return model_->content_hash(); }

  private:
    std::unique_ptr<Model> model_;
    std::vector<SourceTensor> tensors_;
};

// quant_method of an HF directory's quantization_config, "" when it has none.
std::string hf_quant_method(const std::filesystem::path& dir) {
    const auto config = dir / "config.json";
    std::ifstream in(config);
    if (!in) return "";
    std::stringstream ss;
    ss << in.rdbuf();
    const auto j = nlohmann::json::parse(ss.str(), nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("quantization_config")) return "";
    const auto& q = j["quantization_config"];
    return q.is_object() ? q.value("quant_method", std::string("unknown")) : "unknown";
}

}  // namespace

int64_t SourceTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
}

double SourceTensor::bpw() const {
    return bits_per_weight(static_cast<double>(nbytes), static_cast<double>(n_elements()));
}

const SourceTensor* TensorSource::find(const std::string& name) const {
    for (const SourceTensor& t : tensors())
        if (t.name == name) return &t;
    return nullptr;
}

std::vector<float> TensorSource::read_f32(const SourceTensor& tensor) const {
    std::vector<float> out(static_cast<size_t>(tensor.n_elements()));
    read_f32(tensor, out);
    return out;
}

std::unique_ptr<TensorSource> open_tensor_source(const std::string& path) {
    if (std::filesystem::is_directory(path)) {
        const std::string method = hf_quant_method(path);
        // mxfp4: gpt-oss's released experts, which Model reads as ggml MXFP4 blocks.
        QL_CHECK(method.empty() || method == "mxfp4",
                 "{}: a {} checkpoint (config.json quantization_config); quantlens reads "
                 "quantized checkpoints from GGUF files (and gpt-oss's MXFP4 experts) only so far",
                 path, method);
    }
    return tensor_source_of(Model::open(path));
}

std::unique_ptr<TensorSource> tensor_source_of(std::unique_ptr<Model> model) {
    QL_ASSERT(model != nullptr);
    return std::make_unique<ModelTensorSource>(std::move(model));
}

}  // namespace quantlens
