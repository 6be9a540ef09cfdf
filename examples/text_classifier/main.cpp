// The whole inference path: a checkpoint written by a Python training script (train.py), the same
// network in C++, the same input preparation, the same logits.
//
//   text_classifier CHECKPOINT "a great film"          prints the report and the logits
//   text_classifier CHECKPOINT --check expected.json   compares with Python's logits (1e-5)
#include <statedict/statedict.hpp>
#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>
#include <iostream>
#include <sstream>
#include <unordered_map>

// Mirrors TextClassifier in train.py: same submodule names, so the keys match.
struct TextClassifierImpl : torch::nn::Module {
  TextClassifierImpl(int64_t vocab_size, int64_t dim = 16, int64_t classes = 2)
      : embedding(register_module("embedding", torch::nn::Embedding(torch::nn::EmbeddingOptions(vocab_size, dim).padding_idx(0)))),
        hidden(register_module("hidden", torch::nn::Linear(dim, dim))), out(register_module("out", torch::nn::Linear(dim, classes))) {}

  torch::Tensor forward(const torch::Tensor& ids) {
    auto mask = ids.ne(0).to(torch::kFloat).unsqueeze(-1);
    auto pooled = (embedding(ids) * mask).sum(1) / mask.sum(1).clamp_min(1.0);
    return out(torch::relu(hidden(pooled)));
  }
  torch::nn::Embedding embedding;
  torch::nn::Linear hidden, out;
};
TORCH_MODULE(TextClassifier);

// Prepares text exactly as train.py's encode(): lower-case, split on spaces, <unk> for unknown
// words, cut and pad to max_len.
std::vector<int64_t> encode(const std::string& text, const std::unordered_map<std::string, int64_t>& vocab, int64_t max_len) {
  std::vector<int64_t> ids;
  std::istringstream words(text);
  for (std::string w; words >> w && static_cast<int64_t>(ids.size()) < max_len;) {
    for (auto& c : w) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    auto it = vocab.find(w);
    ids.push_back(it != vocab.end() ? it->second : vocab.at("<unk>"));
  }
  ids.resize(static_cast<std::size_t>(max_len), vocab.at("<pad>"));
  return ids;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: text_classifier CHECKPOINT TEXT | --check EXPECTED.json\n";
    return 2;
  }
  // Read once: the weights and the vocabulary the training script stored beside them.
  const statedict::Checkpoint ck = statedict::read(argv[1]);
  std::unordered_map<std::string, int64_t> vocab;
  for (const auto& [word, id] : ck.at("vocab").items()) vocab[word.as_string()] = id.as_int();
  const int64_t max_len = ck.at("max_len").as_int();

  TextClassifier model(static_cast<int64_t>(vocab.size()));
  // The classic mistake first: the weights are under "model", not "model_state_dict".
  std::cout << "--- select(\"model_state_dict\"), as many scripts guess:\n"
            << statedict::diff(model, ck, statedict::LoadOptions{}.select("model_state_dict"));
  const auto report = statedict::load(model, ck, statedict::LoadOptions{}.select("model"));
  std::cout << "--- select(\"model\"):\n" << report;
  report.throw_if_error();
  model->eval();
  torch::NoGradGuard no_grad;

  auto logits_of = [&](const std::string& text) {
    const auto ids = encode(text, vocab, max_len);
    auto batch = torch::tensor(ids, torch::kLong).unsqueeze(0);  // the batch dimension training had
    auto logits = model->forward(batch)[0];
    return std::vector<double>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
  };

  if (std::string(argv[2]) != "--check") {
    const auto logits = logits_of(argv[2]);
    std::cout << "logits for \"" << argv[2] << "\": [" << logits[0] << ", " << logits[1] << "] -> "
              << (logits[1] > logits[0] ? "positive" : "negative") << "\n";
    return 0;
  }
  if (argc < 4) return 2;
  std::ifstream in(argv[3]);
  const auto expected = nlohmann::json::parse(in);
  int failures = 0;
  for (const auto& e : expected) {
    const auto text = e["text"].get<std::string>();
    const auto ids = encode(text, vocab, max_len);
    if (ids != e["ids"].get<std::vector<int64_t>>()) {
      std::cout << "ids differ for \"" << text << "\"\n";
      ++failures;
    }
    const auto got = logits_of(text);
    const auto want = e["logits"].get<std::vector<double>>();
    for (std::size_t i = 0; i < want.size(); ++i) {
      const double err = std::abs(got[i] - want[i]);
      if (err > 1e-5 * std::max(1.0, std::abs(want[i]))) {
        std::cout << "logit " << i << " of \"" << text << "\": C++ " << got[i] << ", Python " << want[i] << "\n";
        ++failures;
      }
    }
    std::cout << "\"" << text << "\": C++ [" << got[0] << ", " << got[1] << "], Python [" << want[0] << ", " << want[1] << "]\n";
  }
  std::cout << (failures ? "MISMATCH\n" : "C++ logits equal Python's within 1e-5\n");
  return failures ? 1 : 0;
}
