# Checks scripts/setup makes before installing anything; sourced, so test/unit/scripts/preflight.spec.ts
# can call each function on its own. Run from the repository root.

# True when `node --version` (or $1, e.g. "20.18.1") satisfies package.json's engines.node (">=MAJOR.MINOR[.PATCH]"),
# so the check cannot drift from what package.json promises.
node_version_ok() {
  node -e '
    const fs = require("node:fs");
    const wanted = JSON.parse(fs.readFileSync("package.json", "utf8")).engines.node;
    const match = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(wanted);
    if (!match) { console.error(`setup: package.json engines.node "${wanted}" is not of the form >=X.Y.Z`); process.exit(2); }
    const want = match.slice(1).map((part) => Number(part ?? 0));
    const have = (process.argv[1] || process.versions.node).replace(/^v/, "").split(".").map(Number);
    for (let i = 0; i < 3; i += 1) if ((have[i] ?? 0) !== want[i]) process.exit((have[i] ?? 0) > want[i] ? 0 : 1);
  ' "${1:-}"
}

# The engines.node range itself, for messages.
node_version_wanted() {
  node -p 'JSON.parse(require("node:fs").readFileSync("package.json", "utf8")).engines.node'
}

is_executable_file() { [ -f "$1" ] && [ -x "$1" ]; }

# ffmpeg-static's binary path when the optional package installed (its install downloads from GitHub), else empty.
ffmpeg_static_path() {
  node -e 'try { const p = require("ffmpeg-static"); if (typeof p === "string") console.log(p); } catch {}' 2>/dev/null || true
}

# Same order as src/media/binaries.ts: a set FFMPEG_PATH is used as is (no fallback), else ffmpeg-static's
# binary, else ffmpeg on PATH.
have_ffmpeg() {
  if [ -n "${FFMPEG_PATH:-}" ]; then is_executable_file "$FFMPEG_PATH"; return; fi
  local static
  static=$(ffmpeg_static_path)
  if [ -n "$static" ] && is_executable_file "$static"; then return 0; fi
  command -v ffmpeg >/dev/null 2>&1
}

# A set FFPROBE_PATH is used as is, else ffprobe on PATH (ffmpeg-static ships no ffprobe).
have_ffprobe() {
  if [ -n "${FFPROBE_PATH:-}" ]; then is_executable_file "$FFPROBE_PATH"; return; fi
  command -v ffprobe >/dev/null 2>&1
}

# Names a set FFMPEG_PATH/FFPROBE_PATH that is not an executable file: installing ffmpeg cannot fix those.
bad_binary_settings() {
  local name
  for name in FFMPEG_PATH FFPROBE_PATH; do
    if [ -n "${!name:-}" ] && ! is_executable_file "${!name}"; then printf '%s=%s ' "$name" "${!name}"; fi
  done
}
