#include "coordinator/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lorasweep::svg {
namespace {

constexpr char kFont[] = "font-family=\"sans-serif\"";
constexpr double kLegendWidth = 196;
constexpr size_t kMaxLegendEntries = 14;
constexpr size_t kMaxLabelChars = 29;

std::string Num(double v) { return absl::StrFormat("%.1f", v); }

// Long legend or category labels would run into the plot; the full text stays in a tooltip.
std::string Shorten(const std::string& text, size_t max_chars = kMaxLabelChars) {
  if (text.size() <= max_chars) return text;
  return text.substr(0, max_chars - 1) + "~";
}

std::string Text(double x, double y, const std::string& text, const std::string& anchor,
                 int size = 11, const std::string& extra = "") {
  return absl::StrCat("<text x=\"", Num(x), "\" y=\"", Num(y), "\" ", kFont, " font-size=\"", size,
                      "\" text-anchor=\"", anchor, "\"", extra.empty() ? "" : " ", extra, ">",
                      EscapeXml(text), "</text>\n");
}

std::string MarkerSvg(Marker marker, double x, double y, const std::string& color,
                      const std::string& title) {
  const std::string tip =
      title.empty() ? "" : absl::StrCat("<title>", EscapeXml(title), "</title>");
  switch (marker) {
    case Marker::kNone:
      return "";
    case Marker::kCircle:
      return absl::StrCat("<circle cx=\"", Num(x), "\" cy=\"", Num(y), "\" r=\"3.5\" fill=\"",
                          color, "\" stroke=\"#fff\" stroke-width=\"0.8\">", tip, "</circle>\n");
    case Marker::kSquare:
      return absl::StrCat("<rect x=\"", Num(x - 3.5), "\" y=\"", Num(y - 3.5),
                          "\" width=\"7\" height=\"7\" fill=\"", color, "\">", tip, "</rect>\n");
    case Marker::kCross:
      return absl::StrCat("<path d=\"M", Num(x - 4.5), " ", Num(y - 4.5), "L", Num(x + 4.5), " ",
                          Num(y + 4.5), "M", Num(x - 4.5), " ", Num(y + 4.5), "L", Num(x + 4.5),
                          " ", Num(y - 4.5), "\" stroke=\"", color,
                          "\" stroke-width=\"2.2\" fill=\"none\">", tip, "</path>\n");
  }
  return "";
}

std::string Header(int width, int height, const std::string& title) {
  // No xmlns: inline <svg> in HTML gets the SVG namespace from the HTML parser, and the report
  // must not contain any URL at all (it is checked for "http").
  return absl::StrCat("<svg width=\"", width, "\" height=\"", height, "\" viewBox=\"0 0 ", width,
                      " ", height, "\" role=\"img\" aria-label=\"", EscapeXml(title), "\">\n",
                      "<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n",
                      Text(width / 2.0, 18, title, "middle", 13, "font-weight=\"bold\""));
}

// The range of an axis in data units (log10 units on a log axis) and its tick marks.
struct Scale {
  double lo = 0, hi = 1;
  bool log = false;
  std::vector<double> ticks;  // in data units
  std::vector<std::string> tick_labels;
  double Map(double v, double pixel_lo, double pixel_hi) const {
    const double t = log ? std::log10(v) : v;
    return pixel_lo + (t - lo) / (hi - lo) * (pixel_hi - pixel_lo);
  }
};

Scale MakeScale(const Axis& axis, double min_v, double max_v) {
  Scale s;
  if (!axis.categories.empty()) {
    s.lo = -0.5;
    s.hi = static_cast<double>(axis.categories.size()) - 0.5;
    for (size_t i = 0; i < axis.categories.size(); ++i) {
      s.ticks.push_back(static_cast<double>(i));
      s.tick_labels.push_back(Shorten(axis.categories[i], 18));
    }
    return s;
  }
  if (axis.log) {
    s.log = true;
    s.ticks = LogTicks(min_v, max_v);
    s.lo = std::log10(s.ticks.front());
    s.hi = std::log10(s.ticks.back());
  } else {
    s.ticks = NiceTicks(min_v, max_v);
    s.lo = s.ticks.front();
    s.hi = s.ticks.back();
  }
  if (s.hi <= s.lo) s.hi = s.lo + 1;
  const double pad = (s.hi - s.lo) * axis.pad;
  s.lo -= pad;
  s.hi += pad;
  for (double t : s.ticks) s.tick_labels.push_back(FormatTick(t));
  return s;
}

bool Usable(double v, bool log) { return std::isfinite(v) && (!log || v > 0); }

}  // namespace

std::string EscapeXml(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::vector<double> NiceTicks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {0, 1};
  if (lo > hi) std::swap(lo, hi);
  if (hi - lo < 1e-12 * std::max(1.0, std::fabs(hi))) {
    // One value: centre it in a small range so it is not drawn on the frame.
    const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / magnitude;
  const double step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * magnitude;
  const double start = std::floor(lo / step + 1e-9) * step;
  const double end = std::ceil(hi / step - 1e-9) * step;
  std::vector<double> ticks;
  for (int i = 0; start + i * step <= end + step * 1e-6 && i < 100; ++i) {
    // k * step in integer units of a power of ten, divided last, so 3 x 0.2 gives 0.6 and not
    // 0.6000000000000001 (labels and comparisons see the number as typed).
    const double k = std::round(start / step) + i;
    const double units = std::round(step / magnitude);  // 1, 2, 5 or 10
    const double t = magnitude < 1 ? k * units / std::round(1 / magnitude) : k * units * magnitude;
    ticks.push_back(t);
  }
  if (ticks.size() < 2) ticks = {start, start + step};
  return ticks;
}

std::vector<double> LogTicks(double lo, double hi) {
  if (!(lo > 0) || !(hi > 0) || !std::isfinite(lo) || !std::isfinite(hi)) return {1, 10};
  if (lo > hi) std::swap(lo, hi);
  if (hi / lo < 1.0 + 1e-9) {
    lo /= 2;
    hi *= 2;
  }
  const int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-9));
  const int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-9));
  std::vector<double> candidates;
  const bool wide = e1 - e0 >= 3;
  for (int e = e0; e <= e1; ++e) {
    const double p = std::pow(10.0, e);
    candidates.push_back(p);
    if (!wide && e < e1) {
      candidates.push_back(2 * p);
      candidates.push_back(5 * p);
    }
  }
  // The narrowest [low, high] from the candidates that still holds the data.
  double low = candidates.front(), high = candidates.back();
  for (double c : candidates) {
    if (c <= lo * (1 + 1e-9)) low = c;
  }
  for (auto it = candidates.rbegin(); it != candidates.rend(); ++it) {
    if (*it >= hi * (1 - 1e-9)) high = *it;
  }
  std::vector<double> ticks;
  for (double c : candidates) {
    if (c >= low * (1 - 1e-9) && c <= high * (1 + 1e-9)) ticks.push_back(c);
  }
  if (ticks.size() < 2) ticks = {low, low * 10};
  return ticks;
}

std::string FormatTick(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e9) return absl::StrFormat("%gB", v / 1e9);
  if (a >= 1e6) return absl::StrFormat("%gM", v / 1e6);
  if (a >= 1e4) return absl::StrFormat("%gk", v / 1e3);
  if (a < 1e-3) {
    // 2.00e-04 -> 2e-4: the way people write a learning rate.
    const std::string s = absl::StrFormat("%.2e", v);
    std::string mantissa = s.substr(0, s.find('e'));
    while (mantissa.back() == '0') mantissa.pop_back();
    if (mantissa.back() == '.') mantissa.pop_back();
    return absl::StrCat(mantissa, "e", std::stoi(s.substr(s.find('e') + 1)));
  }
  return absl::StrFormat("%.4g", v);
}

const std::string& PaletteColor(size_t index) {
  static const std::vector<std::string> kPalette = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1",
                                                    "#76b7b2", "#edc948", "#9c755f", "#ff9da7",
                                                    "#bab0ac", "#e15759"};
  return kPalette[index % kPalette.size()];
}

std::string RenderXYChart(const XYChart& chart) {
  double x_min = std::numeric_limits<double>::infinity(), x_max = -x_min;
  double y_min = x_min, y_max = -x_min;
  size_t points = 0;
  for (const Series& s : chart.series) {
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!Usable(s.x[i], chart.x.log) || !Usable(s.y[i], chart.y.log)) continue;
      x_min = std::min(x_min, s.x[i]);
      x_max = std::max(x_max, s.x[i]);
      y_min = std::min(y_min, s.y[i]);
      y_max = std::max(y_max, s.y[i]);
      ++points;
    }
  }
  std::string out = Header(chart.width, chart.height, chart.title);
  if (points == 0) {
    out +=
        Text(chart.width / 2.0, chart.height / 2.0, "no data yet", "middle", 12, "fill=\"#777\"");
    return out + "</svg>\n";
  }
  for (const ReferenceLine& r : chart.references) {
    if (!Usable(r.y, chart.y.log)) continue;
    y_min = std::min(y_min, r.y);
    y_max = std::max(y_max, r.y);
  }
  size_t legend_entries = 0;
  for (const Series& s : chart.series) legend_entries += s.in_legend ? 1 : 0;
  legend_entries += chart.references.size();
  const bool legend = legend_entries > 0;
  const double left = 62, top = 32;
  const double right = chart.width - (legend ? kLegendWidth : 16);
  const double bottom = chart.height - (chart.x.categories.empty() ? 44 : 56);
  const Scale xs = MakeScale(chart.x, x_min, x_max);
  const Scale ys = MakeScale(chart.y, y_min, y_max);
  auto px = [&](double v) { return xs.Map(v, left, right); };
  auto py = [&](double v) { return ys.Map(v, bottom, top); };

  // Grid, ticks and tick labels.
  for (size_t i = 0; i < ys.ticks.size(); ++i) {
    const double y = py(ys.ticks[i]);
    absl::StrAppend(&out, "<line x1=\"", Num(left), "\" y1=\"", Num(y), "\" x2=\"", Num(right),
                    "\" y2=\"", Num(y), "\" stroke=\"#e5e5e5\"/>\n");
    out += Text(left - 6, y + 4, ys.tick_labels[i], "end", 10);
  }
  for (size_t i = 0; i < xs.ticks.size(); ++i) {
    const double x = px(xs.ticks[i]);
    absl::StrAppend(&out, "<line x1=\"", Num(x), "\" y1=\"", Num(top), "\" x2=\"", Num(x),
                    "\" y2=\"", Num(bottom), "\" stroke=\"#f0f0f0\"/>\n");
    if (chart.x.categories.empty()) {
      out += Text(x, bottom + 15, xs.tick_labels[i], "middle", 10);
    } else {
      // Category names can be long: slant them.
      out += Text(x, bottom + 14, xs.tick_labels[i], "end", 10,
                  absl::StrCat("transform=\"rotate(-20 ", Num(x), " ", Num(bottom + 14), ")\""));
    }
  }
  absl::StrAppend(&out, "<rect x=\"", Num(left), "\" y=\"", Num(top), "\" width=\"",
                  Num(right - left), "\" height=\"", Num(bottom - top),
                  "\" fill=\"none\" stroke=\"#888\"/>\n");
  out += Text((left + right) / 2, chart.height - 6, chart.x.label, "middle", 11);
  out += Text(14, (top + bottom) / 2, chart.y.label, "middle", 11,
              absl::StrCat("transform=\"rotate(-90 14 ", Num((top + bottom) / 2), ")\""));

  // Reference lines first, so data draws over them.
  for (const ReferenceLine& r : chart.references) {
    if (!Usable(r.y, chart.y.log)) continue;
    absl::StrAppend(&out, "<line x1=\"", Num(left), "\" y1=\"", Num(py(r.y)), "\" x2=\"",
                    Num(right), "\" y2=\"", Num(py(r.y)),
                    "\" stroke=\"#333\" stroke-width=\"1.2\" stroke-dasharray=\"2 3\"/>\n");
  }

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const Series& s = chart.series[si];
    const std::string color = s.color.empty() ? PaletteColor(si) : s.color;
    std::vector<std::pair<double, double>> pts;
    std::vector<size_t> index;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!Usable(s.x[i], chart.x.log) || !Usable(s.y[i], chart.y.log)) continue;
      pts.emplace_back(px(s.x[i]), py(s.y[i]));
      index.push_back(i);
    }
    if (pts.empty()) continue;
    out += absl::StrCat("<g><title>", EscapeXml(s.name), "</title>\n");
    if (s.line && pts.size() > 1) {
      std::string d;
      for (size_t i = 0; i < pts.size(); ++i) {
        absl::StrAppend(&d, i == 0 ? "M" : "L", Num(pts[i].first), " ", Num(pts[i].second));
      }
      absl::StrAppend(&out, "<path d=\"", d, "\" fill=\"none\" stroke=\"", color,
                      "\" stroke-width=\"1.6\"", s.dashed ? " stroke-dasharray=\"5 3\"" : "",
                      "/>\n");
    }
    for (size_t i = 0; i < pts.size(); ++i) {
      const std::string title = index[i] < s.point_titles.size() ? s.point_titles[index[i]] : "";
      out += MarkerSvg(s.marker, pts[i].first, pts[i].second, color, title);
    }
    if (s.last_marker != Marker::kNone) {
      out += MarkerSvg(s.last_marker, pts.back().first, pts.back().second, color, s.name);
    }
    out += "</g>\n";
  }

  if (legend) {
    double y = top + 6;
    const double x = right + 12;
    size_t shown = 0;
    for (size_t si = 0; si < chart.series.size(); ++si) {
      const Series& s = chart.series[si];
      if (!s.in_legend) continue;
      if (shown == kMaxLegendEntries) {
        out += Text(x, y + 4, absl::StrCat("+", legend_entries - shown, " more"), "start", 10,
                    "fill=\"#777\"");
        break;
      }
      const std::string color = s.color.empty() ? PaletteColor(si) : s.color;
      if (s.line) {
        absl::StrAppend(&out, "<line x1=\"", Num(x), "\" y1=\"", Num(y), "\" x2=\"", Num(x + 18),
                        "\" y2=\"", Num(y), "\" stroke=\"", color, "\" stroke-width=\"2\"",
                        s.dashed ? " stroke-dasharray=\"5 3\"" : "", "/>\n");
      }
      const Marker m = s.marker != Marker::kNone ? s.marker : s.last_marker;
      out += MarkerSvg(m, x + 9, y, color, "");
      out += Text(x + 24, y + 4, Shorten(s.name), "start", 10);
      y += 16;
      ++shown;
    }
    if (shown < kMaxLegendEntries) {
      for (const ReferenceLine& r : chart.references) {
        absl::StrAppend(&out, "<line x1=\"", Num(x), "\" y1=\"", Num(y), "\" x2=\"", Num(x + 18),
                        "\" y2=\"", Num(y),
                        "\" stroke=\"#333\" stroke-width=\"1.2\" stroke-dasharray=\"2 3\"/>\n");
        out += Text(x + 24, y + 4, Shorten(r.label), "start", 10);
        y += 16;
      }
    }
  }
  return out + "</svg>\n";
}

std::string RenderHeatMap(const HeatMap& map) {
  std::string out = Header(map.width, map.height, map.title);
  double v_min = std::numeric_limits<double>::infinity(), v_max = -v_min;
  for (const auto& row : map.values) {
    for (const auto& v : row) {
      if (v && std::isfinite(*v)) {
        v_min = std::min(v_min, *v);
        v_max = std::max(v_max, *v);
      }
    }
  }
  if (map.x_categories.empty() || map.y_categories.empty() || !std::isfinite(v_min)) {
    out += Text(map.width / 2.0, map.height / 2.0, "no data yet", "middle", 12, "fill=\"#777\"");
    return out + "</svg>\n";
  }
  const double left = 74, top = 32, right = map.width - 110.0, bottom = map.height - 48.0;
  const double cw = (right - left) / map.x_categories.size();
  const double ch = (bottom - top) / map.y_categories.size();
  // Sequential blues; t = 1 is the best value.
  auto shade = [&](double v, double* t_out) {
    double t = v_max > v_min ? (v - v_min) / (v_max - v_min) : 1.0;
    if (map.lower_is_better) t = 1 - t;
    *t_out = t;
    const int r = static_cast<int>(std::lround(239 + (8 - 239) * t));
    const int g = static_cast<int>(std::lround(243 + (48 - 243) * t));
    const int b = static_cast<int>(std::lround(255 + (107 - 255) * t));
    return absl::StrFormat("#%02x%02x%02x", r, g, b);
  };
  for (size_t row = 0; row < map.y_categories.size(); ++row) {
    const double y = bottom - (row + 1) * ch;
    out += Text(left - 6, y + ch / 2 + 4, Shorten(map.y_categories[row], 12), "end", 10);
    for (size_t col = 0; col < map.x_categories.size(); ++col) {
      const double x = left + col * cw;
      const std::optional<double> v = row < map.values.size() && col < map.values[row].size()
                                          ? map.values[row][col]
                                          : std::nullopt;
      if (!v || !std::isfinite(*v)) {
        absl::StrAppend(&out, "<rect x=\"", Num(x), "\" y=\"", Num(y), "\" width=\"", Num(cw),
                        "\" height=\"", Num(ch), "\" fill=\"#f4f4f4\" stroke=\"#fff\"/>\n");
        out += Text(x + cw / 2, y + ch / 2 + 4, "n/a", "middle", 10, "fill=\"#999\"");
        continue;
      }
      double t = 0;
      const std::string fill = shade(*v, &t);
      absl::StrAppend(
          &out, "<rect x=\"", Num(x), "\" y=\"", Num(y), "\" width=\"", Num(cw), "\" height=\"",
          Num(ch), "\" fill=\"", fill, "\" stroke=\"#fff\"><title>",
          EscapeXml(absl::StrCat(map.y_label, " ", map.y_categories[row], ", ", map.x_label, " ",
                                 map.x_categories[col], ": ", absl::StrFormat("%.4g", *v))),
          "</title></rect>\n");
      out += Text(x + cw / 2, y + ch / 2 + 4, absl::StrFormat("%.4g", *v), "middle", 11,
                  t > 0.55 ? "fill=\"#fff\"" : "fill=\"#111\"");
    }
  }
  for (size_t col = 0; col < map.x_categories.size(); ++col) {
    out += Text(left + (col + 0.5) * cw, bottom + 15, Shorten(map.x_categories[col], 14), "middle",
                10);
  }
  out += Text((left + right) / 2, map.height - 8, map.x_label, "middle", 11);
  out += Text(14, (top + bottom) / 2, map.y_label, "middle", 11,
              absl::StrCat("transform=\"rotate(-90 14 ", Num((top + bottom) / 2), ")\""));
  // Colour key: five swatches from worst to best.
  const double kx = right + 18;
  out += Text(kx, top + 8, Shorten(map.value_label, 16), "start", 10);
  for (int i = 0; i < 5; ++i) {
    const double frac = i / 4.0;
    const double v =
        map.lower_is_better ? v_max - frac * (v_max - v_min) : v_min + frac * (v_max - v_min);
    double t = 0;
    const std::string fill = shade(v, &t);
    const double y = top + 16 + i * 20;
    absl::StrAppend(&out, "<rect x=\"", Num(kx), "\" y=\"", Num(y),
                    "\" width=\"16\" height=\"16\" "
                    "fill=\"",
                    fill, "\" stroke=\"#ccc\"/>\n");
    out += Text(kx + 22, y + 12, absl::StrFormat("%.4g", v), "start", 10);
  }
  out += Text(kx, top + 130, "darker = better", "start", 10, "fill=\"#555\"");
  return out + "</svg>\n";
}

std::vector<size_t> ParetoFrontier(const std::vector<double>& x, const std::vector<double>& y) {
  std::vector<size_t> order;
  for (size_t i = 0; i < x.size() && i < y.size(); ++i) {
    if (std::isfinite(x[i]) && std::isfinite(y[i])) order.push_back(i);
  }
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return x[a] != x[b] ? x[a] < x[b] : y[a] < y[b]; });
  std::vector<size_t> front;
  double best_y = std::numeric_limits<double>::infinity();
  for (size_t i : order) {
    if (y[i] < best_y) {
      front.push_back(i);
      best_y = y[i];
    }
  }
  return front;
}

}  // namespace lorasweep::svg
