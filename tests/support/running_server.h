// Test helper (header-only): a server::Server on an ephemeral port, run in a thread of its own
// from construction until destruction. Construction returns once /api/health answers (or
// after 2 s), so a test's first request finds it listening.
#pragma once

#include <httplib.h>

#include <chrono>
#include <memory>
#include <thread>

#include "server/server.h"

namespace quantlens::test_support {

class RunningServer {
  public:
    explicit RunningServer(server::ServerOptions options) {
        options.port = 0;
        server_ = std::make_unique<server::Server>(options);
        port_ = server_->bind();
        thread_ = std::thread([this] { server_->run(); });
        httplib::Client probe("127.0.0.1", port_);
        for (int i = 0; i < 100 && !probe.Get("/api/health"); ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ~RunningServer() {
        server_->stop();
        thread_.join();
    }
    RunningServer(const RunningServer&) = delete;
    RunningServer& operator=(const RunningServer&) = delete;

    int port() const { return port_; }
    // A client that waits up to READ_TIMEOUT_S seconds for each response.
    httplib::Client client(int read_timeout_s) const {
        httplib::Client c("127.0.0.1", port_);
        c.set_read_timeout(read_timeout_s, 0);
        return c;
    }

  private:
    std::unique_ptr<server::Server> server_;
    std::thread thread_;
    int port_ = 0;
};

}  // namespace quantlens::test_support
