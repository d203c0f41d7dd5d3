// llama-perplexity as verify's second opinion: see llama_cpp_check.h for the protocol.
#include "analysis/studies/llama_cpp_check.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <vector>

#include <fmt/format.h>

#include "core/error.h"
#include "core/parallel.h"

extern char** environ;

namespace quantlens {
namespace fs = std::filesystem;

namespace {

constexpr const char* kTool = "llama-perplexity";

bool is_executable_file(const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

// Runs argv (no shell) with stdout and stderr into `log_path`; throws naming the log when
// it cannot start or exits non-zero.
void run_logged(const std::vector<std::string>& argv, const std::string& log_path) {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log_path.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = 0;
    const int err = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    QL_CHECK(err == 0, "verify --llama-cpp: cannot start {}: {}", argv[0], std::strerror(err));
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0)
        QL_CHECK(errno == EINTR, "verify --llama-cpp: waiting for {}: {}", argv[0],
                 std::strerror(errno));
    QL_CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0,
             "verify --llama-cpp: {} failed ({}); its output is in {}", argv[0],
             WIFEXITED(status) ? fmt::format("exit code {}", WEXITSTATUS(status))
                               : fmt::format("signal {}", WTERMSIG(status)),
             log_path);
}

// A whole-string finite number, or nullopt ("-", "1e", "nan" are not figures).
std::optional<double> finite_number(const std::string& s) {
    char* end = nullptr;
    errno = 0;
    const double v = std::strtod(s.c_str(), &end);
    if (end != s.c_str() + s.size() || errno != 0 || !std::isfinite(v)) return std::nullopt;
    return v;
}

// "LABEL : value ± err" (err optional) → value and err; nullopt when the label is absent.
// Throws, naming the log, when the label is there but its value is not a finite number.
std::optional<std::pair<double, double>> figure(const std::string& text, const std::string& label,
                                                const std::string& log_path) {
    const std::regex re("(^|\\n)" + label + R"(\s*:\s*([-+0-9.eE]+)(\s*±\s*([-+0-9.eE]+))?)");
    std::smatch m;
    if (!std::regex_search(text, m, re)) return std::nullopt;
    const std::optional<double> value = finite_number(m[2]);
    const std::optional<double> err = m[4].matched ? finite_number(m[4]) : std::optional(0.0);
    QL_CHECK(value && err,
             "verify --llama-cpp: {}: the '{}' line of llama-perplexity's summary holds '{}', "
             "not a finite number",
             log_path, m[0].str().substr(m[1].length()), value ? m[4].str() : m[2].str());
    return std::pair{*value, *err};
}

}  // namespace

std::optional<std::string> find_llama_perplexity(const std::string& dir) {
    if (!dir.empty()) {
        for (const fs::path& p : {fs::path(dir) / kTool, fs::path(dir) / "bin" / kTool,
                                  fs::path(dir) / "build" / "bin" / kTool})
            if (is_executable_file(p)) return p.string();
        return std::nullopt;
    }
    const char* path = std::getenv("PATH");
    std::stringstream ss(path ? path : "");
    for (std::string d; std::getline(ss, d, ':');)
        if (!d.empty() && is_executable_file(fs::path(d) / kTool))
            return (fs::path(d) / kTool).string();
    return std::nullopt;
}

LlamaCppFigures parse_llama_perplexity_output(const std::string& text,
                                              const std::string& log_path) {
    const auto need = [&](const char* label, const char* shown) {
        const auto f = figure(text, label, log_path);
        QL_CHECK(f.has_value(),
                 "verify --llama-cpp: {}: no '{}' line in llama-perplexity's summary (a build "
                 "without --kl-divergence, or a run that stopped early)",
                 log_path, shown);
        return *f;
    };
    LlamaCppFigures out;
    out.log = log_path;
    std::tie(out.ppl, out.ppl_err) = need(R"(Mean PPL\(Q\))", "Mean PPL(Q)");
    std::tie(out.kld_mean, out.kld_err) = need(R"(Mean\s+KLD)", "Mean KLD");
    out.kld_median = need(R"(Median\s+KLD)", "Median KLD").first;
    out.kld_p99 = need(R"(99\.0%\s+KLD)", "99.0% KLD").first;
    out.kld_p999 = need(R"(99\.9%\s+KLD)", "99.9% KLD").first;
    out.kld_max = need(R"(Maximum KLD)", "Maximum KLD").first;
    out.top1 = need(R"(Same top p)", "Same top p").first / 100.0;
    return out;
}

LlamaCppCheck::LlamaCppCheck(std::string tool, std::string out_dir, int64_t ctx, int64_t chunks)
    : tool_(std::move(tool)), out_dir_(std::move(out_dir)), ctx_(ctx), chunks_(chunks) {}

void LlamaCppCheck::run_base(const std::string& base_gguf, const std::string& text) {
    base_kld_ = (fs::path(out_dir_) / "llama-cpp-base.kld").string();
    const std::string log = (fs::path(out_dir_) / "llama-cpp-base.log").string();
    run_logged({tool_, "-m", base_gguf, "-f", text, "-c", std::to_string(ctx_), "--chunks",
                std::to_string(chunks_), "-t", std::to_string(num_threads()),
                "--kl-divergence-base", base_kld_},
               log);
    QL_CHECK(fs::exists(base_kld_), "verify --llama-cpp: {} wrote no {}; its output is in {}",
             tool_, base_kld_, log);
}

LlamaCppFigures LlamaCppCheck::run_candidate(const std::string& gguf,
                                             const std::string& name) const {
    QL_ASSERT(!base_kld_.empty());
    const std::string log = (fs::path(out_dir_) / ("llama-cpp-" + name + ".log")).string();
    run_logged({tool_, "-m", gguf, "--kl-divergence-base", base_kld_, "--kl-divergence", "-c",
                std::to_string(ctx_), "--chunks", std::to_string(chunks_), "-t",
                std::to_string(num_threads())},
               log);
    return parse_llama_perplexity_output(read_file(log), log);
}

// Every field under its own name.
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(LlamaCppFigures, ppl, ppl_err, kld_mean, kld_err, kld_median,
                                   kld_p99, kld_p999, kld_max, top1, log)

nlohmann::json llama_cpp_json(const LlamaCppFigures& f) {
    return f;
}

}  // namespace quantlens
