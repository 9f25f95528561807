#!/usr/bin/env bash
# Build plots/offline_template.html: an HTML template for `dvc plots show/diff`
# with vega, vega-lite and vega-embed inlined, so the generated page renders
# without network access (DVC's default page loads them from cdn.jsdelivr.net).
#
# Usage:
#   scripts/build_offline_plots_template.sh [OUTPUT_HTML]
#
# By default the versions are the exact ones DVC's own page loads, read from
# the installed dvc_render (VegaRenderer.SCRIPTS). Override with env vars,
# e.g. VEGA_VERSION=5 VEGA_LITE_VERSION=5 VEGA_EMBED_VERSION=6 (any npm spec).
# PYTHON selects the interpreter (default: .venv/bin/python, else python3).
#
# Needs: npm (registry access), python3. The output has no timestamp, so
# rebuilding with the same versions gives a byte-identical file.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo_root/plots/offline_template.html}"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then
        PYTHON="$repo_root/.venv/bin/python"
    else
        PYTHON=python3
    fi
fi
command -v npm >/dev/null || { echo "error: npm not found" >&2; exit 1; }

# Versions DVC's default page uses (from dvc_render), unless overridden.
dvc_versions="$("$PYTHON" - <<'EOF' || true
import re
from dvc_render.vega import VegaRenderer
found = dict(re.findall(r"npm/(vega(?:-lite|-embed)?)@([^\"'/\s]+)", VegaRenderer.SCRIPTS))
print(found.get("vega", ""), found.get("vega-lite", ""), found.get("vega-embed", ""))
EOF
)"
read -r dvc_vega dvc_vega_lite dvc_vega_embed <<<"${dvc_versions:-}" || true
vega_v="${VEGA_VERSION:-${dvc_vega:-}}"
vega_lite_v="${VEGA_LITE_VERSION:-${dvc_vega_lite:-}}"
vega_embed_v="${VEGA_EMBED_VERSION:-${dvc_vega_embed:-}}"
if [[ -z "$vega_v" || -z "$vega_lite_v" || -z "$vega_embed_v" ]]; then
    echo "error: could not read vega versions from dvc_render with $PYTHON;" \
         "set VEGA_VERSION, VEGA_LITE_VERSION and VEGA_EMBED_VERSION" >&2
    exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# npm pack fetches only the published tarballs (no dependencies, no install
# scripts); the UMD builds under build/ are self-contained.
echo "fetching vega@$vega_v vega-lite@$vega_lite_v vega-embed@$vega_embed_v" >&2
(cd "$tmp" && npm pack --json --ignore-scripts \
    "vega@$vega_v" "vega-lite@$vega_lite_v" "vega-embed@$vega_embed_v" >pack.json)
"$PYTHON" - "$tmp" <<'EOF'
import json, sys, tarfile
from pathlib import Path
tmp = Path(sys.argv[1])
for entry in json.loads((tmp / "pack.json").read_text()):
    with tarfile.open(tmp / entry["filename"]) as tf:
        try:
            tf.extractall(tmp / entry["name"], filter="data")
        except TypeError:  # Python < 3.11.4 has no extraction filters
            tf.extractall(tmp / entry["name"])
EOF

mkdir -p "$(dirname "$out")"
"$PYTHON" - "$tmp" "$out" <<'EOF'
import json
import re
import sys
from pathlib import Path

tmp, out = Path(sys.argv[1]), Path(sys.argv[2])
pack = {e["name"]: e for e in json.loads((tmp / "pack.json").read_text())}

# dvc_render fills the template with str.replace("{placeholder}", value) for
# these three names (not str.format), so other braces in the JS are harmless,
# but these exact tokens must not occur in the inlined code.
PLACEHOLDERS = ("{scripts}", "{plot_divs}", "{refresh_tag}")

def load(name):
    pkg_dir = tmp / name / "package"
    meta = json.loads((pkg_dir / "package.json").read_text(encoding="utf8"))
    # The file jsdelivr serves for "npm/<name>@<version>" (= the minified UMD build).
    rel = meta.get("jsdelivr") or meta.get("unpkg") or f"build/{name}.min.js"
    js = (pkg_dir / rel).read_text(encoding="utf8")
    for token in PLACEHOLDERS:
        if token in js:
            sys.exit(f"error: {name}/{rel} contains DVC placeholder {token}")
    # HTML script-data rules: "</script" would end the element early, "<!--"
    # can switch the parser into the escaped state. Escape the former the
    # usual way ("<\/" == "</" inside JS strings/regexes); refuse the latter.
    if re.search(r"<!--", js):
        sys.exit(f"error: {name}/{rel} contains '<!--'; cannot inline safely")
    js = re.sub(r"</(script)", r"<\\/\1", js, flags=re.IGNORECASE)
    # Source-map comments would point to files that are not shipped.
    js = re.sub(r"\n?//# sourceMappingURL=\S+\s*$", "", js)
    lic = pkg_dir / "LICENSE"
    lic_text = lic.read_text(encoding="utf8").strip() if lic.is_file() else ""
    return {
        "name": name,
        "version": meta["version"],
        "file": rel,
        "license": meta.get("license", "?"),
        "license_text": lic_text.replace("--", "- -"),
        "integrity": pack[name]["integrity"],
        "js": js,
    }

libs = [load(n) for n in ("vega", "vega-lite", "vega-embed")]  # dependency order

versions = "\n".join(
    f"  {lib['name']}@{lib['version']} ({lib['file']}, {lib['license']}, npm {lib['integrity']})"
    for lib in libs
)
licenses = "\n\n".join(f"{lib['name']}:\n{lib['license_text']}" for lib in libs)
scripts = "\n".join(
    f'<script data-lib="{lib["name"]}@{lib["version"]}">\n{lib["js"]}\n</script>'
    for lib in libs
)

page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<!--
Offline HTML template for `dvc plots show` / `dvc plots diff`.
GENERATED by scripts/build_offline_plots_template.sh; do not edit by hand.
DVC replaces the plot_divs placeholder in <main> below with the plots.
Inlined libraries (same versions as DVC's CDN page unless overridden):
{versions}
-->
{{refresh_tag}}
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DVC plots (offline)</title>
<style>
  body {{ font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
         margin: 0; color: #1f2933; background: #fff; }}
  header {{ padding: 10px 20px; border-bottom: 3px solid #13adc7; }}
  header h1 {{ margin: 0; font-size: 18px; font-weight: 600; }}
  header p {{ margin: 2px 0 0; font-size: 12px; color: #616e7c; }}
  main {{ display: flex; flex-wrap: wrap; gap: 16px; padding: 16px 20px; }}
  main > div {{ border: 1px solid #e4e7eb; border-radius: 6px; padding: 8px; }}
  table {{ border-spacing: 15px; }}
</style>
{scripts}
</head>
<body>
<header>
  <h1>DVC plots</h1>
  <p>Offline page: vega {libs[0]["version"]}, vega-lite {libs[1]["version"]}, vega-embed {libs[2]["version"]} are embedded; no network needed.</p>
</header>
<main>
{{plot_divs}}
</main>
<!--
Licenses of the inlined libraries:

{licenses}
-->
</body>
</html>
"""

# Sanity checks: exactly one of each placeholder, one </script> per library.
assert page.count("{plot_divs}") == 1 and page.count("{refresh_tag}") == 1
assert "{scripts}" not in page  # keep DVC from adding its CDN <script> tags
assert len(re.findall(r"</script", page, re.IGNORECASE)) == len(libs)

tmp_out = out.with_name(out.name + ".tmp")
tmp_out.write_text(page, encoding="utf8")
tmp_out.replace(out)
print(f"wrote {out} ({out.stat().st_size} bytes)", file=sys.stderr)
print(versions, file=sys.stderr)
EOF
