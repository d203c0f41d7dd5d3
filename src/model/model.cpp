// Model: source dispatch and the source-independent parts of the interface (model.h).
#include "model/model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/mmap_file.h"
#include "core/parallel.h"
#include "hub/resolve.h"
#include "model/names.h"
#include "model/sources.h"

namespace quantlens {

namespace fs = std::filesystem;

int64_t TensorInfo::n_elements() const {
    if (ne.empty()) return 0;
    int64_t n = 1;
    for (int64_t d : ne) n *= d;
    return n;
}

uint64_t TensorInfo::nbytes() const {
    if (ne.empty()) return 0;
    return static_cast<uint64_t>(ggml_row_size(type, ne[0])) *
           static_cast<uint64_t>(n_elements() / std::max<int64_t>(ne[0], 1));
}

std::unique_ptr<Model> Model::open(const std::string& arg) {
    // ORG/NAME[@REV] that is not a local path: the model pulled into the Hugging Face cache.
    const bool repo_like = !arg.empty() && arg[0] != '/' && arg[0] != '.' &&
                           std::count(arg.begin(), arg.end(), '/') == 1 && !fs::exists(arg);
    const std::string path = repo_like ? resolve_model_path(arg) : arg;
    QL_CHECK(fs::exists(path), "{}: no such file or directory", path);
    if (fs::is_directory(path)) return detail::open_hf_model(path);
    if (fs::path(path).filename() == "config.json")
        return detail::open_hf_model(fs::path(path).parent_path().string());
    MappedFile f(path);
    if (f.size() >= 4 && std::memcmp(f.data(), "GGUF", 4) == 0)
        return detail::open_gguf_model(path);
    fail(
        "{}: not a model: expected a Hugging Face directory (config.json + safetensors) or a "
        "GGUF file",
        path);
}

const TensorInfo* Model::find(const std::string& gguf_name) const {
    for (const auto& t : tensors_)
        if (t.name == gguf_name) return &t;
    return nullptr;
}

const TensorInfo& Model::get(const std::string& gguf_name) const {
    const TensorInfo* t = find(gguf_name);
    if (!t) fail("{}: model has no tensor '{}'", path_, gguf_name);
    return *t;
}

void Model::read_f32(const TensorInfo& tensor, std::span<float> out) const {
    decode_f32(tensor, out);
    // A branch-free sum per slice first (vectorizes); only a non-finite slice needs the element.
    constexpr size_t kSlice = size_t{1} << 20;
    const size_t n_slices = (out.size() + kSlice - 1) / kSlice;
    std::vector<char> bad(n_slices, 0);
    parallel_for(n_slices, [&](size_t s0, size_t s1) {
        for (size_t s = s0; s < s1; ++s) {
            float probe = 0.0f;
            for (size_t i = s * kSlice, e = std::min(out.size(), i + kSlice); i < e; ++i)
                probe += out[i] * 0.0f;
            bad[s] = !std::isfinite(probe);
        }
    });
    if (std::find(bad.begin(), bad.end(), 1) == bad.end()) return;
    for (size_t i = 0; i < out.size(); ++i) {
        if (std::isfinite(out[i])) continue;
        const int64_t row_len = tensor.ne.empty() ? 1 : tensor.ne[0];
        fail(
            "{}: tensor '{}' holds {} at element {} (row {}, column {}); a model with non-finite "
            "weights cannot be measured or quantized",
            path_, tensor.name, out[i], i, static_cast<int64_t>(i) / row_len,
            static_cast<int64_t>(i) % row_len);
    }
}

std::vector<float> Model::read_f32(const TensorInfo& tensor) const {
    std::vector<float> out(static_cast<size_t>(tensor.n_elements()));
    read_f32(tensor, out);
    return out;
}

int64_t Model::total_params() const {
    int64_t n = 0;
    for (const auto& t : tensors_) n += t.n_elements();
    return n;
}

uint64_t Model::total_bytes() const {
    uint64_t n = 0;
    for (const auto& t : tensors_) n += t.nbytes();
    return n;
}

namespace detail {

void check_shape(const TensorInfo& t, const ModelConfig& config, const std::string& file,
                 const char* config_source) {
    std::vector<int64_t> want = expected_ne_in_layer(t.role, config, t.layer);
    if (want.empty()) return;
    QL_CHECK(same_shape(t.ne, want),
             "{}: tensor '{}' ({}) has shape {} (ggml order), but {} implies {} for a {} tensor "
             "(hidden {}, heads {}/{}, head_dim {}, ffn {}, vocab {}, experts {})",
             file, t.hf_name.empty() ? t.name : t.hf_name, t.name, format_shape(t.ne),
             config_source, format_shape(want), role_name(t.role), config.hidden, config.n_heads,
             config.n_kv_heads, config.head_dim, config.ffn, config.vocab, config.n_experts);
    QL_CHECK(t.layer < config.n_layers, "{}: tensor '{}' is in layer {}, but {} says {} layers",
             file, t.name, t.layer, config_source, config.n_layers);
}

}  // namespace detail
}  // namespace quantlens
