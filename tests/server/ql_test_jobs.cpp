// Test helper executable (built by the top-level CMakeLists.txt with the tests, not a test
// itself): a stand-in for `quantlens KIND`, started by the server through --job-exe:
//   ql_test_jobs [-q] KIND ARGS... --store S     creates a KIND job, records 20 items at 20 per
//                                                second, finishes
//   ql_test_jobs pull ORG/NAME [--revision R]    prints the progress lines of a download
//                                                (core/progress.h's own) that reached 200 of
//                                                500 kB, then fails as a dropped connection
//                                                would (exit 1), or, for a NAME starting with
//                                                "ok", reaches 500 kB and exits 0
// so the server's API tests (tests/server/test_api.cpp) can start jobs and watch progress
// without running a model. The browser tests run the real binary instead.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/progress.h"
#include "jobs/store.h"

using namespace quantlens;

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    std::string store_path, model, kind;
    for (size_t i = 0; i < args.size(); ++i) {
        if (args[i] == "--store" && i + 1 < args.size())
            store_path = args[++i];
        else if (args[i] == "-q")
            continue;
        else if (kind.empty())
            kind = args[i];
        else if (model.empty() && args[i][0] != '-')
            model = args[i];
    }
    if (kind == "pull") {
        const std::string repo = model;
        const bool ok = repo.find("/ok") != std::string::npos;
        {
            Progress bar("pull " + repo, 500, "kB");
            bar.set(ok ? 500 : 200);
            bar.finish();  // off a terminal: one line, as a real pull writes every few seconds
        }
        if (!ok) {
            std::fprintf(stderr, "error: %s: connection dropped after 200 kB\n", repo.c_str());
            return 1;
        }
        std::printf("%s @ 0123456789ab: 1 files, 0.5 MB\n", repo.c_str());
        return 0;
    }
    if (store_path.empty() || kind.empty()) {
        std::fprintf(stderr, "usage: ql_test_jobs [-q] KIND ARGS... --store S\n");
        return 2;
    }
    try {
        jobs::Store store(store_path);
        const auto parsed = jobs::parse_kind(kind);
        if (!parsed) {
            std::fprintf(stderr, "error: unknown job kind '%s'\n", kind.c_str());
            return 1;
        }
        jobs::NewJob nj;
        nj.kind = *parsed;
        nj.model = model;
        nj.command = "ql_test_jobs " + kind;
        const int64_t id = store.create_job(nj);
        store.start(id);
        std::vector<jobs::WorkItem> items;
        for (int i = 0; i < 20; ++i) items.push_back({"item" + std::to_string(i), "Q4_K"});
        store.add_work_items(id, items);
        for (const auto& item : store.pending_items(id)) {
            if (store.should_stop(id)) {
                store.honour_stop(id);
                return 0;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            store.record_item(id, item.unit, item.type, {{"kld_mean", 0.01}});
        }
        store.finish(id);
        std::printf("job %lld done\n", static_cast<long long>(id));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
