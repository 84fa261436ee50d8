#!/usr/bin/env bash
# Install the Debian packages redq needs (only those missing) and check the
# Rust toolchain. Usage: tools/deps.sh pkg...
set -euo pipefail

missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "Installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

need="1.88"
if ! command -v cargo >/dev/null || ! command -v rustc >/dev/null; then
  echo "redq needs Rust >= $need (cargo and rustc). Install it with rustup:" >&2
  echo "  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh" >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  echo "redq needs rustc >= $need, found $have: run 'rustup update stable'" >&2
  exit 1
fi
