#include "analysis/studies/audit.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "analysis/studies/compare.h"
#include "analysis/sweep/sweep.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/utf8.h"
#include "jobs/runner.h"
#include "jobs/store.h"

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
constexpr const char* kSweepItem = "sweep";
constexpr const char* kComparePrefix = "compare:";

// ---- the zoo file ------------------------------------------------------------------------

std::string resolve(const fs::path& base, const std::string& p) {
    const fs::path path(p);
    return (path.is_absolute() ? path : base / path).lexically_normal().string();
}

template <typename T>
T scalar(const YAML::Node& node, const std::string& file, const std::string& where,
         const char* key) {
    try {
        return node.as<T>();
    } catch (const YAML::Exception&) {
        fail("{}: {}: '{}' has the wrong type", file, where, key);
    }
}

// Fills the fields present in `node` (defaults or one model entry) into `m`.
void read_settings(const YAML::Node& node, const fs::path& base, const std::string& file,
                   const std::string& where, ZooModel& m) {
    if (!node || !node.IsMap()) return;
    if (auto n = node["text"]) m.text = resolve(base, scalar<std::string>(n, file, where, "text"));
    if (auto n = node["tokens"]) m.tokens = scalar<int64_t>(n, file, where, "tokens");
    if (auto n = node["ctx"]) m.ctx = scalar<int64_t>(n, file, where, "ctx");
    if (auto n = node["granularity"])
        m.granularity = scalar<std::string>(n, file, where, "granularity");
    if (auto n = node["types"]) {
        QL_CHECK(n.IsSequence(), "{}: {}: 'types' must be a list such as [Q4_K, Q2_K]", file,
                 where);
        m.types.clear();
        for (const auto& t : n) {
            const std::string name = scalar<std::string>(t, file, where, "types");
            const auto type = ggml_type_from_name(name);
            QL_CHECK(type.has_value(), "{}: {}: unknown type '{}'", file, where, name);
            m.types.push_back(*type);
        }
    }
}

std::string type_list(const std::vector<GgmlType>& types) {
    std::vector<std::string> names;
    for (auto t : types) names.push_back(ggml_type_display_name(t));
    return fmt::format("{}", fmt::join(names, ","));
}

// ---- profiles ------------------------------------------------------------------------------

const std::vector<std::string> kRoleGroups = {"attention", "ffn",   "experts", "shared_expert",
                                              "router",    "embed", "output"};
const std::vector<std::string> kDepthGroups = {"first_layer", "middle_layers", "last_layer"};

std::string role_group(const std::string& role) {
    if (role.rfind("attn_", 0) == 0) return "attention";
    if (role.rfind("ffn_", 0) == 0) return "ffn";
    if (role.rfind("expert_", 0) == 0) return "experts";
    if (role.rfind("shared_", 0) == 0) return role == "shared_router" ? "router" : "shared_expert";
    if (role == "router") return "router";
    if (role == "embed") return "embed";
    if (role == "output") return "output";
    return "";
}

// Per type: group → Σ ΔKLD of the sweep job's units, and "kld_sum".
std::map<std::string, jobs::Metrics> profile_of_sweep(const jobs::Store& store, int64_t sweep_id) {
    std::map<std::string, jobs::Unit> units;
    int64_t n_layers = 0;
    for (const auto& u : store.units(sweep_id)) {
        units[u.name] = u;
        n_layers = std::max(n_layers, u.layer + 1);
    }
    std::map<std::string, jobs::Metrics> out;
    for (const auto& m : store.measurements(sweep_id, "", "kld_mean")) {
        const auto it = units.find(m.unit);
        if (it == units.end() || it->second.role == "all") continue;
        const jobs::Unit& u = it->second;
        jobs::Metrics& p = out[m.type];
        p["kld_sum"] += m.value;
        // A unit spanning roles (a whole layer) counts for depth only.
        if (const std::string g = role_group(u.role); !g.empty()) p["kld_" + g] += m.value;
        if (u.layer >= 0) {
            const char* depth = u.layer == 0              ? "first_layer"
                                : u.layer == n_layers - 1 ? "last_layer"
                                                          : "middle_layers";
            p[std::string("kld_") + depth] += m.value;
        }
    }
    for (auto& [type, p] : out) {
        const double total = p["kld_sum"];
        std::vector<std::pair<std::string, double>> shares;
        for (const auto& [k, v] : p)
            if (k.rfind("kld_", 0) == 0 && k != "kld_sum")
                shares.push_back({"share_" + k.substr(4), total > 0 ? v / total : 0.0});
        for (const auto& [k, v] : shares) p[k] = v;
    }
    return out;
}

// The child job of an item: created (and its id recorded) on first use, then reused.
int64_t child_job(jobs::Store& store, int64_t audit_id, const std::string& key,
                  const std::function<int64_t()>& create) {
    const std::string name = "child:" + key;
    if (auto a = store.get_artifact(audit_id, name)) return json::parse(a->data).at("job");
    int64_t id = 0;
    store.transaction([&] {
        id = create();
        store.put_artifact(audit_id, {name, true, json{{"job", id}}.dump()});
    });
    return id;
}

// Runs a child job to completion or stop, keeping its state machine honest.
bool run_child(jobs::Store& store, int64_t id, const std::function<bool()>& body) {
    const jobs::Job job = store.get_job(id);
    if (job.state == jobs::JobState::done) return true;
    if (job.state != jobs::JobState::queued) store.resume(id);  // paused, failed, interrupted
    store.start(id);
    bool done = false;
    try {
        done = body();
    } catch (const std::exception& e) {
        store.fail(id, e.what());
        throw;
    }
    if (done)
        store.finish(id);
    else
        store.honour_stop(id);  // paused (or cancelled, when that was asked for)
    return done;
}

}  // namespace

// ---- Zoo ---------------------------------------------------------------------------------

json Zoo::to_json() const {
    json models = json::array();
    for (const auto& m : this->models) {
        json types = json::array();
        for (auto t : m.types) types.push_back(ggml_type_display_name(t));
        models.push_back({{"name", m.name},
                          {"fp", m.fp},
                          {"text", m.text},
                          {"types", types},
                          {"tokens", m.tokens},
                          {"ctx", m.ctx},
                          {"granularity", m.granularity},
                          {"quants", m.quants}});
    }
    return {{"zoo", path}, {"models", models}};
}

Zoo Zoo::from_json(const json& j) {
    Zoo z;
    z.path = j.value("zoo", "");
    for (const auto& m : j.at("models")) {
        ZooModel zm;
        zm.name = m.at("name");
        zm.fp = m.at("fp");
        zm.text = m.at("text");
        for (const auto& t : m.at("types")) {
            const auto type = ggml_type_from_name(t.get<std::string>());
            QL_CHECK(type.has_value(), "audit: unknown type '{}' in the job", t.get<std::string>());
            zm.types.push_back(*type);
        }
        zm.tokens = job_param_int(m, "tokens", 0);
        zm.ctx = job_param_int(m, "ctx", 0);
        zm.granularity = m.at("granularity");
        zm.quants = m.at("quants").get<std::vector<std::string>>();
        z.models.push_back(zm);
    }
    return z;
}

Zoo load_zoo(const std::string& path) {
    YAML::Node root;
    // Read (regular file, UTF-8 checked, naming the byte) before parsing: names and paths end
    // up in JSON job params, which must be valid UTF-8.
    const std::string text = read_utf8_text_file(path);
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        fail("{}: not valid YAML: {}", path, e.what());
    }
    QL_CHECK(
        root.IsMap() && root["models"] && root["models"].IsSequence() && root["models"].size() > 0,
        "{}: expected a map with a non-empty 'models' list", path);
    fs::path base = fs::absolute(path).parent_path();
    if (auto b = root["base_dir"])
        base = resolve(base, scalar<std::string>(b, path, "base_dir", "base_dir"));
    Zoo zoo;
    zoo.path = path;
    ZooModel defaults;
    defaults.types = {GgmlType::Q4_K, GgmlType::Q2_K};
    read_settings(root["defaults"], base, path, "defaults", defaults);
    std::set<std::string> names;
    size_t index = 0;
    for (const auto& node : root["models"]) {
        const std::string where = fmt::format("models[{}]", index++);
        QL_CHECK(node.IsMap() && node["fp"], "{}: {}: expected a map with 'fp' (the model)", path,
                 where);
        ZooModel m = defaults;
        m.fp = resolve(base, scalar<std::string>(node["fp"], path, where, "fp"));
        m.name = node["name"] ? scalar<std::string>(node["name"], path, where, "name")
                              : fs::path(m.fp).filename().string();
        read_settings(node, base, path, where, m);
        if (auto q = node["quants"]) {
            QL_CHECK(q.IsSequence(), "{}: {}: 'quants' must be a list of GGUF files", path, where);
            for (const auto& f : q)
                m.quants.push_back(resolve(base, scalar<std::string>(f, path, where, "quants")));
        }
        QL_CHECK(names.insert(m.name).second, "{}: {}: model name '{}' appears twice", path, where,
                 m.name);
        std::error_code ec;  // a name the OS refuses (too long, …) is "does not exist" too
        QL_CHECK(fs::exists(m.fp, ec), "{}: {} ({}): fp '{}' does not exist", path, where, m.name,
                 m.fp);
        QL_CHECK(!m.text.empty(), "{}: {} ({}): no 'text' (here or in defaults)", path, where,
                 m.name);
        QL_CHECK(fs::is_regular_file(m.text, ec), "{}: {} ({}): text '{}' does not exist", path,
                 where, m.name, m.text);
        for (const auto& q : m.quants)
            QL_CHECK(fs::is_regular_file(q, ec), "{}: {} ({}): quant '{}' does not exist", path,
                     where, m.name, q);
        QL_CHECK(!m.types.empty(), "{}: {} ({}): no types", path, where, m.name);
        QL_CHECK(m.ctx >= 8 && m.tokens >= m.ctx,
                 "{}: {} ({}): need ctx ≥ 8 and tokens ≥ ctx (got ctx {}, tokens {})", path, where,
                 m.name, m.ctx, m.tokens);
        QL_CHECK(m.granularity == "tensor" || m.granularity == "layer" || m.granularity == "class",
                 "{}: {} ({}): granularity must be tensor, layer or class", path, where, m.name);
        zoo.models.push_back(std::move(m));
    }
    // Quoted YAML scalars may spell bytes with escapes ("\x85") that are not UTF-8; the zoo
    // is stored as JSON job params, which must be.
    try {
        (void)zoo.to_json().dump();
    } catch (const nlohmann::json::exception&) {
        fail("{}: a model name, path or type is not valid UTF-8 (an escape in a quoted string?)",
             path);
    }
    return zoo;
}

// ---- the job -------------------------------------------------------------------------------

int64_t find_or_create_audit_job(jobs::Store& store, const Zoo& zoo,
                                 const std::string& command_line, bool* resumed) {
    const json params = zoo.to_json();
    for (const jobs::Job& j : store.list_jobs({jobs::JobKind::audit})) {
        if (j.state == jobs::JobState::done || j.state == jobs::JobState::cancelled) continue;
        if (json::parse(j.params) != params) continue;
        if (resumed) *resumed = true;
        return j.id;
    }
    if (resumed) *resumed = false;
    jobs::NewJob nj;
    nj.kind = jobs::JobKind::audit;
    nj.params = params.dump();
    nj.model = zoo.path;
    nj.command = command_line;
    const int64_t id = store.create_job(nj);
    std::vector<jobs::Unit> units;
    std::vector<jobs::WorkItem> items;
    for (const auto& m : zoo.models) {
        units.push_back({m.name, -1, "model", 0, json{{"fp", m.fp}}.dump()});
        items.push_back({m.name, kSweepItem});
        for (const auto& q : m.quants)
            items.push_back({m.name, kComparePrefix + fs::path(q).filename().string()});
    }
    store.add_units(id, units);
    store.add_work_items(id, items);
    return id;
}

bool run_audit(jobs::Store& store, int64_t id) {
    const jobs::Job job = store.get_job_of_kind(id, jobs::JobKind::audit);
    const Zoo zoo = Zoo::from_json(json::parse(job.params));
    std::map<std::string, const ZooModel*> by_name;
    for (const auto& m : zoo.models) by_name[m.name] = &m;
    for (const jobs::WorkItem& item : store.pending_items(id)) {
        if (store.should_stop(id)) return false;
        const ZooModel& m = *by_name.at(item.unit);
        const std::string key = item.unit + "/" + item.type;
        store.set_message(id, fmt::format("{}: {}", m.name, item.type));
        if (item.type == kSweepItem) {
            const int64_t child = child_job(store, id, key, [&] {
                SweepOptions o;
                o.model = m.fp;
                o.eval_text = m.text;
                o.n_tokens = m.tokens;
                o.ctx = m.ctx;
                o.types = m.types;
                o.granularity = m.granularity;
                o.uniform = false;
                return create_sweep_job(
                    store, o,
                    fmt::format("quantlens sweep {} --eval {} --types {} "
                                "--tokens {} --ctx {} --granularity {}",
                                m.fp, m.text, type_list(m.types), m.tokens, m.ctx, m.granularity));
            });
            if (!run_child(store, child, [&] { return run_sweep(store, child); })) return false;
            const auto profile = profile_of_sweep(store, child);
            store.transaction([&] {
                for (const auto& [type, metrics] : profile)
                    store.record_item(id, m.name, type, metrics);
                store.record_item(id, m.name, kSweepItem, {{"job", static_cast<double>(child)}});
            });
        } else {
            const std::string file = item.type.substr(std::string(kComparePrefix).size());
            std::string quant;
            for (const auto& q : m.quants)
                if (fs::path(q).filename().string() == file) quant = q;
            QL_ASSERT(!quant.empty());
            const int64_t child = child_job(store, id, key, [&] {
                CompareOptions o;
                o.fp = m.fp;
                o.quant = quant;
                o.text = m.text;
                o.ctx = m.ctx;
                o.chunks = m.tokens / m.ctx;
                o.attribution = true;
                return create_compare_job(store, o,
                                          fmt::format("quantlens compare {} {} --text {} --ctx {} "
                                                      "--chunks {}",
                                                      m.fp, quant, m.text, m.ctx, o.chunks));
            });
            if (!run_child(store, child, [&] { return run_compare_job(store, child); }))
                return false;
            const CompareResult r = load_compare_result(store, child);
            jobs::Metrics metrics = {{"job", static_cast<double>(child)},
                                     {"kld_mean", r.kld.kld_mean},
                                     {"top1_agree", r.kld.same_top},
                                     {"ppl_delta", r.kld.ppl - r.kld.ppl_base},
                                     {"weights_bpw", r.weights_bpw}};
            const LayerComparison* worst = nullptr;
            for (const auto& l : r.layers)
                if (l.has_attribution && (!worst || l.kld_share > worst->kld_share)) worst = &l;
            if (worst) {
                metrics["worst_layer"] = static_cast<double>(worst->layer);
                metrics["worst_layer_share"] = worst->kld_share;
            }
            store.record_item(id, m.name, item.type, metrics);
        }
    }
    return true;
}

// ---- summary -------------------------------------------------------------------------------

const std::vector<std::string>& audit_groups() {
    static const std::vector<std::string> groups = [] {
        std::vector<std::string> g = kRoleGroups;
        g.insert(g.end(), kDepthGroups.begin(), kDepthGroups.end());
        return g;
    }();
    return groups;
}

std::vector<AuditRow> audit_rows(const jobs::Store& store, int64_t id) {
    const jobs::Job job = store.get_job(id);
    QL_CHECK(job.kind == jobs::JobKind::audit, "{}: job {} is a {} job, not an audit", store.path(),
             id, jobs::kind_name(job.kind));
    const Zoo zoo = Zoo::from_json(json::parse(job.params));
    std::map<std::pair<std::string, std::string>, jobs::Metrics> cells;
    for (const auto& m : store.measurements(id)) cells[{m.unit, m.type}][m.metric] = m.value;
    std::vector<AuditRow> rows;
    for (const auto& m : zoo.models) {
        std::vector<std::string> compares;
        for (const auto& q : m.quants) {
            const std::string file = fs::path(q).filename().string();
            auto it = cells.find({m.name, kComparePrefix + file});
            if (it == cells.end()) continue;
            auto& c = it->second;
            std::string s = fmt::format("{}: mean KLD {:.6f}, same top-1 {:.2f} %", file,
                                        c["kld_mean"], 100 * c["top1_agree"]);
            if (c.count("worst_layer"))
                s += fmt::format(", most KLD from {} ({:.0f} %)",
                                 c["worst_layer"] < 0 ? std::string("embedding/output")
                                                      : fmt::format("blk.{}", c["worst_layer"]),
                                 100 * c["worst_layer_share"]);
            compares.push_back(s);
        }
        for (auto t : m.types) {
            auto it = cells.find({m.name, ggml_type_display_name(t)});
            if (it == cells.end()) continue;
            AuditRow r;
            r.model = m.name;
            r.type = ggml_type_display_name(t);
            r.kld_sum = it->second["kld_sum"];
            for (const auto& g : audit_groups()) {
                const auto s = it->second.find("share_" + g);
                const auto k = it->second.find("kld_" + g);
                r.share.push_back(s == it->second.end() ? std::nan("") : s->second);
                r.kld.push_back(k == it->second.end() ? std::nan("") : k->second);
            }
            r.compares = compares;
            rows.push_back(std::move(r));
        }
    }
    return rows;
}

std::string audit_table(const std::vector<AuditRow>& rows) {
    std::string s = "share of the summed per-tensor ΔKLD, by tensor role and depth (%)\n";
    s += fmt::format("{:<15}", "group");
    for (const auto& r : rows) s += fmt::format(" {:>18}", r.model + " " + r.type);
    s += "\n";
    const auto& groups = audit_groups();
    for (size_t g = 0; g < groups.size(); ++g) {
        if (g == kRoleGroups.size()) s += "  by depth\n";
        s += fmt::format("{:<15}", groups[g]);
        for (const auto& r : rows)
            s += std::isnan(r.share[g]) ? fmt::format(" {:>18}", "-")
                                        : fmt::format(" {:>17.1f}%", 100 * r.share[g]);
        s += "\n";
    }
    s += fmt::format("{:<15}", "Σ ΔKLD");
    for (const auto& r : rows) s += fmt::format(" {:>18.6f}", r.kld_sum);
    s += "\n";
    std::set<std::string> printed;
    for (const auto& r : rows)
        for (const auto& c : r.compares)
            if (printed.insert(r.model + c).second) s += fmt::format("{}: {}\n", r.model, c);
    return s;
}

json audit_to_json(const std::vector<AuditRow>& rows, int64_t id) {
    json series = json::array();
    for (const auto& r : rows) {
        json share = json::object(), kld = json::object();
        const auto& groups = audit_groups();
        for (size_t g = 0; g < groups.size(); ++g) {
            share[groups[g]] = std::isnan(r.share[g]) ? json(nullptr) : json(r.share[g]);
            kld[groups[g]] = std::isnan(r.kld[g]) ? json(nullptr) : json(r.kld[g]);
        }
        series.push_back({{"model", r.model},
                          {"type", r.type},
                          {"kld_sum", r.kld_sum},
                          {"share", share},
                          {"kld", kld},
                          {"compares", r.compares}});
    }
    return {{"job", id},
            {"chart", "grouped bars: x = group, one bar per model/type, y = share of ΔKLD"},
            {"groups", audit_groups()},
            {"series", series}};
}

}  // namespace quantlens
