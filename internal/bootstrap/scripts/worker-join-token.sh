#!/usr/bin/env bash
# Makes this worker's own join token, once, and writes it where only this
# instance can: under NODE_TOKEN_URL + its IAM user ID ("<role ID>:<instance
# ID>"). A control-plane node makes it a bootstrap token of this instance
# within seconds (control-plane-csr-approver.sh); kubeadm join's discovery
# waits for that.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"

if [ ! -s "$BOOTSTRAP_TOKEN_FILE" ]; then
  install -d -m 0700 "$(dirname "$BOOTSTRAP_TOKEN_FILE")"
  (umask 077 && echo "$(openssl rand -hex 3).$(openssl rand -hex 8)" >"$BOOTSTRAP_TOKEN_FILE")
fi
me=$(aws sts get-caller-identity --query UserId --output text)
aws s3 cp --only-show-errors - "$NODE_TOKEN_URL$me" <"$BOOTSTRAP_TOKEN_FILE"
log "join token handed over as $me"
