# Sourced by the first-boot scripts: fetches a pinned asset from the
# cluster's asset bucket and refuses it unless its SHA-256 is the pinned one.
# shellcheck shell=bash

# fetch_asset S3_URL SHA256 DEST, trying 5 times: a download can fail
# (the AWS CLI itself has been seen to crash) where a retry succeeds.
fetch_asset() {
  local try
  for try in 1 2 3 4 5; do
    if aws s3 cp --only-show-errors "$1" "$3" && echo "$2  $3" | sha256sum -c --quiet -; then
      return 0
    fi
    rm -f "$3"
    echo "fetch_asset: $1 (want sha256 $2): attempt $try failed" >&2
    sleep $((try * 2))
  done
  return 1
}
