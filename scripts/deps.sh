#!/usr/bin/env bash
# Installs the Debian 12 packages rproxy builds and tests with (run as root). Nothing else is downloaded.
set -euo pipefail
pkgs=(build-essential cmake ninja-build pkg-config
      libasio-dev libcli11-dev libcpp-httplib-dev nlohmann-json3-dev doctest-dev libssl-dev zlib1g-dev libbrotli-dev
      curl python3 procps openssl ca-certificates
      groff-base bash-completion zsh fish  # man page and completion tests (groff -man -ww, a real bash
                                           # completing, zsh -n and fish -n on their scripts)
      dpkg-dev file               # cpack -G DEB: dpkg-shlibdeps computes Depends, file finds the binaries
      clang libclang-rt-14-dev)  # scripts/fuzz.sh: clang 14 and its libFuzzer/sanitizer runtimes
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
