// The CLI's subcommands. Each registers its flags on the app and returns the action
// run when the subcommand is chosen. Parsing and printing only; logic is in the library.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace lowbit::cli {

using Action = std::function<int()>;

Action add_convert(CLI::App& app);
Action add_inspect(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_run(CLI::App& app);
Action add_perplexity(CLI::App& app);
Action add_quantize(CLI::App& app);

}  // namespace lowbit::cli
