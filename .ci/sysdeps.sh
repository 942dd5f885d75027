#!/usr/bin/env bash
# Installs the Debian packages fleetnode's tests and demo need, when a command is missing.
set -euo pipefail
declare -A want=(
  [mosquitto]=mosquitto
  [mosquitto_sub]=mosquitto-clients
  [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu
  [qemu-aarch64]=qemu-user
  [systemd-analyze]=systemd
  [unshare]=util-linux  # tests/ops/test_doctor.py: a read-only bind mount of the state dir
  [mkfs.ext4]=e2fsprogs
  [e2fsck]=e2fsprogs
  [findmnt]=util-linux
  [losetup]=mount
  [chromium]=chromium  # tests/fleetside/test_dashboard_browser.py and make screenshot
  [chromedriver]=chromium-driver
)
missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${want[$cmd]}")
done
[ -e /usr/aarch64-linux-gnu/lib/libc.so.6 ] || missing+=(libc6-dev-arm64-cross)
# The fleet service's PostgreSQL tests start a private cluster with initdb and pg_ctl.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
((${#missing[@]})) || exit 0
echo "installing Debian packages: ${missing[*]}"
if [ "$(id -u)" != 0 ]; then
  echo "not root: run 'sudo apt-get install ${missing[*]}' and try again" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
