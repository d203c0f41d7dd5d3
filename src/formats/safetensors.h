// Hugging Face safetensors reader (memory-mapped), single file or sharded with
// model.safetensors.index.json.
//
// File layout: u64 header length N (little-endian), N bytes of JSON
//   { "TENSOR": {"dtype": "BF16"|"F16"|"F32"|..., "shape": [rows, cols], "data_offsets": [b, e]},
//     "__metadata__": {...} }, then the data buffer (offsets relative to its start).
// Validated on open: N within the file, JSON well-formed, offsets in range, non-overlapping,
// matching shape × dtype size, no duplicate names across shards, every shard in the index present.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/ggml_type.h"
#include "core/mmap_file.h"

namespace quantlens {

enum class StDtype { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL };

const char* st_dtype_name(StDtype dtype);
size_t st_dtype_size(StDtype dtype);

struct StTensor {
    std::string name;
    StDtype dtype;
    std::vector<int64_t> shape;  // PyTorch order: shape[0] = rows (out features)
    std::span<const uint8_t> data;
    std::string file;  // shard path, for error messages

    int64_t n_elements() const;
};

// The ggml type a float tensor's values are read as (F32, F16, BF16); an Error naming the file
// and tensor for any other dtype.
GgmlType st_float_type(const StTensor& tensor);

class SafetensorsModel {
  public:
    // `path` is a directory (model.safetensors or the index + shards) or a .safetensors file.
    static SafetensorsModel open(const std::string& path);
    // Parses one in-memory file image (fuzzing, tests).
    static SafetensorsModel parse(std::span<const uint8_t> bytes, const std::string& name);

    const std::vector<StTensor>& tensors() const { return tensors_; }
    const StTensor* find(const std::string& name) const;
    const StTensor& get(const std::string& name) const;  // throws Error naming the tensor
    // Converts any float dtype to f32 into `out` (size must equal n_elements).
    static void to_f32(const StTensor& t, std::span<float> out);
    const std::vector<std::string>& files() const { return files_; }

  private:
    void add_file(std::shared_ptr<MappedFile> file, std::span<const uint8_t> bytes,
                  const std::string& name);

    std::vector<std::shared_ptr<MappedFile>> maps_;
    std::vector<std::string> files_;
    std::vector<StTensor> tensors_;
    std::map<std::string, size_t> index_;
};

}  // namespace quantlens
