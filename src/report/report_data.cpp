// Builds the report-data document (schema in report_data.h) from the job store.
#include "report/report_data.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "core/error.h"
#include "core/ggml_type.h"
#include "formats/recipe.h"
#include "jobs/store.h"

namespace quantlens::report {

double type_bpw(const std::string& type_name) {
    const auto type = ggml_type_from_name(type_name);
    if (!type) return -1;
    return ggml_type_bpw(*type);
}

namespace {

nlohmann::json parse_artifact(const jobs::Store& store, int64_t job_id,
                              const jobs::Artifact& artifact) {
    QL_CHECK(artifact.is_json, "{}: job {}: artifact '{}' holds bytes, expected JSON", store.path(),
             job_id, artifact.name);
    nlohmann::json doc = nlohmann::json::parse(artifact.data, nullptr, false);
    QL_CHECK(!doc.is_discarded(), "{}: job {}: artifact '{}' is not valid JSON", store.path(),
             job_id, artifact.name);
    return doc;
}

nlohmann::json number_or_null(double v) {
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json();
}

}  // namespace

nlohmann::json build_report_data(const jobs::Store& store, int64_t job_id) {
    const jobs::Job job = store.get_job(job_id);
    nlohmann::json doc;
    doc["schema_version"] = kReportSchemaVersion;
#ifdef QL_VERSION
    doc["generated_by"] = std::string("quantlens ") + QL_VERSION;
#else
    doc["generated_by"] = "quantlens";
#endif
    doc["job"] = jobs::to_json(job);

    // Units in the store's order; measurements may name units that were never added (a
    // sweep writing measurements before units): they are appended with what is known.
    std::vector<jobs::Unit> units = store.units(job_id);
    std::map<std::string, size_t> unit_index;
    for (size_t i = 0; i < units.size(); ++i) unit_index.emplace(units[i].name, i);
    const std::vector<jobs::Measurement> rows = store.measurements(job_id);

    std::map<std::string, std::pair<double, int>> measured_bpw;  // type → (sum, count)
    std::set<std::string> metric_names;
    for (const auto& m : rows) {
        if (!unit_index.count(m.unit)) {
            unit_index.emplace(m.unit, units.size());
            units.push_back({m.unit, -1, "", 0, "{}"});
        }
        metric_names.insert(m.metric);
        auto& [sum, count] = measured_bpw[m.type];
        if (m.metric == "bpw" && std::isfinite(m.value)) {
            sum += m.value;
            ++count;
        }
    }

    struct TypeEntry {
        std::string name;
        double bpw;
    };
    std::vector<TypeEntry> types;
    for (const auto& [name, acc] : measured_bpw) {
        double bpw = type_bpw(name);
        if (bpw < 0 && acc.second > 0) bpw = acc.first / acc.second;
        types.push_back({name, bpw});
    }
    std::sort(types.begin(), types.end(), [](const TypeEntry& a, const TypeEntry& b) {
        return a.bpw != b.bpw ? a.bpw < b.bpw : a.name < b.name;
    });
    std::map<std::string, size_t> type_index;
    nlohmann::json types_json = nlohmann::json::array();
    for (size_t i = 0; i < types.size(); ++i) {
        type_index.emplace(types[i].name, i);
        types_json.push_back({{"name", types[i].name}, {"bpw", number_or_null(types[i].bpw)}});
    }
    doc["types"] = std::move(types_json);
    doc["metrics"] = metric_names;

    int64_t n_params = 0, n_layers = 0;
    nlohmann::json units_json = nlohmann::json::array();
    for (const auto& u : units) {
        nlohmann::json extra =
            nlohmann::json::parse(u.extra.empty() ? "{}" : u.extra, nullptr, false);
        if (extra.is_discarded()) extra = u.extra;
        units_json.push_back({{"name", u.name},
                              {"layer", u.layer},
                              {"role", u.role},
                              {"n_params", u.n_params},
                              {"pattern", anchored_pattern(u.name)},
                              {"extra", std::move(extra)}});
        n_params += u.n_params;
        n_layers = std::max<int64_t>(n_layers, u.layer + 1);
    }
    doc["units"] = std::move(units_json);

    // Rows arrive ordered by (unit, type, metric): one cell per run of equal (unit, type).
    nlohmann::json cells = nlohmann::json::array();
    for (size_t i = 0; i < rows.size();) {
        nlohmann::json metrics = nlohmann::json::object();
        size_t j = i;
        for (; j < rows.size() && rows[j].unit == rows[i].unit && rows[j].type == rows[i].type; ++j)
            metrics[rows[j].metric] = number_or_null(rows[j].value);
        cells.push_back({{"u", unit_index.at(rows[i].unit)},
                         {"t", type_index.at(rows[i].type)},
                         {"m", std::move(metrics)}});
        i = j;
    }
    doc["cells"] = std::move(cells);

    doc["model"] = {{"name", std::filesystem::path(job.model).filename().string()},
                    {"path", job.model},
                    {"hash", job.model_hash},
                    {"n_layers", n_layers},
                    {"n_params", n_params}};

    nlohmann::json plans = nlohmann::json::array();
    doc["verify"] = nullptr;
    doc["calibration"] = nullptr;
    for (const std::string& name : store.artifact_names(job_id)) {
        const bool is_plan = name.rfind("plan:", 0) == 0;
        if (!is_plan && name != "verify" && name != "calibration") continue;
        const auto artifact = store.get_artifact(job_id, name);
        if (!artifact) continue;
        nlohmann::json value = parse_artifact(store, job_id, *artifact);
        if (is_plan) {
            QL_CHECK(value.is_object(), "{}: job {}: artifact '{}': expected a JSON object",
                     store.path(), job_id, name);
            value["name"] = name.substr(5);
            plans.push_back(std::move(value));
        } else {
            doc[name] = std::move(value);
        }
    }
    doc["calibration_source"] = nullptr;
    if (!doc["calibration"].is_null()) {
        doc["calibration_source"] = {{"job", job_id}, {"same_job", true}};
    } else if (job.kind != jobs::JobKind::calibrate && !job.model_hash.empty()) {
        // A sweep and the calibration of its model are usually separate jobs; the newest
        // finished one measured exactly these weights (same content hash).
        jobs::JobFilter filter;
        filter.kind = jobs::JobKind::calibrate;
        filter.state = jobs::JobState::done;
        filter.model_hash = job.model_hash;
        std::vector<jobs::Job> cals = store.list_jobs(filter);
        std::sort(cals.begin(), cals.end(), [](const jobs::Job& a, const jobs::Job& b) {
            return a.finished != b.finished ? a.finished > b.finished : a.id > b.id;
        });
        for (const jobs::Job& cal : cals) {
            const auto artifact = store.get_artifact(cal.id, "calibration");
            if (!artifact) continue;
            doc["calibration"] = parse_artifact(store, cal.id, *artifact);
            doc["calibration_source"] = {{"job", cal.id},
                                         {"same_job", false},
                                         {"model", cal.model},
                                         {"finished", cal.finished}};
            break;
        }
    }
    std::sort(plans.begin(), plans.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
        return a["name"].get<std::string>() < b["name"].get<std::string>();
    });
    doc["plans"] = std::move(plans);
    return doc;
}

}  // namespace quantlens::report
