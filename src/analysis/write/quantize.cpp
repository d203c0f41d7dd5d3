// Mixed-precision GGUF writer (see quantize.h).
//
// Memory: each tensor is quantized inside the GGUF writer's producer callback, just before
// its bytes are written, into a buffer the writer reuses; peak extra memory is one output
// tensor plus one source tensor in F32, not the output file.
#include "analysis/write/quantize.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "analysis/write/gguf_metadata.h"
#include "analysis/write/gptq_rounding.h"
#include "analysis/write/presets.h"
#include "core/error.h"
#include "core/ggml_type.h"
#include "core/half.h"
#include "core/output_file.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "formats/gguf.h"
#include "quant/quant.h"

namespace quantlens {

namespace fs = std::filesystem;

namespace {

std::string type_name(GgmlType t) {
    return ggml_type_display_name(t);
}

// "a, b, c and 7 more"
std::string name_list(const std::vector<std::string>& names, size_t shown = 8) {
    std::string s;
    for (size_t i = 0; i < names.size() && i < shown; ++i) s += (i ? ", " : "") + names[i];
    if (names.size() > shown) s += fmt::format(" and {} more", names.size() - shown);
    return s;
}

bool is_float(GgmlType t) {
    return t == GgmlType::F32 || t == GgmlType::F16 || t == GgmlType::BF16;
}

int64_t n_matrices(const std::vector<int64_t>& ne) {
    int64_t n = 1;
    for (size_t i = 2; i < ne.size(); ++i) n *= ne[i];
    return n;
}

uint32_t choose_file_type(const Recipe& recipe, const std::vector<QuantizedTensor>& tensors,
                          const QuantizeOptions& options) {
    if (options.file_type) return *options.file_type;
    if (recipe.budget_kind == "preset" && recipe.budget_value > 0)
        return static_cast<uint32_t>(recipe.budget_value);
    // The dominant written type among quantized tensors, as llama.cpp's loader guesses it.
    std::vector<GgmlType> written;
    for (const auto& t : tensors)
        if (t.quantized) written.push_back(t.written);
    return ftype_for_dominant_type(ggml_dominant_type(written, recipe.default_type));
}

// One output tensor's bytes into `out`, from the source floats.
void produce(const Model& model, const TensorInfo& src, const QuantizedTensor& q,
             const QuantizeOptions& options, std::vector<uint8_t>& out, bool& used_importance,
             bool& used_gptq) {
    const int64_t n_per_row = src.n_per_row();
    const int64_t n_mat = n_matrices(src.ne);
    const int64_t rows_per_mat = src.n_rows() / n_mat;
    std::vector<float> x = model.read_f32(src);
    // The converter writes weights as F16 and llama-quantize quantizes from those; do the
    // same so a preset gives llama-quantize's bytes. F32/BF16 targets keep the source values.
    const bool via_f16 = options.f16_intermediate && q.quantized &&
                         model.source() == Model::Source::HuggingFace &&
                         (q.written == GgmlType::F16 || !is_float(q.written));
    // Element-wise passes run in parallel: on 16 threads a serial pass over a tensor costs as
    // much as quantizing it.
    constexpr size_t elementwise_chunk = size_t{1} << 18;
    if (via_f16)
        parallel_for(
            x.size(),
            [&](size_t i0, size_t i1) {
                for (size_t i = i0; i < i1; ++i) x[i] = round_to_f16(x[i]);
            },
            elementwise_chunk);

    out.resize(ggml_row_size(q.written, n_per_row) * static_cast<size_t>(src.n_rows()));
    if (q.written == GgmlType::BF16) {
        auto* y = reinterpret_cast<uint16_t*>(out.data());
        parallel_for(
            x.size(),
            [&](size_t i0, size_t i1) {
                for (size_t i = i0; i < i1; ++i) y[i] = f32_to_bf16(x[i]);
            },
            elementwise_chunk);
        return;
    }
    const size_t mat_bytes =
        ggml_row_size(q.written, n_per_row) * static_cast<size_t>(rows_per_mat);
    // The recipe's rounding, else the options' (resolve_tensor_types checked it can be done).
    const bool weigh = !q.rounding || *q.rounding != Rounding::plain;
    const bool use_gptq = !q.rounding || *q.rounding == Rounding::gptq;
    for (int64_t m = 0; m < n_mat; ++m) {
        const float* imp = nullptr;
        if (weigh && options.imatrix && q.quantized && !is_float(q.written))
            imp = options.imatrix->importance(src.name, n_per_row, n_mat, m);
        used_importance = used_importance || imp != nullptr;
        const float* w = x.data() + m * rows_per_mat * n_per_row;
        if (use_gptq && options.gptq && q.quantized &&
            options.gptq->covers(src.name, static_cast<int64_t>(src.ne.size()), q.written)) {
            options.gptq->quantize(src.name, q.written, w, out.data() + m * mat_bytes, rows_per_mat,
                                   n_per_row, imp);
            used_gptq = true;
        } else {
            quantize(q.written, w, out.data() + m * mat_bytes, rows_per_mat, n_per_row, imp);
        }
    }
}

// Why the recipe's rounding of `q` cannot be done with these options ("" when it can).
std::string rounding_problem(const TensorInfo& t, const QuantizedTensor& q,
                             const QuantizeOptions& options) {
    switch (*q.rounding) {
        case Rounding::plain:
            return quant_traits(q.written).needs_importance
                       ? "the type needs importance weights; plain rounding cannot write it"
                       : "";
        case Rounding::imatrix:
            return options.imatrix ? "" : "needs an importance matrix (pass --imatrix)";
        case Rounding::gptq:
            if (!options.gptq) return "needs the GPTQ calibration text (pass --gptq TEXT)";
            return options.gptq->covers(t.name, static_cast<int64_t>(t.ne.size()), q.written)
                       ? ""
                       : "GPTQ does not cover this tensor at this type (no matmul input "
                         "Hessian, or a type outside Q8_0, Q2_K-Q6_K, IQ4_XS)";
    }
    return "";
}

}  // namespace

std::vector<QuantizedTensor> resolve_tensor_types(const Model& model, const Recipe& recipe,
                                                  const QuantizeOptions& options) {
    QL_CHECK(recipe.model_hash.empty() || options.allow_other_model ||
                 recipe.model_hash == model.content_hash(),
             "the recipe was made for model {} (hash {}), but {} has hash {}; a recipe measured "
             "on one model does not carry over (pass --allow-other-model to use it anyway)",
             recipe.model.empty() ? "?" : recipe.model, recipe.model_hash, model.path(),
             model.content_hash());
    std::vector<std::string> missing;
    for (const auto& [name, type] : recipe.tensors)
        if (!model.find(name)) missing.push_back(name);
    for (const auto& [name, how] : recipe.rounding)
        if (!model.find(name) && !recipe.tensors.count(name)) missing.push_back(name);
    QL_CHECK(missing.empty(), "recipe names {} tensor(s) that {} does not have: {}", missing.size(),
             model.path(), name_list(missing));

    std::vector<std::string> names;
    for (const auto& t : model.tensors()) names.push_back(t.name);
    const bool gguf_source = model.source() == Model::Source::Gguf;

    std::vector<QuantizedTensor> out;
    std::vector<std::string> errors;
    for (size_t idx : llama_tensor_order(names)) {
        const TensorInfo& t = model.tensors()[idx];
        QuantizedTensor q;
        q.name = t.name;
        q.ne = t.ne;
        q.source_type = t.type;
        q.quantized = llama_quantizes(t.name, t.ne);
        auto named = recipe.tensors.find(t.name);
        if (!q.quantized) {
            // Norms, biases, routers: llama.cpp keeps them as the converter stored them (F32).
            q.written = gguf_source ? t.type : GgmlType::F32;
            q.requested = named != recipe.tensors.end() ? named->second : q.written;
            if (q.requested != q.written && q.requested != GgmlType::F32)
                errors.push_back(fmt::format(
                    "{}: the recipe asks for {} but llama.cpp does not quantize this tensor "
                    "(norm, bias or router; kept as {})",
                    t.name, type_name(q.requested), type_name(q.written)));
            q.requested = q.written;
            if (recipe.rounding.count(t.name))
                errors.push_back(fmt::format(
                    "{}: the recipe gives it a rounding but llama.cpp does not quantize this "
                    "tensor (norm, bias or router)",
                    t.name));
            out.push_back(std::move(q));
            continue;
        }
        q.requested = named != recipe.tensors.end() ? named->second : recipe.default_type;
        const QuantTraits& tr = quant_traits(q.requested);
        if (!tr.implemented) {
            errors.push_back(fmt::format("{}: type {} is not implemented by our quantizers yet",
                                         t.name, type_name(q.requested)));
            out.push_back(std::move(q));
            continue;
        }
        q.written = fallback_type(q.requested, t.n_per_row());
        if (gguf_source && ggml_type_info(t.type).quantized && q.written != t.type &&
            !options.allow_requantize)
            errors.push_back(fmt::format(
                "{}: already {} in the source; quantizing it again to {} adds both errors "
                "(pass --allow-requantize to do it anyway)",
                t.name, type_name(t.type), type_name(q.written)));
        if (q.written != q.requested) {
            q.note = fmt::format("{} → {}: row of {} is not a multiple of {}'s block of {}",
                                 type_name(q.requested), type_name(q.written), t.n_per_row(),
                                 type_name(q.requested), tr.block_size);
            if (options.strict)
                errors.push_back(
                    fmt::format("{}: {} (--strict refuses fallbacks)", t.name, q.note));
        }
        if (!quant_traits(q.written).implemented)
            errors.push_back(fmt::format("{}: fallback type {} is not implemented yet", t.name,
                                         type_name(q.written)));
        if (quant_traits(q.written).needs_importance) {
            const bool have =
                options.imatrix &&
                options.imatrix->importance(t.name, t.n_per_row(), n_matrices(t.ne)) != nullptr;
            if (!have)
                errors.push_back(fmt::format(
                    "{}: type {} needs importance weights and {} (pass --imatrix with an entry "
                    "for this tensor)",
                    t.name, type_name(q.written),
                    options.imatrix ? "the imatrix has none for it" : "no imatrix was given"));
        }
        if (const auto how = recipe.rounding.find(t.name);
            how != recipe.rounding.end() && !is_float(q.written)) {
            q.rounding = how->second;
            if (const std::string why = rounding_problem(t, q, options); !why.empty())
                errors.push_back(fmt::format("{}: rounding {} at {}: {}", t.name,
                                             rounding_name(how->second), type_name(q.written),
                                             why));
        }
        q.bytes = ggml_row_size(q.written, t.n_per_row()) * static_cast<uint64_t>(t.n_rows());
        out.push_back(std::move(q));
    }
    if (!errors.empty()) {
        std::string msg =
            fmt::format("cannot quantize {} with this recipe ({} problem{}):", model.path(),
                        errors.size(), errors.size() == 1 ? "" : "s");
        for (size_t i = 0; i < errors.size() && i < 20; ++i) msg += "\n  " + errors[i];
        if (errors.size() > 20) msg += fmt::format("\n  ... and {} more", errors.size() - 20);
        throw Error(msg);
    }
    for (auto& q : out)
        if (!q.quantized || q.bytes == 0) {
            const TensorInfo& t = model.get(q.name);
            q.bytes = ggml_row_size(q.written, t.n_per_row()) * static_cast<uint64_t>(t.n_rows());
        }
    return out;
}

QuantizeResult quantize_model(const Model& model, const Recipe& recipe,
                              const QuantizeOptions& options) {
    const std::string& path = options.output_path;
    QL_CHECK(!path.empty(), "quantize: no output path given");
    QL_CHECK(!recipe.is_gptq(),
             "quantize: a GPTQ recipe holds GPTQ formats, not ggml types, and is not written as "
             "GGUF; verify --format gptq measures it and plan --export-gptq writes its "
             "quantization_config");
    check_output_path(path, overwrite_if(options.force));
    const fs::path parent = fs::path(path).parent_path();
    QL_CHECK(parent.empty() || fs::is_directory(parent), "{}: directory {} does not exist", path,
             parent.string());

    QuantizeResult result;
    result.path = path;
    result.tensors = resolve_tensor_types(model, recipe, options);
    result.file_type = choose_file_type(recipe, result.tensors, options);

    GgufKvList kv = converter_metadata(model);
    finish_quantized_metadata(kv, result.file_type);

    int64_t total_weights = 0;
    for (const auto& q : result.tensors) total_weights += model.get(q.name).n_elements();
    std::optional<Progress> progress;
    if (options.progress) progress.emplace("quantize", total_weights, "w");

    GgufWriter writer;
    for (const auto& [k, v] : kv) writer.add_kv(k, v);
    const std::vector<ExtraTensor> extra = converter_extra_tensors(model);
    for (const ExtraTensor& e : extra)
        writer.add_tensor(e.name, e.ne, GgmlType::F32,
                          std::span(reinterpret_cast<const uint8_t*>(e.values.data()),
                                    e.values.size() * sizeof(float)));
    for (QuantizedTensor& q : result.tensors) {
        const TensorInfo& src = model.get(q.name);
        if (!q.note.empty()) result.fallbacks.push_back(q.name + ": " + q.note);
        result.tensor_bytes += q.bytes;
        result.n_params += src.n_elements();
        // result.tensors is not resized from here on, so &q stays valid until write() returns.
        writer.add_tensor(q.name, q.ne, q.written, q.bytes,
                          [&model, &src, &q, &options, &progress](std::vector<uint8_t>& out) {
                              const std::span<const uint8_t> raw = model.raw(src);
                              if (q.written == src.type && !raw.empty()) {
                                  // Already in the requested type: copy, as llama-quantize does
                                  // (a GGUF tensor, or gpt-oss's released MXFP4 experts).
                                  out.assign(raw.begin(), raw.end());
                              } else {
                                  bool used = false, gptq = false;
                                  produce(model, src, q, options, out, used, gptq);
                                  q.has_importance = used;
                                  q.gptq = gptq;
                              }
                              if (progress) progress->advance(src.n_elements());
                          });
    }
    writer.write(path, overwrite_if(options.force));
    if (progress) progress->finish();
    result.file_bytes = fs::file_size(path);
    result.bpw = bits_per_weight(static_cast<double>(result.file_bytes),
                                 static_cast<double>(result.n_params));
    return result;
}

}  // namespace quantlens
