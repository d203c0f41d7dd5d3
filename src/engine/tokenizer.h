// Tokenizers of the Hugging Face Hub, loaded from a tokenizer.json or from a GGUF file's
// tokenizer.ggml.* metadata.
//
// Promise: encode() gives the ids Hugging Face `tokenizers` gives (tokenizer.json) or
// llama.cpp gives (GGUF), for these styles:
//   - byte-level BPE (GPT-2, Llama-3, Qwen, DeepSeek-V3, gpt-oss/o200k): pre_tokenizer Split
//     regexes (Isolated; PCRE2 with UTF + UCP), ByteLevel (use_regex true: GPT-2's regex), or
//     a Sequence of those; bytes map to GPT-2's printable characters, then merges;
//   - SentencePiece-style BPE (Llama-2, Mistral, Gemma, Phi-3): UTF-8 characters, merges,
//     byte_fallback to <0xNN> tokens, unk (fuse_unk); normalizers Prepend / Replace (literal) /
//     Sequence; a Metaspace pre-tokenizer (prepend_scheme first/always/never, split
//     true/false);
//   - GGUF tokenizer.ggml.model "gpt2" (pre names in pretokenizer_presets()) and "llama"
//     (llama.cpp's SPM: highest-scoring bigram first, tokenizer.ggml.scores, byte tokens,
//     add_space_prefix).
// Added tokens split the text first: with parse_special (Hugging Face's default) every added
// token maps to its id; without it (llama.cpp's perplexity) special/control tokens are plain
// text but non-special (user-defined) ones still match. Tokens marked `normalized` match in
// the normalized text; lstrip/rstrip take the neighbouring whitespace.
// decode() runs the tokenizer.json decoder chain (ByteLevel, Replace, ByteFallback, Fuse,
// Strip, Metaspace), as `tokenizers` does, or llama.cpp's equivalent for GGUF.
// add_bos(): whether sequences start with BOS, as llama.cpp decides it after conversion:
// tokenizer_config.json's add_bos_token (GGUF: tokenizer.ggml.add_bos_token), else the
// post-processor template (a leading BOS), else llama.cpp's default (SPM/"llama": true;
// byte-level: true for the Llama-3 pre-tokenizer only).
// Refused by name (Error naming the key and value): other model types (Unigram, WordPiece),
// normalizers other than Prepend/Replace (NFC, NFKC, Lowercase, ...), other pre-tokenizers,
// decoders or split behaviours, BPE dropout, subword prefixes/suffixes, single_word tokens.
// Input text must be valid UTF-8 (text files are checked when read, naming the file).
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
    // Whether a sequence starts with BOS (see the header comment); bos_id() may be -1 only
    // when this is false.
    bool add_bos() const;
    int32_t eos_id() const;
    const std::string& token_text(int32_t id) const;  // byte-level form, as stored

    struct Impl;
    const Impl* impl_for_tests() const { return impl_.get(); }  // tokenizer_impl.h

  private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// The pre-tokenizer regexes, as Hugging Face writes them in tokenizer.json.
extern const char* const kLlama3PretokenizerRegex;
extern const char* const kGpt2PretokenizerRegex;

// llama.cpp's tokenizer.ggml.pre names for byte-level BPE, the tokenizer.json Split regexes
// (in order) each stands for, and llama.cpp's defaults for that name. The one table the GGUF
// reader and writer share.
struct PretokenizerPreset {
    std::string gguf_pre;              // as the converter writes it
    std::vector<std::string> aliases;  // other names llama.cpp reads the same way
    std::vector<std::string> regexes;
    bool add_bos = false;        // llama.cpp's default when tokenizer.ggml.add_bos_token is absent
    bool ignore_merges = false;  // a piece that is a token is taken whole
};
const std::vector<PretokenizerPreset>& pretokenizer_presets();
// The preset whose regexes are exactly these; nullptr if none.
const PretokenizerPreset* find_pretokenizer_preset(const std::vector<std::string>& regexes);

}  // namespace quantlens
