#!/usr/bin/env bash
# Download a standard CycleGAN/CUT unpaired dataset into datasets/NAME/{trainA,trainB,testA,testB}.
# Usage: bash datasets/download_cut_dataset.sh NAME   (run without NAME to list the names)
set -euo pipefail

readonly MIRROR="http://efrosgans.eecs.berkeley.edu/cyclegan/datasets"
readonly NAMES=(apple2orange summer2winter_yosemite horse2zebra monet2photo cezanne2photo
    ukiyoe2photo vangogh2photo maps cityscapes facades iphone2dslr_flower ae_photos grumpifycat)
DATA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
readonly DATA_DIR

usage() {
    echo "usage: bash datasets/download_cut_dataset.sh NAME" >&2
    echo "NAME is one of: ${NAMES[*]}" >&2
    echo "(the toy set needs no download: python datasets/make_toy_dataset.py)" >&2
}

if [[ $# -eq 1 && ( "$1" == -h || "$1" == --help ) ]]; then
    usage 2>&1
    exit 0
fi
if [[ $# -ne 1 ]]; then
    usage
    exit 2
fi
name="$1"
known=false
for candidate in "${NAMES[@]}"; do
    if [[ "$candidate" == "$name" ]]; then known=true; fi
done
if [[ "$known" != true ]]; then
    echo "error: unknown dataset '$name'." >&2
    usage
    exit 2
fi
if [[ "$name" == cityscapes ]]; then
    echo "error: the Cityscapes license forbids redistribution, so this script does not fetch it." \
        "Download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip from" \
        "https://www.cityscapes-dataset.com and arrange them as" \
        "$DATA_DIR/cityscapes/{trainA,trainB,testA,testB}." >&2
    exit 1
fi

target="$DATA_DIR/$name"
if [[ -e "$target" ]]; then
    echo "$target already exists; nothing to do (delete it to download again)."
    exit 0
fi
if ! command -v unzip >/dev/null; then
    echo "error: 'unzip' is required; install it first." >&2
    exit 1
fi

url="$MIRROR/$name.zip"
zip_file="$DATA_DIR/.$name.zip.part"
staging="$DATA_DIR/.$name.unzipping"
trap 'rm -rf "$zip_file" "$staging"' EXIT
echo "Downloading $url"
download_failed() {
    echo "error: could not download $url (no internet, or the mirror is down); nothing was written." \
        "Retry later, or bring your own folder with trainA, trainB, testA and testB." \
        "The demo needs no download: make demo." >&2
    exit 1
}
if command -v curl >/dev/null; then
    curl -fL --retry 3 -o "$zip_file" "$url" || download_failed
elif command -v wget >/dev/null; then
    wget --tries=3 -O "$zip_file" "$url" || download_failed
else
    echo "error: neither curl nor wget is installed; install one of them." >&2
    exit 1
fi
# The archive holds NAME/{trainA,trainB,testA,testB}; extract aside and move it in whole,
# so an interrupted run never leaves a half dataset behind.
unzip -q "$zip_file" -d "$staging"
mv "$staging/$name" "$target"
echo "Dataset ready in $target"
