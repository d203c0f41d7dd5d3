#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace quantlens {
namespace {

thread_local bool tls_in_worker = false;

int default_threads() {
    if (const char* env = std::getenv("QUANTLENS_THREADS")) {
        int n = std::atoi(env);
        if (n > 0) return n;
    }
    unsigned hc = std::thread::hardware_concurrency();
    return hc ? static_cast<int>(hc) : 1;
}

std::atomic<int> g_threads{0};

// Workers sleep on a condition variable. Each job has its own chunk counter and count of chunks
// left, held by every thread working on it: a worker still inside a finished job claims from that
// job's exhausted counter, never from the next job's (a shared counter let it run a chunk of the
// next job twice and leave that job's count one short, which hung its caller).
class Pool {
  public:
    explicit Pool(int n) {
        for (int i = 0; i < n; ++i) workers_.emplace_back([this] { loop(); });
    }
    ~Pool() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        cv_.notify_all();
        for (auto& t : workers_) t.join();
    }
    size_t size() const { return workers_.size(); }

    void run(size_t n_chunks, const std::function<void(size_t)>& chunk) {
        std::unique_lock<std::mutex> run_lock(run_mutex_);  // one job at a time
        auto job = std::make_shared<Job>(chunk, n_chunks);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            current_ = job;
            ++generation_;
        }
        cv_.notify_all();
        work(*job);
        std::unique_lock<std::mutex> lock(mutex_);
        done_cv_.wait(lock, [&] { return job->pending == 0; });
        current_.reset();
        if (job->error) std::rethrow_exception(job->error);
    }

  private:
    struct Job {
        Job(const std::function<void(size_t)>& f, size_t n) : chunk(f), n_chunks(n), pending(n) {}
        const std::function<void(size_t)>& chunk;  // valid while a chunk is unclaimed
        const size_t n_chunks;
        std::atomic<size_t> next{0};
        size_t pending;            // chunks not finished; guarded by mutex_
        std::exception_ptr error;  // the first one; guarded by mutex_
    };

    void work(Job& job) {
        for (;;) {
            const size_t i = job.next.fetch_add(1);
            if (i >= job.n_chunks) return;
            std::exception_ptr error;
            try {
                job.chunk(i);
            } catch (...) {
                error = std::current_exception();
            }
            std::lock_guard<std::mutex> lock(mutex_);
            if (error && !job.error) job.error = error;
            if (--job.pending == 0) done_cv_.notify_all();
        }
    }
    void loop() {
        tls_in_worker = true;
        size_t seen = 0;
        for (;;) {
            std::shared_ptr<Job> job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                cv_.wait(lock, [&] { return stop_ || (current_ && generation_ != seen); });
                if (stop_) return;
                job = current_;
                seen = generation_;
            }
            work(*job);
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_, run_mutex_;
    std::condition_variable cv_, done_cv_;
    std::shared_ptr<Job> current_;  // guarded by mutex_
    size_t generation_ = 0;         // jobs started; guarded by mutex_
    bool stop_ = false;
};

std::mutex g_pool_mutex;
Pool* g_pool = nullptr;  // leaked on purpose: workers must outlive static destructors

Pool& pool_for(int threads) {
    std::lock_guard<std::mutex> lock(g_pool_mutex);
    if (!g_pool || static_cast<int>(g_pool->size()) != threads - 1) {
        delete g_pool;
        g_pool = new Pool(threads - 1);
    }
    return *g_pool;
}

}  // namespace

int num_threads() {
    int n = g_threads.load();
    if (n <= 0) {
        n = default_threads();
        g_threads.store(n);
    }
    return n;
}

void set_num_threads(int n) {
    g_threads.store(n > 0 ? n : default_threads());
}

void parallel_for(size_t n, const std::function<void(size_t, size_t)>& body, size_t min_chunk) {
    if (n == 0) return;
    const int threads = num_threads();
    min_chunk = std::max<size_t>(min_chunk, 1);
    if (threads <= 1 || tls_in_worker || n <= min_chunk) {
        body(0, n);
        return;
    }
    // A few chunks per thread balances uneven work without much scheduling overhead.
    size_t n_chunks =
        std::min<size_t>(static_cast<size_t>(threads) * 4, (n + min_chunk - 1) / min_chunk);
    n_chunks = std::max<size_t>(n_chunks, 1);
    const size_t step = (n + n_chunks - 1) / n_chunks;
    n_chunks = (n + step - 1) / step;
    Pool& pool = pool_for(threads);
    std::function<void(size_t)> chunk = [&](size_t i) {
        const size_t begin = i * step;
        const size_t end = std::min(n, begin + step);
        bool was = tls_in_worker;
        tls_in_worker = true;
        try {
            body(begin, end);
        } catch (...) {
            tls_in_worker = was;
            throw;
        }
        tls_in_worker = was;
    };
    pool.run(n_chunks, chunk);
}

}  // namespace quantlens
