#!/usr/bin/env bash
# Installs the Debian package with Fashion-MNIST (31 MB) if it is not there yet.
set -euo pipefail
DATA=/usr/share/datasets/fashion-mnist
if [ -f "$DATA/train-images-idx3-ubyte.gz" ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "installing Fashion-MNIST: apt-get install dataset-fashion-mnist" >&2
$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || {
  $SUDO apt-get update -q >/dev/null
  $SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null
}
