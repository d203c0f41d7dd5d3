// imatrix readers and writers (legacy .dat and GGUF); see imatrix.h for the layouts.
#include "formats/imatrix.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/error.h"
#include "core/mmap_file.h"
#include "core/output_file.h"
#include "formats/gguf.h"

namespace quantlens {
namespace {

// Bounds-checked little-endian cursor over the legacy file.
class Cursor {
  public:
    Cursor(std::span<const uint8_t> bytes, const std::string& name) : b_(bytes), name_(name) {}
    int32_t i32(const char* what) {
        need(4, what);
        int32_t v;
        std::memcpy(&v, b_.data() + pos_, 4);
        pos_ += 4;
        return v;
    }
    std::string str(int32_t len, const char* what) {
        QL_CHECK(len >= 0, "{}: negative {} length {} at offset {}", name_, what, len, pos_);
        need(static_cast<size_t>(len), what);
        std::string s(reinterpret_cast<const char*>(b_.data() + pos_), static_cast<size_t>(len));
        pos_ += static_cast<size_t>(len);
        return s;
    }
    // Separate from floats() so a count can be checked before anything is allocated for it.
    void need_floats(size_t n, const char* what) const {
        QL_CHECK(n <= (b_.size() - pos_) / 4, "{}: truncated {} at offset {} ({} floats needed)",
                 name_, what, pos_, n);
    }
    void floats(float* out, size_t n, const char* what) {
        need_floats(n, what);
        std::memcpy(out, b_.data() + pos_, n * 4);
        pos_ += n * 4;
    }
    size_t left() const { return b_.size() - pos_; }

  private:
    void need(size_t n, const char* what) {
        QL_CHECK(n <= b_.size() - pos_, "{}: truncated {} at offset {} (file is {} bytes)", name_,
                 what, pos_, b_.size());
    }
    std::span<const uint8_t> b_;
    const std::string& name_;
    size_t pos_ = 0;
};

}  // namespace

Imatrix Imatrix::parse_legacy(std::span<const uint8_t> bytes, const std::string& name) {
    Imatrix m;
    m.path_ = name;
    Cursor c(bytes, name);
    const int32_t n_entries = c.i32("entry count");
    QL_CHECK(n_entries > 0, "{}: imatrix entry count {} (expected > 0)", name, n_entries);
    for (int32_t e = 0; e < n_entries; ++e) {
        ImatrixEntry entry;
        entry.name = c.str(c.i32("name length"), "tensor name");
        const int32_t n_calls = c.i32("call count");
        const int32_t n_values = c.i32("value count");
        QL_CHECK(n_calls >= 0 && n_values > 0,
                 "{}: tensor '{}': call count {} and value count {} (expected >= 0 and > 0)", name,
                 entry.name, n_calls, n_values);
        entry.n_values = n_values;
        entry.counts = {n_calls};
        c.need_floats(static_cast<size_t>(n_values), "imatrix values");
        entry.values.resize(static_cast<size_t>(n_values));
        c.floats(entry.values.data(), entry.values.size(), "imatrix values");
        for (float& v : entry.values) {
            QL_CHECK(std::isfinite(v) && v >= 0,
                     "{}: tensor '{}': value {} (expected finite, >= 0)", name, entry.name, v);
            if (n_calls > 0) v /= static_cast<float>(n_calls);
        }
        m.entries_.push_back(std::move(entry));
    }
    if (c.left() >= 8) {  // optional trailer: last chunk and dataset name
        m.chunk_count_ = c.i32("last chunk");
        const int32_t len = c.i32("dataset name length");
        m.datasets_.push_back(c.str(len, "dataset name"));
    }
    return m;
}

namespace {

void parse_gguf_impl(const GgufFile& g, std::vector<ImatrixEntry>& entries,
                     std::vector<std::string>& datasets, int64_t& chunks) {
    const std::string& path = g.path();
    try {
        if (const auto* v = g.find("imatrix.datasets")) datasets = v->as_string_array();
        if (const auto* v = g.find("imatrix.chunk_count")) chunks = v->as_int();
    } catch (const Error& e) {
        fail("{}: {}", path, e.what());  // the value's message does not name the file
    }
    const std::string suffix = ".in_sum2";
    for (const auto& t : g.tensors()) {
        if (t.name.size() <= suffix.size() ||
            t.name.compare(t.name.size() - suffix.size(), suffix.size(), suffix) != 0)
            continue;
        const std::string tensor = t.name.substr(0, t.name.size() - suffix.size());
        const GgufTensorInfo& counts = g.tensor(tensor + ".counts");
        QL_CHECK(t.type == GgmlType::F32 && counts.type == GgmlType::F32,
                 "{}: tensor '{}': in_sum2 and counts must be F32", path, tensor);
        const int64_t n_per_row = t.ne.empty() ? 0 : t.ne[0];
        const int64_t n_mat = t.n_rows();
        // As in the legacy format (n_values > 0): an empty entry weights nothing.
        QL_CHECK(n_per_row > 0 && n_mat > 0, "{}: tensor '{}': in_sum2 has shape [{}, {}]", path,
                 tensor, n_per_row, n_mat);
        QL_CHECK(counts.n_elements() == n_mat, "{}: tensor '{}': {} counts for {} matrices", path,
                 tensor, counts.n_elements(), n_mat);
        const auto* sums = reinterpret_cast<const float*>(g.tensor_data(t).data());
        const auto* cnt = reinterpret_cast<const float*>(g.tensor_data(counts).data());
        ImatrixEntry e;
        e.name = tensor;
        e.n_values = n_per_row * n_mat;
        e.values.resize(static_cast<size_t>(e.n_values));
        for (int64_t m = 0; m < n_mat; ++m) {
            // Also keeps the conversion to int64 defined (no NaN, nothing out of range).
            QL_CHECK(std::isfinite(cnt[m]) && cnt[m] >= 0 && cnt[m] < 9e18f,
                     "{}: tensor '{}': count {} of matrix {} (expected finite, >= 0)", path, tensor,
                     cnt[m], m);
            e.counts.push_back(static_cast<int64_t>(cnt[m]));
            for (int64_t j = 0; j < n_per_row; ++j) {
                const float s = sums[m * n_per_row + j];
                // llama.cpp's quantize: a matrix no calibration token reached (an expert
                // never routed to) gets importance 1 in every column.
                e.values[static_cast<size_t>(m * n_per_row + j)] = cnt[m] > 0 ? s / cnt[m] : 1.0f;
            }
        }
        entries.push_back(std::move(e));
    }
    QL_CHECK(!entries.empty(), "{}: GGUF file holds no imatrix tensors (*.in_sum2)", path);
}

}  // namespace

Imatrix Imatrix::load(const std::string& path) {
    const MappedFile file(path);
    const auto bytes = file.bytes();
    if (bytes.size() >= 4 && std::memcmp(bytes.data(), "GGUF", 4) == 0) {
        Imatrix m;
        m.path_ = path;
        m.gguf_ = true;
        parse_gguf_impl(GgufFile::open(path), m.entries_, m.datasets_, m.chunk_count_);
        return m;
    }
    return parse_legacy(bytes, path);
}

Imatrix Imatrix::parse_gguf(std::span<const uint8_t> bytes, const std::string& name) {
    Imatrix m;
    m.path_ = name;
    m.gguf_ = true;
    parse_gguf_impl(GgufFile::parse(bytes, name), m.entries_, m.datasets_, m.chunk_count_);
    return m;
}

std::vector<ImatrixFallback> Imatrix::zero_count_matrices() const {
    std::vector<ImatrixFallback> out;
    if (!gguf_) return out;  // legacy counts are calls shared by every matrix
    for (const auto& e : entries_)
        for (size_t m = 0; m < e.counts.size(); ++m)
            if (e.counts[m] == 0) out.push_back({e.name, static_cast<int64_t>(m)});
    return out;
}

const ImatrixEntry* Imatrix::find(const std::string& tensor) const {
    for (const auto& e : entries_)
        if (e.name == tensor) return &e;
    return nullptr;
}

const float* Imatrix::importance(const std::string& tensor, int64_t n_per_row, int64_t n_mat,
                                 int64_t mat) const {
    QL_ASSERT(n_per_row > 0 && n_mat > 0 && mat >= 0 && mat < n_mat);
    const ImatrixEntry* e = find(tensor);
    if (!e) return nullptr;
    QL_CHECK(e->n_values == n_per_row * n_mat,
             "{}: tensor '{}': imatrix has {} values, expected {} ({} columns x {} matrices)",
             path_, tensor, e->n_values, n_per_row * n_mat, n_per_row, n_mat);
    return e->values.data() + mat * n_per_row;
}

namespace {

// Entries sorted by name (llama.cpp's deterministic order), each checked for consistency.
std::vector<const ImatrixEntry*> sorted_checked(const std::string& path,
                                                const std::vector<ImatrixEntry>& entries) {
    QL_CHECK(!entries.empty(), "{}: no imatrix entries to write", path);
    std::vector<const ImatrixEntry*> out;
    for (const auto& e : entries) {
        const auto n_mat = static_cast<int64_t>(e.counts.size());
        QL_CHECK(n_mat > 0 && e.n_values > 0 && e.n_values % n_mat == 0 &&
                     static_cast<int64_t>(e.values.size()) == e.n_values,
                 "{}: tensor '{}': {} values, {} stored, {} counts (expected n_values = "
                 "columns x matrices, one count per matrix)",
                 path, e.name, e.n_values, e.values.size(), n_mat);
        for (int64_t c : e.counts)
            QL_CHECK(c >= 0, "{}: tensor '{}': negative count {}", path, e.name, c);
        out.push_back(&e);
    }
    std::sort(out.begin(), out.end(),
              [](const ImatrixEntry* a, const ImatrixEntry* b) { return a->name < b->name; });
    for (size_t i = 1; i < out.size(); ++i)
        QL_CHECK(out[i]->name != out[i - 1]->name, "{}: tensor '{}' appears twice", path,
                 out[i]->name);
    return out;
}

void put_i32(std::vector<uint8_t>& b, int64_t v, const std::string& path, const char* what) {
    QL_CHECK(v >= INT32_MIN && v <= INT32_MAX, "{}: {} {} does not fit the legacy format", path,
             what, v);
    const auto x = static_cast<int32_t>(v);
    const auto* p = reinterpret_cast<const uint8_t*>(&x);
    b.insert(b.end(), p, p + 4);
}

}  // namespace

void write_imatrix_legacy(const std::string& path, const std::vector<ImatrixEntry>& entries,
                          const ImatrixWriteInfo& info) {
    QL_CHECK(info.chunk_size > 0, "{}: chunk size {} (expected > 0)", path, info.chunk_size);
    const auto sorted = sorted_checked(path, entries);
    std::vector<uint8_t> b;
    put_i32(b, static_cast<int64_t>(sorted.size()), path, "entry count");
    for (const ImatrixEntry* e : sorted) {
        put_i32(b, static_cast<int64_t>(e->name.size()), path, "name length");
        b.insert(b.end(), e->name.begin(), e->name.end());
        const int64_t max_count = *std::max_element(e->counts.begin(), e->counts.end());
        // Rounded up so a tensor seen by fewer tokens than one chunk still has a call.
        const int64_t n_calls = (max_count + info.chunk_size - 1) / info.chunk_size;
        put_i32(b, n_calls, path, "call count");
        put_i32(b, e->n_values, path, "value count");
        const int64_t n_mat = static_cast<int64_t>(e->counts.size());
        const int64_t n_per_row = e->n_values / n_mat;
        const size_t at = b.size();
        b.resize(at + static_cast<size_t>(e->n_values) * 4);
        for (int64_t i = 0; i < e->n_values; ++i) {
            // A matrix no token reached stores 1 (llama.cpp's placeholder for partial data).
            const float mean = e->counts[static_cast<size_t>(i / n_per_row)] == 0
                                   ? 1.0f
                                   : e->values[static_cast<size_t>(i)];
            const float v = mean * static_cast<float>(n_calls);
            std::memcpy(b.data() + at + static_cast<size_t>(i) * 4, &v, 4);
        }
    }
    put_i32(b, info.chunk_count, path, "chunk count");
    const std::string dataset = info.datasets.empty() ? std::string() : info.datasets.back();
    put_i32(b, static_cast<int64_t>(dataset.size()), path, "dataset name length");
    b.insert(b.end(), dataset.begin(), dataset.end());
    write_output_file(path, {reinterpret_cast<const char*>(b.data()), b.size()}, info.overwrite);
}

void write_imatrix_gguf(const std::string& path, const std::vector<ImatrixEntry>& entries,
                        const ImatrixWriteInfo& info) {
    const auto sorted = sorted_checked(path, entries);
    QL_CHECK(info.chunk_size > 0 && info.chunk_size <= UINT32_MAX && info.chunk_count >= 0 &&
                 info.chunk_count <= UINT32_MAX,
             "{}: chunk size {} and chunk count {} must fit u32", path, info.chunk_size,
             info.chunk_count);
    GgufWriter w;
    w.add_kv("general.type", GgufValue::string("imatrix"));
    w.add_kv("imatrix.datasets", GgufValue::string_array(info.datasets));
    w.add_kv("imatrix.chunk_count", GgufValue::u32(static_cast<uint32_t>(info.chunk_count)));
    w.add_kv("imatrix.chunk_size", GgufValue::u32(static_cast<uint32_t>(info.chunk_size)));
    // The writer copies tensor bytes at write time, so the buffers live until then.
    std::vector<std::vector<float>> buffers;
    buffers.reserve(sorted.size() * 2);
    for (const ImatrixEntry* e : sorted) {
        const int64_t n_mat = static_cast<int64_t>(e->counts.size());
        const int64_t n_per_row = e->n_values / n_mat;
        std::vector<float> sums(static_cast<size_t>(e->n_values));
        std::vector<float> counts(static_cast<size_t>(n_mat));
        for (int64_t m = 0; m < n_mat; ++m) {
            const auto c = static_cast<float>(e->counts[static_cast<size_t>(m)]);
            counts[static_cast<size_t>(m)] = c;
            for (int64_t j = 0; j < n_per_row; ++j) {
                const auto i = static_cast<size_t>(m * n_per_row + j);
                sums[i] = e->values[i] * c;
            }
        }
        buffers.push_back(std::move(sums));
        const auto& s = buffers.back();
        w.add_tensor(e->name + ".in_sum2", {n_per_row, n_mat}, GgmlType::F32,
                     {reinterpret_cast<const uint8_t*>(s.data()), s.size() * 4});
        buffers.push_back(std::move(counts));
        const auto& c = buffers.back();
        w.add_tensor(e->name + ".counts", {1, n_mat}, GgmlType::F32,
                     {reinterpret_cast<const uint8_t*>(c.data()), c.size() * 4});
    }
    w.write(path, info.overwrite);
}

void write_imatrix(const std::string& path, const std::vector<ImatrixEntry>& entries,
                   const ImatrixWriteInfo& info) {
    const bool gguf = path.size() >= 5 && path.compare(path.size() - 5, 5, ".gguf") == 0;
    if (gguf) {
        write_imatrix_gguf(path, entries, info);
    } else {
        write_imatrix_legacy(path, entries, info);
    }
}

}  // namespace quantlens
