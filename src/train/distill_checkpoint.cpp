#include "train/distill_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "algo/sequential_checkpoint.h"
#include "core/mapped_reader.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"

namespace lowbit::train {
namespace {

constexpr char kMagic[8] = {'L', 'B', 'D', 'I', 'S', 'T', '0', '1'};

}  // namespace

void DistillCheckpoint::save(uint32_t steps_done, const std::vector<double>& losses,
                             const std::vector<std::vector<float>*>& params,
                             std::vector<Adam>& adam) const {
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (!dir.empty()) make_checkpoint_directory(dir);
  AtomicFileWriter w(path);
  const uint64_t n_losses = losses.size(), n_tensors = params.size();
  w.write(kMagic, 8);
  w.write(&fingerprint, 8);
  w.write(&steps_done, 4);
  w.write(&n_losses, 8);
  w.write(losses.data(), n_losses * sizeof(double));
  w.write(&n_tensors, 8);
  for (size_t k = 0; k < params.size(); ++k) {
    const uint64_t count = params[k]->size();
    const Adam::State& s = adam[k].state();
    w.write(&count, 8);
    for (const std::vector<float>* v :
         {static_cast<const std::vector<float>*>(params[k]), &s.m, &s.v})
      w.write(v->data(), count * sizeof(float));
    w.write(&s.t, sizeof s.t);
  }
  w.commit();
}

uint32_t DistillCheckpoint::load(std::vector<double>& losses,
                                 const std::vector<std::vector<float>*>& params,
                                 std::vector<Adam>& adam) const {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  const auto f = MappedFile::open(path);
  MappedReader r{*f};
  if (std::memcmp(r.take(8, "the magic"), kMagic, 8) != 0)
    fail(ErrorKind::Format, "{}: not a lowbit training checkpoint", path);
  if (r.get<uint64_t>("the fingerprint") != fingerprint)
    fail(ErrorKind::Argument,
         "{}: the checkpoint was made by another run (other model, text, types or settings); "
         "remove it or run the same job",
         path);
  const uint32_t steps_done = r.get<uint32_t>("the step count");
  const uint64_t n_losses = r.get<uint64_t>("the loss count");
  if (n_losses != steps_done)
    fail(ErrorKind::Format, "{}: {} losses for {} steps", path, n_losses, steps_done);
  losses.resize(n_losses);
  r.read_into(losses.data(), n_losses * sizeof(double), "losses");
  if (r.get<uint64_t>("the tensor count") != params.size())
    fail(ErrorKind::Format, "{}: the checkpoint's tensors do not match the model", path);
  for (size_t k = 0; k < params.size(); ++k) {
    if (r.get<uint64_t>("a tensor size") != params[k]->size())
      fail(ErrorKind::Format, "{}: tensor {} of the checkpoint has another size", path, k);
    Adam::State& s = adam[k].state();
    for (std::vector<float>* v : {params[k], &s.m, &s.v})
      r.read_into(v->data(), v->size() * sizeof(float), "weights and moments");
    s.t = r.get<int>("the Adam step");
  }
  if (r.pos != f->size()) fail(ErrorKind::Format, "{}: bytes after the last tensor", path);
  return steps_done;
}

}  // namespace lowbit::train
