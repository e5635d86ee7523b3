#!/usr/bin/env bash
# Turns the Debian FAQ (Debian's `debian-faq` package) into chat-format JSONL for lorasweep:
# one record per FAQ question, {"source": "chNN-slug", "messages": [system, user, assistant]}, the
# source naming the chapter so that `prepare-data --shard-by source` makes one shard per chapter.
# The FAQ text is generated from the installed package, never committed.
#
#   examples/data/make_debian_faq.sh OUT_DIR      # writes OUT_DIR/faq.jsonl
#   build/lorasweep prepare-data --tokenizer MODEL --input OUT_DIR/faq.jsonl --format chat \
#       --shard-by source --seq-len 256 --out data/faq
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
out_dir=$1
faq=/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz

# Install the package only when it is missing (needs root and Debian's apt repositories).
if ! dpkg-query -W -f='${Status}' debian-faq 2>/dev/null | grep -q "install ok installed"; then
  echo "installing debian-faq" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debian-faq >/dev/null
fi
if [[ ! -r $faq ]]; then
  echo "$faq not found (is debian-faq installed?)" >&2
  exit 1
fi
mkdir -p "$out_dir"

python3 - "$faq" "$out_dir/faq.jsonl" <<'PY'
# The text FAQ's body: "Chapter<NBSP>N.<NBSP>Title" lines start chapters; "N.M.<NBSP>Question"
# lines at column 0 (wrapped onto following column-0 lines until a blank line) start sections;
# the answer is the indented text up to the next heading, dedented, paragraphs kept. Sections
# with no text of their own (only subsections) are skipped.
import gzip, json, re, sys, textwrap

src, dst = sys.argv[1], sys.argv[2]
lines = gzip.open(src, "rt", encoding="utf-8").read().replace("\u00a0", " ").split("\n")
chapter_re = re.compile(r"^Chapter (\d+)\. (.+)$")
section_re = re.compile(r"^(\d+(?:\.\d+)+)\. (.+)$")

def slug(title):
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40].rstrip("-")

records, chapter, question, body = [], None, None, []
chapter_counts = {}

def flush():
    if chapter is None or question is None:
        return
    answer = textwrap.dedent("\n".join(body)).strip("\n")
    # Collapse the wrapped lines of each paragraph; keep paragraph breaks and list items.
    paragraphs = [p for p in re.split(r"\n\s*\n", answer) if p.strip()]
    answer = "\n\n".join(re.sub(r"\s*\n\s*", " ", p.strip()) for p in paragraphs)
    if not answer:
        return
    records.append({
        "source": chapter,
        "section": question[0],
        "messages": [
            {"role": "system", "content": "You are a Debian support assistant."},
            {"role": "user", "content": question[1]},
            {"role": "assistant", "content": answer},
        ],
    })
    chapter_counts[chapter] = chapter_counts.get(chapter, 0) + 1

i = 0
started = False
while i < len(lines):
    line = lines[i]
    m = chapter_re.match(line)
    if m:
        flush()
        started = True
        chapter, question, body = "ch%02d-%s" % (int(m.group(1)), slug(m.group(2))), None, []
        i += 1
        continue
    m = section_re.match(line) if started else None
    if m:
        flush()
        title = [m.group(2).strip()]
        i += 1
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(" "):
            title.append(lines[i].strip())
            i += 1
        question, body = (m.group(1), " ".join(title)), []
        continue
    if started and question is not None:
        body.append(line)
    i += 1
flush()

with open(dst, "w", encoding="utf-8") as f:
    for r in records:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
chars = sum(len(m["content"]) for r in records for m in r["messages"][1:])
print("wrote %d question/answer records in %d chapters (%d characters of questions and answers) to %s"
      % (len(records), len(chapter_counts), chars, dst))
for name, count in chapter_counts.items():
    print("  %-45s %3d" % (name, count))
PY
