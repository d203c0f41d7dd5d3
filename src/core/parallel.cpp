#include "core/parallel.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
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

// Workers sleep on a condition variable; each job is a chunk counter shared by all.
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
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = &chunk;
            n_chunks_ = n_chunks;
            next_.store(0);
            pending_ = n_chunks;
            error_ = nullptr;
            ++generation_;
        }
        cv_.notify_all();
        work();
        std::unique_lock<std::mutex> lock(mutex_);
        done_cv_.wait(lock, [this] { return pending_ == 0; });
        job_ = nullptr;
        if (error_) std::rethrow_exception(error_);
    }

private:
    void work() {
        for (;;) {
            size_t i = next_.fetch_add(1);
            if (i >= n_chunks_) return;
            try {
                (*job_)(i);
            } catch (...) {
                std::lock_guard<std::mutex> lock(mutex_);
                if (!error_) error_ = std::current_exception();
            }
            std::lock_guard<std::mutex> lock(mutex_);
            if (--pending_ == 0) done_cv_.notify_all();
        }
    }
    void loop() {
        tls_in_worker = true;
        size_t seen = 0;
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                cv_.wait(lock, [&] { return stop_ || (generation_ != seen && job_); });
                if (stop_) return;
                seen = generation_;
            }
            work();
        }
    }

    std::vector<std::thread> workers_;
    std::mutex mutex_, run_mutex_;
    std::condition_variable cv_, done_cv_;
    const std::function<void(size_t)>* job_ = nullptr;
    size_t n_chunks_ = 0;
    std::atomic<size_t> next_{0};
    size_t pending_ = 0;
    size_t generation_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
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

void set_num_threads(int n) { g_threads.store(n > 0 ? n : default_threads()); }

void parallel_for(size_t n, const std::function<void(size_t, size_t)>& body, size_t min_chunk) {
    if (n == 0) return;
    const int threads = num_threads();
    min_chunk = std::max<size_t>(min_chunk, 1);
    if (threads <= 1 || tls_in_worker || n <= min_chunk) {
        body(0, n);
        return;
    }
    // A few chunks per thread balances uneven work without much scheduling overhead.
    size_t n_chunks = std::min<size_t>(static_cast<size_t>(threads) * 4, (n + min_chunk - 1) / min_chunk);
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
