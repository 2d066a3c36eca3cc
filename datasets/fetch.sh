#!/usr/bin/env bash
# Fetch the protein-lm data sets from upstream and verify them against datasets/manifest.json.
#
#   datasets/fetch.sh [--dest DIR] [--verify-only] [NAME ...]
#
# NAME: swissprot-2014-go human-pfam proteinbert-benchmarks ppi/pipr-yeast ppi/hippie-hq ppi/pan2010
#       proberta-vocab (default: all of them), or swissprot-current (the current UniProt release,
#       never verified: it changes with every release; not part of the default set).
# DIR:  default ${PROTEIN_LM_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/protein-lm/datasets}; files are laid
#       out with the manifest's relative paths.
# PROTEIN_LM_MIRROR=FOLDER: a local folder that stands in for the upstream hosts: URL https://HOST/PATH
#       is read from FOLDER/HOST/PATH when that file exists (else from upstream, unless
#       PROTEIN_LM_MIRROR_ONLY=1, which makes a file missing from the mirror a failure: offline runs).
#       datasets/helpers/make_mirror.py lays out such a folder from an existing data root.
#
# Rules: a file that verifies is never deleted or overwritten; downloads go to a temporary file in the
# destination folder and are moved into place only when complete (and, where the manifest says the bytes
# are reproducible, only when their sha256 matches). A reproducible file that exists but does not match
# is moved aside to FILE.mismatch.<time> before it is fetched again. Files the manifest marks as not
# reproducible (the four rebuilt benchmark files) are never overwritten once present.
#
# What was tested (Debian bookworm, 2 shared cores, as root; only Debian's mirrors reachable):
#   - swissprot-2014-go and human-pfam end to end from deb.debian.org (the apt-get download fallback was
#     tested for metastudent-data only, before the mirror option existed) and from the mirror: every file
#     verifies, the 50k sample and both human-pfam tables equal the shared copies byte for byte.
#   - everything else through PROTEIN_LM_MIRROR (helpers/make_mirror.py over the shared data) into an
#     empty folder: all 38 manifest files verify; datasets/test_fetch_mirror.sh repeats a small version.
# NOT tested (GitHub unreachable): the real raw.githubusercontent.com downloads, the Git LFS fallback,
# the short commit ids in the URLs, and helpers/rebuild_benchmarks.py on the real metl-pub / FLIP files
# (the mirror's avgfp.tsv and splits.zip are synthesised from our rebuilt files).
#
# Exit status: 0 all selected files present and verified (or present where not verifiable);
# 1 a download, rebuild or checksum failed; 2 (--verify-only) some files are missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# PROTEIN_LM_MANIFEST: another manifest (datasets/test_fetch_mirror.sh checks the fetch on tiny files).
MANIFEST="${PROTEIN_LM_MANIFEST:-$HERE/manifest.json}"
HELPERS="$HERE/helpers"
DEST="${PROTEIN_LM_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/protein-lm/datasets}"
VERIFY_ONLY=0
NAMES=()
ALL_NAMES=(swissprot-2014-go human-pfam proteinbert-benchmarks ppi/pipr-yeast ppi/hippie-hq ppi/pan2010 proberta-vocab)

# Pinned upstream sources (see manifest.json "source").
PB_RAW="https://raw.githubusercontent.com/nadavbra/protein_bert/83198c99f18147c126f16f504e53e2201a6256e4/protein_benchmarks"
METL_AVGFP="https://raw.githubusercontent.com/gitter-lab/metl-pub/40d8fbf9/data/dms_data/avgfp/avgfp.tsv"
FLIP_SS_ZIP="https://raw.githubusercontent.com/J-SNACKKB/FLIP/62cace87/splits/secondary_structure/splits.zip"
PIPR_RAW="https://raw.githubusercontent.com/muhaochen/seq_ppi/9172fbdc/yeast/preprocessed"
MCAPS_RAW="https://raw.githubusercontent.com/anhvt00/MCAPS/34c92378/data"
PROBERTA_DICT="https://raw.githubusercontent.com/wesleywt/PRoBERTa/4fb5f9d7c9adc45e68abc2d4843ae0f46bbaaae5/src/pretraining/dict.txt"
DEB_NAME="metastudent-data_2.0.1-8_all.deb"
DEB_URL="https://deb.debian.org/debian/pool/main/m/metastudent-data/$DEB_NAME"
DEB_SHA256="020ed0c560a5ba96f39c434399b3ecf0fa790a4776c4aac24458f837969ae54b"
ORGHS_VERSION="3.16.0-1"
ORGHS_DEB="r-bioc-org.hs.eg.db_${ORGHS_VERSION}_all.deb"
ORGHS_URL="https://deb.debian.org/debian/pool/main/r/r-bioc-org.hs.eg.db/$ORGHS_DEB"
ORGHS_SHA256="0f61810d35b858915b1a9787d8dcab08b7e164c14c20a9e1d86eb9837308c2c2"
ORGHS_SQLITE="usr/lib/R/site-library/org.Hs.eg.db/extdata/org.Hs.eg.sqlite"
SPROT_CURRENT="https://ftp.uniprot.org/pub/databases/uniprot/current_release/knowledgebase/complete/uniprot_sprot.fasta.gz"

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --dest) [[ $# -ge 2 ]] || { echo "--dest needs a directory" >&2; exit 64; }; DEST="$2"; shift 2 ;;
    --dest=*) DEST="${1#--dest=}"; shift ;;
    --verify-only) VERIFY_ONLY=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option: $1" >&2; usage >&2; exit 64 ;;
    *) NAMES+=("$1"); shift ;;
  esac
done
[[ ${#NAMES[@]} -gt 0 ]] || NAMES=("${ALL_NAMES[@]}")
for n in "${NAMES[@]}"; do
  case " ${ALL_NAMES[*]} swissprot-current " in
    *" $n "*) ;;
    *) echo "unknown data set: $n (known: ${ALL_NAMES[*]} swissprot-current)" >&2; exit 64 ;;
  esac
done

command -v python3 >/dev/null || { echo "python3 is required" >&2; exit 1; }
[[ $VERIFY_ONLY -eq 1 ]] || command -v curl >/dev/null || { echo "curl is required" >&2; exit 1; }

FAILED=0
MISSING=0
CURRENT_TMP=""
# An interrupted download leaves no partial file behind.
trap 'if [[ -n "$CURRENT_TMP" ]]; then rm -f -- "$CURRENT_TMP"; fi' EXIT
trap 'exit 130' INT TERM
CURL=(curl -fL --retry 3 --retry-delay 2 --connect-timeout 30 -sS)
# A progress bar where someone watches; elsewhere (CI logs) get() prints size and time per file.
if [[ -t 2 ]]; then CURL=(curl -fL --retry 3 --retry-delay 2 --connect-timeout 30 --progress-bar); fi
MIRROR="${PROTEIN_LM_MIRROR:-}"
MIRROR_ONLY="${PROTEIN_LM_MIRROR_ONLY:-0}"
if [[ -n "$MIRROR" && ! -d "$MIRROR" ]]; then echo "PROTEIN_LM_MIRROR=$MIRROR is not a folder" >&2; exit 64; fi
log() { printf '%s\n' "$*"; }
fail() { printf 'ERROR: %s\n' "$*" >&2; FAILED=1; }

sha256_of() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1
  elif command -v shasum >/dev/null; then shasum -a 256 "$1" | cut -d' ' -f1
  else python3 -c 'import hashlib,sys;h=hashlib.sha256();f=open(sys.argv[1],"rb");[h.update(c) for c in iter(lambda:f.read(1<<20),b"")];print(h.hexdigest())' "$1"
  fi
}

# get URL OUT: the mirror's copy of URL (MIRROR/HOST/PATH) if there is one, else URL itself.
get() {
  local url="$1" out="$2" t0 rc=0
  t0=$(date +%s)
  if [[ -n "$MIRROR" ]]; then
    local m="$MIRROR/${url#*://}"
    if [[ -f "$m" ]]; then
      log "  mirror    $m"
      cp -- "$m" "$out" || return 1
      return 0
    fi
    if [[ "$MIRROR_ONLY" == 1 ]]; then
      printf 'ERROR: %s is not in the mirror (%s) and PROTEIN_LM_MIRROR_ONLY=1\n' "$url" "$m" >&2
      return 1
    fi
    log "  (not in the mirror: $m)"
  fi
  "${CURL[@]}" -o "$out" "$url" || rc=$?
  [[ $rc -eq 0 ]] && log "  got       $(wc -c < "$out" | tr -d ' ') bytes in $(( $(date +%s) - t0 )) s"
  return $rc
}

# Manifest lookups: "sha256 reproducible" for a path, and the paths of a data set.
manifest_field() {  # PATH -> "SHA256 true|false" (empty if not in the manifest)
  python3 - "$MANIFEST" "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for d in m["datasets"]:
    for f in d["files"]:
        if f["path"] == sys.argv[2]:
            print(f["sha256"], "true" if f["reproducible_from_upstream"] else "false")
PY
}
manifest_paths() {  # NAME -> its file paths
  python3 - "$MANIFEST" "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for d in m["datasets"]:
    if d["name"] == sys.argv[2]:
        for f in d["files"]:
            print(f["path"])
PY
}

# verify REL: 0 = present and matches (or present, not reproducible); 1 = mismatch; 2 = missing.
# Prints one line saying which.
verify() {
  local rel="$1" file="$DEST/$1" info want repro got
  info="$(manifest_field "$rel")"
  if [[ ! -f "$file" ]]; then log "  missing   $rel"; return 2; fi
  if [[ -z "$info" ]]; then log "  present   $rel (not in the manifest)"; return 0; fi
  want="${info% *}"; repro="${info#* }"
  got="$(sha256_of "$file")"
  if [[ "$got" == "$want" ]]; then log "  ok        $rel"; return 0; fi
  if [[ "$repro" == "false" ]]; then
    log "  present   $rel (differs from the recorded copy, as expected for a file that is not reproducible from upstream)"
    return 0
  fi
  log "  MISMATCH  $rel: sha256 $got, manifest $want"
  return 1
}

# needs REL: true when REL must be (re)made. Never true for a file that verifies, nor for a present
# file that is not reproducible. A present reproducible file that fails is moved aside first.
needs() {
  local rel="$1" rc=0
  verify "$rel" || rc=$?
  case $rc in
    0) return 1 ;;
    2) return 0 ;;
    1) local aside
       aside="$DEST/$rel.mismatch.$(date +%Y%m%d%H%M%S)"
       mv -- "$DEST/$rel" "$aside"
       log "  moved the mismatching file aside to $aside"
       return 0 ;;
  esac
}

# download URL REL: fetch into a temp file next to the target, then move into place.
# Falls back to GitHub's LFS media host when raw.githubusercontent.com returns an LFS pointer.
download() {
  local url="$1" rel="$2" out="$DEST/$2" tmp
  mkdir -p "$(dirname "$out")"
  tmp="$(mktemp "$out.part.XXXXXX")"
  CURRENT_TMP="$tmp"
  log "  download  $url"
  log "         -> $rel"
  if ! get "$url" "$tmp"; then
    rm -f -- "$tmp"; fail "download failed: $url (for $rel)"; return 1
  fi
  if head -c 40 "$tmp" | grep -q '^version https://git-lfs'; then
    local media="${url/raw.githubusercontent.com/media.githubusercontent.com/media}"
    log "  (Git LFS pointer; trying $media)"
    if ! get "$media" "$tmp"; then
      rm -f -- "$tmp"; fail "download failed: $media (for $rel)"; return 1
    fi
  fi
  mv -f -- "$tmp" "$out"
  CURRENT_TMP=""
}

# check_new REL: after making REL, verify it if reproducible; a failed file is renamed .failed.
check_new() {
  local rel="$1" rc=0
  verify "$rel" || rc=$?
  if [[ $rc -ne 0 ]]; then
    mv -f -- "$DEST/$rel" "$DEST/$rel.failed"
    fail "checksum failed for $rel (kept as $rel.failed)"
    return 1
  fi
}

# fetch_raw URL REL: download REL unless it is already good, then check it.
fetch_raw() {
  local url="$1" rel="$2"
  needs "$rel" || return 0
  download "$url" "$rel" && check_new "$rel" || true
}

# --- data sets -------------------------------------------------------------------------------------

FULL_REL="swissprot-2014-go/swissprot_201401_go_full.tsv.gz"
SAMPLE_REL="swissprot-2014-go/swissprot_201401_go_sample50k.tsv.gz"

# get_deb DEB URL SHA256 PACKAGE=VERSION WORK: a pinned Debian package into WORK/DEB (kept there if it
# already has the right sha256); deb.debian.org (or the mirror) first, then apt-get download.
get_deb() {
  local deb="$1" url="$2" sha="$3" pkg="$4" work="$5"
  if [[ -f "$work/$deb" ]] && [[ "$(sha256_of "$work/$deb")" == "$sha" ]]; then return 0; fi
  rm -f -- "$work/$deb"
  log "  download  $url ($deb)"
  CURRENT_TMP="$work/$deb.part"
  if ! get "$url" "$work/$deb.part"; then
    rm -f -- "$work/$deb.part"
    if command -v apt-get >/dev/null && [[ "$MIRROR_ONLY" != 1 ]]; then
      log "  that failed; trying: apt-get download $pkg"
      (cd "$work" && apt-get download "$pkg") || { fail "could not get $deb from $url or apt-get"; return 1; }
    else
      fail "download failed: $url (for $deb)"; return 1
    fi
  else
    mv -f -- "$work/$deb.part" "$work/$deb"
  fi
  CURRENT_TMP=""
  [[ "$(sha256_of "$work/$deb")" == "$sha" ]] || { fail "$deb: sha256 differs from $sha"; return 1; }
}

# unpack_deb DEB DIR: the package's files under DIR.
unpack_deb() {
  local deb="$1" dir="$2"
  log "  unpack    ${deb##*/}"
  rm -rf -- "$dir"
  if command -v dpkg-deb >/dev/null; then
    dpkg-deb -x "$deb" "$dir"
  else  # a .deb is an ar archive holding data.tar.*
    local ar="$dir.ar"
    rm -rf -- "$ar"; mkdir -p "$ar" "$dir"
    (cd "$ar" && ar x "$deb" && tar -xf data.tar.* -C "$dir") && rm -rf -- "$ar"
  fi
}

fetch_swissprot_2014() {
  local need_full=0 need_graph=0 need_names=0 need_sample=0
  if needs "$FULL_REL"; then need_full=1; fi
  if needs "$SAMPLE_REL"; then need_sample=1; fi
  if needs swissprot-2014-go/go_graph_201401.txt; then need_graph=1; fi
  if needs swissprot-2014-go/go_term_names_201401.txt; then need_names=1; fi
  if [[ $need_full$need_graph$need_names$need_sample == 0000 ]]; then return 0; fi

  if [[ $need_full$need_graph$need_names != 000 ]]; then
    local work="$DEST/.work/swissprot-2014-go"
    mkdir -p "$work"
    log "  work folder $work (needs about 1.5 GB; removed when done)"
    get_deb "$DEB_NAME" "$DEB_URL" "$DEB_SHA256" metastudent-data=2.0.1-8 "$work" || return 0
    unpack_deb "$work/$DEB_NAME" "$work/x" || { fail "could not unpack $work/$DEB_NAME"; return 0; }
    local ds="$work/x/usr/share/metastudent-data/dataset_201401"
    [[ -d "$ds" ]] || { fail "unexpected package layout: no dataset_201401 in $DEB_NAME"; return 0; }
    mkdir -p "$DEST/swissprot-2014-go"

    if [[ $need_graph -eq 1 ]]; then
      log "  copy      dataset_201401/goGraph.txt -> swissprot-2014-go/go_graph_201401.txt"
      cp -- "$ds/goGraph.txt" "$DEST/swissprot-2014-go/go_graph_201401.txt.part"
      mv -f -- "$DEST/swissprot-2014-go/go_graph_201401.txt.part" "$DEST/swissprot-2014-go/go_graph_201401.txt"
      check_new swissprot-2014-go/go_graph_201401.txt || true
    fi
    if [[ $need_names -eq 1 ]]; then
      log "  copy      dataset_201401/nameMapping.txt -> swissprot-2014-go/go_term_names_201401.txt"
      cp -- "$ds/nameMapping.txt" "$DEST/swissprot-2014-go/go_term_names_201401.txt.part"
      mv -f -- "$DEST/swissprot-2014-go/go_term_names_201401.txt.part" "$DEST/swissprot-2014-go/go_term_names_201401.txt"
      check_new swissprot-2014-go/go_term_names_201401.txt || true
    fi
    if [[ $need_full -eq 1 ]]; then
      if ! command -v blastdbcmd >/dev/null; then
        fail "blastdbcmd not found: install NCBI BLAST+ (Debian/Ubuntu: apt-get install ncbi-blast+) and rerun"
        return 0
      fi
      local o
      for o in MFO BPO CCO; do
        log "  extract   blastdbcmd -db dataset_201401/$o/goasp.fasta -entry all"
        blastdbcmd -db "$ds/$o/goasp.fasta" -entry all -outfmt $'%t\t%s' > "$work/$o.tsv" \
          || { fail "blastdbcmd failed on $o"; return 0; }
      done
      log "  build     $FULL_REL (union by accession)"
      python3 "$HELPERS/build_swissprot_2014.py" "$work/MFO.tsv" "$work/BPO.tsv" "$work/CCO.tsv" "$DEST/$FULL_REL" \
        || { fail "building $FULL_REL failed"; return 0; }
      check_new "$FULL_REL" || true
    fi
    if [[ $FAILED -eq 0 ]]; then rm -rf -- "$work"; log "  removed the work folder"; fi
  fi
  if [[ $need_sample -eq 1 ]]; then
    if [[ -f "$DEST/$FULL_REL" ]]; then
      log "  sample    $SAMPLE_REL (random.Random(0), 50,000 of the full table)"
      python3 "$HELPERS/sample_swissprot_2014.py" "$DEST/$FULL_REL" "$DEST/$SAMPLE_REL" \
        && check_new "$SAMPLE_REL" || fail "drawing $SAMPLE_REL failed"
    else
      fail "cannot draw $SAMPLE_REL: the full table $FULL_REL is missing (see above)"
    fi
  fi
  return 0
}

fetch_human_pfam() {
  local need=() rel
  for rel in $(manifest_paths human-pfam); do
    if needs "$rel"; then need+=("$rel"); fi
  done
  [[ ${#need[@]} -gt 0 ]] || return 0
  if [[ ! -f "$DEST/$FULL_REL" ]]; then
    log "  the human-pfam tables need the full Swiss-Prot 2014 table: building swissprot-2014-go first"
    fetch_swissprot_2014
    [[ -f "$DEST/$FULL_REL" ]] || { fail "cannot build human-pfam without $FULL_REL"; return 0; }
  fi
  local work="$DEST/.work/human-pfam"
  mkdir -p "$work"
  log "  work folder $work (needs about 400 MB; removed when done)"
  get_deb "$ORGHS_DEB" "$ORGHS_URL" "$ORGHS_SHA256" "r-bioc-org.hs.eg.db=$ORGHS_VERSION" "$work" || return 0
  unpack_deb "$work/$ORGHS_DEB" "$work/x" || { fail "could not unpack $work/$ORGHS_DEB"; return 0; }
  [[ -f "$work/x/$ORGHS_SQLITE" ]] || { fail "unexpected package layout: no $ORGHS_SQLITE in $ORGHS_DEB"; return 0; }
  log "  build     human-pfam tables (org.Hs.eg.db uniprot/pfam/prosite joined with $FULL_REL)"
  python3 "$HELPERS/build_human_pfam.py" "$work/x/$ORGHS_SQLITE" "$DEST/$FULL_REL" "$work/out" \
    || { fail "building the human-pfam tables failed"; return 0; }
  mkdir -p "$DEST/human-pfam"
  for rel in "${need[@]}"; do
    mv -f -- "$work/out/${rel##*/}" "$DEST/$rel"
    check_new "$rel" || true
  done
  if [[ $FAILED -eq 0 ]]; then rm -rf -- "$work"; log "  removed the work folder"; fi
  return 0
}

fetch_benchmarks() {
  local rel f
  for rel in $(manifest_paths proteinbert-benchmarks); do
    f="${rel##*/}"
    case "$f" in
      fluorescence.train.csv|fluorescence.test.csv|secondary_structure.train.csv|disorder_secondary_structure.train.csv) ;;
      *) fetch_raw "$PB_RAW/$f" "$rel" ;;
    esac
  done
  local d="$DEST/proteinbert-benchmarks" work="$DEST/.work/proteinbert-benchmarks"
  # Rebuilt files: only made when missing, never overwritten (not reproducible byte for byte).
  if [[ ! -f "$d/fluorescence.train.csv" || ! -f "$d/fluorescence.test.csv" ]]; then
    log "  rebuild   fluorescence.train/test.csv from metl-pub avgfp.tsv (label = score + 3.719212)"
    mkdir -p "$work/fluorescence"
    if download "$METL_AVGFP" ".work/proteinbert-benchmarks/avgfp.tsv" && [[ -f "$d/fluorescence.valid.csv" ]]; then
      python3 "$HELPERS/rebuild_benchmarks.py" fluorescence "$work/avgfp.tsv" "$d/fluorescence.valid.csv" "$work/fluorescence" \
        && for f in fluorescence.train.csv fluorescence.test.csv; do [[ -f "$d/$f" ]] || mv -- "$work/fluorescence/$f" "$d/$f"; done \
        || fail "rebuilding fluorescence.train/test.csv failed"
      verify proteinbert-benchmarks/fluorescence.train.csv || true
      verify proteinbert-benchmarks/fluorescence.test.csv || true
    else
      fail "cannot rebuild fluorescence.train/test.csv (need $METL_AVGFP and fluorescence.valid.csv)"
    fi
  else
    verify proteinbert-benchmarks/fluorescence.train.csv || true
    verify proteinbert-benchmarks/fluorescence.test.csv || true
  fi
  if [[ ! -f "$d/secondary_structure.train.csv" || ! -f "$d/disorder_secondary_structure.train.csv" ]]; then
    log "  rebuild   secondary_structure.train.csv and disorder_secondary_structure.train.csv from FLIP splits.zip"
    mkdir -p "$work/ss"
    if download "$FLIP_SS_ZIP" ".work/proteinbert-benchmarks/splits.zip" \
        && [[ -f "$d/secondary_structure.valid.csv" && -f "$d/secondary_structure.test.csv" ]]; then
      local rc=0
      python3 "$HELPERS/rebuild_benchmarks.py" secondary_structure "$work/splits.zip" \
        "$d/secondary_structure.valid.csv" "$d/secondary_structure.test.csv" "$work/ss" || rc=$?
      for f in secondary_structure.train.csv disorder_secondary_structure.train.csv; do
        [[ -f "$d/$f" || ! -f "$work/ss/$f" ]] || mv -- "$work/ss/$f" "$d/$f"
      done
      [[ $rc -eq 0 ]] || fail "rebuilding the secondary-structure training files was incomplete (helper status $rc)"
      verify proteinbert-benchmarks/secondary_structure.train.csv || true
      verify proteinbert-benchmarks/disorder_secondary_structure.train.csv || true
    else
      fail "cannot rebuild the secondary-structure training files (need $FLIP_SS_ZIP and the valid/test files)"
    fi
  else
    verify proteinbert-benchmarks/secondary_structure.train.csv || true
    verify proteinbert-benchmarks/disorder_secondary_structure.train.csv || true
  fi
  if [[ $FAILED -eq 0 ]]; then rm -rf -- "$work"; fi
  return 0
}

fetch_pipr() {
  fetch_raw "$PIPR_RAW/protein.actions.tsv" ppi/pipr-yeast/protein.actions.tsv
  fetch_raw "$PIPR_RAW/protein.dictionary.tsv" ppi/pipr-yeast/protein.dictionary.tsv
}

fetch_hippie() {
  local base="$MCAPS_RAW/Independent-testsets/Human-sets/HIPPIE/HQ"
  fetch_raw "$base/hiphq_pairs.tsv" ppi/hippie-hq/hippie_hq_pairs.tsv
  if needs ppi/hippie-hq/hippie_hq_dict.tsv; then
    download "$base/hiphq_dict.fasta" ppi/hippie-hq/hiphq_dict.fasta || return 0
    log "  convert   hiphq_dict.fasta -> hippie_hq_dict.tsv"
    python3 "$HELPERS/ppi_files.py" fasta2tsv "$DEST/ppi/hippie-hq/hiphq_dict.fasta" "$DEST/ppi/hippie-hq/hippie_hq_dict.tsv" \
      && rm -f -- "$DEST/ppi/hippie-hq/hiphq_dict.fasta" && check_new ppi/hippie-hq/hippie_hq_dict.tsv || fail "converting hiphq_dict.fasta failed"
  fi
}

fetch_pan2010() {
  local base="$MCAPS_RAW/Golden-standard-datasets/Pan-2010" f
  for f in pan_pairs.tsv pan_train.tsv pan_test.tsv pan_sub.fasta; do
    fetch_raw "$base/$f" "ppi/pan2010/pan2010_$f"
  done
  local fill=ppi/pan2010/pan2010_fill_from_swissprot2014.fasta
  if needs "$fill"; then
    if [[ ! -f "$DEST/$FULL_REL" ]]; then
      log "  the fill-in FASTA needs the full Swiss-Prot 2014 table: building swissprot-2014-go first"
      fetch_swissprot_2014
    fi
    if [[ -f "$DEST/$FULL_REL" && -f "$DEST/ppi/pan2010/pan2010_pan_pairs.tsv" && -f "$DEST/ppi/pan2010/pan2010_pan_sub.fasta" ]]; then
      log "  build     $fill (ids of pan_pairs missing from pan_sub, from the Swiss-Prot 2014 table)"
      python3 "$HELPERS/ppi_files.py" pan-fill "$DEST/ppi/pan2010/pan2010_pan_pairs.tsv" \
        "$DEST/ppi/pan2010/pan2010_pan_sub.fasta" "$DEST/$FULL_REL" "$DEST/$fill" \
        && check_new "$fill" || fail "building $fill failed"
    else
      fail "cannot build $fill (needs $FULL_REL, pan2010_pan_pairs.tsv and pan2010_pan_sub.fasta)"
    fi
  fi
}

fetch_proberta() {
  log "  note: the PRoBERTa repository has no licence; dict.txt is fetched for reference use only."
  fetch_raw "$PROBERTA_DICT" proberta-vocab/dict.txt
}

fetch_swissprot_current() {
  local rel=swissprot-current/uniprot_sprot.fasta.gz
  if [[ -f "$DEST/$rel" ]]; then log "  present   $rel (current release; not verified, delete it to refetch)"; return 0; fi
  [[ $VERIFY_ONLY -eq 1 ]] && { log "  missing   $rel"; MISSING=1; return 0; }
  download "$SPROT_CURRENT" "$rel" || true
}

# --- main ------------------------------------------------------------------------------------------

log "data folder: $DEST"
log "manifest:    $MANIFEST"
[[ -z "$MIRROR" ]] || log "mirror:      $MIRROR$([[ "$MIRROR_ONLY" == 1 ]] && echo ' (only)')"
mkdir -p "$DEST"
T_ALL=$(date +%s)
for name in "${NAMES[@]}"; do
  log ""
  log "== $name"
  T_SET=$(date +%s)
  if [[ $VERIFY_ONLY -eq 1 ]]; then
    if [[ "$name" == swissprot-current ]]; then fetch_swissprot_current; continue; fi
    for rel in $(manifest_paths "$name"); do
      rc=0; verify "$rel" || rc=$?
      if [[ $rc -eq 1 ]]; then FAILED=1; fi
      if [[ $rc -eq 2 ]]; then MISSING=1; fi
    done
    continue
  fi
  case "$name" in
    swissprot-2014-go) fetch_swissprot_2014 ;;
    human-pfam) fetch_human_pfam ;;
    proteinbert-benchmarks) fetch_benchmarks ;;
    ppi/pipr-yeast) fetch_pipr ;;
    ppi/hippie-hq) fetch_hippie ;;
    ppi/pan2010) fetch_pan2010 ;;
    proberta-vocab) fetch_proberta ;;
    swissprot-current) fetch_swissprot_current ;;
  esac
  log "  ($name: $(( $(date +%s) - T_SET )) s)"
done
rmdir "$DEST/.work" 2>/dev/null || true

log ""
log "($(( $(date +%s) - T_ALL )) s in all)"
if [[ $FAILED -ne 0 ]]; then log "done, with errors (see above)"; exit 1; fi
if [[ $MISSING -ne 0 ]]; then log "done; some files are missing (see above)"; exit 2; fi
log "done: all selected files present and verified"
