#!/usr/bin/env bash
# napari-unet: set up .venv/ and run.
#   ./run.sh          set up (first time), then open napari with the plugin docked and the sample
#                     data loaded; without a display, run the headless demo instead
#   ./run.sh test     set up (first time), then run the whole test suite (GUI tests under Xvfb)
#   ./run.sh demo     the headless demo (train, predict, evaluate on the sample data)
#   ./run.sh bench    set up with the benchmark extra (MONAI), then benchmarks/bench.py [--quick]
# Environment: PYTHON (default python3). A torch already installed in .venv (e.g. your CUDA build)
# is kept; otherwise torch==2.13.0 is installed before the project.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
TORCH_VERSION=2.13.0

log() { printf '[napari-unet] %s\n' "$*" >&2; }

need_apt=()
system_packages() {
  # Xvfb + Mesa + the X/xcb libraries Qt needs, installed only when missing
  local pkgs=(xvfb xauth libgl1 libegl1 libgl1-mesa-dri libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0
              libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-xinerama0 libxcb-xinput0
              libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libfontconfig1 libdbus-1-3)
  command -v dpkg-query >/dev/null || return 0
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need_apt+=("$p")
  done
  [ ${#need_apt[@]} -eq 0 ] && return 0
  log "installing system packages: ${need_apt[*]}"
  local SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null
  $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
}

setup() {
  local extras=$1
  if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV"
    "$PY" -m venv "$VENV"
  fi
  local pip=("$VENV/bin/python" -m pip -q --disable-pip-version-check)
  if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    log "installing torch==$TORCH_VERSION (install your CUDA build of torch into $VENV first to use a GPU)"
    "${pip[@]}" install "torch==$TORCH_VERSION"
  fi
  local stamp="$VENV/.napari-unet-$extras-$(cat pyproject.toml | cksum | cut -d' ' -f1)"
  if [ ! -f "$stamp" ]; then
    log "installing napari-unet[$extras] into $VENV"
    "${pip[@]}" install -e ".[$extras]"
    rm -f "$VENV"/.napari-unet-"$extras"-*; touch "$stamp"
  fi
}

has_display() { [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] || [ "$(uname)" = "Darwin" ]; }

cmd=${1:-run}
case "$cmd" in
  run)
    setup all
    exec "$VENV/bin/napari-unet" gui
    ;;
  demo)
    setup all
    exec "$VENV/bin/napari-unet" demo "${@:2}"
    ;;
  test)
    system_packages
    setup "all,test"
    export QT_API=${QT_API:-pyqt6}
    if has_display; then
      exec "$VENV/bin/python" -m pytest "${@:2}"
    else
      exec xvfb-run -a -s "-screen 0 1600x1000x24" "$VENV/bin/python" -m pytest "${@:2}"
    fi
    ;;
  bench)
    setup bench
    exec "$VENV/bin/python" benchmarks/bench.py "${@:2}"
    ;;
  *)
    echo "usage: ./run.sh [run|test|demo|bench]" >&2; exit 2 ;;
esac
