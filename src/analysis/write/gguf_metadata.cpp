// llama.cpp-converter metadata for quantized GGUF files (see gguf_metadata.h).
#include "analysis/write/gguf_metadata.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <regex>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "engine/tokenizer.h"
#include "model/families/family.h"

namespace quantlens {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// llama.cpp's token types (llama_token_type / gguf-py TokenType).
constexpr int32_t kTokenNormal = 1;
constexpr int32_t kTokenControl = 3;
constexpr int32_t kTokenUserDefined = 4;
constexpr int32_t kTokenUnused = 5;
constexpr int32_t kTokenByte = 6;

json read_json(const fs::path& path) {
    std::ifstream f(path);
    QL_CHECK(f.good(), "{}: cannot open", path.string());
    try {
        return json::parse(f);
    } catch (const json::exception& e) {
        fail("{}: invalid JSON: {}", path.string(), e.what());
    }
}

// A "…_token" entry of tokenizer_config.json: a string or {"content": "…"}.
std::string token_content(const json& v) {
    if (v.is_string()) return v.get<std::string>();
    if (v.is_object() && v.contains("content") && v["content"].is_string())
        return v["content"].get<std::string>();
    return "";
}

// The regexes a tokenizer.json pre-tokenizer splits with, in order (a ByteLevel with
// use_regex contributes GPT-2's).
void collect_regexes(const json& pt, std::vector<std::string>& out) {
    if (!pt.is_object()) return;
    const std::string type = pt.value("type", "");
    if (type == "Sequence" && pt.contains("pretokenizers")) {
        for (const auto& p : pt["pretokenizers"]) collect_regexes(p, out);
    } else if (type == "Split" && pt.contains("pattern") && pt["pattern"].is_object() &&
               pt["pattern"].contains("Regex")) {
        out.push_back(pt["pattern"]["Regex"].get<std::string>());
    } else if (type == "ByteLevel" && pt.value("use_regex", true)) {
        out.push_back(kGpt2PretokenizerRegex);
    }
}

// tokenizer.ggml.pre: the converter hashes a tokenization; we recognise the regexes.
std::string pre_tokenizer_name(const json& tok, const std::string& path) {
    std::vector<std::string> regexes;
    if (tok.contains("pre_tokenizer")) collect_regexes(tok["pre_tokenizer"], regexes);
    if (const PretokenizerPreset* p = find_pretokenizer_preset(regexes)) return p->gguf_pre;
    std::string known;
    for (const auto& p : pretokenizer_presets()) known += (known.empty() ? "" : ", ") + p.gguf_pre;
    fail("{}: unrecognised pre-tokenizer regex '{}' (known: {})", path,
         regexes.empty() ? "" : regexes.front(), known);
}

bool looks_special(const std::string& t) {
    return t.size() >= 4 && t.rfind("<|", 0) == 0 && t.compare(t.size() - 2, 2, "|>") == 0;
}

// Size labels in a model directory name: "8m", "70B", "8x7B", "0.5b".
bool is_size_component(const std::string& c) {
    static const std::regex re(R"(^(\d+x)?(\d+\.)?\d+[KkMmBbTt]$)");
    return std::regex_match(c, re);
}

std::vector<std::string> split_name(const std::string& s) {
    std::vector<std::string> parts;
    std::string cur;
    for (char ch : s) {
        if (ch == '-' || ch == '_' || ch == ' ') {
            if (!cur.empty()) parts.push_back(cur);
            cur.clear();
        } else {
            cur += ch;
        }
    }
    if (!cur.empty()) parts.push_back(cur);
    return parts;
}

void add(GgufKvList& kv, std::string key, GgufValue v) {
    kv.emplace_back(std::move(key), std::move(v));
}

// general.* keys from the directory name and the parameter counts.
void general_keys(GgufKvList& kv, const Model& model) {
    const ModelConfig& c = model.config();
    fs::path dir = fs::path(model.path());
    if (dir.filename().empty()) dir = dir.parent_path();
    const std::vector<std::string> parts = split_name(dir.filename().string());

    std::string name, basename, label;
    for (size_t i = 0; i < parts.size(); ++i) {
        std::string w = parts[i];
        if (!w.empty()) w[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(w[0])));
        name += (i ? " " : "") + w;
    }
    for (size_t i = 0; i < parts.size(); ++i) {
        if (!is_size_component(parts[i])) continue;
        label = parts[i];
        label.back() = static_cast<char>(std::toupper(static_cast<unsigned char>(label.back())));
        for (size_t j = 0; j < i; ++j) {
            std::string p = parts[j];
            for (auto& ch : p) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
            basename += (j ? "-" : "") + p;
        }
        break;
    }
    if (label.empty()) {
        int64_t total = 0, experts = 0;
        for (const auto& t : model.tensors()) {
            total += t.n_elements();
            if (t.role == TensorRole::ExpertGate || t.role == TensorRole::ExpertUp ||
                t.role == TensorRole::ExpertDown || t.role == TensorRole::ExpertGateUp)
                experts += t.n_elements();
        }
        label = size_label(total, experts, c.n_experts);
    }
    add(kv, "general.architecture", GgufValue::string(c.gguf_arch));
    // The converter generates its extra tensors (and their keys) before the general ones.
    if (const auto early = family_of(c.arch).write_gguf_early) early(c, kv);
    add(kv, "general.type", GgufValue::string("model"));
    add(kv, "general.name", GgufValue::string(name.empty() ? c.hf_architecture : name));
    if (!basename.empty()) add(kv, "general.basename", GgufValue::string(basename));
    add(kv, "general.size_label", GgufValue::string(label));
}

void arch_keys(GgufKvList& kv, const ModelConfig& c) {
    family_of(c.arch).write_gguf(c, kv);
}

}  // namespace

std::vector<ExtraTensor> converter_extra_tensors(const Model& model) {
    std::vector<ExtraTensor> extra;
    if (model.source() != Model::Source::HuggingFace) return extra;
    const ModelConfig& c = model.config();
    std::vector<float> factors = llama3_rope_freq_factors(c);
    if (!factors.empty()) {
        const auto n = static_cast<int64_t>(factors.size());
        extra.push_back({"rope_freqs.weight", {n}, std::move(factors)});
    }
    if (c.is_gemma4()) {
        // Gemma 4's proportional rope on the global layers, as the converter writes it for
        // ggml's neox rope over the whole head: factor 1 for the rotated pairs, 1e30 (angle 0)
        // for the rest. Only the global layers read it.
        for (int64_t l = 0; l < c.n_layers; ++l) {
            if (c.is_sliding(l)) continue;
            const int64_t half = c.gemma4_layers[static_cast<size_t>(l)].head_dim / 2;
            const auto rotated = static_cast<int64_t>(
                static_cast<double>(c.gemma4_layers[static_cast<size_t>(l)].head_dim) *
                c.rope_partial_global / 2.0);
            std::vector<float> f(static_cast<size_t>(half), 1e30f);
            std::fill_n(f.begin(), std::min(rotated, half), 1.0f);
            extra.push_back({"rope_freqs.weight", {half}, std::move(f)});
            break;
        }
    }
    if (c.rope_scaling.kind == RopeScaling::Kind::LongRope) {
        for (const auto& [name, values] :
             {std::pair{"rope_factors_long.weight", &c.rope_scaling.long_factor},
              std::pair{"rope_factors_short.weight", &c.rope_scaling.short_factor}}) {
            const auto n = static_cast<int64_t>(values->size());
            extra.push_back({name, {n}, std::vector<float>(values->begin(), values->end())});
        }
    }
    return extra;
}

std::string size_label(int64_t total_params, int64_t expert_params, int64_t n_experts) {
    auto rounded = [](double count) {
        double scaled;
        const char* suffix;
        if (count > 1e12) {
            scaled = count * 1e-12, suffix = "T";
        } else if (count > 1e9) {
            scaled = count * 1e-9, suffix = "B";
        } else if (count > 1e6) {
            scaled = count * 1e-6, suffix = "M";
        } else {
            scaled = count * 1e-3, suffix = "K";
        }
        // At least two significant digits: 3.3M, 8.4M, 893K.
        const std::string whole = fmt::format("{}", static_cast<int64_t>(std::llround(scaled)));
        const int decimals = std::max(0, 2 - static_cast<int>(whole.size()));
        return fmt::format("{:.{}f}{}", scaled, decimals, suffix);
    };
    if (n_experts > 0 && expert_params > 0) {
        const double shared = static_cast<double>(total_params - expert_params);
        return fmt::format("{}x{}", n_experts,
                           rounded(shared + static_cast<double>(expert_params) / n_experts));
    }
    return rounded(static_cast<double>(total_params));
}

namespace {

bool is_byte_token(const std::string& t) {
    auto hex = [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; };
    return t.size() == 6 && t.compare(0, 3, "<0x") == 0 && t[5] == '>' && hex(t[3]) && hex(t[4]);
}

// Whether the SentencePiece-style tokenizer puts U+2581 before the text (Prepend normalizer
// or a Metaspace pre-tokenizer that prepends): llama.cpp's add_space_prefix.
bool prepends_space(const json& tok) {
    bool found = false;
    std::function<void(const json&)> walk = [&](const json& n) {
        if (!n.is_object()) return;
        const std::string type = n.value("type", "");
        if (type == "Prepend") found = true;
        if (type == "Metaspace")
            found = found || (n.contains("prepend_scheme") ? n["prepend_scheme"] != "never"
                                                           : n.value("add_prefix_space", true));
        for (const char* k : {"normalizers", "pretokenizers"})
            if (n.contains(k))
                for (const auto& c : n[k]) walk(c);
    };
    walk(tok.value("normalizer", json()));
    walk(tok.value("pre_tokenizer", json()));
    return found;
}

// Scores for llama.cpp's SPM tokenizer, which merges the highest-scoring pair whose
// concatenation is a token: minus the merge rank of the merge that makes the token, so that
// llama.cpp merges in the order the BPE merges do (as a SentencePiece BPE model's scores
// are); tokens no merge makes (characters, bytes, specials) score below every merge.
// gguf-py's LlamaHfVocab writes the placeholder -1000 for every token instead, with which
// llama.cpp merges leftmost-first and gives other ids than the tokenizer.json.
std::vector<float> merge_rank_scores(const json& model, const std::map<int64_t, std::string>& by_id,
                                     int64_t n_tokens) {
    std::map<std::string, int64_t> rank_of;
    int64_t rank = 0;
    for (const auto& m : model.value("merges", json::array())) {
        std::string merged;
        if (m.is_string()) {
            const std::string t = m.get<std::string>();
            const size_t sp = t.find(' ', 1);
            if (sp == std::string::npos) continue;
            merged = t.substr(0, sp) + t.substr(sp + 1);
        } else if (m.is_array() && m.size() == 2) {
            merged = m[0].get<std::string>() + m[1].get<std::string>();
        }
        rank_of.emplace(merged, rank++);  // the first (lowest) rank that makes it
    }
    const float never = -static_cast<float>(rank + 1);
    std::vector<float> scores(static_cast<size_t>(n_tokens), never);
    for (const auto& [id, text] : by_id) {
        if (id >= n_tokens) break;
        auto it = rank_of.find(text);
        if (it != rank_of.end()) scores[static_cast<size_t>(id)] = -static_cast<float>(it->second);
    }
    return scores;
}

}  // namespace

GgufKvList tokenizer_metadata(const std::string& tokenizer_json_path, int64_t vocab_size,
                              int64_t config_bos, int64_t config_eos) {
    const fs::path path(tokenizer_json_path);
    const json tok = read_json(path);
    QL_CHECK(tok.contains("model") && tok["model"].is_object(), "{}: no \"model\" object",
             path.string());
    const json& model = tok["model"];
    QL_CHECK(model.value("type", "") == "BPE",
             "{}: tokenizer model type '{}' is not supported for GGUF export (expected BPE)",
             path.string(), model.value("type", ""));
    // The converter's choice for Llama-style models: gguf-py's LlamaHfVocab (SentencePiece
    // "llama" vocabulary) for a byte_fallback BPE, its GPT-2 BPE vocabulary otherwise.
    const bool sentencepiece = model.value("byte_fallback", false);

    std::map<int64_t, std::string> by_id;
    for (const auto& [text, id] : model["vocab"].items()) by_id[id.get<int64_t>()] = text;
    std::map<int64_t, bool> added_special;  // id → special
    std::map<std::string, int64_t> added_ids;
    if (tok.contains("added_tokens")) {
        for (const auto& t : tok["added_tokens"]) {
            const int64_t id = t.at("id").get<int64_t>();
            const std::string content = t.at("content").get<std::string>();
            by_id[id] = content;
            added_special[id] = t.value("special", false);
            added_ids[content] = id;
        }
    }
    if (vocab_size <= 0) vocab_size = by_id.empty() ? 0 : by_id.rbegin()->first + 1;
    if (sentencepiece) {
        // Added tokens past the model's embedding (a tokenizer trained with more tokens than
        // the checkpoint has rows) could never be fed to it; they are left out.
        std::erase_if(by_id, [&](const auto& e) { return e.first >= vocab_size; });
    }
    QL_CHECK(by_id.empty() || by_id.rbegin()->first < vocab_size,
             "{}: token id {} is outside the model's vocabulary of {}", path.string(),
             by_id.rbegin()->first, vocab_size);

    std::vector<std::string> tokens(static_cast<size_t>(vocab_size));
    std::vector<int32_t> types(static_cast<size_t>(vocab_size));
    for (int64_t i = 0; i < vocab_size; ++i) {
        auto it = by_id.find(i);
        if (it == by_id.end()) {
            tokens[i] = fmt::format("[PAD{}]", i);
            types[i] = kTokenUnused;
            continue;
        }
        tokens[i] = it->second;
        auto ad = added_special.find(i);
        if (sentencepiece && is_byte_token(it->second))
            types[i] = kTokenByte;
        else if (ad == added_special.end())
            types[i] = kTokenNormal;
        else if (sentencepiece)  // LlamaHfVocab: a non-special added token is user-defined
            types[i] = ad->second ? kTokenControl : kTokenUserDefined;
        else  // the GPT-2 path also makes "<|...|>" control (does_token_look_special)
            types[i] =
                (ad->second || looks_special(it->second)) ? kTokenControl : kTokenUserDefined;
    }

    const std::string pre = sentencepiece ? "default" : pre_tokenizer_name(tok, path.string());
    GgufKvList kv;
    if (sentencepiece) {
        add(kv, "tokenizer.ggml.model", GgufValue::string("llama"));
        add(kv, "tokenizer.ggml.pre", GgufValue::string(pre));
        add(kv, "tokenizer.ggml.tokens", GgufValue::string_array(tokens));
        add(kv, "tokenizer.ggml.scores",
            GgufValue::f32_array(merge_rank_scores(model, by_id, vocab_size)));
        add(kv, "tokenizer.ggml.token_type", GgufValue::i32_array(types));
    } else {
        std::vector<std::string> merges;
        for (const auto& m : model.value("merges", json::array())) {
            if (m.is_string())
                merges.push_back(m.get<std::string>());
            else if (m.is_array() && m.size() == 2)
                merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
            else
                fail("{}: a merge is neither \"a b\" nor [a, b]", path.string());
        }
        add(kv, "tokenizer.ggml.model", GgufValue::string("gpt2"));
        add(kv, "tokenizer.ggml.pre", GgufValue::string(pre));
        add(kv, "tokenizer.ggml.tokens", GgufValue::string_array(tokens));
        add(kv, "tokenizer.ggml.token_type", GgufValue::i32_array(types));
        add(kv, "tokenizer.ggml.merges", GgufValue::string_array(merges));
    }

    // Special tokens: tokenizer_config.json names them, the added tokens give their ids;
    // config.json's *_token_id is the fallback (the converter's SpecialVocab order).
    json cfg;
    const fs::path cfg_path = path.parent_path() / "tokenizer_config.json";
    if (fs::exists(cfg_path)) cfg = read_json(cfg_path);
    struct Special {
        const char* kind;
        const char* key;
        int64_t fallback;
    };
    const Special specials[] = {{"bos", "tokenizer.ggml.bos_token_id", config_bos},
                                {"eos", "tokenizer.ggml.eos_token_id", config_eos},
                                {"unk", "tokenizer.ggml.unknown_token_id", -1},
                                {"sep", "tokenizer.ggml.seperator_token_id", -1},
                                {"pad", "tokenizer.ggml.padding_token_id", -1}};
    for (const auto& s : specials) {
        int64_t id = -1;
        const std::string field = std::string(s.kind) + "_token";
        if (cfg.is_object() && cfg.contains(field)) {
            const std::string content = token_content(cfg[field]);
            auto it = added_ids.find(content);
            if (it != added_ids.end()) id = it->second;
        }
        if (id < 0) id = s.fallback;
        if (id >= 0 && id < vocab_size) add(kv, s.key, GgufValue::u32(static_cast<uint32_t>(id)));
    }
    const bool config_says_bos =
        cfg.is_object() && cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean();
    if (cfg.is_object())
        for (const char* k : {"add_bos_token", "add_eos_token"})
            if (cfg.contains(k) && cfg[k].is_boolean())
                add(kv, std::string("tokenizer.ggml.") + k, GgufValue::boolean(cfg[k].get<bool>()));
    if (!config_says_bos) {
        // BOS implied by the post-processor only: said where llama.cpp's default for this
        // vocabulary differs, so the GGUF evaluates with the tokens the tokenizer.json does
        // (the current converter always writes it; the older one that made the reference
        // files in ../shared did not, and for those the default agrees).
        bool by_default = true;  // llama.cpp's SPM default
        if (!sentencepiece)
            for (const PretokenizerPreset& p : pretokenizer_presets())
                if (p.gguf_pre == pre) by_default = p.add_bos;
        bool wanted = by_default;
        try {
            wanted = Tokenizer::from_hf_json(path.string()).add_bos();
        } catch (const Error&) {
            // A tokenizer we cannot run: nothing to infer; llama.cpp keeps its default.
        }
        if (wanted != by_default)
            add(kv, "tokenizer.ggml.add_bos_token", GgufValue::boolean(wanted));
    }
    if (cfg.is_object()) {
        if (cfg.contains("chat_template") && cfg["chat_template"].is_string())
            add(kv, "tokenizer.chat_template",
                GgufValue::string(cfg["chat_template"].get<std::string>()));
    }
    // llama.cpp puts a space before SentencePiece text unless told otherwise (Gemma's
    // converter writes false); a tokenizer without a prefix needs it said.
    if (sentencepiece && !prepends_space(tok))
        add(kv, "tokenizer.ggml.add_space_prefix", GgufValue::boolean(false));
    return kv;
}

GgufKvList converter_metadata(const Model& model) {
    GgufKvList kv;
    if (model.source() == Model::Source::Gguf) {
        const GgufFile* g = model.gguf();
        QL_ASSERT(g != nullptr);
        for (const auto& [k, v] : g->kv())
            if (k.rfind("split.", 0) != 0) kv.emplace_back(k, v);
        return kv;
    }
    const ModelConfig& c = model.config();
    general_keys(kv, model);
    arch_keys(kv, c);
    GgufKvList tk =
        tokenizer_metadata(model.tokenizer_path(), c.vocab, c.bos_token_id, c.eos_token_id);
    kv.insert(kv.end(), tk.begin(), tk.end());
    return kv;
}

void finish_quantized_metadata(GgufKvList& kv, uint32_t file_type) {
    std::erase_if(kv, [](const auto& p) {
        return p.first == "general.quantization_version" || p.first == "general.file_type";
    });
    kv.emplace_back("general.quantization_version", GgufValue::u32(2));
    kv.emplace_back("general.file_type", GgufValue::u32(file_type));
}

}  // namespace quantlens
