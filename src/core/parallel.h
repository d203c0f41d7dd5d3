// A persistent thread pool and parallel_for over index ranges. CPU paths (quantizers,
// engine kernels, metrics) call parallel_for; nested calls from a worker run inline, so
// callers never deadlock and never oversubscribe. Thread count: QUANTLENS_THREADS or
// the hardware concurrency; set_num_threads() overrides it (e.g. --threads).
#pragma once

#include <cstddef>
#include <functional>

namespace quantlens {

int num_threads();
void set_num_threads(int n);

// Calls body(begin, end) on disjoint chunks covering [0, n). Chunks are at least
// min_chunk long. Exceptions thrown by body are rethrown in the caller (the first one).
void parallel_for(size_t n, const std::function<void(size_t begin, size_t end)>& body,
                  size_t min_chunk = 1);

}  // namespace quantlens
