// Internals of the tokenizer (tokenizer.h): the pipeline steps a tokenizer.json or a GGUF
// vocabulary is compiled into, shared by the encoder (tokenizer.cpp) and the loaders
// (tokenizer_hf.cpp, tokenizer_gguf.cpp) and the decoder (tokenizer_decode.cpp). Not part
// of the public interface.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "engine/tokenizer.h"

namespace quantlens {

namespace tok {

void append_utf8(std::string& out, uint32_t cp);
// Length of the UTF-8 sequence that starts with byte c (1 for stray continuation bytes).
size_t utf8_len(unsigned char c);
// The code point at s[i] (valid UTF-8 assumed); n receives its length in bytes.
uint32_t decode_cp(std::string_view s, size_t i, size_t& n);
// Every occurrence of `from` replaced by `to` (an empty `from` changes nothing).
std::string replace_all(std::string_view s, std::string_view from, std::string_view to);

// GPT-2's reversible byte → printable code point table: printable Latin-1 bytes map to
// themselves, the other 68 bytes to 256, 257, ... in byte order.
struct ByteTable {
    std::array<uint32_t, 256> to_cp{};
    std::array<int, 324> from_cp{};
    ByteTable();
};
const ByteTable& byte_table();

// A compiled PCRE2 pattern (UTF + UCP, JIT when available).
struct Regex {
    pcre2_code* code = nullptr;
    pcre2_match_data* match = nullptr;
    Regex(const std::string& pattern, const std::string& where);
    ~Regex();
    Regex(const Regex&) = delete;
    Regex& operator=(const Regex&) = delete;
};

// tokenizers' normalizers we implement: Prepend(s) adds s before a non-empty piece,
// Replace(a, b) replaces every occurrence of the literal a by b.
struct NormalizerStep {
    enum class Kind { Prepend, Replace } kind;
    std::string from, to;  // Prepend: `to` is the prefix
};

// tokenizers' Metaspace pre-tokenizer: ' ' → replacement; the replacement is prepended to a
// piece that does not start with it (always, or only to the piece at offset 0 of the input:
// first, or never); with split, the piece is cut before every replacement character.
struct Metaspace {
    enum class Prepend { Always, First, Never } prepend = Prepend::Always;
    std::string replacement = "\xe2\x96\x81";  // U+2581
    bool split = true;
};

// tokenizers' decoders, applied in order to the list of token strings.
struct DecoderStep {
    enum class Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
    std::string from, to;        // Replace; Strip: `from` is the character; Metaspace: `from`
    size_t start = 0, stop = 0;  // Strip
    bool strip_first = true;     // Metaspace: prepend_scheme != never
};

struct AddedToken {
    std::string content;
    int32_t id = -1;
    bool special = false;     // matched only when parse_special (llama.cpp: control type)
    bool normalized = false;  // matched in the normalized text rather than the raw one
    bool lstrip = false, rstrip = false;  // the match takes the whitespace before / after it
    // What is searched for: the content, or for a normalized token the normalized content
    // (tokenizers normalizes it too, so Prepend("▁") makes "<|user|>" match "▁<|user|>").
    std::string match;
};

// How a piece of pre-tokenized text becomes ids.
enum class ModelKind {
    ByteLevelBpe,   // bytes → GPT-2 characters, then merges (tokenizer.json BPE, GGUF gpt2)
    CharBpe,        // UTF-8 characters, merges, <0xNN> byte fallback / unk (tokenizer.json)
    ScoredBigrams,  // llama.cpp's SPM session: highest-score bigram first (GGUF llama)
};

}  // namespace tok

struct Tokenizer::Impl {
    static constexpr int32_t kMaxTokens = 1 << 24;
    std::string source;               // file name for messages
    std::vector<std::string> tokens;  // id → text, as stored
    std::unordered_map<std::string, int32_t> ids;
    std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;  // (a,b) → (rank, merged)
    std::vector<float> scores;  // ScoredBigrams: id → score

    tok::ModelKind kind = tok::ModelKind::ByteLevelBpe;
    std::vector<tok::NormalizerStep> normalizer;
    std::vector<std::unique_ptr<tok::Regex>> splits;  // applied in order, "Isolated"
    bool metaspace_enabled = false;
    tok::Metaspace metaspace;
    bool byte_fallback = false, fuse_unk = false, ignore_merges = false;
    std::vector<tok::AddedToken> added;  // longest first after finish()
    std::vector<tok::DecoderStep> decoders;
    bool add_space_prefix = true;  // ScoredBigrams: a space before text that follows a token

    std::array<int32_t, 256> byte_level_ids{};     // GPT-2 character of each byte
    std::array<int32_t, 256> byte_fallback_ids{};  // <0xNN> of each byte
    int32_t bos = -1, eos = -1, unk = -1;
    bool add_bos = false;

    void add_token(int32_t id, std::string text);
    int32_t lookup(const std::string& s) const {
        auto it = ids.find(s);
        return it == ids.end() ? -1 : it->second;
    }
    void add_merge(const std::string& a, const std::string& b, int32_t rank);
    std::string normalize(std::string_view text) const;
    void finish();

    // One pre-tokenized word → ids (the model step).
    void encode_word(std::string_view word, std::vector<int32_t>& out) const;
    // Initial symbols of a word for the merge models.
    void initial_symbols(std::string_view word, std::vector<int32_t>& sym) const;
    // Splits a normalized span into words (Metaspace, Split regexes) and encodes each.
    void pretokenize_and_encode(std::string_view text, bool at_input_start,
                                std::unordered_map<std::string, std::vector<int32_t>>& cache,
                                std::vector<int32_t>& out) const;
    void scored_bigrams(std::string_view text, std::vector<int32_t>& out) const;
};

// The merge loop on symbol ids: repeatedly the lowest-ranked adjacent pair, leftmost on ties.
// merge_symbols is the O(n log n) heap version; merge_symbols_reference the plain rescanning
// loop it is tested against.
void merge_symbols(const Tokenizer::Impl& im, std::vector<int32_t>& sym);
void merge_symbols_reference(const Tokenizer::Impl& im, std::vector<int32_t>& sym);

}  // namespace quantlens
