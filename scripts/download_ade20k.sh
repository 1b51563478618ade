#!/usr/bin/env bash
# Download and unpack ADE20K (SceneParse150, ADEChallengeData2016: 20,210 train + 2,000 val images, ~923 MB).
set -euo pipefail

URL="http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip"

usage() {
    cat <<USAGE
Usage: $(basename "$0") [TARGET_DIR]

Downloads ADEChallengeData2016.zip into TARGET_DIR (default: data/) and unpacks it to
TARGET_DIR/ADEChallengeData2016/{images,annotations}/{training,validation}.
Then train with: data.root=TARGET_DIR/ADEChallengeData2016
An interrupted download is resumed on the next run.
USAGE
}

if [[ $# -gt 1 ]]; then usage >&2; exit 2; fi
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

target="${1:-data}"
dataset="$target/ADEChallengeData2016"
zip="$target/ADEChallengeData2016.zip"

if [[ -d "$dataset/images/training" && -d "$dataset/annotations/validation" ]]; then
    echo "ADE20K is already unpacked in $dataset; nothing to do."
    exit 0
fi
command -v unzip >/dev/null || { echo "error: 'unzip' is required (e.g. apt-get install unzip)" >&2; exit 1; }

mkdir -p "$target"
echo "Downloading $URL -> $zip"
if command -v curl >/dev/null; then
    curl -fL --retry 3 -C - -o "$zip" "$URL"
elif command -v wget >/dev/null; then
    wget -c -O "$zip" "$URL"
else
    echo "error: need curl or wget to download $URL" >&2
    exit 1
fi

echo "Checking and unpacking $zip"
unzip -tq "$zip" >/dev/null || { echo "error: $zip is corrupt; delete it and run again" >&2; exit 1; }
unzip -q -o "$zip" -d "$target"
rm -f "$zip"
echo "Done: $dataset"
echo "Train with: data.root=$dataset"
