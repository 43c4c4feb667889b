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

// A 720 × 360 plot against the step (0 at the left edge): the training loss (blue, step i's
// at i) and the held-out scores (orange, at the steps done when taken), with the axes' end
// values written out.
std::string loss_svg(const std::vector<double>& losses,
                     const std::vector<std::pair<int, double>>& held_out,
                     const std::string& title) {
  constexpr double kW = 720, kH = 360, kLeft = 70, kRight = 20, kTop = 40, kBottom = 40;
  std::vector<double> all = losses;
  for (const auto& h : held_out) all.push_back(h.second);
  double lo = 0, hi = 1;
  if (!all.empty()) {
    const auto [mn, mx] = std::minmax_element(all.begin(), all.end());
    lo = *mn, hi = *mx > *mn ? *mx : *mn + 1;
  }
  const double n = double(std::max<size_t>(losses.size(), 1));
  auto x = [&](double step) { return kLeft + (kW - kLeft - kRight) * step / n; };
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
      "<text x=\"{0}\" y=\"{7}\">0</text>\n"
      "<text x=\"{3}\" y=\"{7}\" text-anchor=\"end\">step {8}</text>\n",
      kLeft, kTop, kH - kBottom, kW - kRight, kLeft - 6, hi, lo, kH - kBottom + 16, losses.size());
  auto line = [&](const char* color, const std::vector<std::pair<double, double>>& points) {
    s += fmt::format("<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"", color);
    for (size_t i = 0; i < points.size(); ++i)
      s += fmt::format("{}{:.1f},{:.1f}", i ? " " : "", x(points[i].first), y(points[i].second));
    s += "\"/>\n";
  };
  std::vector<std::pair<double, double>> train, held;
  for (size_t i = 0; i < losses.size(); ++i) train.emplace_back(double(i + 1), losses[i]);
  for (const auto& [step, v] : held_out) held.emplace_back(double(step), v);
  line("#1f6fb4", train);
  if (!held.empty()) {
    line("#e07b00", held);
    s += fmt::format(
        "<text x=\"{}\" y=\"24\" text-anchor=\"end\" fill=\"#e07b00\">"
        "held out</text>\n",
        kW - kRight);
  }
  s += "</svg>\n";
  return s;
}

}  // namespace

void write_loss_curve(const std::string& csv_path, const std::vector<double>& losses,
                      const std::string& title,
                      const std::vector<std::pair<int, double>>& held_out) {
  std::string csv = held_out.empty() ? "step,loss\n" : "step,loss,held_out\n";
  size_t h = 0;
  for (const auto& [step, v] : held_out)  // scores taken before the first step (step 0)
    if (step == 0) csv += fmt::format("0,,{}\n", v), ++h;
  for (size_t i = 0; i < losses.size(); ++i) {
    csv += fmt::format("{},{}", i + 1, losses[i]);
    if (h < held_out.size() && held_out[h].first == int(i + 1))
      csv += fmt::format(",{}", held_out[h++].second);
    else if (!held_out.empty())
      csv += ",";
    csv += "\n";
  }
  write_file_atomic(csv_path, csv);
  write_file_atomic(std::filesystem::path(csv_path).replace_extension(".svg").string(),
                    loss_svg(losses, held_out, title));
}

}  // namespace lowbit
