// Model over both sources: the HF models seen in GGUF layout must agree with what
// llama.cpp's converter wrote into the shared GGUF files (names, shapes, F32 values
// exactly, quantized values within Q4_K/Q6_K error), which proves the name mapping, the
// q/k permutation and the expert stacking.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "core/error.h"
#include "core/mmap_file.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "model/names.h"
#include "support/error_of.h"
#include "support/test_data.h"

using namespace quantlens;
namespace fs = std::filesystem;

namespace {

using quantlens::test_support::shared_path;

// Q4_K/Q6_K of a trained weight matrix lands near 0.05-0.08 relative RMS error; a wrong
// row order gives ~1.4 (two unrelated matrices of equal norm).
constexpr double kQuantizedRelTolerance = 0.1;

double rel_error(const std::vector<float>& a, const std::vector<float>& ref) {
    EXPECT_EQ(a.size(), ref.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size() && i < ref.size(); ++i) {
        num += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
        den += double(ref[i]) * ref[i];
    }
    return std::sqrt(num / den);
}

std::map<std::string, std::vector<int64_t>> shapes(const Model& m) {
    std::map<std::string, std::vector<int64_t>> out;
    for (const auto& t : m.tensors()) out[t.name] = t.ne;
    return out;
}

}  // namespace

TEST(Names, HfToGguf) {
    auto q = hf_to_gguf("model.layers.3.self_attn.q_proj.weight");
    ASSERT_TRUE(q);
    EXPECT_EQ(q->gguf, "blk.3.attn_q.weight");
    EXPECT_EQ(q->layer, 3);
    auto e = hf_to_gguf("model.layers.1.block_sparse_moe.experts.2.w3.weight");
    ASSERT_TRUE(e);
    EXPECT_EQ(e->gguf, "blk.1.ffn_up_exps.weight");
    EXPECT_EQ(e->expert, 2);
    EXPECT_EQ(hf_to_gguf("model.layers.0.block_sparse_moe.gate.weight")->gguf,
              "blk.0.ffn_gate_inp.weight");
    EXPECT_EQ(hf_to_gguf("model.layers.0.self_attn.k_proj.bias")->gguf, "blk.0.attn_k.bias");
    EXPECT_EQ(hf_to_gguf("model.layers.0.mlp.experts.7.down_proj.weight")->gguf,
              "blk.0.ffn_down_exps.weight");
    EXPECT_FALSE(hf_to_gguf("model.layers.x.self_attn.q_proj.weight"));
    EXPECT_FALSE(hf_to_gguf("transformer.h.0.attn.weight"));
    EXPECT_EQ(gguf_to_hf("blk.3.attn_output.weight", Arch::Llama),
              "model.layers.3.self_attn.o_proj.weight");
    EXPECT_EQ(gguf_to_hf("blk.1.ffn_down_exps.weight", Arch::Mixtral),
              "model.layers.1.block_sparse_moe.experts.{E}.w2.weight");
    EXPECT_EQ(gguf_to_hf("blk.1.ffn_gate_inp.weight", Arch::Qwen2Moe),
              "model.layers.1.mlp.gate.weight");
    EXPECT_EQ(role_from_gguf_name("blk.0.attn_q.bias"), TensorRole::AttnQBias);
    EXPECT_EQ(role_from_gguf_name("blk.0.ffn_gate_inp.weight"), TensorRole::Router);
    EXPECT_EQ(role_from_gguf_name("blk.0.ffn_gate_inp_shexp.weight"), TensorRole::SharedRouter);
    EXPECT_EQ(role_from_gguf_name("output.weight"), TensorRole::Output);
    EXPECT_EQ(role_from_gguf_name("blk.2.attn_output.weight"), TensorRole::AttnO);
    EXPECT_EQ(role_from_name("expert_down"), TensorRole::ExpertDown);
    EXPECT_STREQ(role_name(TensorRole::FfnDown), "ffn_down");
}

// The one shape comparison every reader and engine uses: trailing 1s aside, nothing else.
TEST(Names, SameShapeIgnoresOnlyTrailingOnes) {
    EXPECT_TRUE(same_shape({64, 1}, {64}));
    EXPECT_TRUE(same_shape({64}, {64, 1, 1}));
    EXPECT_TRUE(same_shape({1}, {1, 1}));
    EXPECT_FALSE(same_shape({1, 64}, {64}));
    EXPECT_FALSE(same_shape({64, 2}, {64}));
    EXPECT_FALSE(same_shape({64, 32}, {32, 64}));
}

TEST(Model, LlamaHf) {
    auto m = Model::open(shared_path("models/llama-8m"));
    EXPECT_EQ(m->source(), Model::Source::HuggingFace);
    EXPECT_EQ(m->total_params(), 8392960);
    EXPECT_EQ(m->tensors().size(), 75u);
    EXPECT_EQ(m->config().n_layers, 8);
    EXPECT_EQ(m->total_bytes(), 16785920u);  // BF16, as the index's total_size says
    int max_layer = -1;
    for (const auto& t : m->tensors()) max_layer = std::max(max_layer, t.layer);
    EXPECT_EQ(max_layer, 7);
    const TensorInfo& q = m->get("blk.3.attn_q.weight");
    EXPECT_EQ(q.hf_name, "model.layers.3.self_attn.q_proj.weight");
    EXPECT_EQ(q.role, TensorRole::AttnQ);
    EXPECT_EQ(q.layer, 3);
    EXPECT_EQ(q.type, GgmlType::BF16);
    EXPECT_TRUE(q.quantizable);
    EXPECT_TRUE(m->get("token_embd.weight").quantizable);
    EXPECT_TRUE(m->get("output.weight").quantizable);
    EXPECT_FALSE(m->get("blk.0.attn_norm.weight").quantizable);
    EXPECT_EQ(m->get("blk.0.attn_k.weight").ne, (std::vector<int64_t>{256, 128}));
    EXPECT_EQ(m->tensors().front().name, "token_embd.weight");
    EXPECT_EQ(m->tensors().back().name, "output.weight");
    EXPECT_EQ(m->content_hash().size(), 16u);
    EXPECT_EQ(m->content_hash(), m->content_hash());
    EXPECT_TRUE(m->raw(q).empty());
    EXPECT_THROW(m->get("blk.99.attn_q.weight"), Error);
}

TEST(Model, LlamaGgufMatchesHf) {
    auto hf = Model::open(shared_path("models/llama-8m"));
    auto gg = Model::open(shared_path("models/llama-8m-Q4_K_M.gguf"));
    EXPECT_EQ(gg->source(), Model::Source::Gguf);
    EXPECT_EQ(shapes(*gg), shapes(*hf));
    EXPECT_EQ(gg->total_params(), 8392960);
    EXPECT_EQ(gg->get("blk.0.attn_q.weight").type, GgmlType::Q4_K);
    EXPECT_EQ(gg->get("blk.0.attn_q.weight").hf_name, "model.layers.0.self_attn.q_proj.weight");
    const auto& last = gg->gguf()->tensors().back();
    EXPECT_LE(gg->total_bytes(), last.offset + last.nbytes);  // data section minus padding
    EXPECT_LT(gg->total_bytes(), 5373408u);
    for (const auto& t : gg->tensors()) {
        EXPECT_EQ(t.role, hf->get(t.name).role) << t.name;
        EXPECT_EQ(t.quantizable, hf->get(t.name).quantizable) << t.name;
        EXPECT_EQ(gg->raw(t).size(), t.nbytes()) << t.name;
        if (t.type == GgmlType::F32) {
            EXPECT_EQ(gg->read_f32(t), hf->read_f32(hf->get(t.name))) << t.name;
        }
    }
}

TEST(Model, LlamaPermutationMatchesConverter) {
    auto hf = Model::open(shared_path("models/llama-8m"));
    auto gg = Model::open(shared_path("models/llama-8m-Q4_K_M.gguf"));
    SafetensorsModel st = SafetensorsModel::open(shared_path("models/llama-8m"));
    for (const char* name : {"blk.2.attn_q.weight", "blk.2.attn_k.weight", "blk.2.attn_v.weight",
                             "blk.5.ffn_down.weight", "token_embd.weight"}) {
        const std::vector<float> dq = gg->read_f32(gg->get(name));
        const double e = rel_error(dq, hf->read_f32(hf->get(name)));
        EXPECT_LT(e, kQuantizedRelTolerance) << name;
    }
    // Without the permutation the same comparison is far off: the check above has teeth.
    for (const char* name : {"blk.2.attn_q.weight", "blk.2.attn_k.weight"}) {
        const StTensor& raw = st.get(hf->get(name).hf_name);
        std::vector<float> unpermuted(raw.n_elements());
        SafetensorsModel::to_f32(raw, unpermuted);
        EXPECT_GT(rel_error(gg->read_f32(gg->get(name)), unpermuted), 1.0) << name;
    }
}

TEST(Model, MixtralStackedExperts) {
    auto hf = Model::open(shared_path("models/tiny-moe"));
    auto gg = Model::open(shared_path("models/tiny-moe-Q4_K_M.gguf"));
    EXPECT_EQ(hf->config().arch, Arch::Mixtral);
    EXPECT_EQ(gg->config().arch, Arch::Mixtral);
    EXPECT_EQ(shapes(*gg), shapes(*hf));
    const TensorInfo& down = hf->get("blk.1.ffn_down_exps.weight");
    EXPECT_EQ(down.ne, (std::vector<int64_t>{512, 256, 4}));
    EXPECT_EQ(down.role, TensorRole::ExpertDown);
    EXPECT_EQ(down.hf_name, "model.layers.1.block_sparse_moe.experts.{E}.w2.weight");
    EXPECT_TRUE(down.quantizable);
    const TensorInfo& router = hf->get("blk.0.ffn_gate_inp.weight");
    EXPECT_EQ(router.role, TensorRole::Router);
    EXPECT_FALSE(router.quantizable);
    EXPECT_EQ(router.ne, (std::vector<int64_t>{256, 4}));
    for (const auto& t : gg->tensors()) {
        if (t.type == GgmlType::F32) {
            EXPECT_EQ(gg->read_f32(t), hf->read_f32(hf->get(t.name))) << t.name;
        } else {
            EXPECT_LT(rel_error(gg->read_f32(t), hf->read_f32(hf->get(t.name))),
                      kQuantizedRelTolerance)
                << t.name;
        }
    }
    // Expert 3 of the stack is exactly HF expert 3.
    SafetensorsModel st = SafetensorsModel::open(shared_path("models/tiny-moe"));
    const StTensor& w1 = st.get("model.layers.0.block_sparse_moe.experts.3.w1.weight");
    std::vector<float> e3(w1.n_elements());
    SafetensorsModel::to_f32(w1, e3);
    const std::vector<float> all = hf->read_f32(hf->get("blk.0.ffn_gate_exps.weight"));
    EXPECT_TRUE(std::equal(e3.begin(), e3.end(), all.begin() + 3 * e3.size()));
}

TEST(Model, Qwen2TiedAndBiases) {
    auto m = Model::open(shared_path("models/tiny-qwen2"));
    EXPECT_EQ(m->config().arch, Arch::Qwen2);
    EXPECT_TRUE(m->config().tie_embeddings);
    EXPECT_EQ(m->find("output.weight"), nullptr);
    EXPECT_EQ(m->tensors().size(), 26u);
    const TensorInfo& b = m->get("blk.1.attn_k.bias");
    EXPECT_EQ(b.role, TensorRole::AttnKBias);
    EXPECT_EQ(b.ne, (std::vector<int64_t>{64}));
    EXPECT_FALSE(b.quantizable);
    // qwen2 is neox RoPE: q rows are not permuted.
    SafetensorsModel st = SafetensorsModel::open(shared_path("models/tiny-qwen2"));
    const StTensor& raw = st.get("model.layers.0.self_attn.q_proj.weight");
    std::vector<float> v(raw.n_elements());
    SafetensorsModel::to_f32(raw, v);
    EXPECT_EQ(m->read_f32(m->get("blk.0.attn_q.weight")), v);
}

TEST(ModelCorrupt, ShapeDisagreesWithConfig) {
    const fs::path dir = fs::path(QL_TEST_TMP) / "model-bad-config";
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path src = shared_path("models/tiny-qwen2");
    fs::create_symlink(src / "model.safetensors", dir / "model.safetensors");
    std::string cfg = read_text_file((src / "config.json").string());
    cfg.replace(cfg.find("\"intermediate_size\": 352"), 24, "\"intermediate_size\": 320");
    std::ofstream(dir / "config.json") << cfg;
    const std::string msg =
        test_support::error_of([&] { Model::open(dir.string()); }, "shape mismatch accepted");
    EXPECT_NE(msg.find("model.safetensors"), std::string::npos) << msg;
    EXPECT_NE(msg.find("mlp."), std::string::npos) << msg;
    EXPECT_NE(msg.find("config.json implies"), std::string::npos) << msg;
    fs::remove_all(dir);
}

TEST(ModelCorrupt, NotAModel) {
    EXPECT_THROW(Model::open("/nonexistent/model"), Error);
    EXPECT_THROW(Model::open(shared_path("models/llama-8m/tokenizer.json")), Error);
}

TEST(ModelCorrupt, GgufShapeDisagreesWithMetadata) {
    // A GGUF whose token_embd is [32, 8] while its metadata says a 16-wide embedding.
    GgufWriter w;
    w.add_kv("general.architecture", GgufValue::string("llama"));
    for (auto [key, v] : {std::pair{"block_count", 1},
                          {"embedding_length", 16},
                          {"feed_forward_length", 32},
                          {"attention.head_count", 2},
                          {"vocab_size", 8}})
        w.add_kv(std::string("llama.") + key, GgufValue::u32(v));
    std::vector<uint8_t> data(32 * 8 * 4);
    w.add_tensor("token_embd.weight", {32, 8}, GgmlType::F32, data);
    fs::create_directories(QL_TEST_TMP);
    const std::string path = std::string(QL_TEST_TMP) + "/bad-shape.gguf";
    w.write(path, Overwrite::replace);  // a fixed name, rewritten by every run
    try {
        Model::open(path);
        FAIL() << "shape mismatch accepted";
    } catch (const Error& e) {
        const std::string msg = e.what();
        EXPECT_NE(msg.find(path), std::string::npos) << msg;
        EXPECT_NE(msg.find("token_embd.weight"), std::string::npos) << msg;
        EXPECT_NE(msg.find("GGUF metadata implies [16, 8]"), std::string::npos) << msg;
    }
    fs::remove(path);
}
