#include "server/catalog.h"

#include <algorithm>
#include <sstream>

#include "analysis/sweep/sweep.h"
#include "analysis/write/presets.h"
#include "core/ggml_type.h"
#include "model/model.h"
#include "quant/quant.h"

namespace quantlens::server {

nlohmann::json types_json() {
    const std::vector<GgmlType> defaults = default_sweep_types();
    nlohmann::json out = nlohmann::json::array();
    for (const GgmlType type : quantizable_types())  // by bits per weight, ascending
        out.push_back(
            {{"name", ggml_type_display_name(type)},
             {"bpw", ggml_type_bpw(type)},
             {"default", std::find(defaults.begin(), defaults.end(), type) != defaults.end()},
             {"needs_imatrix", quant_traits(type).needs_importance}});
    nlohmann::json presets = nlohmann::json::array();
    for (const auto& p : all_presets())
        presets.push_back({{"name", p.name}, {"needs_imatrix", p.needs_imatrix}});
#ifdef QL_HAVE_CUDA
    const bool gpu = true;
#else
    const bool gpu = false;
#endif
    return {{"types", out}, {"presets", presets}, {"gpu", gpu}};
}

nlohmann::json presets_json(const std::filesystem::path& model_path, const std::string& presets) {
    const std::unique_ptr<Model> model = Model::open(model_path.string());
    nlohmann::json out = nlohmann::json::object();
    std::stringstream list(presets);
    std::string name;
    while (std::getline(list, name, ',')) {
        if (name.empty()) continue;
        const Preset& preset = get_preset(name);
        nlohmann::json tensors = nlohmann::json::object();
        for (const auto& [tensor, type] :
             preset_recipe(preset, model->config(), model->tensors(), false).tensors)
            tensors[tensor] = ggml_type_display_name(type);
        out[preset.name] = std::move(tensors);
    }
    return {{"presets", out}};
}

}  // namespace quantlens::server
