// `weight-error` as a library call: every quantizable tensor of a model × every requested
// type, fake-quantized (with the imatrix when given) and compared with the original
// weights (metrics of weight_metrics.h). Types a row length cannot hold are replaced by
// llama.cpp's fallback and reported by tensor name; nothing is substituted silently.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "analysis/measure/weight_metrics.h"
#include "core/ggml_type.h"

namespace quantlens {

class Model;
class Imatrix;

struct WeightErrorRow {
    std::string tensor;
    GgmlType requested;
    GgmlType used;  // differs from requested when the row length forced a fallback
    int64_t n_params = 0;
    uint64_t bytes = 0;  // storage in `used`
    WeightError error;
};

struct WeightErrorTotal {
    GgmlType type;
    int64_t n_params = 0;
    uint64_t bytes = 0;
    double bpw = 0;
    WeightError error;                   // all tensors together
    std::vector<std::string> fallbacks;  // "tensor: Q4_K -> Q5_0"
};

struct WeightErrorReport {
    std::vector<GgmlType> types;
    std::vector<WeightErrorRow> rows;      // tensor-major, in model order
    std::vector<WeightErrorTotal> totals;  // one per type, in `types` order
    std::vector<std::string> skipped;      // "tensor × type: reason" (e.g. no imatrix entry)
};

// progress(done, total) is called after each tensor × type. Throws Error naming the tensor
// on non-finite weights or an imatrix entry of the wrong length.
WeightErrorReport run_weight_error(const Model& model, const std::vector<GgmlType>& types,
                                   const Imatrix* imatrix,
                                   const std::function<void(int64_t, int64_t)>& progress = {});

}  // namespace quantlens
