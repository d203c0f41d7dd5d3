// GGUF v3 reader and writer.
//
// On-disk layout (little-endian):
//   magic "GGUF" (u32 0x46554747), version u32 (= 3; 2 accepted on read),
//   n_tensors u64, n_kv u64,
//   n_kv × { key: string, value_type: u32, value }
//     string = u64 length + bytes (no terminator)
//     value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool(u8), 8 string,
//                  9 array = { elem_type u32, count u64, count × value } (nested arrays allowed),
//                  10 u64, 11 i64, 12 f64
//   n_tensors × { name: string, n_dims u32 (≤ 4), ne[n_dims] u64 (ne[0] = row length),
//                 type u32 (ggml type id), offset u64 (relative to data section, aligned) }
//   padding to `general.alignment` (u32 KV, default 32)
//   data section: each tensor at data_start + offset.
//
// The reader memory-maps the file and validates everything once (sizes, overflow, offsets,
// alignment, duplicate names, unknown types); errors name the file and tensor. The writer
// reproduces a file read by the reader byte for byte (same KV order and value types, same
// tensor order, offsets and padding).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

#include "core/ggml_type.h"
#include "core/mmap_file.h"
#include "core/output_file.h"

namespace quantlens {

enum class GgufValueType : uint32_t {
    UINT8 = 0,
    INT8 = 1,
    UINT16 = 2,
    INT16 = 3,
    UINT32 = 4,
    INT32 = 5,
    FLOAT32 = 6,
    BOOL = 7,
    STRING = 8,
    ARRAY = 9,
    UINT64 = 10,
    INT64 = 11,
    FLOAT64 = 12,
};

// A KV value. Scalars are held widened (integers as int64/uint64, floats as double) but
// remember their on-disk type so they are written back identically.
struct GgufValue {
    GgufValueType type = GgufValueType::UINT32;
    std::variant<uint64_t, int64_t, double, bool, std::string> scalar;
    GgufValueType array_type = GgufValueType::UINT8;  // element type when type == ARRAY
    std::vector<GgufValue> array;                     // elements when type == ARRAY
    // "FILE: key 'KEY'" for a value read from a file (top level only), so an accessor's
    // type error names where the value came from; empty for values built in code.
    std::string origin = {};

    static GgufValue u32(uint32_t v);
    static GgufValue i32(int32_t v);
    static GgufValue u64(uint64_t v);
    static GgufValue f32(float v);
    static GgufValue boolean(bool v);
    static GgufValue string(std::string v);
    static GgufValue string_array(const std::vector<std::string>& v);
    static GgufValue f32_array(const std::vector<float>& v);
    static GgufValue i32_array(const std::vector<int32_t>& v);

    // Accessors throw Error if the value is not of a compatible kind.
    int64_t as_int() const;
    double as_float() const;
    bool as_bool() const;
    const std::string& as_string() const;
    std::vector<std::string> as_string_array() const;
    std::vector<int64_t> as_int_array() const;
    std::vector<double> as_float_array() const;
};

// llama.cpp writes 32; a file asking for more than this would make a rewrite pad every
// tensor by up to that much (1 GiB alignments were accepted before).
inline constexpr uint64_t kMaxGgufAlignment = 65536;

struct GgufTensorInfo {
    std::string name;
    std::vector<int64_t> ne;  // ggml order: ne[0] is the row length (innermost)
    GgmlType type = GgmlType::F32;
    uint64_t offset = 0;  // relative to the data section
    uint64_t nbytes = 0;  // computed from ne and type

    int64_t n_elements() const;
    // The product of the outer dimensions, also when ne[0] is 0 (no division by it).
    int64_t n_rows() const {
        int64_t rows = ne.empty() ? 0 : 1;
        for (size_t i = 1; i < ne.size(); ++i) rows *= ne[i];
        return rows;
    }
};

class GgufFile {
  public:
    // Opens and validates; throws Error naming the file and what is wrong.
    static GgufFile open(const std::string& path);
    // Parses an in-memory image (fuzzing, tests). `name` is used in error messages.
    static GgufFile parse(std::span<const uint8_t> bytes, const std::string& name);

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    uint32_t alignment() const { return alignment_; }
    uint64_t data_offset() const { return data_offset_; }  // file offset of the data section

    const std::vector<std::pair<std::string, GgufValue>>& kv() const { return kv_; }
    const GgufValue* find(const std::string& key) const;  // nullptr if absent
    const GgufValue& get(const std::string& key) const;   // throws Error if absent

    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo* find_tensor(const std::string& name) const;
    const GgufTensorInfo& tensor(const std::string& name) const;  // throws Error if absent
    std::span<const uint8_t> tensor_data(const GgufTensorInfo& t) const;

  private:
    std::string path_;
    std::shared_ptr<MappedFile> file_;  // empty when parsed from memory
    std::span<const uint8_t> bytes_;
    uint32_t version_ = 3;
    uint32_t alignment_ = 32;
    uint64_t data_offset_ = 0;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    std::vector<GgufTensorInfo> tensors_;
    std::map<std::string, size_t> tensor_index_;
};

// Writes GGUF v3. Add KVs and tensors in the order they should appear. A tensor's bytes
// come either from a span (copied at write time; it must stay valid until write()) or from
// a producer called at write time, so a writer of a whole model holds one tensor at a time.
// Offsets come from the declared sizes, so the header is written before any data exists.
// write() goes through OutputFile (core/output_file.h): an error, including one thrown by a
// producer, leaves neither a temporary nor a partial PATH; an existing PATH is refused
// unless `overwrite` is Overwrite::replace.
class GgufWriter {
  public:
    // Fills `out` (given empty, its capacity reused from the previous tensor) with exactly
    // the declared number of bytes; a different size is an InternalError naming the tensor.
    using Producer = std::function<void(std::vector<uint8_t>& out)>;

    void set_alignment(uint32_t alignment) { alignment_ = alignment; }
    void add_kv(std::string key, GgufValue value);  // replaces an existing key in place
    void add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type,
                    std::span<const uint8_t> data);
    // `n_bytes` must equal ggml_row_size(type, ne[0]) × rows; checked here (Error).
    void add_tensor(std::string name, std::vector<int64_t> ne, GgmlType type, uint64_t n_bytes,
                    Producer produce);
    // Copies all KVs and tensors of `src` (for round trips and edits).
    void copy_from(const GgufFile& src);
    void write(const std::string& path, Overwrite overwrite = Overwrite::refuse) const;
    std::vector<uint8_t> serialize() const;  // the whole file in memory (small files, tests)
    // What write() would produce, computed without producing any tensor: the offset of the
    // data section (header, tensor infos, padding) and the whole file's size.
    uint64_t data_offset() const;
    uint64_t file_size() const;

  private:
    uint32_t alignment_ = 32;
    std::vector<std::pair<std::string, GgufValue>> kv_;
    struct Tensor {
        std::string name;
        std::vector<int64_t> ne;
        GgmlType type;
        uint64_t nbytes;
        std::span<const uint8_t> data;  // used when produce is empty
        Producer produce;
    };
    std::vector<Tensor> tensors_;
    void check_new_tensor(const std::string& name, const std::vector<int64_t>& ne, GgmlType type,
                          uint64_t n_bytes) const;
    void emit(const std::function<void(const void*, size_t)>& out, const std::string& file) const;
    // Writes the header, tensor infos and padding through `counted` (which advances `pos`);
    // returns the data section's size.
    uint64_t emit_header(const std::function<void(const void*, size_t)>& counted,
                         uint64_t& pos) const;
    void pad_to_alignment(const std::function<void(const void*, size_t)>& counted,
                          uint64_t pos) const;
};

}  // namespace quantlens
