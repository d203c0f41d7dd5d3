// `plan --interactions N`: see interactions.h.
#include "analysis/studies/interactions.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include <fmt/format.h>

#include "analysis/plan/plan_job.h"
#include "analysis/sweep/sweep.h"
#include "core/error.h"
#include "core/progress.h"
#include "jobs/metric_names.h"
#include "jobs/store.h"

namespace quantlens {
namespace {

using json = nlohmann::json;
using Mix = std::vector<std::pair<std::string, std::string>>;  // (unit, item), sorted

struct MixResult {
    double kld_mean = 0, kld_p99 = std::nan(""), kld_p999 = std::nan("");
};

// A measured mix: the tokens it was measured on (the first n_tokens of the sweep's text) and
// its sorted items.
using MixKey = std::pair<int64_t, Mix>;

Mix sorted_mix(Mix mix) {
    std::sort(mix.begin(), mix.end());
    return mix;
}

std::map<MixKey, MixResult> stored_mixes(jobs::Store& store, int64_t job_id) {
    std::map<MixKey, MixResult> out;
    const auto art = store.get_artifact(job_id, kInteractionsArtifact);
    if (!art) return out;
    try {
        const json j = json::parse(art->data);
        for (const auto& e : j.at("mixes")) {
            MixResult r;
            r.kld_mean = e.at(metric::kld_mean).get<double>();
            if (e.contains(metric::kld_p99) && e.at(metric::kld_p99).is_number())
                r.kld_p99 = e.at(metric::kld_p99).get<double>();
            if (e.contains(metric::kld_p999) && e.at(metric::kld_p999).is_number())
                r.kld_p999 = e.at(metric::kld_p999).get<double>();
            const auto n_tokens = e.at("n_tokens").get<int64_t>();
            QL_CHECK(std::isfinite(r.kld_mean) && r.kld_mean >= 0 && n_tokens > 0,
                     "a mix with KLD {} over {} tokens", r.kld_mean, n_tokens);
            out[{n_tokens, sorted_mix(e.at("items").get<Mix>())}] = r;
        }
    } catch (const std::exception& e) {  // nlohmann's errors and the check above
        fail("job {}: its '{}' artifact is not what plan --interactions writes ({})", job_id,
             kInteractionsArtifact, e.what());
    }
    return out;
}

void store_mixes(jobs::Store& store, int64_t job_id, const std::map<MixKey, MixResult>& mixes) {
    json list = json::array();
    const auto number = [](double v) { return std::isfinite(v) ? json(v) : json(nullptr); };
    for (const auto& [key, r] : mixes)
        list.push_back({{"n_tokens", key.first},
                        {"items", key.second},
                        {metric::kld_mean, r.kld_mean},
                        {metric::kld_p99, number(r.kld_p99)},
                        {metric::kld_p999, number(r.kld_p999)}});
    store.put_artifact(job_id, {kInteractionsArtifact, true, json{{"mixes", list}}.dump()});
}

// Measures the `missing` mixes over the first n_tokens of the sweep's text (its options
// otherwise), storing each as it comes.
void measure_mixes(jobs::Store& store, int64_t job_id, SweepOptions options, int64_t n_tokens,
                   const std::set<Mix>& missing, std::map<MixKey, MixResult>& mixes) {
    if (missing.empty()) return;
    options.n_tokens = n_tokens;
    SweepMeasurer measurer(options);
    store.check_inputs(job_id, measurer.model_hash(), measurer.text_hash());
    measurer.prepare();
    Progress progress(fmt::format("interactions of job {} ({} tokens)", job_id, n_tokens),
                      static_cast<int64_t>(missing.size()), "mixes");
    for (const Mix& mix : missing) {
        const auto r = measurer.measure_mix(mix);
        QL_CHECK(r.count(metric::kld_mean),
                 "interactions: a mix of {} units changed no weight (nothing to measure)",
                 mix.size());
        MixResult x;
        x.kld_mean = r.at(metric::kld_mean);
        if (r.count(metric::kld_p99)) x.kld_p99 = r.at(metric::kld_p99);
        if (r.count(metric::kld_p999)) x.kld_p999 = r.at(metric::kld_p999);
        mixes[{n_tokens, mix}] = x;
        store_mixes(store, job_id, mixes);  // kept as measured: an interruption loses one
        progress.advance();
    }
    progress.finish();
}

}  // namespace

InteractionStudy study_interactions(jobs::Store& store, int64_t job_id, const Mix& chosen,
                                    int n_pairs, int64_t mix_tokens) {
    const jobs::Job job = store.get_job(job_id);
    QL_CHECK(job.kind == jobs::JobKind::sweep, "job {} is a {} job; interactions need a sweep job",
             job_id, jobs::kind_name(job.kind));
    const json params = json::parse(job.params);
    QL_CHECK(!params.contains("gptq_formats") && params.value("granularity", "") != "placement",
             "interactions: job {} is a GPTQ-format or placement sweep; pairs are measured at ggml "
             "types of tensor, layer or class units",
             job_id);
    QL_CHECK(!chosen.empty(), "interactions: the plan chose no units");

    InteractionStudy s;
    const SweepMeasurements m = sweep_measurements(store, job_id);
    std::map<std::string, int64_t> layer_of;
    for (const auto& u : store.units(job_id)) layer_of[u.name] = u.layer;
    for (const auto& [unit, item] : chosen) {
        const auto u = m.find(unit);
        const std::map<std::string, double>* metrics = nullptr;
        if (u != m.end())
            if (const auto t = u->second.find(item); t != u->second.end()) metrics = &t->second;
        QL_CHECK(metrics && metrics->count(metric::kld_mean),
                 "interactions: job {} has no {} for unit '{}' at {} (not measured, e.g. a sweep "
                 "--budget that ran out); the pair model needs every chosen unit's ΔKLD",
                 job_id, metric::kld_mean, unit, item);
        QL_CHECK(layer_of.count(unit), "interactions: job {} has no unit '{}'", job_id, unit);
        s.units.push_back({unit, layer_of.at(unit), metrics->at(metric::kld_mean)});
    }

    const std::vector<PairPick> picks = sample_pairs(s.units, n_pairs);
    std::vector<Mix> wanted;
    for (const PairPick& p : picks) wanted.push_back(sorted_mix({chosen[p.a], chosen[p.b]}));
    const Mix whole = sorted_mix(chosen);
    wanted.push_back(whole);

    const SweepOptions options = SweepOptions::from_json(params);
    const int64_t sweep_tokens = options.n_tokens;
    QL_CHECK(mix_tokens >= 0, "interactions: {} tokens for the mix", mix_tokens);
    s.mix_tokens = mix_tokens > 0 ? mix_tokens : sweep_tokens;
    std::map<MixKey, MixResult> mixes = stored_mixes(store, job_id);
    std::set<Mix> missing, missing_long;
    for (const Mix& mix : wanted)
        if (mixes.count({sweep_tokens, mix}))
            ++s.reused;
        else
            missing.insert(mix);
    if (s.mix_tokens != sweep_tokens) {
        if (mixes.count({s.mix_tokens, whole}))
            ++s.reused;
        else
            missing_long.insert(whole);
    }
    s.measured = static_cast<int64_t>(missing.size() + missing_long.size());
    const auto t0 = std::chrono::steady_clock::now();
    measure_mixes(store, job_id, options, sweep_tokens, missing, mixes);
    measure_mixes(store, job_id, options, s.mix_tokens, missing_long, mixes);
    s.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    for (size_t i = 0; i < picks.size(); ++i)
        s.pairs.push_back({picks[i], mixes.at({sweep_tokens, wanted[i]}).kld_mean});
    s.fit = fit_interactions(s.units, s.pairs);
    s.mix_kld = mixes.at({sweep_tokens, whole}).kld_mean;
    const MixResult& w = mixes.at({s.mix_tokens, whole});
    s.predicted_kld = w.kld_mean;
    s.predicted_kld_p99 = w.kld_p99;
    s.predicted_kld_p999 = w.kld_p999;
    return s;
}

}  // namespace quantlens
