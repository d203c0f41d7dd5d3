#include "jobs/job.h"

#include <nlohmann/json.hpp>

#include <array>

#include "core/error.h"

namespace quantlens::jobs {
namespace {

constexpr std::array<std::string_view, 8> kKindNames = {"sweep",  "calibrate", "eval",  "quantize",
                                                        "verify", "compare",   "audit", "plan"};
constexpr std::array<std::string_view, 6> kStateNames = {"queued", "running", "paused",
                                                         "done",   "failed",  "cancelled"};
constexpr std::array<std::string_view, 3> kRequestNames = {"", "pause", "cancel"};

template <typename Enum, size_t N>
std::optional<Enum> parse(const std::array<std::string_view, N>& names, std::string_view name) {
    for (size_t i = 0; i < N; ++i)
        if (names[i] == name) return static_cast<Enum>(i);
    return std::nullopt;
}

template <size_t N>
std::string joined(const std::array<std::string_view, N>& names) {
    std::string out;
    for (const std::string_view n : names) out += (out.empty() ? "" : ", ") + std::string(n);
    return out;
}

}  // namespace

std::string kind_names() {
    return joined(kKindNames);
}
std::string state_names() {
    return joined(kStateNames);
}

std::string_view kind_name(JobKind kind) {
    return kKindNames.at(static_cast<size_t>(kind));
}
std::string_view state_name(JobState state) {
    return kStateNames.at(static_cast<size_t>(state));
}
std::string_view request_name(StopRequest r) {
    return kRequestNames.at(static_cast<size_t>(r));
}

std::optional<JobKind> parse_kind(std::string_view name) {
    return parse<JobKind>(kKindNames, name);
}
std::optional<JobState> parse_state(std::string_view name) {
    return parse<JobState>(kStateNames, name);
}
std::optional<StopRequest> parse_request(std::string_view name) {
    return parse<StopRequest>(kRequestNames, name);
}

bool is_terminal(JobState state) {
    return state == JobState::done || state == JobState::cancelled;
}

bool is_legal_transition(JobState from, JobState to) {
    using S = JobState;
    switch (from) {
        case S::queued:
            return to == S::running || to == S::paused || to == S::cancelled || to == S::failed;
        case S::running:
            return to == S::paused || to == S::done || to == S::failed || to == S::cancelled;
        case S::paused:
            return to == S::queued || to == S::cancelled;
        case S::failed:
            return to == S::queued || to == S::cancelled;
        case S::done:
        case S::cancelled:
            return false;
    }
    return false;
}

std::string_view Job::status() const {
    return interrupted ? std::string_view("interrupted") : state_name(state);
}

double Job::fraction() const {
    if (progress_total <= 0) return state == JobState::done ? 1.0 : 0.0;
    double f = static_cast<double>(progress_done) / static_cast<double>(progress_total);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

nlohmann::json to_json(const Job& job) {
    nlohmann::json params = nlohmann::json::parse(job.params, nullptr, false);
    if (params.is_discarded()) params = job.params;  // keep what is there rather than lose it
    auto time_or_null = [](double t) { return t > 0 ? nlohmann::json(t) : nlohmann::json(); };
    return {
        {"id", job.id},
        {"kind", kind_name(job.kind)},
        {"state", state_name(job.state)},
        {"status", job.status()},
        {"interrupted", job.interrupted},
        {"requested", job.requested == StopRequest::none
                          ? nlohmann::json()
                          : nlohmann::json(request_name(job.requested))},
        {"params", params},
        {"model", job.model},
        {"model_hash", job.model_hash},
        {"text_hash", job.text_hash},
        {"command", job.command},
        {"progress",
         {{"done", job.progress_done},
          {"total", job.progress_total},
          {"fraction", job.fraction()},
          {"message", job.message}}},
        {"created", time_or_null(job.created)},
        {"started", time_or_null(job.started)},
        {"updated", time_or_null(job.updated)},
        {"finished", time_or_null(job.finished)},
        {"elapsed_s", job.elapsed},
        {"error", job.error},
        {"pid", job.pid},
        {"host", job.host},
        {"heartbeat", time_or_null(job.heartbeat)},
    };
}

}  // namespace quantlens::jobs

namespace quantlens {

int64_t job_param_int(const nlohmann::json& params, const char* key, int64_t fallback) {
    const auto it = params.find(key);
    if (it == params.end() || it->is_null()) return fallback;
    QL_CHECK(it->is_number_integer(), "job params: '{}' is {}, expected an integer", key,
             it->dump());
    return it->get<int64_t>();
}

}  // namespace quantlens
