// Measured mixes of a sweep's units: see mixes.h.
#include "analysis/studies/mixes.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>

#include <fmt/format.h>

#include "core/error.h"
#include "core/progress.h"
#include "jobs/metric_names.h"
#include "jobs/store.h"

namespace quantlens {

using json = nlohmann::json;

Mix sorted_mix(Mix mix) {
    std::sort(mix.begin(), mix.end());
    return mix;
}

StoredMixes parse_stored_mixes(const std::string& json_text) {
    StoredMixes out;
    try {
        const json j = json::parse(json_text);
        for (const auto& e : j.at("mixes")) {
            MixResult r;
            r.kld_mean = e.at(metric::kld_mean).get<double>();
            if (e.contains(metric::kld_p99) && e.at(metric::kld_p99).is_number())
                r.kld_p99 = e.at(metric::kld_p99).get<double>();
            if (e.contains(metric::kld_p999) && e.at(metric::kld_p999).is_number())
                r.kld_p999 = e.at(metric::kld_p999).get<double>();
            QL_CHECK(e.at("n_tokens").is_number_integer(), "a mix over {} tokens",
                     e.at("n_tokens").dump());
            const auto n_tokens = e.at("n_tokens").get<int64_t>();
            QL_CHECK(std::isfinite(r.kld_mean) && r.kld_mean >= 0 && n_tokens > 0,
                     "a mix with KLD {} over {} tokens", r.kld_mean, n_tokens);
            out[{n_tokens, sorted_mix(e.at("items").get<Mix>())}] = r;
        }
    } catch (const nlohmann::json::exception& e) {
        fail("{}", e.what());
    }
    return out;
}

std::string stored_mixes_json(const StoredMixes& mixes) {
    json list = json::array();
    const auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    for (const auto& [key, r] : mixes)
        list.push_back({{"n_tokens", key.first},
                        {"items", key.second},
                        {metric::kld_mean, r.kld_mean},
                        {metric::kld_p99, number(r.kld_p99)},
                        {metric::kld_p999, number(r.kld_p999)}});
    return json{{"mixes", list}}.dump();
}

MixBook::MixBook(jobs::Store& store, int64_t job_id) : store_(store), job_id_(job_id) {
    const jobs::Job job = store.get_job(job_id);
    QL_CHECK(job.kind == jobs::JobKind::sweep,
             "job {} is a {} job; mixes are measured by sweep jobs", job_id,
             jobs::kind_name(job.kind));
    options_ = SweepOptions::from_json(json::parse(job.params));
    const auto art = store.get_artifact(job_id, kInteractionsArtifact);
    if (!art) return;
    try {
        mixes_ = parse_stored_mixes(art->data);
    } catch (const Error& e) {
        fail("job {}: its '{}' artifact is not what plan --interactions and --refine write ({})",
             job_id, kInteractionsArtifact, e.what());
    }
}

MixBook::~MixBook() = default;

void MixBook::save() const {
    store_.put_artifact(job_id_, {kInteractionsArtifact, true, stored_mixes_json(mixes_)});
}

bool MixBook::has(int64_t n_tokens, const Mix& mix) const {
    return mixes_.count({n_tokens, sorted_mix(mix)}) > 0;
}

const MixResult& MixBook::at(int64_t n_tokens, const Mix& mix) const {
    const auto it = mixes_.find({n_tokens, sorted_mix(mix)});
    QL_CHECK(it != mixes_.end(), "job {}: a mix of {} units over {} tokens was not measured",
             job_id_, mix.size(), n_tokens);
    return it->second;
}

void MixBook::measure(int64_t n_tokens, const std::vector<Mix>& mixes, const std::string& what) {
    std::vector<Mix> missing;
    for (const Mix& m : mixes) {
        Mix s = sorted_mix(m);
        if (!mixes_.count({n_tokens, s}) &&
            std::find(missing.begin(), missing.end(), s) == missing.end())
            missing.push_back(std::move(s));
    }
    if (missing.empty()) return;
    const auto t0 = std::chrono::steady_clock::now();
    auto& measurer = measurers_[n_tokens];
    if (!measurer) {
        SweepOptions o = options_;
        o.n_tokens = n_tokens;
        measurer = std::make_unique<SweepMeasurer>(o);
        store_.check_inputs(job_id_, measurer->model_hash(), measurer->text_hash());
        measurer->prepare();
    }
    Progress progress(fmt::format("{} of job {} ({} tokens)", what, job_id_, n_tokens),
                      static_cast<int64_t>(missing.size()), "mixes");
    for (const Mix& mix : missing) {
        const auto r = measurer->measure_mix(mix);
        QL_CHECK(r.count(metric::kld_mean),
                 "{}: a mix of {} units changed no weight (nothing to measure)", what, mix.size());
        MixResult x;
        x.kld_mean = r.at(metric::kld_mean);
        if (r.count(metric::kld_p99)) x.kld_p99 = r.at(metric::kld_p99);
        if (r.count(metric::kld_p999)) x.kld_p999 = r.at(metric::kld_p999);
        mixes_[{n_tokens, mix}] = x;
        ++measured_;
        save();  // kept as measured: an interruption loses one
        progress.advance();
    }
    progress.finish();
    seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace quantlens
