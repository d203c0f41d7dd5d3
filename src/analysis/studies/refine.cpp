// `plan --refine N` measured: see refine.h.
#include "analysis/studies/refine.h"

#include "core/error.h"
#include "jobs/store.h"

namespace quantlens {

RefineOutcome refine_plan(jobs::Store& store, int64_t job_id, const PlanSpace& space, int rounds,
                          int64_t n_tokens) {
    const PlanProblem& problem = space.problem;
    QL_CHECK(space.parts.size() == problem.units.size() && !problem.units.empty(),
             "refine: {} option lists for {} units", space.parts.size(), problem.units.size());
    for (size_t u = 0; u < space.parts.size(); ++u)
        QL_CHECK(space.parts[u].size() == problem.units[u].options.size(),
                 "refine: unit '{}' has {} options but {} item lists", problem.units[u].name,
                 problem.units[u].options.size(), space.parts[u].size());
    MixBook book(store, job_id);
    QL_CHECK(n_tokens >= 0, "plan --refine-tokens {}: give a number of tokens", n_tokens);
    const int64_t tokens = n_tokens > 0 ? n_tokens : book.sweep_tokens();
    RefineOutcome out;
    out.tokens = tokens;
    const auto mix_of = [&](const std::vector<size_t>& x) {
        Mix m;
        for (size_t u = 0; u < x.size(); ++u)
            m.insert(m.end(), space.parts[u][x[u]].begin(), space.parts[u][x[u]].end());
        return sorted_mix(std::move(m));
    };
    const MeasureChoices measure = [&](const std::vector<std::vector<size_t>>& xs,
                                       const char* what) {
        std::vector<Mix> mixes;
        for (const auto& x : xs) {
            mixes.push_back(mix_of(x));
            out.reused += book.has(tokens, mixes.back());
        }
        book.measure(tokens, mixes, std::string("refine: ") + what);
        std::vector<double> kld;
        for (const Mix& m : mixes) kld.push_back(book.at(tokens, m).kld_mean);
        return kld;
    };
    out.search = refine_choice(problem, space.choice, space.budget, rounds, measure);
    out.result = book.at(tokens, mix_of(out.search.choice));
    out.measured = book.measured();
    out.seconds = book.seconds();
    return out;
}

}  // namespace quantlens
