#include "coordinator/sweep_spec.h"

#include <cmath>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/file_util.h"
#include "common/sha256.h"
#include "common/status_macros.h"
#include "worker/train/trial_config.h"
#include "yaml-cpp/yaml.h"

namespace lorasweep {
namespace {

std::string Where(const std::string& source, const YAML::Node& node) {
  return absl::StrCat(source, ":", node.Mark().line + 1);
}

absl::Status KeyError(const std::string& source, const YAML::Node& node, const std::string& key,
                      const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(Where(source, node), ": '", key, "': ", what));
}

// A YAML scalar or list as JSON (numbers as numbers, booleans, strings).
nlohmann::json YamlToJson(const YAML::Node& node) {
  if (node.IsSequence()) {
    nlohmann::json list = nlohmann::json::array();
    for (const YAML::Node& item : node) list.push_back(YamlToJson(item));
    return list;
  }
  if (node.IsMap()) {
    nlohmann::json map = nlohmann::json::object();
    for (const auto& kv : node) map[kv.first.as<std::string>()] = YamlToJson(kv.second);
    return map;
  }
  const std::string text = node.as<std::string>();
  if (node.Tag() == "!") return text;  // quoted: a string
  try {
    size_t used = 0;
    const long long i = std::stoll(text, &used);
    if (used == text.size()) return i;
  } catch (...) {
  }
  try {
    size_t used = 0;
    const double d = std::stod(text, &used);
    if (used == text.size()) return d;
  } catch (...) {
  }
  if (text == "true" || text == "false") return text == "true";
  return text;
}

absl::Status ParseSearch(const YAML::Node& node, const std::string& source, SearchConfig* search) {
  if (!node.IsMap()) return KeyError(source, node, "search", "expected a map");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const YAML::Node& value = kv.second;
    if (key == "method") {
      search->set_method(value.as<std::string>());
    } else if (key == "trials") {
      search->set_trials(value.as<int>());
    } else if (key == "seed") {
      search->set_seed(value.as<uint64_t>());
    } else if (key == "space") {
      if (!value.IsMap()) return KeyError(source, value, "search.space", "expected a map");
      for (const auto& dim_kv : value) {
        SearchDimension* dim = search->add_space();
        dim->set_path(dim_kv.first.as<std::string>());
        const YAML::Node& d = dim_kv.second;
        const std::string where = "search.space." + dim->path();
        if (d.IsSequence()) {
          if (d.size() == 0) return KeyError(source, d, where, "expected at least one value");
          for (const YAML::Node& choice : d) {
            YAML::Emitter out;
            out << YAML::Flow << choice;
            dim->add_choices_yaml(out.c_str());
          }
        } else if (d.IsMap() && d.size() == 1) {
          const std::string kind = d.begin()->first.as<std::string>();
          const YAML::Node range = d.begin()->second;
          if ((kind != "log_uniform" && kind != "uniform") || !range.IsSequence() ||
              range.size() != 2) {
            return KeyError(source, d, where,
                            "expected a list of values or {log_uniform: [low, high]} / "
                            "{uniform: [low, high]}");
          }
          dim->set_distribution(kind);
          dim->set_low(range[0].as<double>());
          dim->set_high(range[1].as<double>());
          if (!(dim->low() < dim->high()) || (kind == "log_uniform" && dim->low() <= 0)) {
            return KeyError(source, d, where,
                            absl::StrCat("expected 0 < low < high for log_uniform (low < high "
                                         "for uniform), got [",
                                         dim->low(), ", ", dim->high(), "]"));
          }
        } else {
          return KeyError(source, d, where,
                          "expected a list of values or {log_uniform: [low, high]}");
        }
      }
    } else {
      return KeyError(source, kv.first, "search." + key,
                      "unknown key (search has: method, trials, seed, space)");
    }
  }
  return absl::OkStatus();
}

absl::Status ParseEarlyStopping(const YAML::Node& node, const std::string& source,
                                EarlyStoppingConfig* es) {
  if (!node.IsMap()) return KeyError(source, node, "early_stopping", "expected a map");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (key == "method") {
      es->set_method(kv.second.as<std::string>());
    } else if (key == "metric") {
      es->set_metric(kv.second.as<std::string>());
    } else if (key == "grace_steps") {
      es->set_grace_steps(kv.second.as<int64_t>());
    } else if (key == "reduction_factor") {
      es->set_reduction_factor(kv.second.as<int>());
    } else if (key == "min_samples") {
      es->set_min_samples(kv.second.as<int>());
    } else {
      return KeyError(source, kv.first, "early_stopping." + key,
                      "unknown key (early_stopping has: method, metric, grace_steps, "
                      "reduction_factor, min_samples)");
    }
  }
  return absl::OkStatus();
}

absl::Status ParseSoup(const YAML::Node& node, const std::string& source, SoupStage* soup) {
  if (!node.IsMap()) return KeyError(source, node, "soup", "expected a map");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (key == "top") {
      soup->set_top(kv.second.as<int>());
    } else if (key == "trials") {
      for (const YAML::Node& id : kv.second) soup->add_trials(id.as<std::string>());
    } else if (key == "method") {
      soup->set_method(kv.second.as<std::string>());
    } else if (key == "rank") {
      soup->set_rank(kv.second.as<int>());
    } else if (key == "weights") {
      if (!kv.second.IsSequence()) {
        return KeyError(source, kv.second, "soup.weights", "expected a list of weight lists");
      }
      for (const YAML::Node& combo : kv.second) {
        if (!combo.IsSequence()) {
          return KeyError(source, combo, "soup.weights", "expected a list of weights per combination");
        }
        SoupWeights* w = soup->add_weights();
        for (const YAML::Node& x : combo) w->add_w(x.as<double>());
      }
    } else {
      return KeyError(source, kv.first, "soup." + key,
                      "unknown key (soup has: top, trials, method, rank, weights)");
    }
  }
  const int inputs = soup->trials_size() > 0 ? soup->trials_size() : soup->top();
  if (inputs < 2) {
    return KeyError(source, node, "soup", "combine at least 2 trials (top: N or trials: [ids])");
  }
  if (soup->method() != "cat" && soup->method() != "linear" && soup->method() != "svd") {
    return KeyError(source, node, "soup.method",
                    absl::StrCat("expected cat, linear or svd, got '", soup->method(), "'"));
  }
  if (soup->weights_size() == 0) {
    return KeyError(source, node, "soup.weights", "expected at least one combination");
  }
  for (const SoupWeights& w : soup->weights()) {
    if (w.w_size() != inputs) {
      return KeyError(source, node, "soup.weights",
                      absl::StrCat("each combination needs ", inputs, " weights (one per input), got ",
                                   w.w_size()));
    }
  }
  return absl::OkStatus();
}

absl::Status Validate(const SweepSpec& spec, const std::string& source) {
  auto error = [&](const std::string& key, const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": '", key, "': ", what));
  };
  const SearchConfig& s = spec.search();
  if (s.method() != "grid" && s.method() != "random") {
    return error("search.method", absl::StrCat("expected grid or random, got '", s.method(), "'"));
  }
  if (s.method() == "random" && s.trials() < 1) {
    return error("search.trials", absl::StrCat("expected >= 1 for random search, got ", s.trials()));
  }
  for (const SearchDimension& d : s.space()) {
    if (s.method() == "grid" && !d.distribution().empty()) {
      return error("search.space." + d.path(),
                   "a distribution needs method: random (grid takes a list of values)");
    }
  }
  const EarlyStoppingConfig& es = spec.early_stopping();
  if (es.method() != "none" && es.method() != "asha" && es.method() != "median") {
    return error("early_stopping.method",
                 absl::StrCat("expected none, asha or median, got '", es.method(), "'"));
  }
  if (es.method() != "none") {
    if (es.metric() != "eval_loss" && es.metric() != "loss") {
      return error("early_stopping.metric",
                   absl::StrCat("expected eval_loss or loss, got '", es.metric(), "'"));
    }
    if (es.grace_steps() < 1) {
      return error("early_stopping.grace_steps",
                   absl::StrCat("expected >= 1, got ", es.grace_steps()));
    }
    if (es.method() == "asha" && es.reduction_factor() < 2) {
      return error("early_stopping.reduction_factor",
                   absl::StrCat("expected >= 2, got ", es.reduction_factor()));
    }
    if (es.metric() == "eval_loss" && spec.base().train().eval_every() <= 0) {
      return error("base.train.eval_every",
                   "early stopping on eval_loss needs eval points: set train.eval_every > 0");
    }
  }
  if (spec.resources().workers_per_trial() < 1) {
    return error("resources.workers_per_trial",
                 absl::StrCat("expected >= 1, got ", spec.resources().workers_per_trial()));
  }
  if (spec.max_failures_per_trial() < 0) {
    return error("max_failures_per_trial",
                 absl::StrCat("expected >= 0, got ", spec.max_failures_per_trial()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SweepSpec> ParseSweepSpecYaml(const std::string& yaml_text,
                                             const std::string& source_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": expected a map at the top"));
  }
  SweepSpec spec;
  *spec.mutable_base() = DefaultTrialConfig();
  spec.mutable_search()->set_method("grid");
  spec.mutable_early_stopping()->set_method("none");
  spec.mutable_early_stopping()->set_metric("eval_loss");
  spec.mutable_early_stopping()->set_reduction_factor(3);
  spec.mutable_early_stopping()->set_grace_steps(1);
  spec.mutable_early_stopping()->set_min_samples(3);
  spec.mutable_resources()->set_workers_per_trial(1);
  spec.set_max_failures_per_trial(1);
  try {
    for (const auto& kv : root) {
      const std::string key = kv.first.as<std::string>();
      if (key == "name") {
        spec.set_name(kv.second.as<std::string>());
      } else if (key == "base") {
        RETURN_IF_ERROR(ApplyYamlToMessage(kv.second, spec.mutable_base(), "base", source_name));
      } else if (key == "search") {
        RETURN_IF_ERROR(ParseSearch(kv.second, source_name, spec.mutable_search()));
      } else if (key == "early_stopping") {
        RETURN_IF_ERROR(
            ParseEarlyStopping(kv.second, source_name, spec.mutable_early_stopping()));
      } else if (key == "resources") {
        if (!kv.second.IsMap()) return KeyError(source_name, kv.second, key, "expected a map");
        for (const auto& r : kv.second) {
          if (r.first.as<std::string>() != "workers_per_trial") {
            return KeyError(source_name, r.first, "resources." + r.first.as<std::string>(),
                            "unknown key (resources has: workers_per_trial)");
          }
          spec.mutable_resources()->set_workers_per_trial(r.second.as<int>());
        }
      } else if (key == "max_failures_per_trial") {
        spec.set_max_failures_per_trial(kv.second.as<int>());
      } else if (key == "soup") {
        spec.mutable_soup()->set_method("linear");
        RETURN_IF_ERROR(ParseSoup(kv.second, source_name, spec.mutable_soup()));
      } else {
        return KeyError(source_name, kv.first, key,
                        "unknown key (a sweep spec has: name, base, search, early_stopping, "
                        "resources, max_failures_per_trial, soup)");
      }
    }
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source_name, ":", e.mark.line + 1, ": wrong type: ", e.msg));
  }
  if (spec.name().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source_name, ": 'name' is required"));
  }
  FinalizeTrialConfig(spec.mutable_base());
  RETURN_IF_ERROR(Validate(spec, source_name));
  // Every swept path must exist: applying the first choice to the base names a bad path.
  for (const SearchDimension& d : spec.search().space()) {
    TrialConfig probe = spec.base();
    const YAML::Node value = d.choices_yaml_size() > 0 ? YAML::Load(d.choices_yaml(0))
                                                       : YAML::Node(d.low());
    RETURN_IF_ERROR(SetFieldByDottedPath(&probe, d.path(), value, source_name));
  }
  return spec;
}

absl::StatusOr<SweepSpec> LoadSweepSpec(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseSweepSpecYaml(text, path);
}

std::string TrialIdOf(const TrialConfig& config) {
  return Sha256Hex(TrialConfigToJson(config)).substr(0, 12);
}

absl::StatusOr<std::vector<TrialPlan>> ExpandSweep(const SweepSpec& spec) {
  const SearchConfig& search = spec.search();
  const int dims = search.space_size();
  // Each trial as one YAML value per dimension.
  std::vector<std::vector<YAML::Node>> assignments;
  if (search.method() == "grid") {
    std::vector<int> index(dims, 0);
    while (true) {
      std::vector<YAML::Node> values;
      for (int d = 0; d < dims; ++d) {
        values.push_back(YAML::Load(search.space(d).choices_yaml(index[d])));
      }
      assignments.push_back(values);
      int d = dims - 1;
      while (d >= 0 && ++index[d] == search.space(d).choices_yaml_size()) index[d--] = 0;
      if (d < 0) break;
    }
  } else {
    std::mt19937_64 rng(search.seed());
    for (int t = 0; t < search.trials(); ++t) {
      std::vector<YAML::Node> values;
      for (int d = 0; d < dims; ++d) {
        const SearchDimension& dim = search.space(d);
        if (dim.distribution().empty()) {
          values.push_back(YAML::Load(dim.choices_yaml(rng() % dim.choices_yaml_size())));
          continue;
        }
        const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
        const double v = dim.distribution() == "log_uniform"
                             ? std::exp(std::log(dim.low()) +
                                        u * (std::log(dim.high()) - std::log(dim.low())))
                             : dim.low() + u * (dim.high() - dim.low());
        values.push_back(YAML::Load(absl::StrFormat("%.17g", v)));
      }
      assignments.push_back(values);
    }
  }
  std::vector<TrialPlan> plans;
  std::set<std::string> seen;
  for (const std::vector<YAML::Node>& values : assignments) {
    TrialPlan plan;
    plan.config = spec.base();
    for (int d = 0; d < dims; ++d) {
      const std::string& path = search.space(d).path();
      RETURN_IF_ERROR(SetFieldByDottedPath(&plan.config, path, values[d], "search.space"));
      plan.params[path] = YamlToJson(values[d]);
    }
    FinalizeTrialConfig(&plan.config);
    absl::Status valid = ValidateTrialConfig(plan.config);
    if (!valid.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("the trial with ", plan.params.dump(),
                                                     " is not a valid config: ", valid.message()));
    }
    plan.id = TrialIdOf(plan.config);
    if (!seen.insert(plan.id).second) continue;
    plan.ordinal = static_cast<int64_t>(plans.size());
    plans.push_back(std::move(plan));
  }
  return plans;
}

}  // namespace lorasweep
