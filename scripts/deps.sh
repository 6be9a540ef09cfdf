#!/usr/bin/env bash
# Installs the Debian packages statedict builds and tests with, when any is missing.
# Usage: scripts/deps.sh [extra-package ...]
set -euo pipefail
# Inside a stack root (scripts/stack.sh) the packages are that root's, installed when it was made.
[ -z "${STATEDICT_IN_ROOT:-}" ] || exit 0
packages=(cmake ninja-build g++ ccache clang-format libtorch-dev catch2 nlohmann-json3-dev libcli11-dev
          libzstd-dev python3-torch python3-torchvision "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "statedict: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
