// Byte-level BPE tokenizer (GPT-2 / Llama-3 family), loaded from a Hugging Face
// tokenizer.json or from a GGUF file's tokenizer.ggml.* metadata.
//
// Promise: encode() gives the same ids as Hugging Face `tokenizers` (and llama.cpp's
// llama-bpe vocabulary) for byte-level BPE models:
//   1. optional: split the text on added/special tokens (parse_special), which map to
//      their ids directly;
//   2. pre-tokenize each remaining span with the model's regex (PCRE2, UTF + UCP), every
//      match and every unmatched gap being one piece ("Isolated" split behaviour);
//   3. map each byte of a piece to its printable byte-level character (GPT-2's table);
//   4. merge adjacent symbols by merge rank, lowest rank first, leftmost on ties.
// Sources:
//   - tokenizer.json: model.type "BPE" (vocab, merges as "a b" strings or [a, b] pairs),
//     pre_tokenizer Split{Regex, Isolated} / ByteLevel / Sequence of those, added_tokens.
//     BOS comes from tokenizer_config.json's bos_token, else config.json's bos_token_id.
//   - GGUF: tokenizer.ggml.model "gpt2", tokenizer.ggml.tokens, .merges, .token_type
//     (3 = control, 4 = user-defined are special), .bos_token_id, and .pre naming the
//     regex ("llama-bpe"/"llama3" → the Llama-3 regex, "gpt2"/"default" → GPT-2's).
// Not supported (clear Error): SentencePiece/unigram models, normalizers, other splits.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

class GgufFile;
class Model;

class Tokenizer {
  public:
    ~Tokenizer();
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;

    // `path`: a tokenizer.json. tokenizer_config.json and config.json next to it supply BOS.
    static Tokenizer from_hf_json(const std::string& path);
    static Tokenizer from_gguf(const GgufFile& gguf);
    // The model's tokenizer: tokenizer.json for HF sources, the GGUF metadata otherwise.
    static Tokenizer load(const Model& model);

    // parse_special = false treats special-token text as plain text, as llama.cpp's
    // perplexity does; true splits on added tokens as Hugging Face does.
    std::vector<int32_t> encode(std::string_view text, bool add_bos,
                                bool parse_special = false) const;
    std::string decode(std::span<const int32_t> ids) const;

    int64_t vocab_size() const;
    int32_t bos_id() const;  // -1 if the source names none
    int32_t eos_id() const;
    const std::string& token_text(int32_t id) const;  // byte-level form, as stored

    struct Impl;

  private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The pre-tokenizer regexes, as Hugging Face writes them in tokenizer.json.
extern const char* const kLlama3PretokenizerRegex;
extern const char* const kGpt2PretokenizerRegex;

}  // namespace quantlens
