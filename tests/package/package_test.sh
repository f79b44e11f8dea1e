#!/usr/bin/env bash
# Packaging, as a user meets it: `cmake --install` puts the binary, man pages and completions in the
# standard places; `cpack -G DEB` builds a .deb that declares its runtime dependencies; as root (CI) the
# .deb installs with apt and the installed rproxy runs, otherwise the extracted binary runs.
# Usage: package_test.sh BUILD_DIR VERSION
set -euo pipefail
build=$1
version=$2
tmp=$(mktemp -d)
installed_by_us=0
cleanup() {
  if ((installed_by_us)); then apt-get remove -y -q rproxy >/dev/null 2>&1 || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
  echo "package test: FAIL: $*" >&2
  exit 1
}

# The binary prints its version and answers a request through `rproxy echo`.
check_binary() {
  local bin=$1 out port
  out=$("$bin" --version) || fail "$bin --version exited $?"
  [[ $out == "rproxy $version"* ]] || fail "$bin --version printed: $out"
  out=$("$bin" serve --to http://127.0.0.1:1 --print-scenario) || fail "$bin serve --print-scenario failed"
  [[ $out == *'"version": 1'* ]] || fail "$bin serve --print-scenario printed no scenario: $out"
  out=$("$bin" help serve) || fail "$bin help serve failed"
  [[ $out == *--listen* ]] || fail "$bin help serve lists no --listen"
  set +e
  "$bin" serve --no-such-flag 2>/dev/null
  local rc=$?
  set -e
  ((rc == 2)) || fail "$bin serve --no-such-flag exited $rc, not 2"
}

# 1. cmake --install into a prefix.
prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >/dev/null
for f in bin/rproxy share/man/man1/rproxy.1 share/man/man1/rproxy-serve.1 share/man/man1/rproxy-run.1 \
  share/man/man5/rproxy-scenario.5 share/bash-completion/completions/rproxy share/zsh/vendor-completions/_rproxy \
  share/fish/vendor_completions.d/rproxy.fish; do
  [[ -s $prefix/$f ]] || fail "cmake --install did not install $f"
done
[[ ! -e $prefix/bin/rproxy_tests ]] || fail "the test binary was installed"
check_binary "$prefix/bin/rproxy"

# 2. cpack -G DEB from the build tree's CPack configuration, into a scratch directory.
(cd "$tmp" && cpack -G DEB --config "$build/CPackConfig.cmake" -B "$tmp/deb" >"$tmp/cpack.log" 2>&1) ||
  { cat "$tmp/cpack.log" >&2; fail "cpack -G DEB failed"; }
deb=$(ls "$tmp"/deb/rproxy_"$version"_*.deb 2>/dev/null | head -1)
[[ -n $deb && -s $deb ]] || { cat "$tmp/cpack.log" >&2; fail "no rproxy_${version}_*.deb was built"; }
info=$(dpkg-deb -I "$deb")
grep -q "^ Package: rproxy$" <<<"$info" || fail "the package is not named rproxy: $info"
grep -q "^ Version: $version$" <<<"$info" || fail "the package version is not $version"
depends=$(sed -n 's/^ Depends: //p' <<<"$info")
for lib in libc6 libstdc++6 libssl3 zlib1g libbrotli1 libcpp-httplib; do
  grep -q "$lib" <<<"$depends" || fail "Depends does not name $lib: $depends"
done
contents=$(dpkg-deb -c "$deb")
for f in ./usr/bin/rproxy ./usr/share/man/man1/rproxy.1 ./usr/share/man/man1/rproxy-serve.1 \
  ./usr/share/man/man5/rproxy-scenario.5 ./usr/share/bash-completion/completions/rproxy \
  ./usr/share/zsh/vendor-completions/_rproxy ./usr/share/fish/vendor_completions.d/rproxy.fish; do
  grep -q " $f\$" <<<"$contents" || fail "the package lacks $f"
done
! grep -q "rproxy_tests" <<<"$contents" || fail "the package contains the test binary"

# 3. Install it: with apt as root (CI), else run the extracted binary.
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && [[ ${RPROXY_PACKAGE_NO_APT:-0} != 1 ]] &&
  ! dpkg -s rproxy >/dev/null 2>&1; then
  installed_by_us=1
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=120 "$deb" >"$tmp/apt.log" 2>&1 ||
    { cat "$tmp/apt.log" >&2; fail "apt-get install $deb failed"; }
  [[ -x /usr/bin/rproxy ]] || fail "apt installed no /usr/bin/rproxy"
  check_binary /usr/bin/rproxy
  [[ -s /usr/share/man/man1/rproxy.1 ]] || fail "no installed rproxy(1)"
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -q -o DPkg::Lock::Timeout=120 rproxy >/dev/null 2>&1 ||
    fail "apt-get remove rproxy failed"
  installed_by_us=0
  [[ ! -e /usr/bin/rproxy ]] || fail "apt-get remove left /usr/bin/rproxy"
  echo "package test: installed $(basename "$deb") with apt, ran /usr/bin/rproxy, removed it"
else
  dpkg-deb -x "$deb" "$tmp/root"
  check_binary "$tmp/root/usr/bin/rproxy"
  echo "package test: not root (or RPROXY_PACKAGE_NO_APT=1): ran the binary extracted from $(basename "$deb")"
fi
echo "package test: ok"
