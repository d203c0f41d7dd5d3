// safetensors reader: header JSON validated once (see safetensors.h), data memory-mapped.
#include "formats/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <optional>
#include <set>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/half.h"
#include "core/parallel.h"
#include "core/table_lookup.h"

namespace quantlens {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A header larger than this is not a real model (the biggest real headers are a few MB);
// rejecting it early keeps a corrupt length from making us parse gigabytes of noise.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

struct DtypeName {
    StDtype dtype;
    const char* name;
    size_t size;
    std::optional<GgmlType> float_type;  // st_float_type(); none for F64 and the integers
};

constexpr DtypeName kDtypes[] = {
    {StDtype::F32, "F32", 4, GgmlType::F32},    {StDtype::F16, "F16", 2, GgmlType::F16},
    {StDtype::BF16, "BF16", 2, GgmlType::BF16}, {StDtype::F64, "F64", 8, std::nullopt},
    {StDtype::I64, "I64", 8, std::nullopt},     {StDtype::I32, "I32", 4, std::nullopt},
    {StDtype::I16, "I16", 2, std::nullopt},     {StDtype::I8, "I8", 1, std::nullopt},
    {StDtype::U8, "U8", 1, std::nullopt},       {StDtype::BOOL, "BOOL", 1, std::nullopt},
};

// nlohmann keeps the last of duplicate keys silently; a model with two tensors of one name
// is ambiguous, so duplicates at the top level are found while parsing.
json parse_header(std::string_view text, const std::string& name) {
    std::set<std::string> keys;
    std::string duplicate;
    auto cb = [&](int depth, json::parse_event_t event, json& parsed) {
        if (event == json::parse_event_t::key && depth == 1) {
            if (!keys.insert(parsed.get<std::string>()).second && duplicate.empty())
                duplicate = parsed.get<std::string>();
        }
        return true;
    };
    json header;
    try {
        header = json::parse(text.begin(), text.end(), cb);
    } catch (const json::exception& e) {
        fail("{}: safetensors header is not valid JSON: {}", name, e.what());
    }
    QL_CHECK(duplicate.empty(), "{}: duplicate tensor name '{}' in the safetensors header", name,
             duplicate);
    QL_CHECK(header.is_object(), "{}: safetensors header is not a JSON object", name);
    return header;
}

}  // namespace

const char* st_dtype_name(StDtype dtype) {
    const DtypeName* d = find_entry(kDtypes, &DtypeName::dtype, dtype);
    return d ? d->name : "?";
}

size_t st_dtype_size(StDtype dtype) {
    const DtypeName* d = find_entry(kDtypes, &DtypeName::dtype, dtype);
    QL_ASSERT(d != nullptr);
    return d->size;
}

GgmlType st_float_type(const StTensor& t) {
    const DtypeName* d = find_entry(kDtypes, &DtypeName::dtype, t.dtype);
    QL_CHECK(d != nullptr && d->float_type,
             "{}: tensor '{}': dtype {} is not a float type (F32, F16 or BF16 expected)", t.file,
             t.name, st_dtype_name(t.dtype));
    return *d->float_type;
}

int64_t StTensor::n_elements() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

void SafetensorsModel::add_file(std::shared_ptr<MappedFile> file, std::span<const uint8_t> bytes,
                                const std::string& name) {
    QL_CHECK(bytes.size() >= 8,
             "{}: truncated safetensors file: {} bytes, the header length alone needs 8", name,
             bytes.size());
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    QL_CHECK(n <= bytes.size() - 8, "{}: header length {} runs past the end of the file ({} bytes)",
             name, n, bytes.size());
    QL_CHECK(n <= kMaxHeaderBytes, "{}: header length {} exceeds the {}-byte limit", name, n,
             kMaxHeaderBytes);
    const std::string_view text(reinterpret_cast<const char*>(bytes.data()) + 8, n);
    const json header = parse_header(text, name);
    const std::span<const uint8_t> data = bytes.subspan(8 + n);

    struct Range {
        uint64_t begin, end;
        std::string tensor;
    };
    std::vector<Range> ranges;
    for (const auto& [tname, entry] : header.items()) {
        if (tname == "__metadata__") continue;
        QL_CHECK(entry.is_object(), "{}: tensor '{}': header entry is not an object", name, tname);
        QL_CHECK(!index_.contains(tname), "{}: tensor '{}' appears in more than one shard", name,
                 tname);
        StTensor t;
        t.name = tname;
        t.file = name;
        const auto dt = entry.find("dtype");
        QL_CHECK(dt != entry.end() && dt->is_string(), "{}: tensor '{}': missing dtype", name,
                 tname);
        const std::string dname = dt->get<std::string>();
        const DtypeName* d = find_entry(kDtypes, &DtypeName::name, dname);
        QL_CHECK(d != nullptr, "{}: tensor '{}': unknown dtype '{}' (expected F32, F16, BF16, ...)",
                 name, tname, dname);
        t.dtype = d->dtype;

        const auto sh = entry.find("shape");
        QL_CHECK(sh != entry.end() && sh->is_array(), "{}: tensor '{}': missing shape", name,
                 tname);
        uint64_t count = 1;
        bool overflow = false;
        for (const auto& dim : *sh) {
            QL_CHECK(dim.is_number_integer(), "{}: tensor '{}': shape entry {} is not an integer",
                     name, tname, dim.dump());
            const int64_t v = dim.get<int64_t>();
            QL_CHECK(v >= 0, "{}: tensor '{}': negative dimension {}", name, tname, v);
            const auto u = static_cast<uint64_t>(v);
            if (u != 0 && count > std::numeric_limits<uint64_t>::max() / u) overflow = true;
            count *= u;
            t.shape.push_back(v);
        }
        QL_CHECK(!overflow && count <= std::numeric_limits<uint64_t>::max() / d->size,
                 "{}: tensor '{}': shape {} overflows 64 bits", name, tname, sh->dump());

        const auto off = entry.find("data_offsets");
        QL_CHECK(off != entry.end() && off->is_array() && off->size() == 2 &&
                     (*off)[0].is_number_unsigned() && (*off)[1].is_number_unsigned(),
                 "{}: tensor '{}': data_offsets must be two non-negative integers", name, tname);
        const uint64_t b = (*off)[0].get<uint64_t>(), e = (*off)[1].get<uint64_t>();
        QL_CHECK(b <= e && e <= data.size(),
                 "{}: tensor '{}': data_offsets [{}, {}] outside the {}-byte data buffer (file "
                 "truncated?)",
                 name, tname, b, e, data.size());
        QL_CHECK(e - b == count * d->size,
                 "{}: tensor '{}': {} data bytes, but shape {} of {} needs {}", name, tname, e - b,
                 sh->dump(), dname, count * d->size);
        t.data = data.subspan(b, e - b);
        ranges.push_back({b, e, tname});
        index_.emplace(tname, tensors_.size());
        tensors_.push_back(std::move(t));
    }
    std::sort(ranges.begin(), ranges.end(),
              [](const Range& x, const Range& y) { return x.begin < y.begin; });
    for (size_t i = 1; i < ranges.size(); ++i) {
        QL_CHECK(ranges[i].begin >= ranges[i - 1].end,
                 "{}: tensors '{}' and '{}' overlap in the data buffer", name, ranges[i - 1].tensor,
                 ranges[i].tensor);
    }
    if (file) maps_.push_back(std::move(file));
    files_.push_back(name);
}

SafetensorsModel SafetensorsModel::parse(std::span<const uint8_t> bytes, const std::string& name) {
    SafetensorsModel m;
    m.add_file(nullptr, bytes, name);
    return m;
}

SafetensorsModel SafetensorsModel::open(const std::string& path) {
    SafetensorsModel m;
    if (!fs::is_directory(path)) {
        auto f = std::make_shared<MappedFile>(path);
        m.add_file(f, f->bytes(), path);
        return m;
    }
    const fs::path dir(path);
    const fs::path index = dir / "model.safetensors.index.json";
    if (fs::exists(index)) {
        const std::string ipath = index.string();
        json j;
        try {
            j = json::parse(read_text_file(ipath));
        } catch (const json::exception& e) {
            fail("{}: not valid JSON: {}", ipath, e.what());
        }
        QL_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                 "{}: missing \"weight_map\" object", ipath);
        std::vector<std::string> shards;  // in first-mention order, for a stable hash
        for (const auto& [tname, shard] : j["weight_map"].items()) {
            QL_CHECK(shard.is_string(), "{}: tensor '{}': shard name is not a string", ipath,
                     tname);
            const std::string s = shard.get<std::string>();
            QL_CHECK(s.find('/') == std::string::npos && s != ".." && !s.empty(),
                     "{}: tensor '{}': shard name '{}' is not a plain file name", ipath, tname, s);
            if (std::find(shards.begin(), shards.end(), s) == shards.end()) shards.push_back(s);
        }
        std::sort(shards.begin(), shards.end());
        for (const auto& s : shards) {
            const std::string spath = (dir / s).string();
            std::error_code ec;  // a name the OS refuses (too long, …) is missing too
            QL_CHECK(fs::exists(spath, ec), "{}: shard '{}' listed in the index is missing ({})",
                     ipath, s, spath);
            auto f = std::make_shared<MappedFile>(spath);
            m.add_file(f, f->bytes(), spath);
        }
        for (const auto& [tname, shard] : j["weight_map"].items()) {
            const StTensor* t = m.find(tname);
            const std::string want = (dir / shard.get<std::string>()).string();
            QL_CHECK(t != nullptr, "{}: tensor '{}' is listed in the index but not in {}", ipath,
                     tname, want);
            QL_CHECK(t->file == want, "{}: tensor '{}' is listed in {} but found in {}", ipath,
                     tname, want, t->file);
        }
        QL_CHECK(m.tensors_.size() == j["weight_map"].size(),
                 "{}: the shards hold {} tensors but the index lists {}", ipath, m.tensors_.size(),
                 j["weight_map"].size());
        return m;
    }
    const fs::path single = dir / "model.safetensors";
    QL_CHECK(fs::exists(single),
             "{}: no model.safetensors or model.safetensors.index.json in this directory", path);
    auto f = std::make_shared<MappedFile>(single.string());
    m.add_file(f, f->bytes(), single.string());
    return m;
}

const StTensor* SafetensorsModel::find(const std::string& name) const {
    auto it = index_.find(name);
    return it == index_.end() ? nullptr : &tensors_[it->second];
}

const StTensor& SafetensorsModel::get(const std::string& name) const {
    const StTensor* t = find(name);
    if (!t) {
        fail("{}: no tensor '{}'", files_.empty() ? std::string("safetensors") : files_.front(),
             name);
    }
    return *t;
}

namespace {

// Elements per parallel slice of a conversion: large enough that a slice outweighs the
// scheduling, small enough that an 8B model's big matrices spread over every core.
constexpr size_t kConvertSlice = size_t{1} << 20;

// out[i] = convert(element i of p, stored as Stored); memcpy because the data of a
// safetensors tensor need not be aligned to its element size.
template <typename Stored, typename Convert>
void convert_elements(const uint8_t* p, std::span<float> out, Convert convert) {
    for (size_t i = 0; i < out.size(); ++i) {
        Stored v;
        std::memcpy(&v, p + sizeof(Stored) * i, sizeof(Stored));
        out[i] = convert(v);
    }
}

}  // namespace

void SafetensorsModel::to_f32(const StTensor& t, std::span<float> out) {
    const auto n = static_cast<size_t>(t.n_elements());
    QL_ASSERT(out.size() == n);
    if (n == 0) return;  // empty spans may hold null pointers, which memcpy must not see
    if (n > kConvertSlice) {
        // Element-wise, so slices convert independently (the first touch of the mapped pages
        // is the slow part of loading a checkpoint from disk or page cache).
        const size_t es = t.data.size() / n;
        parallel_for((n + kConvertSlice - 1) / kConvertSlice, [&](size_t s0, size_t s1) {
            for (size_t s = s0; s < s1; ++s) {
                const size_t i0 = s * kConvertSlice, len = std::min(kConvertSlice, n - i0);
                StTensor part = t;
                part.shape = {static_cast<int64_t>(len)};
                part.data = t.data.subspan(i0 * es, len * es);
                to_f32(part, out.subspan(i0, len));
            }
        });
        return;
    }
    const uint8_t* p = t.data.data();
    switch (t.dtype) {
        case StDtype::F32:
            std::memcpy(out.data(), p, n * 4);
            break;
        case StDtype::F16:
            convert_elements<uint16_t>(p, out, [](uint16_t h) { return f16_to_f32(h); });
            break;
        case StDtype::BF16:
            convert_elements<uint16_t>(p, out, [](uint16_t h) { return bf16_to_f32(h); });
            break;
        case StDtype::F64:
            convert_elements<double>(p, out, [](double d) { return static_cast<float>(d); });
            break;
        default:
            fail("{}: tensor '{}': dtype {} is not a float type", t.file, t.name,
                 st_dtype_name(t.dtype));
    }
}

}  // namespace quantlens
