// Splitting one sweep over several processes or hosts.
//
// Scheduler-free shards (`quantlens sweep --shard i/n`): every shard process creates the same
// job (same units, same items in the same canonical order) in its own store, with
// "shard": {"index": i, "count": n} in the parameters, and measures only the items whose index
// in that order is ≡ i (mod n). `quantlens jobs merge OUT SHARD...` (jobs/merge.h, which drops
// the "shard" key) then combines the shard stores into one job whose measurements are those of
// a single-process sweep: an item's numbers do not depend on which process measured it, nor
// on what that process measured before (see SweepMeasurer in analysis/sweep/sweep.h).
//
// Dynamic scheduling (MPI, analysis/mpi): ItemScheduler hands items out one at a time to
// whichever worker asks, and puts the in-flight item of a worker that is lost back in front
// of the queue, so a dead worker costs one item's work.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "jobs/store.h"

namespace quantlens {

struct SweepOptions;

struct ShardSpec {
    int64_t index = 0, count = 1;
    bool operator==(const ShardSpec&) const = default;
};

// "i/n" with 0 ≤ i < n (e.g. "0/2"); throws Error naming the text otherwise.
ShardSpec parse_shard_spec(const std::string& text);
// The shard a job's parameters (JSON text) assign, if any.
std::optional<ShardSpec> shard_of_params(const std::string& params_json);
// The parameters with "shard" set.
std::string params_with_shard(const std::string& params_json, ShardSpec shard);

// The members of `pending` whose index in `all` (the job's canonical item order) is
// ≡ shard.index (mod shard.count), in the order of `all`.
std::vector<jobs::WorkItem> shard_items(const std::vector<jobs::WorkItem>& all,
                                        const std::vector<jobs::WorkItem>& pending,
                                        ShardSpec shard);
// What run_sweep measures: every pending item, or this shard's share for a sharded job.
std::vector<jobs::WorkItem> sweep_items_to_measure(jobs::Store& store, int64_t job_id,
                                                   const std::string& params_json);

// Creates the sweep job of one shard (create_sweep_job plus the "shard" parameter, in one
// transaction); returns its id.
int64_t create_sweep_shard_job(jobs::Store& store, const SweepOptions& options, ShardSpec shard,
                               const std::string& command_line);

// Stores the reference pass's artifact (JSON text from SweepMeasurer::prepare). Its
// "seconds" differ from process to process, so a sharded job keeps them in
// "reference.shard<i>of<n>" and "reference" holds only what every shard agrees on (which
// jobs merge requires to be identical).
void put_reference_artifact(jobs::Store& store, int64_t job_id, const std::string& params_json,
                            const std::string& reference_json);

// Dynamic hand-out of work items to workers identified by an int (MPI ranks). Not
// thread-safe: one dispatcher owns it.
class ItemScheduler {
  public:
    explicit ItemScheduler(std::vector<jobs::WorkItem> items);

    // The next queued item, now in flight at `worker`; nullopt when nothing is queued.
    // A worker holds at most one item.
    std::optional<jobs::WorkItem> assign(int worker);
    // A result for `item` arrived from `worker`. Returns true when the item was not done
    // yet (record it), false for a duplicate (a worker that was declared lost and still
    // finished, after the item had been measured again elsewhere).
    bool complete(int worker, const jobs::WorkItem& item);
    // `worker` is gone: its in-flight item (returned) goes back to the front of the queue.
    std::optional<jobs::WorkItem> lose(int worker);
    // Puts `worker`'s in-flight item back without marking the worker lost (a stop request).
    std::optional<jobs::WorkItem> give_back(int worker);

    bool is_lost(int worker) const { return lost_.count(worker) != 0; }
    std::optional<jobs::WorkItem> in_flight(int worker) const;
    size_t queued() const { return queue_.size(); }
    size_t n_in_flight() const { return in_flight_.size(); }
    size_t n_done() const { return done_.size(); }
    // Nothing queued and nothing in flight.
    bool finished() const { return queue_.empty() && in_flight_.empty(); }

  private:
    using Key = std::pair<std::string, std::string>;
    std::deque<jobs::WorkItem> queue_;
    std::map<int, jobs::WorkItem> in_flight_;
    std::set<Key> done_;
    std::set<int> lost_;
};

}  // namespace quantlens
