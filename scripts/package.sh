#!/usr/bin/env bash
# Builds the Function App package: the release `handler` binary for the
# Functions Linux host, host.json and one folder per function, zipped as
# dist/function-app.zip with the binary at the path host.json names (mode
# 0755). Prints the zip's size and which C library the binary needs.
#
#   scripts/package.sh                  build (static musl when possible) and zip
#   scripts/package.sh --target gnu     build against the machine's glibc instead
#   scripts/package.sh --binary PATH    zip an already-built binary (the e2e
#                                       test packages its debug binary this way)
#   scripts/package.sh --out FILE.zip   write the zip elsewhere; the unpacked
#                                       app is staged beside it (FILE/)
#
# Needs bash and python3 (for the zip: no `zip` program is assumed) and, to
# build, cargo. The static build also needs the rustup target
# x86_64-unknown-linux-musl and musl-gcc (Debian: musl-tools); .ci/run
# installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

musl_target=x86_64-unknown-linux-musl
target=auto
binary=
out=dist/function-app.zip

while [ $# -gt 0 ]; do
  case "$1" in
    --target) target=${2:?--target needs musl, gnu or auto}; shift 2 ;;
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a path}; shift 2 ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "package.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

# The staging folder is the zip's path without .zip, and it is emptied
# first: a bare ".zip" name would empty its parent.
case "$(basename -- "$out")" in
  .zip) echo "package.sh: --out needs a file name before .zip" >&2; exit 2 ;;
  *.zip) ;;
  *) echo "package.sh: --out must end in .zip" >&2; exit 2 ;;
esac

# The path the Functions host starts: host.json customHandler.description.
exe_path=$(python3 - function-app/host.json <<'PY'
import json, sys
path = json.load(open(sys.argv[1]))["customHandler"]["description"]["defaultExecutablePath"]
if not path or path.startswith("/") or ".." in path.split("/"):
    sys.exit(f"host.json defaultExecutablePath {path!r} must be a path inside the app")
print(path)
PY
)

musl_available() {
  # grep reads the whole list (no -q): an early exit could kill rustup with
  # SIGPIPE, and pipefail would then hide an installed target.
  rustup target list --installed 2>/dev/null | grep -x "$musl_target" >/dev/null &&
    command -v musl-gcc >/dev/null
}

if [ -z "$binary" ]; then
  if [ "$target" = auto ]; then
    if musl_available; then target=musl; else target=gnu; fi
  fi
  target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
  case "$target" in
    musl)
      if ! musl_available; then
        echo "package.sh: --target musl needs 'rustup target add $musl_target' and musl-gcc" >&2
        exit 1
      fi
      echo "+ cargo build --release --locked -p handler --target $musl_target"
      cargo build --release --locked -p handler --target "$musl_target"
      binary=$target_dir/$musl_target/release/handler
      ;;
    gnu)
      echo "+ cargo build --release --locked -p handler   (glibc build)"
      cargo build --release --locked -p handler
      binary=$target_dir/release/handler
      ;;
    *) echo "package.sh: --target must be musl, gnu or auto" >&2; exit 2 ;;
  esac
fi
if [ ! -f "$binary" ]; then
  echo "package.sh: no binary at $binary" >&2
  exit 1
fi

# Stage the app exactly as it will run: host.json, every folder that holds a
# function.json, the binary. Nothing else (no local.settings.json).
stage=${out%.zip}
rm -rf "$stage" "$out"
mkdir -p "$stage"
cp function-app/host.json "$stage/"
for dir in function-app/*/; do
  if [ -f "$dir/function.json" ]; then
    name=$(basename "$dir")
    mkdir -p "$stage/$name"
    cp "$dir"/*.json "$stage/$name/"
  fi
done
mkdir -p "$(dirname "$stage/$exe_path")"
install -m 0755 "$binary" "$stage/$exe_path"

# Zip with Unix modes recorded (the exec bit survives deployment), entries in
# a fixed order with a fixed timestamp: the same inputs give the same zip.
python3 - "$stage" "$out" <<'PY'
import os, sys, zipfile

stage, out = sys.argv[1], sys.argv[2]
stamp = (1980, 1, 1, 0, 0, 0)

def entry(name, mode):
    info = zipfile.ZipInfo(name, stamp)
    info.create_system = 3  # Unix: the high bits of external_attr are the mode
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info

with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
    for root, dirs, files in os.walk(stage):
        dirs.sort()
        rel = os.path.relpath(root, stage)
        if rel != ".":
            z.writestr(entry(rel + "/", 0o40755), b"")
        for name in sorted(files):
            path = os.path.join(root, name)
            executable = os.stat(path).st_mode & 0o111
            info = entry(os.path.normpath(os.path.join(rel, name)),
                         0o100755 if executable else 0o100644)
            with open(path, "rb") as f:
                z.writestr(info, f.read())
PY

# Which C library the binary needs on the Functions host: none when the ELF
# file names no program interpreter (a static binary).
linking=$(python3 - "$stage/$exe_path" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
    sys.exit("not a 64-bit little-endian ELF file: the Functions Linux host cannot run it")
phoff, = struct.unpack_from("<Q", data, 0x20)
phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
print("dynamic" if 3 in types else "static")  # 3 = PT_INTERP
PY
)
if [ "$linking" = static ]; then
  libc="no C library (static)"
elif command -v objdump >/dev/null; then
  libc="glibc >= $(objdump -T "$stage/$exe_path" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)"
else
  libc="glibc >= $(grep -ao 'GLIBC_2\.[0-9]*' "$stage/$exe_path" | sed 's/GLIBC_//' | sort -uV | tail -1)"
fi

size() { python3 -c 'import os, sys; print(f"{os.path.getsize(sys.argv[1]) / 1048576:.1f} MiB")' "$1"; }
echo "package: $out $(size "$out") (binary $exe_path $(size "$stage/$exe_path"), needs $libc)"
echo "package: unpacked app in $stage/"
