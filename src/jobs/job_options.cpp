#include "jobs/job_options.h"

#include <nlohmann/json.hpp>

#include "core/table_lookup.h"

namespace quantlens::jobs {

namespace {
using V = OptionValue;
constexpr bool web = true, cli = false;

// Options several kinds share, named once: a kind lists the groups it takes and its own rows.
using Options = std::vector<JobOption>;
// The evaluation text and its windows (calibrate, eval, verify, compare).
const Options text_windows = {
    {"text", V::path, web}, {"ctx", V::number, web}, {"chunks", V::number, web}};
// GPTQ-rounded weights from a calibration file (sweep, quantize, verify).
const Options gptq_input = {{"gptq", V::path, web}, {"gptq-chunks", V::number, web}};
// The evaluator's numerics and device (sweep, calibrate, eval).
const Options numerics = {{"ggml-numerics", V::flag, web}, {"gpu", V::flag, web}};
// Machine-readable output on stdout and replacing existing files.
const Options json_force = {{"json", V::flag, cli}, {"force", V::flag, cli}};
const Options store = {{"store", V::path, cli}};

Options join(std::initializer_list<Options> groups) {
    Options out;
    for (const auto& g : groups) out.insert(out.end(), g.begin(), g.end());
    return out;
}
}  // namespace

const std::vector<JobKindSpec>& job_kind_specs() {
    static const std::vector<JobKindSpec> specs = {
        {"sweep", "", nullptr, true, false,
         join({{{"eval", V::path, web},
                {"tokens", V::number, web},
                {"ctx", V::number, web},
                {"types", V::types, web},
                {"granularity", V::word, web},
                {"placement", V::flag, web},
                {"base", V::types, web},
                {"placement-n", V::words, web},
                {"imatrix", V::path, web},
                {"budget", V::number, web},
                {"no-prefix-cache", V::flag, web},
                {"no-uniform", V::flag, web},
                {"bf16", V::flag, web},
                {"gptq-act-order", V::flag, cli},
                {"rounding-choice", V::flag, web},
                {"rounding-margin", V::number, web},
                {"rounding-share", V::number, web},
                {"experts", V::flag, web},
                {"expert-sample", V::number, web},
                // A web job is always a new one in the server's own store.
                {"job", V::number, cli},
                {"shard", V::word, cli},
                {"json", V::out_path, cli},
                {"mpi", V::flag, cli},
                {"gpus-per-node", V::number, cli},
                {"mpi-timeout", V::number, cli},
                {"mpi-heartbeat", V::number, cli},
                {"no-root-worker", V::flag, cli},
                {"force", V::flag, cli}},
               numerics,
               gptq_input,
               store})},
        {"calibrate", "", nullptr, true, false,
         join({text_windows,
               {{"output", V::out_path, web}, {"batch", V::number, web}, {"as-f16", V::flag, web}},
               numerics,
               store,
               json_force})},
        {"plan", nullptr, "", false, true,
         join({{{"target-bpw", V::number, web},
                {"target-size", V::word, web},
                {"knee", V::flag, web},
                {"metric", V::word, web},
                {"objective", V::word, web},
                {"types", V::types, web},
                {"min-type", V::types, web},
                {"max-type", V::types, web},
                {"name", V::word, web},
                {"no-rounding-choice", V::flag, web},
                // Measures pairs (minutes of forward passes): from the command line only.
                {"interactions", V::number, cli},
                {"interactions-tokens", V::number, cli},
                {"refine", V::number, cli},
                {"refine-tokens", V::number, cli},
                // Regexes, and files written beside the recipe: not from a web form.
                {"pin", V::word, cli},
                {"tie", V::word, cli},
                {"output", V::out_path, cli},
                {"export-llama-cpp", V::out_path, cli},
                {"export-gptq", V::out_path, cli},
                {"format", V::word, cli},
                {"frontier", V::out_path, cli}},
               store,
               json_force})},
        {"quantize", "", nullptr, true, false,
         join({{{"recipe", V::path, web},
                {"preset", V::word, web},
                {"imatrix", V::path, web},
                {"output", V::out_path, web},
                {"gpu", V::flag, web},
                {"strict", V::flag, web},
                {"allow-requantize", V::flag, web},
                {"allow-other-model", V::flag, web},
                {"no-f16", V::flag, web},
                {"summary", V::flag, web},
                {"save-recipe", V::out_path, cli}},
               gptq_input,
               json_force})},
        {"verify", "--base", "--job", true, false,
         join({text_windows,
               gptq_input,
               {{"recipe", V::path, web},
                {"presets", V::words, web},
                {"imatrix", V::path, web},
                {"no-ggml-numerics", V::flag, web},
                {"gpu", V::flag, web},
                {"allow-overlap", V::flag, web},
                // The request's model and job (model_arg, job_arg), never options of their own.
                {"base", V::path, cli},
                {"job", V::number, cli},
                {"out-dir", V::out_path, cli},
                {"format", V::word, cli},
                {"llama-cpp", V::path, cli},
                {"json", V::out_path, cli},
                {"force", V::flag, cli}},
               store})},
        {"eval", "", nullptr, true, false,
         join({text_windows,
               {{"base", V::path, web},
                {"batch", V::number, web},
                {"as-f16", V::flag, web},
                {"save-logits", V::out_path, cli}},
               numerics,
               json_force})},
        // compare FP QUANT: the request's model is FP, its "quant" the quantized GGUF.
        {"compare", "", nullptr, true, false,
         join({text_windows,
               {{"batch", V::number, web},
                {"top", V::number, web},
                {"exact-fp", V::flag, web},
                {"no-ggml-numerics", V::flag, web},
                {"no-attribution", V::flag, web},
                {"gpu", V::flag, web},
                {"json", V::flag, cli}},
               store}),
         "model", "quant"},
        // audit ZOO: the request's model is the zoo file; the server checks that every path
        // it names lies inside the allowed roots (server_jobs.cpp).
        {"audit", "", nullptr, true, false,
         join({{{"time-limit", V::number, web}, {"json", V::flag, cli}}, store}), "zoo"},
    };
    return specs;
}

const JobOption* JobKindSpec::find(std::string_view name) const {
    return find_entry(options, &JobOption::name, name);
}

const JobKindSpec* find_job_kind_spec(std::string_view kind) {
    return find_entry(job_kind_specs(), &JobKindSpec::kind, kind);
}

std::string_view option_value_name(OptionValue value) {
    switch (value) {
        case V::path:
            return "path";
        case V::out_path:
            return "out_path";
        case V::number:
            return "number";
        case V::word:
            return "word";
        case V::words:
            return "words";
        case V::types:
            return "types";
        case V::flag:
            return "flag";
    }
    return "?";
}

nlohmann::json job_kinds_json() {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& s : job_kind_specs()) {
        nlohmann::json opts = nlohmann::json::object();
        for (const auto& o : s.options)
            if (o.web) opts[std::string(o.name)] = option_value_name(o.value);
        nlohmann::json kind = {
            {"target", s.model_arg ? "model" : "job"},
            {"job_option", s.model_arg && s.job_arg},  // verify: an optional job to store into
            {"options", opts}};
        if (s.model_label != "model") kind["model_label"] = std::string(s.model_label);
        if (s.second_path) kind["second"] = s.second_path;
        out[std::string(s.kind)] = std::move(kind);
    }
    return out;
}

}  // namespace quantlens::jobs
