#!/usr/bin/env bash
# Offline check of datasets/fetch.sh through a mirror folder (PROTEIN_LM_MIRROR), on tiny files and a
# tiny manifest (PROTEIN_LM_MANIFEST), with PROTEIN_LM_MIRROR_ONLY=1 so nothing touches the network.
# Run by tests/data_fetch.rs; exits non-zero with a message on the first failed expectation.
#
# It checks: a plain download and the HIPPIE FASTA -> TSV conversion land verified in an empty folder;
# a second run fetches nothing; --verify-only exits 2 on a missing file; a mirror file with the wrong
# bytes is refused (exit 1, kept as .failed, nothing in place); a file missing from the mirror fails
# with a message naming it.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FETCH="$HERE/fetch.sh"
T="$(mktemp -d)"
trap 'rm -rf -- "$T"' EXIT

die() { printf 'test_fetch_mirror: FAILED: %s\n' "$*" >&2; [[ -f "$T/log" ]] && sed 's/^/  | /' "$T/log" >&2; exit 1; }

# The mirror, laid out as HOST/PATH of the URLs fetch.sh pins.
GH="$T/mirror/raw.githubusercontent.com"
DICT="$GH/wesleywt/PRoBERTa/4fb5f9d7c9adc45e68abc2d4843ae0f46bbaaae5/src/pretraining/dict.txt"
HQ="$GH/anhvt00/MCAPS/34c92378/data/Independent-testsets/Human-sets/HIPPIE/HQ"
mkdir -p "$(dirname "$DICT")" "$HQ"
printf '\xe2\x96\x81M 3\nLL 2\nmadeupword0000 0\n' > "$DICT"
printf 'P1\tP2\t1\nP2\tP3\t1\n' > "$HQ/hiphq_pairs.tsv"
printf '>P1\nMKV\n>P2 some description\nMA\nGG\n>P3\nW\n' > "$HQ/hiphq_dict.fasta"
printf 'P1\tMKV\nP2\tMAGG\nP3\tW\n' > "$T/want_dict.tsv"

sha() { python3 -c 'import hashlib,sys;print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }
python3 - "$T/manifest.json" "$(sha "$DICT")" "$(sha "$HQ/hiphq_pairs.tsv")" "$(sha "$T/want_dict.tsv")" <<'PY'
import json, sys
out, d, p, h = sys.argv[1:]
f = lambda path, sha: {"path": path, "sha256": sha, "reproducible_from_upstream": True}
json.dump({"version": 1, "datasets": [
    {"name": "proberta-vocab", "files": [f("proberta-vocab/dict.txt", d)]},
    {"name": "ppi/hippie-hq", "files": [f("ppi/hippie-hq/hippie_hq_pairs.tsv", p),
                                        f("ppi/hippie-hq/hippie_hq_dict.tsv", h)]},
]}, open(out, "w"))
PY

export PROTEIN_LM_MANIFEST="$T/manifest.json" PROTEIN_LM_MIRROR="$T/mirror" PROTEIN_LM_MIRROR_ONLY=1
DEST="$T/dest"
run() { local rc=0; bash "$FETCH" --dest "$DEST" "$@" > "$T/log" 2>&1 </dev/null || rc=$?; echo "$rc"; }

rc=$(run --verify-only proberta-vocab ppi/hippie-hq)
[[ $rc == 2 ]] || die "--verify-only on an empty folder exited $rc, expected 2"

rc=$(run proberta-vocab ppi/hippie-hq)
[[ $rc == 0 ]] || die "fetch from the mirror exited $rc, expected 0"
cmp -s "$DICT" "$DEST/proberta-vocab/dict.txt" || die "dict.txt differs from the mirror's"
cmp -s "$T/want_dict.tsv" "$DEST/ppi/hippie-hq/hippie_hq_dict.tsv" || die "hippie_hq_dict.tsv is not the FASTA converted"
[[ ! -e "$DEST/ppi/hippie-hq/hiphq_dict.fasta" ]] || die "the downloaded FASTA was left behind"
[[ $(grep -c '^  ok ' "$T/log") == 3 ]] || die "expected three verified files"

rc=$(run proberta-vocab ppi/hippie-hq)
[[ $rc == 0 ]] || die "second run exited $rc"
! grep -q '  mirror ' "$T/log" || die "second run fetched a file that was already verified"

# Wrong bytes in the mirror: refused, set aside, nothing left in place.
rm "$DEST/proberta-vocab/dict.txt"
printf 'tampered 1\n' > "$DICT"
rc=$(run proberta-vocab)
[[ $rc == 1 ]] || die "a mirror file with the wrong sha256 gave exit $rc, expected 1"
[[ -f "$DEST/proberta-vocab/dict.txt.failed" && ! -e "$DEST/proberta-vocab/dict.txt" ]] \
  || die "the refused file should be kept as dict.txt.failed and not put in place"
grep -q 'checksum failed for proberta-vocab/dict.txt' "$T/log" || die "no checksum message naming the file"

# Missing from the mirror, offline: a clear failure naming the URL.
rm "$DICT"
rc=$(run proberta-vocab)
[[ $rc == 1 ]] || die "a file missing from the mirror gave exit $rc, expected 1"
grep -q 'is not in the mirror' "$T/log" || die "no message saying the file is not in the mirror"

echo "test_fetch_mirror: ok (6 checks)"
