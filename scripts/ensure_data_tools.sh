#!/usr/bin/env bash
# Installs what the data fetch needs to build the Swiss-Prot 2014 and human-pfam tables (blastdbcmd,
# from Debian's ncbi-blast+), but only when the notebooks' data is not all there already and the tool
# is missing. Uses apt-get as root or through passwordless sudo; elsewhere it says what to install and
# leaves the fetch to name what it could not build.
set -uo pipefail
cd "$(dirname "$0")/.."
if python3 scripts/notebook_data.py >/dev/null 2>&1 || command -v blastdbcmd >/dev/null; then
    exit 0
fi
sudo_cmd=""
if [[ $(id -u) -ne 0 ]]; then
    if sudo -n true 2>/dev/null; then sudo_cmd="sudo -n"; else
        echo "the data fetch builds Swiss-Prot 2014 with blastdbcmd: install Debian's ncbi-blast+ (apt-get install ncbi-blast+)" >&2
        exit 0
    fi
fi
if ! command -v apt-get >/dev/null; then
    echo "the data fetch builds Swiss-Prot 2014 with blastdbcmd: install NCBI BLAST+ for this system" >&2
    exit 0
fi
echo "=== installing ncbi-blast+ (blastdbcmd) for the data fetch"
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq ncbi-blast+ >/dev/null \
    || { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq ncbi-blast+ >/dev/null; } \
    || echo "could not install ncbi-blast+; the fetch will say what it cannot build" >&2
exit 0
