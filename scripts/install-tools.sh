#!/usr/bin/env bash
# Debian packages edgebert uses beside Python, installed only when missing (needs root and apt-get):
# - mosquitto: a real MQTT broker for the fleet and federated integration tests;
# - nats-server: a real clustered broker (NATS speaks MQTT 3.1.1) for the 3-node cluster tests;
# - qemu-user: runs ONNX Runtime's AVX2-without-VNNI kernels on any x86 CPU (saturation tests);
# - gcc-arm-none-eabi, libnewlib-arm-none-eabi, qemu-system-arm: the Cortex-M4 toolchain and the
#   emulator `edgebert export --target c` (and the demo's microcontrollers) build and measure with.
# --no-install-recommends: without it a 1.5 GB C++ library comes along.
set -uo pipefail
need=()
command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)
command -v nats-server >/dev/null 2>&1 || need+=(nats-server)
command -v qemu-x86_64 >/dev/null 2>&1 || need+=(qemu-user)
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need+=(gcc-arm-none-eabi libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
command -v cc >/dev/null 2>&1 || need+=(gcc)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-tools: no apt-get here; install ${need[*]} yourself (tests needing them are skipped)" >&2
  exit 0
fi
sudo=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo="sudo"
($sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}") \
  || echo "install-tools: could not install ${need[*]} (tests needing them are skipped)" >&2
exit 0
