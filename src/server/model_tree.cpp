#include "server/model_tree.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/ggml_type.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/inspect_json.h"
#include "model/model.h"

namespace quantlens::server {

namespace fs = std::filesystem;

namespace {

constexpr size_t kMaxEntries = 2000;  // a listing larger than this is cut (and says so)

// A FIFO named like a model file would block the reading thread forever: stat first.
void require_regular_file(const fs::path& file) {
    std::error_code ec;
    QL_CHECK(fs::status(file, ec).type() == fs::file_type::regular,
             "{}: not a regular file (a FIFO, device or broken link is never read)",
             file.filename().string());
}

bool is_model_dir(const fs::path& dir) {
    std::error_code ec;
    if (!fs::exists(dir / "config.json", ec)) return false;
    for (const auto& e : fs::directory_iterator(dir, ec))
        if (e.path().extension() == ".safetensors") return true;
    return false;
}

// One tensor of a listing, whatever the file format: with_totals sums "bytes" and sorts by
// "name", and the model browser shows all four.
nlohmann::json tensor_entry(const std::string& name, const std::string& dtype,
                            const std::vector<int64_t>& shape, uint64_t bytes) {
    return {{"name", name}, {"dtype", dtype}, {"shape", shape}, {"bytes", bytes}};
}

// The real reader (formats/safetensors), so a listing shows exactly what a sweep would load
// and refuses what it would refuse.
nlohmann::json safetensors_tensors(const fs::path& file) {
    require_regular_file(file);
    const SafetensorsModel st = SafetensorsModel::open(file.string());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& t : st.tensors()) {
        nlohmann::json entry = tensor_entry(t.name, st_dtype_name(t.dtype), t.shape, t.data.size());
        entry["file"] = file.filename().string();
        out.push_back(std::move(entry));
    }
    return out;
}

nlohmann::json gguf_tensors(const fs::path& file) {
    require_regular_file(file);
    const GgufFile gguf = GgufFile::open(file.string());
    nlohmann::json out = nlohmann::json::array();
    for (const auto& t : gguf.tensors())
        out.push_back(tensor_entry(t.name, ggml_type_display_name(t.type), t.ne, t.nbytes));
    return out;
}

// The checkpoint as `quantlens inspect` sees it (config, GGUF names, roles), or why it
// cannot be opened as a model (the file listing above still shows its tensors).
void add_inspect(nlohmann::json& doc, const fs::path& path) {
    try {
        doc["inspect"] =
            nlohmann::json::parse(model_inspect_json(*Model::open(path.string())).dump());
    } catch (const std::exception& e) {
        doc["inspect_error"] = e.what();
    }
}

nlohmann::json with_totals(nlohmann::json doc) {
    uint64_t bytes = 0;
    for (const auto& t : doc["tensors"]) bytes += t["bytes"].get<uint64_t>();
    std::sort(doc["tensors"].begin(), doc["tensors"].end(),
              [](const auto& a, const auto& b) { return a["name"] < b["name"]; });
    doc["n_tensors"] = doc["tensors"].size();
    doc["bytes"] = bytes;
    return doc;
}

}  // namespace

nlohmann::json describe_path(const fs::path& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        if (is_model_dir(path)) {
            nlohmann::json doc = {{"path", path.string()},
                                  {"kind", "model"},
                                  {"format", "safetensors"},
                                  {"tensors", nlohmann::json::array()}};
            for (const auto& e : fs::directory_iterator(path))
                if (e.path().extension() == ".safetensors")
                    for (auto& t : safetensors_tensors(e.path()))
                        doc["tensors"].push_back(std::move(t));
            add_inspect(doc, path);
            return with_totals(std::move(doc));
        }
        nlohmann::json entries = nlohmann::json::array();
        bool truncated = false;
        for (const auto& e :
             fs::directory_iterator(path, fs::directory_options::skip_permission_denied, ec)) {
            if (entries.size() >= kMaxEntries) {
                truncated = true;
                break;
            }
            const std::string name = e.path().filename().string();
            if (!name.empty() && name[0] == '.') continue;  // hidden files and .git
            const bool dir = e.is_directory(ec);
            entries.push_back(
                {{"name", name},
                 {"type", dir ? "dir" : "file"},
                 {"model", dir ? is_model_dir(e.path()) : e.path().extension() == ".gguf"},
                 {"size", dir ? 0 : static_cast<uint64_t>(e.file_size(ec))}});
        }
        std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) {
            return a["type"] != b["type"] ? a["type"] == "dir" : a["name"] < b["name"];
        });
        return {{"path", path.string()},
                {"kind", "dir"},
                {"entries", entries},
                {"truncated", truncated}};
    }
    const std::string ext = path.extension().string();
    if (ext == ".gguf") {
        nlohmann::json doc = {{"path", path.string()},
                              {"kind", "model"},
                              {"format", "gguf"},
                              {"tensors", gguf_tensors(path)}};
        add_inspect(doc, path);
        return with_totals(std::move(doc));
    }
    if (ext == ".safetensors")
        return with_totals({{"path", path.string()},
                            {"kind", "model"},
                            {"format", "safetensors"},
                            {"tensors", safetensors_tensors(path)}});
    return {{"path", path.string()}, {"kind", "file"}, {"size", fs::file_size(path, ec)}};
}

}  // namespace quantlens::server
