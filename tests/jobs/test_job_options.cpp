// The table of job options shared by the CLI and the web server (jobs/job_options.h): every
// kind is a job kind, names are unique, and the request's model/job map onto options the
// web cannot set directly. (That the CLI commands match it is checked by quantlens itself at
// startup, so every CLI test run covers it.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <set>
#include <string>

#include "jobs/job.h"
#include "jobs/job_options.h"

using namespace quantlens::jobs;

TEST(JobOptions, TableIsConsistent) {
    ASSERT_EQ(job_kind_specs().size(), 8u);
    for (const auto& spec : job_kind_specs()) {
        EXPECT_TRUE(parse_kind(spec.kind).has_value()) << spec.kind;
        EXPECT_TRUE(spec.model_arg || spec.job_arg) << spec.kind;
        std::set<std::string_view> names;
        for (const auto& o : spec.options) EXPECT_TRUE(names.insert(o.name).second) << o.name;
        for (const char* arg : {spec.model_arg, spec.job_arg}) {
            if (!arg || !*arg) continue;
            const JobOption* o = spec.find(std::string_view(arg).substr(2));
            ASSERT_NE(o, nullptr) << spec.kind << " " << arg;
            EXPECT_FALSE(o->web) << spec.kind << " " << arg << " must come from model/job only";
        }
        const JobOption* store = spec.find("store");
        if (store) EXPECT_FALSE(store->web) << spec.kind;  // always the server's own store
    }
    EXPECT_FALSE(find_job_kind_spec("eval")->takes_store());
    EXPECT_FALSE(find_job_kind_spec("quantize")->takes_store());
    EXPECT_TRUE(find_job_kind_spec("sweep")->takes_store());
    EXPECT_EQ(find_job_kind_spec("rm"), nullptr);
    const auto j = job_kinds_json();
    EXPECT_EQ(j["verify"]["target"], "model");
    EXPECT_TRUE(j["verify"]["job_option"].get<bool>());
    EXPECT_EQ(j["sweep"]["options"]["gpu"], "flag");
    EXPECT_EQ(j["compare"]["second"], "quant");
    EXPECT_EQ(j["audit"]["model_label"], "zoo");
    EXPECT_FALSE(j["sweep"].contains("second") || j["sweep"].contains("model_label"));
}

// Issue 27: every kind of job the store records can be started from the web app.
TEST(JobOptions, EveryJobKindHasAnEntry) {
    for (const JobKind kind : {JobKind::sweep, JobKind::calibrate, JobKind::eval, JobKind::quantize,
                               JobKind::verify, JobKind::compare, JobKind::audit, JobKind::plan})
        EXPECT_NE(find_job_kind_spec(kind_name(kind)), nullptr) << kind_name(kind);
    EXPECT_TRUE(find_job_kind_spec("compare")->takes_store());
    EXPECT_TRUE(find_job_kind_spec("audit")->takes_store());
}
