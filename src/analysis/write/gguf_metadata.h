// GGUF metadata (KVs) for a quantized model, written the way llama.cpp writes them.
//
// From a Hugging Face source, converter_metadata() reproduces the keys, value types and
// order of llama.cpp's convert_hf_to_gguf.py; the ARCH.* keys are the family's
// (Family::write_gguf, src/model/families), for today's families:
//   general.architecture, [the family's early keys: phi3.rope.scaling.attn_factor, which
//   the converter writes while generating the longrope tensors], general.type = "model",
//   general.name, [general.basename],
//   general.size_label, ARCH.block_count, .context_length, .embedding_length,
//   .feed_forward_length, .attention.head_count, .attention.head_count_kv,
//   .rope.freq_base, .attention.layer_norm_rms_epsilon, [.expert_count,
//   .expert_used_count], .attention.key_length, .attention.value_length,
//   llama only: .vocab_size, .rope.dimension_count; then the tokenizer:
//   - byte-level BPE: tokenizer.ggml.model = "gpt2", .pre, .tokens, .token_type, .merges;
//   - byte_fallback BPE (SentencePiece style; gguf-py's LlamaHfVocab): .model = "llama",
//     .pre = "default", .tokens, .scores, .token_type (byte tokens 6, special added tokens
//     3, other added tokens 4); added tokens past the model's embedding rows are left out;
//     the scores are minus the rank of the merge that makes each token (tokens no merge
//     makes: below all), so llama.cpp's SPM merging reproduces the BPE, where the
//     converter's placeholder -1000 for every token would not;
//   then .bos/.eos/.unknown/.seperator/.padding_token_id, add_bos_token / add_eos_token and
//   chat_template when tokenizer_config.json has them (add_bos_token also when only the
//   post-processor implies it and llama.cpp's default for the vocabulary differs, so the
//   GGUF gets the BOS the tokenizer.json does), and for a SentencePiece vocabulary
//   without a space prefix (no Prepend, no prepending Metaspace; Gemma)
//   tokenizer.ggml.add_space_prefix = false, as the Gemma converter writes.
// general.name / basename / size_label are free text derived from the directory name the
// way the converter's heuristics do ("llama-8m" → "Llama 8m", "llama", "8M"); when the name
// has no size, size_label comes from the parameter count ("4x3.3M" for experts).
// tokenizer.ggml.pre is recognised from the pre-tokenizer regexes (the converter hashes a
// tokenization instead), with engine/tokenizer.h's pretokenizer_presets(): Llama-3's →
// "llama-bpe", Qwen2's → "qwen2", GPT-2's → "gpt-2", DeepSeek-V3's → "deepseek-v3",
// o200k's → "gpt-4o".
//
// Known difference from the reference files in ../shared/models: their converter build
// ignored `rope_parameters`, so they lack ARCH.rope.freq_base when it is the default 10000
// (tiny-moe's was appended by hand after the tokenizer keys). We always write it, in the
// converter's position; llama.cpp reads the same value either way.
//
// From a GGUF source the file's own KVs are kept (split.* keys dropped).
// finish_quantized_metadata() then removes and re-appends general.quantization_version = 2
// and general.file_type, as llama-quantize does (so they come last).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "model/model.h"

namespace quantlens {

using GgufKvList = std::vector<std::pair<std::string, GgufValue>>;

// The source's metadata as llama.cpp's converter (HF) or the file itself (GGUF) has it.
GgufKvList converter_metadata(const Model& model);

// Tokenizer KVs (tokenizer.ggml.*) from a Hugging Face tokenizer.json; tokenizer_config.json
// and config.json next to it supply special tokens. vocab_size pads the token list.
GgufKvList tokenizer_metadata(const std::string& tokenizer_json_path, int64_t vocab_size,
                              int64_t config_bos, int64_t config_eos);

// Tensors llama.cpp's converter adds that the HF checkpoint does not hold, in the order it
// writes them (before the model's own): rope_freqs.weight (F32, head_dim/2 divisors) for
// llama3 rope scaling; rope_factors_long.weight then rope_factors_short.weight (F32, rotated
// channels / 2) for longrope (Phi-3). Empty for a GGUF source, whose file already has them.
struct ExtraTensor {
    std::string name;
    std::vector<int64_t> ne;
    std::vector<float> values;
};
std::vector<ExtraTensor> converter_extra_tensors(const Model& model);

// The converter's size label: "8.4M", "893K", "4x3.3M".
std::string size_label(int64_t total_params, int64_t expert_params, int64_t n_experts);

// Drops any existing quantization_version / file_type and appends them (llama-quantize).
void finish_quantized_metadata(GgufKvList& kv, uint32_t file_type);

}  // namespace quantlens
