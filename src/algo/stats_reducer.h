// Sums the calibration windows' shares of every weight's input statistics, in window order,
// with the work spread over the ranks of a distributed job (lowbit/distributed.h):
//   - Σx², max |x| and the row count (small): every rank's share goes to rank 0, which adds;
//   - Σ x xᵀ (cols² per weight): rank k keeps the totals of one band of rows of the upper
//     triangle (bands of equal element counts) and adds every window's share of its band,
//     received from the rank that measured the window; rank 0 gathers the bands at the end.
// Each total element gets the same adds in the same order (window by window, a window's
// share summed from zero) for any number of ranks and threads, so the statistics are the
// same bytes. Ranks measure windows in turns: in round t, rank k measures window t·N + k. At
// the end each weight's totals can go to another rank than 0 (the rank that quantizes the
// weight, in the sequential driver).
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lowbit/calibration.h"
#include "lowbit/distributed.h"

namespace lowbit {

class StatsReducer {
 public:
  StatsReducer(dist::Group& group, bool hessian, int n_threads);

  // A new round: `present[k]` when rank k has a window in it. A rank without one still
  // runs a stand-in window through the engine (its share is not added), so that it takes
  // its part in every exchange.
  void begin_round(std::vector<bool> present);
  // The engine's input hook: weight `name` reads x [rows, cols] in this rank's window.
  // Weights that read the same input (lowbit/topology.h input_group_key) come one after
  // another and share one measurement.
  void add(const std::string& name, const float* x, size_t rows, size_t cols);
  // Each weight's totals on its root rank (`root_of(name)`; rank 0 when not given), and on
  // every rank with `everywhere`; elsewhere the names with empty sums.
  CalibrationStats finish(bool everywhere,
                          const std::function<int(const std::string&)>& root_of = {});

  // Rows [first, last) of a cols × cols upper triangle that rank k of n sums.
  static std::pair<size_t, size_t> band(size_t cols, size_t k, size_t n);

 private:
  struct Share {  // one window's share of a group's statistics
    uint64_t rows = 0;
    std::vector<double> sum_sq;
    std::vector<float> absmax;
    std::vector<float> xtx;  // the whole [cols, cols] upper triangle, or one band's rows
  };
  struct Totals {                  // of one weight
    InputStats stats;              // sums on rank 0 (x xᵀ only once gathered)
    std::vector<double> band_xtx;  // this rank's band of x xᵀ: [band rows, cols], upper part
  };

  void measure(const float* x, size_t rows, size_t cols);
  void exchange(size_t cols);
  void fold(Totals& t, size_t cols);

  dist::Group& group_;
  size_t n_ranks_, rank_;
  bool hessian_;
  int n_threads_;
  std::vector<bool> present_;
  std::string last_group_;
  Share own_;
  std::vector<Share> received_;  // [rank]: its share (sums on rank 0; my band everywhere)
  std::map<std::string, Totals> totals_;
};

}  // namespace lowbit
