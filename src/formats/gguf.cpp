// GGUF v3 reader (validating, memory-mapped) and writer (byte-identical re-emission).
// Layout documented in gguf.h. Every read goes through Reader, which checks bounds before
// touching memory, so a corrupt file yields an Error naming the file and never a crash.
#include "formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <set>
#include <tuple>
#include <type_traits>

#include <fmt/ranges.h>

#include "core/error.h"
#include "core/output_file.h"

namespace quantlens {

static_assert(std::endian::native == std::endian::little, "GGUF I/O assumes a little-endian host");

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
// Nested arrays deeper than this are not written by any known tool; the bound keeps a
// malicious file from exhausting the stack through recursion.
constexpr int kMaxArrayDepth = 8;

// Each GGUF value type's name in messages and the smallest on-disk size of one value of it
// (which bounds array counts before allocating), indexed by the type's number.
struct ValueTypeFacts {
    GgufValueType type;
    const char* name;
    size_t min_size;
};
constexpr ValueTypeFacts kValueTypes[] = {
    {GgufValueType::UINT8, "u8", 1},      {GgufValueType::INT8, "i8", 1},
    {GgufValueType::UINT16, "u16", 2},    {GgufValueType::INT16, "i16", 2},
    {GgufValueType::UINT32, "u32", 4},    {GgufValueType::INT32, "i32", 4},
    {GgufValueType::FLOAT32, "f32", 4},   {GgufValueType::BOOL, "bool", 1},
    {GgufValueType::STRING, "string", 8}, {GgufValueType::ARRAY, "array", 12},
    {GgufValueType::UINT64, "u64", 8},    {GgufValueType::INT64, "i64", 8},
    {GgufValueType::FLOAT64, "f64", 8},
};

const ValueTypeFacts* facts_of(GgufValueType t) {
    const auto i = static_cast<size_t>(t);
    return i < std::size(kValueTypes) && kValueTypes[i].type == t ? &kValueTypes[i] : nullptr;
}

const char* value_type_name(GgufValueType t) {
    const ValueTypeFacts* f = facts_of(t);
    return f ? f->name : "?";
}

size_t min_value_size(GgufValueType t) {
    const ValueTypeFacts* f = facts_of(t);
    return f ? f->min_size : 1;
}

// The C++ type that each numeric GGUF type (any but bool, string and array) is stored as on
// disk; the reader and the writer both go through visit_number_type.
template <GgufValueType V, typename T>
struct StoredAs {
    static constexpr GgufValueType type = V;
    using value_type = T;
};
using NumberTypes =
    std::tuple<StoredAs<GgufValueType::UINT8, uint8_t>, StoredAs<GgufValueType::INT8, int8_t>,
               StoredAs<GgufValueType::UINT16, uint16_t>, StoredAs<GgufValueType::INT16, int16_t>,
               StoredAs<GgufValueType::UINT32, uint32_t>, StoredAs<GgufValueType::INT32, int32_t>,
               StoredAs<GgufValueType::FLOAT32, float>, StoredAs<GgufValueType::UINT64, uint64_t>,
               StoredAs<GgufValueType::INT64, int64_t>, StoredAs<GgufValueType::FLOAT64, double>>;

// Calls fn with a value of the C++ type of the numeric GGUF type t.
template <typename Fn>
void visit_number_type(GgufValueType t, Fn&& fn) {
    const bool found = std::apply(
        [&](auto... number) {
            return ((number.type == t && (fn(typename decltype(number)::value_type{}), true)) ||
                    ...);
        },
        NumberTypes{});
    QL_ASSERT(found);
}

// The GgufValue::scalar alternative that holds a number stored on disk as T.
template <typename T>
using HeldAs = std::conditional_t<std::is_floating_point_v<T>, double,
                                  std::conditional_t<std::is_signed_v<T>, int64_t, uint64_t>>;

bool valid_value_type(uint32_t t) {
    return t <= static_cast<uint32_t>(GgufValueType::FLOAT64);
}

class Reader {
  public:
    Reader(std::span<const uint8_t> bytes, const std::string& name) : b_(bytes), name_(name) {}

    size_t pos() const { return pos_; }
    size_t remaining() const { return b_.size() - pos_; }

    template <typename T>
    T read(const char* what) {
        need(sizeof(T), what);
        T v;
        std::memcpy(&v, b_.data() + pos_, sizeof(T));
        pos_ += sizeof(T);
        return v;
    }

    std::string read_string(const char* what) {
        const uint64_t n = read<uint64_t>(what);
        QL_CHECK(
            n <= remaining(),
            "{}: {} at offset {}: string length {} runs past the end of the file ({} bytes left)",
            name_, what, pos_ - 8, n, remaining());
        std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
        pos_ += n;
        return s;
    }

    void need(size_t n, const char* what) const {
        QL_CHECK(n <= remaining(), "{}: truncated: {} at offset {} needs {} bytes, {} left", name_,
                 what, pos_, n, remaining());
    }

    const std::string& name() const { return name_; }

  private:
    std::span<const uint8_t> b_;
    const std::string& name_;
    size_t pos_ = 0;
};

GgufValue read_value(Reader& r, GgufValueType type, const std::string& key, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
        case GgufValueType::BOOL: {
            const uint8_t b = r.read<uint8_t>("bool value");
            QL_CHECK(b <= 1, "{}: key '{}': bool value {} is neither 0 nor 1", r.name(), key, b);
            v.scalar = b != 0;
            break;
        }
        case GgufValueType::STRING:
            v.scalar = r.read_string("string value");
            break;
        case GgufValueType::ARRAY: {
            QL_CHECK(depth < kMaxArrayDepth, "{}: key '{}': arrays nested deeper than {}", r.name(),
                     key, kMaxArrayDepth);
            const uint32_t et = r.read<uint32_t>("array element type");
            QL_CHECK(valid_value_type(et), "{}: key '{}': unknown array element type {}", r.name(),
                     key, et);
            v.array_type = static_cast<GgufValueType>(et);
            const uint64_t n = r.read<uint64_t>("array length");
            QL_CHECK(n <= r.remaining() / min_value_size(v.array_type),
                     "{}: key '{}': array of {} {} elements cannot fit in the {} bytes left",
                     r.name(), key, n, value_type_name(v.array_type), r.remaining());
            v.array.reserve(n);
            for (uint64_t i = 0; i < n; ++i)
                v.array.push_back(read_value(r, v.array_type, key, depth + 1));
            break;
        }
        default:
            visit_number_type(type, [&](auto zero) {
                using T = decltype(zero);
                const std::string what = std::string(value_type_name(type)) + " value";
                v.scalar = HeldAs<T>{r.read<T>(what.c_str())};
            });
            break;
    }
    return v;
}

using Sink = std::function<void(const void*, size_t)>;

template <typename T>
void put(const Sink& out, T v) {
    out(&v, sizeof(T));
}

void put_string(const Sink& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    out(s.data(), s.size());
}

void write_value(const Sink& out, const GgufValue& v) {
    switch (v.type) {
        case GgufValueType::BOOL:
            put<uint8_t>(out, std::get<bool>(v.scalar) ? 1 : 0);
            break;
        case GgufValueType::STRING:
            put_string(out, std::get<std::string>(v.scalar));
            break;
        case GgufValueType::ARRAY:
            put<uint32_t>(out, static_cast<uint32_t>(v.array_type));
            put<uint64_t>(out, v.array.size());
            for (const auto& e : v.array) {
                QL_ASSERT(e.type == v.array_type);
                write_value(out, e);
            }
            break;
        default:
            visit_number_type(v.type, [&](auto zero) {
                using T = decltype(zero);
                put<T>(out, static_cast<T>(std::get<HeldAs<T>>(v.scalar)));
            });
            break;
    }
}

uint64_t align_up(uint64_t x, uint64_t a) {
    return (x + a - 1) / a * a;
}

// Bytes of a tensor of type `type` and shape `ne`; nullopt on overflow or a row length that
// is not a multiple of the block size.
std::optional<uint64_t> tensor_nbytes(GgmlType type, const std::vector<int64_t>& ne) {
    const GgmlTypeInfo& info = ggml_type_info(type);
    if (ne.empty()) return 0;
    if (ne[0] % info.block_size != 0) return std::nullopt;
    uint64_t rows = 1;
    for (size_t i = 1; i < ne.size(); ++i) {
        const auto d = static_cast<uint64_t>(ne[i]);
        if (d != 0 && rows > std::numeric_limits<uint64_t>::max() / d) return std::nullopt;
        rows *= d;
    }
    const auto blocks = static_cast<uint64_t>(ne[0] / info.block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / info.bytes_per_block) return std::nullopt;
    const uint64_t row = blocks * info.bytes_per_block;
    if (row != 0 && rows > std::numeric_limits<uint64_t>::max() / row) return std::nullopt;
    return rows * row;
}

}  // namespace

// ---- GgufValue ---------------------------------------------------------------------------

namespace {
template <typename T>
GgufValue scalar_value(GgufValueType type, T v) {
    GgufValue g;
    g.type = type;
    g.scalar = std::move(v);
    return g;
}
}  // namespace

GgufValue GgufValue::u32(uint32_t v) {
    return scalar_value(GgufValueType::UINT32, uint64_t{v});
}
GgufValue GgufValue::i32(int32_t v) {
    return scalar_value(GgufValueType::INT32, int64_t{v});
}
GgufValue GgufValue::u64(uint64_t v) {
    return scalar_value(GgufValueType::UINT64, v);
}
GgufValue GgufValue::f32(float v) {
    return scalar_value(GgufValueType::FLOAT32, double{v});
}
GgufValue GgufValue::boolean(bool v) {
    return scalar_value(GgufValueType::BOOL, v);
}
GgufValue GgufValue::string(std::string v) {
    return scalar_value(GgufValueType::STRING, std::move(v));
}
GgufValue GgufValue::string_array(const std::vector<std::string>& v) {
    GgufValue a{GgufValueType::ARRAY, uint64_t{0}, GgufValueType::STRING, {}};
    for (const auto& s : v) a.array.push_back(string(s));
    return a;
}
GgufValue GgufValue::f32_array(const std::vector<float>& v) {
    GgufValue a{GgufValueType::ARRAY, uint64_t{0}, GgufValueType::FLOAT32, {}};
    for (float f : v) a.array.push_back(f32(f));
    return a;
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
    GgufValue a{GgufValueType::ARRAY, uint64_t{0}, GgufValueType::INT32, {}};
    for (int32_t i : v) a.array.push_back(i32(i));
    return a;
}

namespace {

// "FILE: key 'KEY': " before a type error when the value came from a file.
std::string where(const GgufValue& v) {
    return v.origin.empty() ? std::string() : v.origin + ": ";
}

// Element accessor over an array, naming the array's origin and the index on a type error.
template <typename T, typename Get>
std::vector<T> array_of(const GgufValue& v, const char* what, Get get) {
    QL_CHECK(v.type == GgufValueType::ARRAY, "{}GGUF value of type {} is not {}", where(v),
             value_type_name(v.type), what);
    std::vector<T> out;
    out.reserve(v.array.size());
    for (size_t i = 0; i < v.array.size(); ++i) {
        try {
            out.push_back(get(v.array[i]));
        } catch (const Error& e) {
            fail("{}element {}: {}", where(v), i, e.what());
        }
    }
    return out;
}

}  // namespace

int64_t GgufValue::as_int() const {
    if (const auto* u = std::get_if<uint64_t>(&scalar); u && type != GgufValueType::ARRAY) {
        if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
            fail("{}GGUF value {} does not fit in a signed 64-bit integer", where(*this), *u);
        return static_cast<int64_t>(*u);
    }
    if (const auto* i = std::get_if<int64_t>(&scalar)) return *i;
    fail("{}GGUF value of type {} is not an integer", where(*this), value_type_name(type));
}

double GgufValue::as_float() const {
    if (const auto* d = std::get_if<double>(&scalar)) return *d;
    if (type == GgufValueType::ARRAY || type == GgufValueType::STRING ||
        type == GgufValueType::BOOL)
        fail("{}GGUF value of type {} is not a number", where(*this), value_type_name(type));
    return static_cast<double>(as_int());
}

bool GgufValue::as_bool() const {
    if (const auto* b = std::get_if<bool>(&scalar)) return *b;
    fail("{}GGUF value of type {} is not a bool", where(*this), value_type_name(type));
}

const std::string& GgufValue::as_string() const {
    if (const auto* s = std::get_if<std::string>(&scalar)) return *s;
    fail("{}GGUF value of type {} is not a string", where(*this), value_type_name(type));
}

std::vector<std::string> GgufValue::as_string_array() const {
    QL_CHECK(type != GgufValueType::ARRAY || array_type == GgufValueType::STRING,
             "{}GGUF array of {} is not a string array", where(*this), value_type_name(array_type));
    return array_of<std::string>(*this, "a string array",
                                 [](const GgufValue& e) { return e.as_string(); });
}

std::vector<int64_t> GgufValue::as_int_array() const {
    return array_of<int64_t>(*this, "an array", [](const GgufValue& e) { return e.as_int(); });
}

std::vector<double> GgufValue::as_float_array() const {
    return array_of<double>(*this, "an array", [](const GgufValue& e) { return e.as_float(); });
}

int64_t GgufTensorInfo::n_elements() const {
    int64_t n = 1;
    for (int64_t d : ne)
        QL_CHECK(!__builtin_mul_overflow(n, d, &n),
                 "tensor '{}': dimensions {} multiply past 2^63 elements", name,
                 fmt::join(ne, " × "));
    return ne.empty() ? 0 : n;
}

// ---- GgufFile ----------------------------------------------------------------------------

GgufFile GgufFile::open(const std::string& path) {
    auto file = std::make_shared<MappedFile>(path);
    GgufFile g = parse(file->bytes(), path);
    g.file_ = std::move(file);
    return g;
}

GgufFile GgufFile::parse(std::span<const uint8_t> bytes, const std::string& name) {
    GgufFile g;
    g.path_ = name;
    g.bytes_ = bytes;
    Reader r(bytes, g.path_);

    QL_CHECK(bytes.size() >= 4, "{}: not a GGUF file: {} bytes, too short for the magic", name,
             bytes.size());
    const uint32_t magic = r.read<uint32_t>("magic");
    QL_CHECK(magic == kMagic, "{}: not a GGUF file: magic 0x{:08x}, expected 0x{:08x} (\"GGUF\")",
             name, magic, kMagic);
    g.version_ = r.read<uint32_t>("version");
    QL_CHECK(g.version_ == 2 || g.version_ == 3,
             "{}: unsupported GGUF version {}, expected 3 (or 2)", name, g.version_);
    const uint64_t n_tensors = r.read<uint64_t>("tensor count");
    const uint64_t n_kv = r.read<uint64_t>("KV count");
    // Each KV needs at least a key length, a type and one byte; each tensor info at least
    // a name length, n_dims, one dim, type and offset.
    QL_CHECK(n_kv <= r.remaining() / 13, "{}: KV count {} cannot fit in the {} bytes of the file",
             name, n_kv, bytes.size());
    QL_CHECK(n_tensors <= r.remaining() / 32,
             "{}: tensor count {} cannot fit in the {} bytes of the file", name, n_tensors,
             bytes.size());

    std::set<std::string> keys;
    g.kv_.reserve(n_kv);
    for (uint64_t i = 0; i < n_kv; ++i) {
        std::string key = r.read_string("KV key");
        QL_CHECK(keys.insert(key).second, "{}: duplicate KV key '{}'", name, key);
        const uint32_t type = r.read<uint32_t>("KV type");
        QL_CHECK(valid_value_type(type), "{}: key '{}': unknown value type {}", name, key, type);
        GgufValue v = read_value(r, static_cast<GgufValueType>(type), key, 0);
        v.origin = fmt::format("{}: key '{}'", name, key);
        g.kv_.emplace_back(std::move(key), std::move(v));
    }

    if (const GgufValue* a = g.find("general.alignment")) {
        QL_CHECK(a->type == GgufValueType::UINT32,
                 "{}: general.alignment has type {}, expected u32", name, value_type_name(a->type));
        const uint64_t al = std::get<uint64_t>(a->scalar);
        QL_CHECK(al != 0 && std::has_single_bit(al) && al <= kMaxGgufAlignment,
                 "{}: general.alignment {} is not a power of two up to {}", name, al,
                 kMaxGgufAlignment);
        g.alignment_ = static_cast<uint32_t>(al);
    }

    g.tensors_.reserve(n_tensors);
    for (uint64_t i = 0; i < n_tensors; ++i) {
        GgufTensorInfo t;
        t.name = r.read_string("tensor name");
        QL_CHECK(!g.tensor_index_.contains(t.name), "{}: duplicate tensor name '{}'", name, t.name);
        const uint32_t n_dims = r.read<uint32_t>("tensor n_dims");
        QL_CHECK(n_dims >= 1 && n_dims <= kMaxDims,
                 "{}: tensor '{}': {} dimensions, expected 1 to {}", name, t.name, n_dims,
                 kMaxDims);
        for (uint32_t d = 0; d < n_dims; ++d) {
            const int64_t ne = r.read<int64_t>("tensor dimension");
            QL_CHECK(ne >= 0, "{}: tensor '{}': negative dimension {}", name, t.name, ne);
            t.ne.push_back(ne);
        }
        const uint32_t type = r.read<uint32_t>("tensor type");
        const GgmlTypeInfo* info = ggml_type_info(type);
        QL_CHECK(info != nullptr, "{}: tensor '{}': unknown ggml type id {}", name, t.name, type);
        t.type = info->type;
        t.offset = r.read<uint64_t>("tensor offset");
        int64_t n_elements = 1;  // n_elements() would overflow (undefined) on such dims
        for (const int64_t d : t.ne)
            QL_CHECK(!__builtin_mul_overflow(n_elements, d, &n_elements),
                     "{}: tensor '{}': dimensions {} multiply past 2^63 elements", name, t.name,
                     fmt::join(t.ne, " × "));
        QL_CHECK(t.ne[0] % info->block_size == 0,
                 "{}: tensor '{}': row length {} is not a multiple of the {} block size {}", name,
                 t.name, t.ne[0], info->name, info->block_size);
        const auto nbytes = tensor_nbytes(t.type, t.ne);
        QL_CHECK(nbytes.has_value(), "{}: tensor '{}': size overflows 64 bits", name, t.name);
        t.nbytes = *nbytes;
        QL_CHECK(t.offset % g.alignment_ == 0,
                 "{}: tensor '{}': data offset {} is not a multiple of the alignment {}", name,
                 t.name, t.offset, g.alignment_);
        g.tensor_index_.emplace(t.name, g.tensors_.size());
        g.tensors_.push_back(std::move(t));
    }

    g.data_offset_ = align_up(r.pos(), g.alignment_);
    const uint64_t data_size = g.data_offset_ <= bytes.size() ? bytes.size() - g.data_offset_ : 0;
    for (const auto& t : g.tensors_) {
        QL_CHECK(t.offset <= data_size && t.nbytes <= data_size - t.offset,
                 "{}: tensor '{}': data [{}, +{}) lies outside the {}-byte data section (file "
                 "truncated?)",
                 name, t.name, t.offset, t.nbytes, data_size);
    }
    // Two tensors sharing bytes would alias each other's weights (llama.cpp refuses such
    // files too): sort by offset and compare neighbours.
    std::vector<const GgufTensorInfo*> by_offset;
    by_offset.reserve(g.tensors_.size());
    for (const auto& t : g.tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const auto* a, const auto* b) { return a->offset < b->offset; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
        const GgufTensorInfo& a = *by_offset[i - 1];
        const GgufTensorInfo& b = *by_offset[i];
        QL_CHECK(a.nbytes == 0 || b.offset >= a.offset + a.nbytes,
                 "{}: tensors '{}' [{}, +{}) and '{}' [{}, +{}) overlap in the data section", name,
                 a.name, a.offset, a.nbytes, b.name, b.offset, b.nbytes);
    }
    return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
    for (const auto& [k, v] : kv_)
        if (k == key) return &v;
    return nullptr;
}

const GgufValue& GgufFile::get(const std::string& key) const {
    const GgufValue* v = find(key);
    if (!v) fail("{}: missing GGUF key '{}'", path_, key);
    return *v;
}

const GgufTensorInfo* GgufFile::find_tensor(const std::string& name) const {
    auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
    const GgufTensorInfo* t = find_tensor(name);
    if (!t) fail("{}: no tensor '{}'", path_, name);
    return *t;
}

std::span<const uint8_t> GgufFile::tensor_data(const GgufTensorInfo& t) const {
    return bytes_.subspan(data_offset_ + t.offset, t.nbytes);
}

// ---- GgufWriter --------------------------------------------------------------------------

void GgufWriter::add_kv(std::string key, GgufValue value) {
    if (key == "general.alignment") {
        QL_CHECK(value.type == GgufValueType::UINT32, "general.alignment must be a u32");
        const uint64_t al = std::get<uint64_t>(value.scalar);
        QL_CHECK(al != 0 && std::has_single_bit(al) && al <= kMaxGgufAlignment,
                 "general.alignment {} is not a power of two up to {}", al, kMaxGgufAlignment);
        alignment_ = static_cast<uint32_t>(al);
    }
    for (auto& [k, v] : kv_) {
        if (k == key) {
            v = std::move(value);
            return;
        }
    }
    kv_.emplace_back(std::move(key), std::move(value));
}

void GgufWriter::check_new_tensor(const std::string& name, const std::vector<int64_t>& ne,
                                  GgmlType type, uint64_t n_bytes) const {
    QL_CHECK(!ne.empty() && ne.size() <= kMaxDims, "tensor '{}': {} dimensions, expected 1 to {}",
             name, ne.size(), kMaxDims);
    for (int64_t d : ne) QL_CHECK(d >= 0, "tensor '{}': negative dimension {}", name, d);
    const auto nbytes = tensor_nbytes(type, ne);
    QL_CHECK(nbytes.has_value(), "tensor '{}': row length {} does not fit type {}", name, ne[0],
             ggml_type_info(type).name);
    QL_CHECK(n_bytes == *nbytes, "tensor '{}': {} data bytes given, {} expected for {}", name,
             n_bytes, *nbytes, ggml_type_info(type).name);
    for (const auto& t : tensors_)
        QL_CHECK(t.name != name, "tensor '{}' added twice to a GGUF writer", name);
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type,
                            std::span<const uint8_t> data) {
    check_new_tensor(name, ne, type, data.size());
    tensors_.push_back({std::move(name), std::move(ne), type, data.size(), data, {}});
}

void GgufWriter::add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type,
                            uint64_t n_bytes, Producer produce) {
    QL_CHECK(produce != nullptr, "tensor '{}': no producer given", name);
    check_new_tensor(name, ne, type, n_bytes);
    tensors_.push_back({std::move(name), std::move(ne), type, n_bytes, {}, std::move(produce)});
}

void GgufWriter::copy_from(const GgufFile& src) {
    alignment_ = src.alignment();
    for (const auto& [k, v] : src.kv()) add_kv(k, v);
    for (const auto& t : src.tensors()) add_tensor(t.name, t.ne, t.type, src.tensor_data(t));
}

// Emits the file the way ggml's writer does: header, KVs, tensor infos, zero padding to
// the alignment, then each tensor's data padded to the alignment. Produced tensors go
// through one reused buffer, so memory is the largest tensor, not the file.
namespace {

const uint8_t kZeros[256] = {};

}  // namespace

uint64_t GgufWriter::emit_header(const Sink& counted, uint64_t& pos) const {
    put<uint32_t>(counted, kMagic);
    put<uint32_t>(counted, 3);
    put<uint64_t>(counted, tensors_.size());
    put<uint64_t>(counted, kv_.size());
    for (const auto& [k, v] : kv_) {
        put_string(counted, k);
        put<uint32_t>(counted, static_cast<uint32_t>(v.type));
        write_value(counted, v);
    }
    uint64_t offset = 0;
    for (const Tensor& t : tensors_) {
        put_string(counted, t.name);
        put<uint32_t>(counted, static_cast<uint32_t>(t.ne.size()));
        for (int64_t d : t.ne) put<int64_t>(counted, d);
        put<uint32_t>(counted, static_cast<uint32_t>(t.type));
        put<uint64_t>(counted, offset);
        offset += align_up(t.nbytes, alignment_);
    }
    pad_to_alignment(counted, pos);
    return offset;  // the data section's size
}

void GgufWriter::pad_to_alignment(const Sink& counted, uint64_t pos) const {
    uint64_t n = align_up(pos, alignment_) - pos;
    while (n > 0) {
        const size_t k = std::min<uint64_t>(n, sizeof(kZeros));
        counted(kZeros, k);
        n -= k;
    }
}

uint64_t GgufWriter::data_offset() const {
    uint64_t pos = 0;
    emit_header([&](const void*, size_t n) { pos += n; }, pos);
    return pos;
}

uint64_t GgufWriter::file_size() const {
    uint64_t pos = 0;
    const uint64_t data = emit_header([&](const void*, size_t n) { pos += n; }, pos);
    return pos + data;
}

void GgufWriter::emit(const Sink& out, const std::string& file) const {
    uint64_t pos = 0;
    const Sink counted = [&](const void* p, size_t n) {
        out(p, n);
        pos += n;
    };
    emit_header(counted, pos);
    std::vector<uint8_t> buffer;
    for (const Tensor& t : tensors_) {
        if (!t.produce) {
            counted(t.data.data(), t.data.size());
        } else {
            buffer.clear();
            t.produce(buffer);
            if (buffer.size() != t.nbytes)
                throw InternalError(
                    fmt::format("{}: tensor '{}': producer gave {} bytes, {} were declared", file,
                                t.name, buffer.size(), t.nbytes));
            counted(buffer.data(), buffer.size());
        }
        pad_to_alignment(counted, pos);
    }
}

std::vector<uint8_t> GgufWriter::serialize() const {
    std::vector<uint8_t> buf;
    emit(
        [&](const void* p, size_t n) {
            const auto* c = static_cast<const uint8_t*>(p);
            buf.insert(buf.end(), c, c + n);
        },
        "GGUF image");
    return buf;
}

void GgufWriter::write(const std::string& path, Overwrite overwrite) const {
    OutputFile f(path, overwrite);
    // Each piece goes to the file as it is produced, so a full disk stops the run before the
    // next tensor is quantized rather than after the whole model.
    emit([&](const void* p, size_t n) { f.write(p, n); }, path);
    f.commit();
}

}  // namespace quantlens
