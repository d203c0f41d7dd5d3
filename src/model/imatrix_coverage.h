// Loading an importance matrix for a particular model, refusing one that would silently do
// nothing or harm.
//
// Promises (Imatrix::load's checks, then):
//  - an imatrix none of whose entries names a quantizable tensor of the model is an Error
//    (it would quantize exactly as without one);
//  - an imatrix whose values are all zero is an Error (the weighted scale searches would
//    collapse; llama.cpp's own output from such a file is broken);
//  - entries that match no tensor, and quantizable matmul weights the file does not cover
//    (other than token_embd, a row lookup no imatrix covers), are listed by name on stderr:
//    one misspelled name would otherwise drop that tensor's weighting without a word;
//  - expert matrices with a token count of 0 (rarely routed experts) take importance 1 in
//    every column, as llama.cpp's quantize does, and are listed on stderr; they do not count
//    as calibration data for the all-zero refusal.
#pragma once

#include <string>
#include <vector>

#include "formats/imatrix.h"
#include "model/model.h"

namespace quantlens {

struct ImatrixCoverage {
    std::vector<std::string> unmatched_entries;  // imatrix names that are no tensor's
    std::vector<std::string> uncovered_tensors;  // quantizable matmul weights without an entry
    // Experts (matrices of a stacked tensor) no calibration token reached: importance 1.
    std::vector<ImatrixFallback> zero_count_matrices;
};

// Throws Error for the two refusals above; returns the partial mismatches.
ImatrixCoverage check_imatrix_coverage(const Imatrix& imatrix, const Model& model);

// Imatrix::load + check_imatrix_coverage, printing the partial mismatches (at most ten
// names per list, then a count) as one warning on stderr.
Imatrix load_imatrix_for(const Model& model, const std::string& path);

}  // namespace quantlens
