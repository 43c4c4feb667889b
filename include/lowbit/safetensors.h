// safetensors: an 8-byte little-endian header length N, N bytes of JSON describing each
// tensor ({"dtype", "shape", "data_offsets": [begin, end]} relative to the data section,
// plus an optional "__metadata__" string map), then the data section.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/file_io.h"
#include "lowbit/tensor.h"

namespace lowbit {

// Largest header lowbit accepts (the reference implementation uses 100 MB too).
inline constexpr uint64_t kSafetensorsMaxHeader = 100ull << 20;

class SafetensorsFile {
 public:
  // Maps the file and validates everything: header length, JSON, dtypes, shapes,
  // offsets (inside the file, contiguous, non-overlapping), size = product(shape) * dtype.
  static std::unique_ptr<SafetensorsFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  const std::vector<TensorView>& tensors() const { return tensors_; }  // in file order
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<MappedFile> file_;
  std::vector<TensorView> tensors_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// A checkpoint that may be split over shards (model.safetensors.index.json) or be one
// file (model.safetensors). Tensor views stay valid while the checkpoint lives.
class SafetensorsCheckpoint {
 public:
  // `dir` holds either model.safetensors.index.json or model.safetensors.
  static std::unique_ptr<SafetensorsCheckpoint> open_dir(const std::string& dir);
  const std::vector<TensorView>& tensors() const { return all_; }
  const TensorView* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<TensorView> all_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Writes tensors in the given order; bytes come from each tensor's producer.
void write_safetensors(const std::string& path, const std::vector<OutputTensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace lowbit
