#!/bin/sh
# Install everything folio-harness needs on Debian 12, idempotently:
# the apt packages (QEMU, the 6.1 source, static busybox, kernel build deps, ccache, and
# chromium, in which the HTML report's test opens the page headless) and the Python
# package with its test extras in a virtual environment (.venv).
# Re-running it costs a few seconds: nothing is fetched that is already there.
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
packages="qemu-system-x86 linux-source-6.1 busybox-static build-essential libc6-dev flex bison \
bc libelf-dev libssl-dev cpio ccache xz-utils rsync git python3-venv python3-pip \
libnuma-dev libcap-dev chromium openssh-server"

missing=""
for p in $packages; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing:$missing"
	SUDO=""
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
else
	echo "setup: apt packages already installed"
fi

venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
	python3 -m venv "$venv"
fi
stamp="$venv/.installed-$(cat "$here/pyproject.toml" | sha256sum | cut -c1-16)"
if [ ! -e "$stamp" ]; then
	"$venv/bin/pip" install -q --upgrade pip
	"$venv/bin/pip" install -q -e "$here[test]"
	rm -f "$venv"/.installed-*
	touch "$stamp"
else
	echo "setup: python environment up to date ($venv)"
fi
