// lowbit: make large language models small and fast.
#include <fmt/core.h>

#include <filesystem>
#include <map>
#include <new>

#include "commands.h"
#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"

namespace {

// Bad input of every kind (a file, a flag, a shape): the message and exit code 1.
int input_error(const lowbit::Error& e) {
  fmt::print(stderr, "lowbit: error: {}\n", e.what());
  return 1;
}

int run(const std::map<CLI::App*, lowbit::cli::Action>& actions) {
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const lowbit::Error& e) {
    return input_error(e);
  } catch (const std::bad_alloc&) {
    fmt::print(stderr,
               "lowbit: error: out of memory (a smaller --ctx, --batch or fewer threads "
               "may fit)\n");
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    fmt::print(stderr, "lowbit: error: {}: {}\n", e.path1().string(), e.code().message());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "lowbit: internal error: {}\n", e.what());
    return 2;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"lowbit: quantize, convert, evaluate and run Llama-family models on the CPU"};
  app.require_subcommand(1);
  std::map<CLI::App*, lowbit::cli::Action> actions;
  auto reg = [&](lowbit::cli::Action (*add)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    auto action = add(app);
    actions[app.get_subcommands({})[before]] = std::move(action);
  };
  reg(lowbit::cli::add_convert);
  reg(lowbit::cli::add_inspect);
  reg(lowbit::cli::add_tokenize);
  reg(lowbit::cli::add_run);
  reg(lowbit::cli::add_perplexity);
  reg(lowbit::cli::add_quantize);
  reg(lowbit::cli::add_prune);
  reg(lowbit::cli::add_calibrate);
  reg(lowbit::cli::add_sweep);
  reg(lowbit::cli::add_bench);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0
                            : 1;  // --help is 0; every bad flag is 1, like every other bad input
  } catch (const lowbit::Error& e) {  // from a flag's own parser (--mix-types)
    return input_error(e);
  }
  lowbit::clean_up_outputs_on_signals();  // quantize and calibrate stop more gently
  const int code = run(actions);
  // Under mpirun: a rank that failed stops the others, which would wait for it forever.
  if (code != 0) lowbit::dist::abort_job(code);
  lowbit::dist::finish();
  return code;
}
