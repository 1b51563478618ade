#!/usr/bin/env bash
# Download and unpack COCO 2017 (118,287 train + 5,000 val images with instance annotations, ~19 GB).
set -euo pipefail

BASE="http://images.cocodataset.org"
# URL path under $BASE, and what exists once it is unpacked
PARTS=(
    "annotations/annotations_trainval2017.zip annotations/instances_val2017.json"
    "zips/val2017.zip val2017"
    "zips/train2017.zip train2017"
)

usage() {
    cat <<USAGE
Usage: $(basename "$0") [TARGET_DIR]

Downloads train2017.zip (~18 GB), val2017.zip (~1 GB) and annotations_trainval2017.zip (~250 MB)
from $BASE into TARGET_DIR (default: data/coco) and unpacks them to
TARGET_DIR/{train2017,val2017}/*.jpg and TARGET_DIR/annotations/instances_{train,val}2017.json.
Parts already unpacked are skipped; an interrupted download is resumed on the next run.
Then train with: data.root=TARGET_DIR
USAGE
}

if [[ $# -gt 1 ]]; then usage >&2; exit 2; fi
case "${1:-}" in -h|--help) usage; exit 0 ;; esac

target="${1:-data/coco}"

fetch() {  # fetch URL FILE
    if command -v curl >/dev/null; then
        curl -fL --retry 3 -C - -o "$2" "$1"
    elif command -v wget >/dev/null; then
        wget -c -O "$2" "$1"
    else
        echo "error: need curl or wget to download $1" >&2
        exit 1
    fi
}

mkdir -p "$target"
for part in "${PARTS[@]}"; do
    read -r path unpacked <<<"$part"
    name="$(basename "$path")"
    zip="$target/$name"
    # the zip is removed only after a complete unpack, so a leftover zip means: resume and unpack again
    if [[ -e "$target/$unpacked" && ! -e "$zip" ]]; then
        echo "$target/$unpacked exists; skipping $name."
        continue
    fi
    command -v unzip >/dev/null || { echo "error: 'unzip' is required (e.g. apt-get install unzip)" >&2; exit 1; }
    if [[ -e "$zip" ]] && unzip -tq "$zip" >/dev/null 2>&1; then
        echo "$zip is complete; unpacking it again."  # a resumed curl would fail on a finished file
    else
        echo "Downloading $BASE/$path -> $zip"
        fetch "$BASE/$path" "$zip"
        unzip -tq "$zip" >/dev/null || { echo "error: $zip is corrupt; delete it and run again" >&2; exit 1; }
    fi
    echo "Unpacking $zip"
    unzip -q -o "$zip" -d "$target"
    rm -f "$zip"
done
echo "Done: $target"
echo "Train with: data.root=$target"
