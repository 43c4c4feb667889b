// Calibration statistics (read_calibration_stats): a GGUF imatrix (lowbit's "<w>.in_sum2" /
// "<w>.counts" / ".in_absmax" / ".in_hessian" or llama.cpp's ".sums") or llama.cpp's legacy
// imatrix.dat; the reader picks the form from the magic.
#include "fuzz_file.h"
#include "lowbit/calibration.h"
#include "lowbit/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const lowbit::CalibrationStats s =
        lowbit::read_calibration_stats(fuzz::write_input(data, size, "imatrix.dat"));
    double sum = 0;
    for (const auto& [name, st] : s.by_weight) {
      for (float v : st.importance()) sum += v;
      for (double v : st.hessian()) sum += v;
    }
    (void)sum;
  } catch (const lowbit::Error& e) {
    fuzz::rejected(e);
  }
  return 0;
}
