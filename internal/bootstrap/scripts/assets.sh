# Sourced by the first-boot scripts: fetches a pinned asset from the
# cluster's asset bucket and refuses it unless its SHA-256 is the pinned one.
# shellcheck shell=bash

# fetch_asset S3_URL SHA256 DEST
fetch_asset() {
  aws s3 cp --only-show-errors "$1" "$3"
  if ! echo "$2  $3" | sha256sum -c --quiet -; then
    rm -f "$3"
    echo "fetch_asset: $1 is not the pinned asset (want sha256 $2)" >&2
    return 1
  fi
}
