#!/usr/bin/env bash
# One-time (and idempotent) set-up of a koba_ros checkout on a Debian/Ubuntu machine:
# Debian packages, .venv on Python 3.11 with ROS 2 Kilted wheels and the Python
# dependencies, koba_interfaces built with CMake into the venv prefix, koba_ros installed.
# Each step is skipped when its inputs have not changed, so a second run takes seconds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
venv="$root/.venv"
stamps="$venv/.koba-stamps"
log() { printf '[setup] %s\n' "$*" >&2; }

# 1. Debian packages. Only calls apt-get when something is missing.
apt_packages=(cmake g++ make espeak-ng sox libsndfile1 libportaudio2 libusb-1.0-0 libgl1 libegl1 libglib2.0-0 pocketsphinx-testdata)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
# Python 3.11 with venv and its C headers (the interfaces' Python bindings compile against them). A distribution's
# python3.11 often comes without the venv and dev packages: each is checked by what it provides.
python_bin="$(command -v python3.11 || true)"
if [ -z "$python_bin" ]; then
  missing+=(python3.11 python3.11-venv python3.11-dev)
else
  "$python_bin" -c "import ensurepip, venv" 2>/dev/null || missing+=(python3.11-venv)
  "$python_bin" -c "import os, sysconfig; assert os.path.exists(os.path.join(sysconfig.get_paths()['include'], \
'Python.h'))" 2>/dev/null || missing+=(python3.11-dev)
fi
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  log "apt-get install ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}" >/dev/null
  python_bin="$(command -v python3.11)"
fi

# 2. The virtual environment and Python packages.
if [ ! -x "$venv/bin/python" ]; then
  log "creating $venv with $python_bin"
  "$python_bin" -m venv "$venv"
fi
mkdir -p "$stamps"
hash_of() { cat "$@" | sha256sum | cut -d' ' -f1; }
fail() { log "$*"; exit 1; }
# pip without its "Location ... is ignored" warnings, failing as pip failed (pipefail: the pipeline's status is pip's,
# the filter's own is never a failure). A stamp is written only after this succeeded, so the next run tries again.
quiet_pip() {
  "$venv/bin/python" -m pip "$@" 2>&1 | { grep -v "^WARNING: Location .* is ignored" || true; }
}
req_hash="$(hash_of requirements-ros.txt requirements.txt)"
if [ "$(cat "$stamps/requirements" 2>/dev/null)" != "$req_hash" ]; then
  # torch's CPU build: from PyTorch's CPU index when it answers (PyPI's default Linux wheel is the multi-GB CUDA
  # build); KOBA_TORCH_INDEX= (empty) keeps pip's own indexes, e.g. for the CUDA build on a GPU machine.
  torch_index="${KOBA_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
  index_args=()
  # (timeout: urlopen's own does not bound a name lookup that hangs)
  if [ -n "$torch_index" ] && timeout 10 "$venv/bin/python" -c "import sys, urllib.request
urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=5)" "$torch_index" 2>/dev/null; then
    index_args=(--extra-index-url "$torch_index")
  fi
  log "pip install -r requirements-ros.txt -r requirements.txt ${index_args[@]+"${index_args[*]} "}(first run takes a few minutes)"
  quiet_pip install -q --disable-pip-version-check ${index_args[@]+"${index_args[@]}"} \
    -r requirements-ros.txt -r requirements.txt \
    || fail "pip install -r requirements-ros.txt -r requirements.txt failed (see pip's message above); run again"
  "$venv/bin/python" -m pip check >/dev/null 2>&1 || log "pip check reports conflicts (see 'pip check')"
  echo "$req_hash" > "$stamps/requirements"
fi

# 3. koba_interfaces: CMake build from the ROS wheels into the venv prefix.
if_hash="$(find interfaces -type f | sort | xargs cat | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamps/interfaces" 2>/dev/null)" != "$if_hash" ]; then
  log "building koba_interfaces (CMake)"
  build="$root/build/venv/koba_interfaces"   # not colcon's build/koba_interfaces (a ROS distro's build)
  rm -rf "$build" && mkdir -p "$build"
  (
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv"
    cd "$build"
    cmake "$root/interfaces/koba_interfaces" -DCMAKE_INSTALL_PREFIX="$venv" -DCMAKE_PREFIX_PATH="$venv" \
      -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$venv/bin/python" >cmake.log 2>&1 \
      || { tail -30 cmake.log >&2; exit 1; }
    make -j"$(nproc)" >make.log 2>&1 || { tail -30 make.log >&2; exit 1; }
    make install >install.log 2>&1 || { tail -30 install.log >&2; exit 1; }
  )
  echo "$if_hash" > "$stamps/interfaces"
fi

# 4. koba_ros itself, editable, so the checkout is what runs. setup.py makes an executable of every
# koba_ros/nodes/*_node.py, so the list of those files is part of what the install depends on.
shopt -s nullglob; node_files=(koba_ros/nodes/*_node.py); shopt -u nullglob
pkg_hash="$({ cat setup.py setup.cfg package.xml; printf '%s\n' ${node_files[@]+"${node_files[@]}"}; } \
  | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamps/package" 2>/dev/null)" != "$pkg_hash" ] || [ ! -x "$venv/bin/koba" ]; then
  log "pip install -e . (koba_ros)"
  quiet_pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e . \
    || fail "pip install -e . (koba_ros) failed (see pip's message above); run again"
  echo "$pkg_hash" > "$stamps/package"
fi
"$venv/bin/python" -c "import rclpy; from koba_interfaces.msg import DetectedObjectArray; from koba_interfaces.action import PickPlace" \
  || { log "koba_interfaces does not import: delete $stamps and run again"; exit 1; }
