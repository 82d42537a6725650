#!/bin/sh
# Cross-build mm/ and kernel/events/ of the kernel series for arm64 with Debian's
# gcc-aarch64-linux-gnu: x86 gets some declarations through indirect includes that arm64
# does not (max_pfn is <linux/memblock.h>'s), so a compile test on a second architecture
# catches what the x86 builds cannot.
#
#   scripts/cross-build-arm64.sh [-t TREE] [-o BUILD_DIR] [-j JOBS]
#
# TREE is a kernel tree with the series applied; without -t the script extracts
# /usr/src/linux-source-6.1.tar.xz into BUILD_DIR/src and applies kernel-patches/series
# with git am. It merges configs/kconfig/arm64-cross.config onto tinyconfig, checks that
# every option stuck, builds mm/ and kernel/events/ (W=1 for the files the series adds),
# and fails on an error or on a warning in a file the series touches.
# Exit status: 0 clean, 1 a warning or error in the series' files, 2 setup failure.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TREE=
OUT=${TMPDIR:-/tmp}/folio-harness-arm64
JOBS=2
while getopts t:o:j: opt; do
	case $opt in
	t) TREE=$(cd "$OPTARG" && pwd) ;;
	o) OUT=$OPTARG ;;
	j) JOBS=$OPTARG ;;
	*) echo "usage: $0 [-t TREE] [-o BUILD_DIR] [-j JOBS]" >&2; exit 2 ;;
	esac
done
command -v aarch64-linux-gnu-gcc >/dev/null ||
	{ echo "$0: aarch64-linux-gnu-gcc missing: apt-get install gcc-aarch64-linux-gnu" >&2; exit 2; }
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
if [ -z "$TREE" ]; then
	TREE=$OUT/src/linux-source-6.1
	if [ ! -d "$TREE/.git" ]; then
		rm -rf "$OUT/src" && mkdir -p "$OUT/src"
		echo "extracting /usr/src/linux-source-6.1.tar.xz"
		tar xf /usr/src/linux-source-6.1.tar.xz -C "$OUT/src"
		git -C "$TREE" init -q
		git -C "$TREE" add -A -f
		git -C "$TREE" -c user.name=cross -c user.email=cross@invalid commit -q -m base
		git -C "$TREE" tag base
	fi
	git -C "$TREE" checkout -q -f base
	git -C "$TREE" clean -q -fdx
	echo "applying kernel-patches/series"
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$ROOT/kernel-patches/series" |
		sed "s|^|$ROOT/kernel-patches/|" |
		xargs git -C "$TREE" -c user.name=cross -c user.email=cross@invalid am -q --committer-date-is-author-date
fi
BUILD=$OUT/build
MAKE="make -C $TREE O=$BUILD ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- -j$JOBS"
FRAGMENT=$ROOT/configs/kconfig/arm64-cross.config
$MAKE -s tinyconfig >/dev/null
KCONFIG_CONFIG=$BUILD/.config "$TREE/scripts/kconfig/merge_config.sh" -m -O "$BUILD" \
	"$BUILD/.config" "$FRAGMENT" >/dev/null
$MAKE -s olddefconfig >/dev/null
missing=0
for opt in $(sed -n 's/^\(CONFIG_[A-Z0-9_]*\)=y$/\1/p' "$FRAGMENT"); do
	grep -qx "$opt=y" "$BUILD/.config" || { echo "$FRAGMENT: $opt did not stick"; missing=1; }
done
[ $missing = 0 ] || exit 2

# The files the series touches, from the tree's history when it has the base tag.
touched=$(git -C "$TREE" diff --name-only base..HEAD 2>/dev/null | grep '\.[ch]$' || true)
added=$(git -C "$TREE" diff --name-only --diff-filter=A base..HEAD 2>/dev/null | grep '\.c$' || true)
LOG=$OUT/build.log
status=0
{
	$MAKE mm/ kernel/events/ || status=1
	for f in $added; do
		rm -f "$BUILD/${f%.c}.o"
		$MAKE W=1 "${f%.c}.o" || status=1
	done
} >"$LOG" 2>&1 || status=1
warnings=$(grep -E '(warning|error):' "$LOG" || true)
ours=
for f in $touched; do
	ours="$ours$(printf '%s\n' "$warnings" | grep -F "$f:" || true)"
done
if [ -n "$ours" ]; then
	printf '%s\n' "$ours"
	status=1
fi
if [ $status = 0 ]; then
	echo "arm64: mm/ and kernel/events/ built with the series ($(echo "$touched" | wc -w) files touched): no warning or error in them"
else
	echo "arm64: build FAILED or warned in the series' files; log: $LOG"
	grep -E 'error' "$LOG" | head -20
fi
exit $status
