// Internal to gptq.cpp: the grid of one ggml block with its parameters fixed. decode() reads
// the parameters (and the codes) our quantizer wrote for a block, round() rounds one weight
// of that block to a code on the grid as ggml's own requantization does, and pack() writes
// codes back into the block's code fields, leaving its parameters untouched.
//
// Codes are "levels" L as ggml's quantizers hold them before packing: Q2_K 0..3,
// Q3_K 0..7 (value ∝ L − 4), Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 (value ∝ L − 32), Q8_0 the
// int8 value itself (stored as its two's-complement byte).
#pragma once

#include <cstdint>

#include "core/ggml_type.h"

namespace quantlens::gptq_detail {

struct BlockGrid {
    float step[16];     // per sub-block: d·sc (Q8_0: the stored f16 d in step[0])
    float min[16];      // per sub-block: dmin·m for Q2_K/Q4_K/Q5_K, else 0
    float inv = 0;      // Q8_0: 1/d' of the unrounded scale d' = amax/127 (0 when amax is 0)
    uint8_t code[256];  // the quantizer's own codes (kept where a sub-block's step is 0)
};

struct GridFormat {
    GgmlType type;
    int block;  // weights per block
    int sub;    // weights per sub-block (one step each)
    void (*quantize)(const float* src, void* dst, int64_t n_rows, int64_t n_per_row,
                     const float* importance);
};

// nullptr when the type has no grid here.
const GridFormat* grid_format(GgmlType type);

// blk: one block as the quantizer wrote it from x (the block's `block` floats).
void decode(const GridFormat& f, const uint8_t* blk, const float* x, BlockGrid& g);
// Code of weight c (0 ≤ c < block) of value x; *value = what dequantize() gives for it.
uint8_t round_weight(const GridFormat& f, const BlockGrid& g, int c, float x, float* value);
// Overwrites the code fields of blk with codes[block].
void pack(const GridFormat& f, const uint8_t* codes, uint8_t* blk);

}  // namespace quantlens::gptq_detail
