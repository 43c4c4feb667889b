// write_loss_curve (lowbit/distill.h): the CSV for tools, the SVG for a quick look.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "lowbit/distill.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"

namespace lowbit {
namespace {

std::string xml_escaped(const std::string& text) {
  std::string out;
  for (const char ch : text) {
    if (ch == '<')
      out += "&lt;";
    else if (ch == '>')
      out += "&gt;";
    else if (ch == '&')
      out += "&amp;";
    else
      out += ch;
  }
  return out;
}

// A 720 × 360 plot: the loss against the step, with the axes' end values written out.
std::string loss_svg(const std::vector<double>& losses, const std::string& title) {
  constexpr double kW = 720, kH = 360, kLeft = 70, kRight = 20, kTop = 40, kBottom = 40;
  double lo = 0, hi = 1;
  if (!losses.empty()) {
    const auto [mn, mx] = std::minmax_element(losses.begin(), losses.end());
    lo = *mn, hi = *mx > *mn ? *mx : *mn + 1;
  }
  const size_t n = std::max<size_t>(losses.size(), 2);
  auto x = [&](size_t i) { return kLeft + (kW - kLeft - kRight) * double(i) / double(n - 1); };
  auto y = [&](double v) { return kTop + (kH - kTop - kBottom) * (hi - v) / (hi - lo); };
  std::string s = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>\n"
      "<text x=\"{2}\" y=\"24\" font-size=\"14\">{3}</text>\n",
      kW, kH, kLeft, xml_escaped(title));
  s += fmt::format(
      "<path d=\"M{0} {1} V{2} H{3}\" stroke=\"black\" fill=\"none\"/>\n"
      "<text x=\"{4}\" y=\"{1}\" text-anchor=\"end\">{5:.4g}</text>\n"
      "<text x=\"{4}\" y=\"{2}\" text-anchor=\"end\">{6:.4g}</text>\n"
      "<text x=\"{0}\" y=\"{7}\">1</text>\n"
      "<text x=\"{3}\" y=\"{7}\" text-anchor=\"end\">step {8}</text>\n",
      kLeft, kTop, kH - kBottom, kW - kRight, kLeft - 6, hi, lo, kH - kBottom + 16, losses.size());
  s += "<polyline fill=\"none\" stroke=\"#1f6fb4\" stroke-width=\"1.5\" points=\"";
  for (size_t i = 0; i < losses.size(); ++i)
    s += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", x(i), y(losses[i]));
  s += "\"/>\n</svg>\n";
  return s;
}

}  // namespace

void write_loss_curve(const std::string& csv_path, const std::vector<double>& losses,
                      const std::string& title) {
  std::string csv = "step,loss\n";
  for (size_t i = 0; i < losses.size(); ++i) csv += fmt::format("{},{}\n", i + 1, losses[i]);
  write_file_atomic(csv_path, csv);
  write_file_atomic(std::filesystem::path(csv_path).replace_extension(".svg").string(),
                    loss_svg(losses, title));
}

}  // namespace lowbit
