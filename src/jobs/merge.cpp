#include "jobs/merge.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <tuple>

#include "core/error.h"

namespace quantlens::jobs {
namespace {

using Key = std::tuple<std::string, std::string>;  // (unit, type)

// Everything read from one shard before anything is written, so a conflict found late
// leaves the output store untouched.
struct ShardData {
    std::string label;  // "PATH job ID", for messages
    Job job;
    std::vector<Unit> units;
    std::vector<WorkItem> items;
    std::vector<WorkItem> pending;
    std::vector<Measurement> measurements;
    std::vector<Artifact> artifacts;
};

ShardData read_shard(const ShardRef& ref) {
    // Opening would create an empty store: a mistyped shard path must not look like 0 items.
    QL_CHECK(std::filesystem::is_regular_file(ref.path), "{}: no such shard store", ref.path);
    Store store(ref.path);
    ShardData d;
    int64_t id = 0;
    if (ref.job) {
        id = *ref.job;
    } else {
        const auto jobs = store.list_jobs();
        QL_CHECK(jobs.size() == 1, "{}: holds {} jobs; name the shard's job as {}:ID", ref.path,
                 jobs.size(), ref.path);
        id = jobs[0].id;
    }
    d.job = store.get_job(id);
    d.label = fmt::format("{} job {}", ref.path, id);
    QL_CHECK(!(d.job.state == JobState::running && !d.job.interrupted),
             "{}: is still running (pid {}); merge it when it has finished or stopped", d.label,
             d.job.pid);
    d.units = store.units(id);
    d.items = store.work_items(id);
    d.pending = store.pending_items(id);
    d.measurements = store.measurements(id);
    for (const auto& name : store.artifact_names(id))
        d.artifacts.push_back(*store.get_artifact(id, name));
    return d;
}

// Parameters without the shard assignment, canonicalized (key order) for comparison.
std::string params_without_shard(const ShardData& d) {
    auto params = nlohmann::json::parse(d.job.params, nullptr, false);
    if (params.is_discarded() || !params.is_object()) return d.job.params;
    params.erase("shard");
    return params.dump();
}

void check_compatible(const ShardData& a, const ShardData& b) {
    QL_CHECK(a.job.kind == b.job.kind, "merge: {} is a {} job but {} is a {} job", b.label,
             kind_name(b.job.kind), a.label, kind_name(a.job.kind));
    QL_CHECK(a.job.model_hash == b.job.model_hash,
             "merge: {} measured another model than {} (model hash {} vs {})", b.label, a.label,
             b.job.model_hash, a.job.model_hash);
    QL_CHECK(a.job.text_hash == b.job.text_hash,
             "merge: {} used another text than {} (text hash {} vs {})", b.label, a.label,
             b.job.text_hash, a.job.text_hash);
    QL_CHECK(params_without_shard(a) == params_without_shard(b),
             "merge: {} was run with other parameters than {}: {} vs {}", b.label, a.label,
             params_without_shard(b), params_without_shard(a));
}

bool same_value(double a, double b) {
    return a == b || (std::isnan(a) && std::isnan(b));
}

}  // namespace

ShardRef parse_shard_ref(const std::string& arg) {
    const size_t colon = arg.rfind(':');
    if (colon != std::string::npos && colon + 1 < arg.size() && colon > 0 &&
        std::all_of(arg.begin() + static_cast<ptrdiff_t>(colon) + 1, arg.end(),
                    [](char c) { return c >= '0' && c <= '9'; })) {
        return {arg.substr(0, colon), std::stoll(arg.substr(colon + 1))};
    }
    return {arg, std::nullopt};
}

MergeResult merge_shards(Store& out, const std::vector<ShardRef>& refs) {
    QL_CHECK(!refs.empty(), "merge: no shard stores given");
    std::vector<ShardData> shards;
    for (const auto& ref : refs) {
        shards.push_back(read_shard(ref));
        check_compatible(shards.front(), shards.back());
    }

    // Union of units, items, measurements and artifacts with conflict checks.
    std::vector<Unit> units;
    std::map<std::string, std::pair<Unit, std::string>> unit_by_name;  // → (unit, from)
    std::vector<WorkItem> items;
    std::map<Key, bool> item_done;
    std::map<Key, Metrics> metrics;
    std::map<std::tuple<std::string, std::string, std::string>, std::pair<double, std::string>>
        seen;
    std::vector<Artifact> artifacts;
    std::map<std::string, std::pair<Artifact, std::string>> artifact_by_name;
    bool all_done = true;
    Job merged = shards.front().job;
    merged.elapsed = 0;
    for (const ShardData& d : shards) {
        all_done = all_done && d.job.state == JobState::done;
        merged.created = std::min(merged.created, d.job.created);
        if (d.job.started > 0)
            merged.started =
                merged.started > 0 ? std::min(merged.started, d.job.started) : d.job.started;
        merged.finished = std::max(merged.finished, d.job.finished);
        merged.updated = std::max(merged.updated, d.job.updated);
        merged.elapsed += d.job.elapsed;
        for (const Unit& u : d.units) {
            auto [it, fresh] = unit_by_name.try_emplace(u.name, u, d.label);
            QL_CHECK(fresh || it->second.first == u,
                     "merge: unit '{}' is defined differently in {} and {}", u.name,
                     it->second.second, d.label);
            if (fresh) units.push_back(u);
        }
        std::map<Key, bool> pending_here;
        for (const WorkItem& w : d.pending) pending_here[{w.unit, w.type}] = true;
        for (const WorkItem& w : d.items) {
            const Key key{w.unit, w.type};
            auto [it, fresh] = item_done.try_emplace(key, false);
            if (fresh) items.push_back(w);
            if (!pending_here.count(key)) it->second = true;
        }
        for (const Measurement& m : d.measurements) {
            auto [it, fresh] = seen.try_emplace({m.unit, m.type, m.metric}, m.value, d.label);
            QL_CHECK(fresh || same_value(it->second.first, m.value),
                     "merge: {} / {} / {} is {} in {} but {} in {}", m.unit, m.type, m.metric,
                     it->second.first, it->second.second, m.value, d.label);
            metrics[{m.unit, m.type}][m.metric] = m.value;
            // Measurements of an item that was recorded without being added are done too.
            auto [item_it, item_fresh] = item_done.try_emplace(Key{m.unit, m.type}, true);
            if (item_fresh) items.push_back({m.unit, m.type});
        }
        for (const Artifact& a : d.artifacts) {
            auto [it, fresh] = artifact_by_name.try_emplace(a.name, a, d.label);
            QL_CHECK(
                fresh || (it->second.first.data == a.data && it->second.first.is_json == a.is_json),
                "merge: artifact '{}' differs between {} and {}", a.name, it->second.second,
                d.label);
            if (fresh) artifacts.push_back(a);
        }
    }

    MergeResult result;
    for (const auto& [key, done] : item_done) (done ? result.items_done : result.items_pending)++;
    result.measurements = static_cast<int64_t>(seen.size());
    // Done when nothing remains to measure (shards usually stop with the others' items pending);
    // a job without items is done when every shard says so.
    const bool complete = items.empty() ? all_done : result.items_pending == 0;
    result.state = complete ? JobState::done : JobState::paused;

    auto params = nlohmann::json::parse(merged.params, nullptr, false);
    if (!params.is_discarded() && params.is_object()) {
        params.erase("shard");
        merged.params = params.dump();
    }
    merged.state = result.state;
    merged.command.clear();
    merged.error.clear();
    merged.progress_total = static_cast<int64_t>(items.size());
    merged.progress_done = 0;  // record_item counts the done items below
    merged.message =
        fmt::format("merged from {} shard{}", shards.size(), shards.size() == 1 ? "" : "s");
    merged.finished = !complete ? 0 : merged.finished > 0 ? merged.finished : merged.updated;

    out.transaction([&] {
        result.job_id = out.import_job(merged);
        out.add_units(result.job_id, units);
        out.add_work_items(result.job_id, items);
        for (const WorkItem& w : items) {
            const Key key{w.unit, w.type};
            if (!item_done[key]) continue;
            auto it = metrics.find(key);
            out.record_item(result.job_id, w.unit, w.type,
                            it == metrics.end() ? Metrics{} : it->second);
        }
        for (const Artifact& a : artifacts) out.put_artifact(result.job_id, a);
    });
    return result;
}

}  // namespace quantlens::jobs
