#include "analysis/sweep/sweep_shard.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <nlohmann/json.hpp>

#include "analysis/sweep/sweep.h"
#include "core/error.h"

namespace quantlens {
namespace {

using json = nlohmann::json;

std::pair<std::string, std::string> key_of(const jobs::WorkItem& w) {
    return {w.unit, w.type};
}

bool parse_int(std::string_view s, int64_t& out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc() && end == s.data() + s.size() && !s.empty();
}

}  // namespace

ShardSpec parse_shard_spec(const std::string& text) {
    const size_t slash = text.find('/');
    ShardSpec s;
    const bool ok = slash != std::string::npos &&
                    parse_int(std::string_view(text).substr(0, slash), s.index) &&
                    parse_int(std::string_view(text).substr(slash + 1), s.count);
    QL_CHECK(ok && s.count >= 1 && s.index >= 0 && s.index < s.count,
             "--shard '{}': expected i/n with 0 <= i < n (e.g. 0/2 and 1/2)", text);
    return s;
}

std::optional<ShardSpec> shard_of_params(const std::string& params_json) {
    const json j = json::parse(params_json, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("shard")) return std::nullopt;
    const json& s = j.at("shard");
    QL_CHECK(s.is_object() && s.contains("index") && s.contains("count") &&
                 s["index"].is_number_integer() && s["count"].is_number_integer(),
             "job parameters: \"shard\" must be {{\"index\": i, \"count\": n}}, not {}", s.dump());
    ShardSpec spec{s.at("index").get<int64_t>(), s.at("count").get<int64_t>()};
    QL_CHECK(spec.count >= 1 && spec.index >= 0 && spec.index < spec.count,
             "job parameters: shard {}/{} is out of range", spec.index, spec.count);
    return spec;
}

std::string params_with_shard(const std::string& params_json, ShardSpec shard) {
    json j = json::parse(params_json);
    j["shard"] = {{"index", shard.index}, {"count", shard.count}};
    return j.dump();
}

std::vector<jobs::WorkItem> shard_items(const std::vector<jobs::WorkItem>& all,
                                        const std::vector<jobs::WorkItem>& pending,
                                        ShardSpec shard) {
    std::set<std::pair<std::string, std::string>> is_pending;
    for (const auto& w : pending) is_pending.insert(key_of(w));
    std::vector<jobs::WorkItem> mine;
    for (size_t i = static_cast<size_t>(shard.index); i < all.size();
         i += static_cast<size_t>(shard.count))
        if (is_pending.count(key_of(all[i]))) mine.push_back(all[i]);
    return mine;
}

std::vector<jobs::WorkItem> sweep_items_to_measure(jobs::Store& store, int64_t job_id,
                                                   const std::string& params_json) {
    std::vector<jobs::WorkItem> pending = store.pending_items(job_id);
    const auto shard = shard_of_params(params_json);
    if (!shard || shard->count == 1) return pending;
    return shard_items(store.work_items(job_id), pending, *shard);
}

int64_t create_sweep_shard_job(jobs::Store& store, const SweepOptions& options, ShardSpec shard,
                               const std::string& command_line) {
    QL_CHECK(options.budget_seconds <= 0,
             "sweep --shard: --budget orders the items by a proxy over all of them, which a "
             "shard does not see; run shards without --budget");
    int64_t id = 0;
    store.transaction([&] {
        id = create_sweep_job(store, options, command_line);
        store.set_params(id, params_with_shard(store.get_job(id).params, shard));
    });
    return id;
}

void put_reference_artifact(jobs::Store& store, int64_t job_id, const std::string& params_json,
                            const std::string& reference_json) {
    const auto shard = shard_of_params(params_json);
    if (!shard || shard->count == 1) {
        store.put_artifact(job_id, {"reference", true, reference_json});
        return;
    }
    json common = json::parse(reference_json);
    json timing = {{"seconds", common.value("seconds", 0.0)}};
    common.erase("seconds");
    store.transaction([&] {
        store.put_artifact(job_id, {"reference", true, common.dump()});
        store.put_artifact(job_id,
                           {fmt::format("reference.shard{}of{}", shard->index, shard->count), true,
                            timing.dump()});
    });
}

ItemScheduler::ItemScheduler(std::vector<jobs::WorkItem> items)
    : queue_(items.begin(), items.end()) {}

std::optional<jobs::WorkItem> ItemScheduler::assign(int worker) {
    QL_ASSERT(!in_flight_.count(worker) && !lost_.count(worker));
    if (queue_.empty()) return std::nullopt;
    jobs::WorkItem item = queue_.front();
    queue_.pop_front();
    in_flight_[worker] = item;
    return item;
}

bool ItemScheduler::complete(int worker, const jobs::WorkItem& item) {
    auto it = in_flight_.find(worker);
    if (it != in_flight_.end() && it->second == item) in_flight_.erase(it);
    if (!done_.insert(key_of(item)).second) return false;
    // A lost worker's late result: the re-queued copy need not be measured again.
    auto q = std::find(queue_.begin(), queue_.end(), item);
    if (q != queue_.end()) queue_.erase(q);
    return true;
}

std::optional<jobs::WorkItem> ItemScheduler::give_back(int worker) {
    auto it = in_flight_.find(worker);
    if (it == in_flight_.end()) return std::nullopt;
    jobs::WorkItem item = it->second;
    in_flight_.erase(it);
    if (!done_.count(key_of(item))) queue_.push_front(item);
    return item;
}

std::optional<jobs::WorkItem> ItemScheduler::lose(int worker) {
    lost_.insert(worker);
    return give_back(worker);
}

std::optional<jobs::WorkItem> ItemScheduler::in_flight(int worker) const {
    auto it = in_flight_.find(worker);
    if (it == in_flight_.end()) return std::nullopt;
    return it->second;
}

}  // namespace quantlens
