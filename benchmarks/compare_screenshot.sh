#!/usr/bin/env bash
# Open a `genmodels compare` report in headless Chromium (Debian's `chromium`) and save a screenshot.
#   benchmarks/compare_screenshot.sh runs/compare/fashion-mnist/report.html docs/compare_report.png [WIDTH,HEIGHT]
# The report is self-contained (pictures embedded as data: URLs), so Chromium runs with the network off.
set -euo pipefail
report=$(realpath "$1"); out=$2; size=${3:-1500,2600}
command -v chromium >/dev/null || { echo "needs Chromium: apt-get update && apt-get install -y chromium" >&2; exit 2; }
mkdir -p "$(dirname "$out")"
tmp=$(mktemp -d)
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$tmp" \
  --proxy-server=127.0.0.1:9 --window-size="$size" --screenshot="$(realpath -m "$out")" "file://$report" 2>/dev/null
rm -rf "$tmp"
python - "$out" <<'PY'
import sys
from PIL import Image
im = Image.open(sys.argv[1]).convert("L")
lo, hi = im.getextrema()
assert hi - lo > 100, f"{sys.argv[1]}: a blank page (pixel range {lo}..{hi})"
print(f"{sys.argv[1]}: {im.size[0]}x{im.size[1]}")
PY
