# Sourced by the scripts that compare this build with an older commit:
# `base_build BASE DIR` builds `sluice` at HEAD and at BASE (from a git
# worktree, into the same target directory; kept under the target
# directory's bench-bases/ for the next run) and copies them to
# DIR/sluice-now and DIR/sluice-base; `base_quickstart DIR` writes DIR's
# copy of the quickstart manifest for a BASE that predates the `baseline`
# key. `base_work` sets `work` to a new temporary directory, removed (with
# the base worktree and any server still running) when the script exits.
base_work() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice/target}"
  work="$(mktemp -d)"
  trap 'kill $(jobs -p) 2>/dev/null; git worktree remove --force "$work/base" 2>/dev/null; rm -rf "$work"' EXIT
}

base_build() {
  local base="$1" dir="$2" kept
  kept="$CARGO_TARGET_DIR/bench-bases/sluice-$(git rev-parse --short=12 "$base^{commit}")"
  if [ ! -x "$kept" ]; then
    git worktree add -q --detach "$dir/base" "$base"
    (cd "$dir/base" && cargo build --release -q -p sluice --bin sluice)
    mkdir -p "$(dirname "$kept")"
    cp "$CARGO_TARGET_DIR/release/sluice" "$kept"
  fi
  cp "$kept" "$dir/sluice-base"
  # This build last, so its binary is where the tests expect it.
  cargo build --release -q -p sluice --bin sluice
  cp "$CARGO_TARGET_DIR/release/sluice" "$dir/sluice-now"
}

base_quickstart() {
  local dir="$1" repo
  repo="$(pwd)"
  mkdir -p "$dir/quickstart-base"
  sed -e '/^baseline = /d' -e "s|\"\.\./\.\./|\"$repo/|" -e "s|\"\.\./models/|\"$repo/examples/models/|" \
    examples/quickstart/sluice.toml >"$dir/quickstart-base/sluice.toml"
}
