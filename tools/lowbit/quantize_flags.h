// `quantize` and `sweep` flags as a lowbit::QuantizeJob (lowbit/job.h): the CLI only maps
// flags onto the job; the library owns the defaults and the rules.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "lowbit/job.h"
#include "lowbit/job_options.h"

namespace lowbit::cli {

// The flags as given: the library's JobSettings plus what only the CLI prints.
struct QuantizeFlags {
  JobSettings s;
  bool act_order = false, no_act_order = false, sym = false;
  bool json = false, quiet = false;
  CLI::Option* group_option = nullptr;
  double bpw = 0;  // JobSettings::bpw when --bpw was given
  CLI::Option* bpw_option = nullptr;
  std::string nm;      // --nm N:M, parsed by the library
  std::string format;  // --format, parsed by the library
  RoundingFlags rounding;  // qat: what the student's pass rounds besides its weights
};

// Registers every quantize flag on `c`.
void add_quantize_flags(CLI::App* c, QuantizeFlags& f);
// The budget's sensitivity flags (shared with sweep).
void add_sensitivity_flags(CLI::App* c, SensitivityParams& s);
// The calibration flags that describe the source (shared with calibrate and sweep).
void add_calibration_source_flags(CLI::App* c, CalibrationSource& s);
// --calib-kernels: the block-by-block methods' forward passes (CalibrationSource::fast_kernels).
void add_calib_kernels_flag(CLI::App* c, CalibrationSource& s);
// The job the flags describe (lowbit::make_job; the library validates it when it runs).
QuantizeJob job_from_flags(const QuantizeFlags& f);
// Progress lines on stderr for every stage (nothing when quiet); cancels the job once
// stop_on_signals() has seen SIGINT or SIGTERM.
Observer progress_printer(bool quiet);
// --distill-steps, --distill-lr: structured pruning recovered by distillation.
void add_distill_flags(CLI::App* c, QuantizeJob& j);
void stop_on_signals();
// The report of a finished job: findings and notes on stderr, then the per-tensor table (or
// the JSON summary) on stdout. Defined in cmd_quantize.cpp.
void print_quantize_report(const QuantizeReport& r, const std::string& output, bool json,
                           bool quiet);

}  // namespace lowbit::cli
