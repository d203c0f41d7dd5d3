// Mixes of a sweep's units, each at its own item, measured on the sweep's own text and stored in
// the sweep job (artifact "interactions", the name `plan --interactions` gave it first), so that
// whatever measures mixes (`plan --interactions`, `plan --refine`) measures each mix once.
//
// A mix is a sorted list of (unit, item); it is measured by SweepMeasurer::measure_mix (the
// sweep's own item code: same reference pass, imatrix, numerics, rounding, GPTQ format) over the
// first n_tokens of the sweep's text, and keyed by (n_tokens, mix). Each result is stored as it
// comes, so an interruption loses one mix. The model and the text are checked against the
// job's before any measurement.
#pragma once

#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "analysis/plan/plan_job.h"
#include "analysis/sweep/sweep.h"

namespace quantlens {

namespace jobs {
class Store;
}

using Mix = UnitItems;  // (sweep unit, item)

struct MixResult {
    double kld_mean = 0, kld_p99 = std::nan(""), kld_p999 = std::nan("");
};

inline constexpr const char* kInteractionsArtifact = "interactions";

// Measured mixes keyed by (n_tokens, sorted mix).
using StoredMixes = std::map<std::pair<int64_t, Mix>, MixResult>;
// The artifact's JSON text as MixBook writes it ({"mixes": [{n_tokens, items, kld_mean, kld_p99,
// kld_p999}]}); anything else (not JSON, a missing or mistyped key, a KLD that is negative or
// not finite, n_tokens < 1) is refused with an Error saying what.
StoredMixes parse_stored_mixes(const std::string& json_text);
std::string stored_mixes_json(const StoredMixes& mixes);

class MixBook {
  public:
    // Refuses a job that is not a sweep job, and a stored artifact it cannot read, by name.
    MixBook(jobs::Store& store, int64_t job_id);
    ~MixBook();
    MixBook(const MixBook&) = delete;
    MixBook& operator=(const MixBook&) = delete;

    const SweepOptions& options() const { return options_; }
    int64_t sweep_tokens() const { return options_.n_tokens; }

    bool has(int64_t n_tokens, const Mix& mix) const;
    // Measures those of `mixes` not yet known over the first n_tokens of the sweep's text (one
    // reference pass per token count, kept for later calls), with a progress bar named `what`.
    void measure(int64_t n_tokens, const std::vector<Mix>& mixes, const std::string& what);
    // A known mix; refuses an unknown one.
    const MixResult& at(int64_t n_tokens, const Mix& mix) const;

    int64_t measured() const { return measured_; }  // by this book
    double seconds() const { return seconds_; }     // measuring, reference passes included

  private:
    jobs::Store& store_;
    int64_t job_id_;
    SweepOptions options_;
    StoredMixes mixes_;
    std::map<int64_t, std::unique_ptr<SweepMeasurer>> measurers_;
    int64_t measured_ = 0;
    double seconds_ = 0;
    void save() const;
};

Mix sorted_mix(Mix mix);

}  // namespace quantlens
