#include "server/activity.h"

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>

namespace quantlens::server {

std::optional<PullProgress> last_pull_progress(const std::string& log_text,
                                               const std::string& repo) {
    // core/progress.cpp's line with a total: "LABEL [BAR] PPP% DONE/TOTAL UNIT | ...".
    static const std::regex line(R"(^pull (\S+) \[[#.]*\] +\d+% (\d{1,18})/(\d{1,18}) (\S+) \|)");
    std::optional<PullProgress> last;
    size_t start = 0;
    while (start < log_text.size()) {
        size_t end = log_text.find('\n', start);
        if (end == std::string::npos) end = log_text.size();
        std::smatch m;
        const std::string text = log_text.substr(start, end - start);
        if (std::regex_search(text, m, line) && m[1] == repo) {
            PullProgress p;
            p.done = std::stoll(m[2]);
            p.total = std::stoll(m[3]);
            p.unit = m[4];
            last = p;
        }
        start = end + 1;
    }
    return last;
}

namespace {

nlohmann::json number_or_null(const nlohmann::json& row, const char* key) {
    if (!row.contains(key) || !row[key].is_number()) return nullptr;
    if (row[key].is_number_integer()) return row[key];
    const double v = row[key].get<double>();
    return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr);
}

}  // namespace

nlohmann::json verified_recipes_json(const jobs::Store& store) {
    nlohmann::json out = nlohmann::json::array();
    std::vector<jobs::Job> list = store.list_jobs();
    std::sort(list.begin(), list.end(),
              [](const jobs::Job& a, const jobs::Job& b) { return a.id > b.id; });
    for (const jobs::Job& job : list) {
        const auto artifact = store.get_artifact(job.id, "verify");
        if (!artifact || !artifact->is_json) continue;
        const nlohmann::json doc = nlohmann::json::parse(artifact->data, nullptr, false);
        if (!doc.is_object() || !doc.contains("rows") || !doc["rows"].is_array()) continue;
        // Recipes are the candidates the held-out check lists (presets are llama.cpp's own).
        std::set<std::string> recipes;
        std::string text;
        if (doc.contains("held_out") && doc["held_out"].is_object()) {
            const auto& h = doc["held_out"];
            if (h.contains("tuned") && h["tuned"].is_array())
                for (const auto& t : h["tuned"])
                    if (t.is_object() && t.contains("name") && t["name"].is_string())
                        recipes.insert(t["name"].get<std::string>());
            if (h.contains("verified_text") && h["verified_text"].is_string())
                text = h["verified_text"];
        }
        for (const auto& row : doc["rows"]) {
            if (!row.is_object() || !row.contains("name") || !row["name"].is_string() ||
                !recipes.count(row["name"].get<std::string>()))
                continue;
            out.push_back({{"job", job.id},
                           {"model", job.model},
                           {"name", row["name"]},
                           {"path", row.value("path", std::string())},
                           {"size_bytes", number_or_null(row, "size_bytes")},
                           {"bpw", number_or_null(row, "bpw")},
                           {"ppl", number_or_null(row, "ppl")},
                           {"kld_mean", number_or_null(row, "kld_mean")},
                           {"kld_p99", number_or_null(row, "kld_p99")},
                           {"kld_p999", number_or_null(row, "kld_p999")},
                           {"kld_max", number_or_null(row, "kld_max")},
                           {"top1", number_or_null(row, "top1")},
                           {"predicted_kld", number_or_null(row, "predicted_kld")},
                           {"verified_text", text},
                           {"n_tokens", number_or_null(doc, "n_tokens")}});
        }
    }
    return {{"recipes", out}};
}

}  // namespace quantlens::server
