// A tiny, self-contained SVG plotter for the sweep report (coordinator/report_writer.cc).
//
// The report must open from a file with no network access, so charts are drawn here as inline SVG
// text: no scripts, no external fonts (only the generic "sans-serif" family), every string escaped.
// Every chart has a title, axis labels with "nice" tick values and a legend.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace lorasweep::svg {

// Escapes &, <, >, " and ' for XML text and attribute values.
std::string EscapeXml(const std::string& text);

// About `target` tick values covering [lo, hi], spaced 1, 2 or 5 times a power of ten.
std::vector<double> NiceTicks(double lo, double hi, int target = 5);
// Powers of ten covering [lo, hi] (lo, hi > 0); adds 2x and 5x steps when the range spans fewer
// than three decades so a log axis never has a single label.
std::vector<double> LogTicks(double lo, double hi);
// A tick label: short and exact enough to tell neighbouring ticks apart ("0.5", "2e-4", "1.5k").
std::string FormatTick(double value);

// Categorical colours (Tableau 10), chosen to stay distinguishable for most colour-vision types.
const std::string& PaletteColor(size_t index);

enum class Marker { kNone, kCircle, kCross, kSquare };

struct Series {
  std::string name;  // legend entry
  std::vector<double> x, y;
  std::vector<std::string> point_titles;  // optional tooltip per point (SVG <title>)
  std::string color;                      // empty: palette colour by series index
  bool line = true;                       // connect points in order
  bool dashed = false;
  Marker marker = Marker::kNone;
  Marker last_marker = Marker::kNone;  // drawn on the last point only (e.g. where a trial stopped)
  bool in_legend = true;
};

struct Axis {
  std::string label;
  bool log = false;                     // log10 scale; values <= 0 are dropped
  std::vector<std::string> categories;  // non-empty: x values are indices into these labels
  // Extra room on both ends, as a fraction of the range: scatter points on the frame are hard to
  // see, so scatter charts pad their axes.
  double pad = 0;
};

// A horizontal reference line across the plot (e.g. the base model's eval loss).
struct ReferenceLine {
  double y = 0;
  std::string label;
};

struct XYChart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;
  std::vector<ReferenceLine> references;
  int width = 580, height = 340;
};

// A line and/or scatter chart. A chart without any finite point says "no data" instead.
std::string RenderXYChart(const XYChart& chart);

struct HeatMap {
  std::string title;
  std::string x_label, y_label, value_label;
  std::vector<std::string> x_categories, y_categories;
  // values[row][column]; row i is y_categories[i] (drawn bottom-up); nullopt: no trial there.
  std::vector<std::vector<std::optional<double>>> values;
  bool lower_is_better = true;  // the better end of the scale gets the darker colour
  int width = 580, height = 340;
};

std::string RenderHeatMap(const HeatMap& map);

// Indices of the points not dominated by any other when both x and y are to be minimised, ordered
// by x (ties: the lower y). Non-finite points are ignored.
std::vector<size_t> ParetoFrontier(const std::vector<double>& x, const std::vector<double>& y);

}  // namespace lorasweep::svg
