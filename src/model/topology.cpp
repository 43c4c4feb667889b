#include "lowbit/topology.h"

namespace lowbit {
namespace {

struct RoleGroup {
  std::vector<const char*> roles;  // linears reading the input
  InputSource source;
  const char* producer;  // role of what produces it
};

// The Llama-family block (lowbit/topology.h).
const std::vector<RoleGroup>& role_groups() {
  static const std::vector<RoleGroup> g = {
      {{"attn_q", "attn_k", "attn_v"}, InputSource::Norm, "attn_norm"},
      {{"attn_output"}, InputSource::KvHeadRows, "attn_v"},
      {{"ffn_gate", "ffn_up"}, InputSource::Norm, "ffn_norm"},
      {{"ffn_down"}, InputSource::Rows, "ffn_up"},
  };
  return g;
}

}  // namespace

std::vector<InputGroup> block_input_groups(const ModelConfig& c, uint32_t layer) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  std::vector<InputGroup> out;
  for (const RoleGroup& g : role_groups()) {
    InputGroup ig{{}, g.source, p + g.producer + ".weight", ""};
    for (const char* r : g.roles) ig.weights.push_back(p + r + ".weight");
    if (g.source == InputSource::KvHeadRows && c.attn_bias)
      ig.producer_bias = p + g.producer + ".bias";
    out.push_back(std::move(ig));
  }
  return out;
}

std::vector<std::string> block_residual_writers(uint32_t layer) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  return {p + "attn_output.weight", p + "ffn_down.weight"};
}

namespace {

const std::string kWeightTail = ".weight";

// The group of "blk.N.<role>.weight" and the length of its "blk.N." prefix; null otherwise.
const RoleGroup* group_of(const std::string& weight, size_t* prefix) {
  const std::string& tail = kWeightTail;
  const size_t dot = weight.find('.', 4);  // "blk.N." then the role
  if (weight.rfind("blk.", 0) != 0 || dot == std::string::npos ||
      weight.size() < dot + 1 + tail.size() ||
      weight.compare(weight.size() - tail.size(), tail.size(), tail) != 0)
    return nullptr;
  const std::string role = weight.substr(dot + 1, weight.size() - dot - 1 - tail.size());
  *prefix = dot + 1;
  for (const RoleGroup& g : role_groups())
    for (const char* r : g.roles)
      if (role == r) return &g;
  return nullptr;
}

}  // namespace

bool is_block_linear(const std::string& weight) {
  size_t prefix = 0;
  return group_of(weight, &prefix) != nullptr;
}

int block_of(const std::string& weight) {
  size_t prefix = 0;
  if (!group_of(weight, &prefix)) return -1;
  return std::stoi(weight.substr(4, prefix - 5));
}

std::string input_group_key(const std::string& weight) {
  size_t prefix = 0;
  const RoleGroup* g = group_of(weight, &prefix);
  return g ? weight.substr(0, prefix) + g->roles[0] + kWeightTail : weight;
}

}  // namespace lowbit
