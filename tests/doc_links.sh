#!/usr/bin/env bash
# Every relative link of README.md and docs/*.md leads to a file or folder of the tree, and every
# #anchor to a heading of its page (GitHub's anchors: lower case, punctuation dropped, spaces to -).
# Usage: doc_links.sh SOURCE_DIR
set -euo pipefail
cd "$1"
python3 - README.md docs/*.md <<'PY'
import os, re, sys

def anchors(path, cache={}):
    if path not in cache:
        seen, out, fence = {}, set(), False
        for line in open(path, encoding="utf-8"):
            if line.startswith("```"):
                fence = not fence
            m = None if fence else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
            if m:
                slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
                n = seen.get(slug, 0)
                seen[slug] = n + 1
                out.add(slug if n == 0 else f"{slug}-{n}")
        cache[path] = out
    return cache[path]

checked = bad = 0
for page in sys.argv[1:]:
    text, fence = [], False
    for line in open(page, encoding="utf-8"):  # links in code blocks are code, not links
        if line.startswith("```"):
            fence = not fence
        elif not fence:
            text.append(line)
    for target in re.findall(r"\]\(([^)\s]+)\)", "".join(text)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        checked += 1
        path, _, anchor = target.partition("#")
        dest = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        if not os.path.exists(dest):
            print(f"{page}: link to {target}: no such file {dest}")
            bad += 1
        elif anchor and (not dest.endswith(".md") or anchor not in anchors(dest)):
            print(f"{page}: link to {target}: no heading #{anchor} in {dest}")
            bad += 1
print(f"{checked - bad} passed, {bad} failed ({len(sys.argv) - 1} pages)")
sys.exit(1 if bad else 0)
PY
