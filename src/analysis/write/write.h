// Stage "write" (ql_write): turning a model plus a per-tensor type choice into a GGUF file.
//
// Promise: files other tools read, bytes equal to llama.cpp's where llama.cpp defines them —
//   presets.h         llama.cpp's file types (Q4_K_M, …) as per-tensor type rules
//   quantize.h        the GGUF writer: quantize every tensor (plain, imatrix, GPTQ), write
//                     through core/output_file (temp + rename, --force)
//   gguf_metadata.h   the metadata and extra tensors llama.cpp's converter writes
//   gptq_rounding.h   GPTQ error feedback inside the ggml formats
// Depends on measure (calibration chunks, Hessians) and below.
#pragma once

#include "analysis/write/gguf_metadata.h"
#include "analysis/write/gptq_rounding.h"
#include "analysis/write/presets.h"
#include "analysis/write/quantize.h"
