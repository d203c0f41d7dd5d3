// Merging shard jobs into one job: `quantlens sweep --shard i/n` writes each shard's items into
// its own store (or its own job); merge_shards() combines them into a single job whose units,
// items, measurements and artifacts are exactly those of a sweep run in one piece — the result
// does not depend on how the work was split.
//
// Rules: the shard jobs must agree on kind, model hash, text hash and parameters (a "shard"
// key in the parameters is ignored and dropped); an item done in any shard is done; the same
// measurement present in two shards must have the same value, the same artifact the same
// bytes, the same unit the same definition — anything else is an Error naming both shards.
// The merged job is done when no item is left pending (a job without items: when every shard
// is done), else paused — and resumable: its pending items are what remains.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "jobs/store.h"

namespace quantlens::jobs {

struct ShardRef {
    std::string path;
    std::optional<int64_t> job;  // required when the store holds more than one job
};

// "PATH" or "PATH:ID" (the suffix is taken as a job id only when it is all digits).
ShardRef parse_shard_ref(const std::string& arg);

struct MergeResult {
    int64_t job_id = 0;
    int64_t items_done = 0, items_pending = 0, measurements = 0;
    JobState state = JobState::paused;
};

MergeResult merge_shards(Store& out, const std::vector<ShardRef>& shards);

}  // namespace quantlens::jobs
