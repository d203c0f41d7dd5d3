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
#include "analysis/studies/mixes.h"
#include "core/error.h"
#include "jobs/metric_names.h"
#include "jobs/store.h"

namespace quantlens {

using json = nlohmann::json;

InteractionStudy study_interactions(jobs::Store& store, int64_t job_id, const Mix& chosen,
                                    int n_pairs, int64_t mix_tokens) {
    const jobs::Job job = store.get_job(job_id);
    QL_CHECK(job.kind == jobs::JobKind::sweep, "job {} is a {} job; interactions need a sweep job",
             job_id, jobs::kind_name(job.kind));
    const json params = json::parse(job.params);
    QL_CHECK(params.value("granularity", "") != "placement",
             "interactions: job {} is a placement sweep; pairs are measured of tensor, layer or "
             "class units",
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

    MixBook book(store, job_id);
    const int64_t sweep_tokens = book.sweep_tokens();
    QL_CHECK(mix_tokens >= 0, "interactions: {} tokens for the mix", mix_tokens);
    s.mix_tokens = mix_tokens > 0 ? mix_tokens : sweep_tokens;
    std::set<Mix> distinct(wanted.begin(), wanted.end());
    for (const Mix& mix : distinct) s.reused += book.has(sweep_tokens, mix);
    if (s.mix_tokens != sweep_tokens) s.reused += book.has(s.mix_tokens, whole);
    book.measure(sweep_tokens, wanted, "interactions");
    if (s.mix_tokens != sweep_tokens) book.measure(s.mix_tokens, {whole}, "interactions");
    s.measured = book.measured();
    s.seconds = book.seconds();

    for (size_t i = 0; i < picks.size(); ++i)
        s.pairs.push_back({picks[i], book.at(sweep_tokens, wanted[i]).kld_mean});
    s.fit = fit_interactions(s.units, s.pairs);
    s.mix_kld = book.at(sweep_tokens, whole).kld_mean;
    const MixResult& w = book.at(s.mix_tokens, whole);
    s.predicted_kld = w.kld_mean;
    s.predicted_kld_p99 = w.kld_p99;
    s.predicted_kld_p999 = w.kld_p999;
    return s;
}

}  // namespace quantlens
