#!/usr/bin/env bash
# Fills the rendered templates with the cluster's secrets and the node's
# own address: the join token into the kubeadm configurations and, on
# control-plane nodes, the encryption key into the API server's
# EncryptionConfiguration (neither is ever in user-data); the instance's
# private IP as the kubelet's node IP.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/imds.sh"

token=$(<"$BOOTSTRAP_TOKEN_FILE")
key=
if [ -f "$ENCRYPTION_KEY_FILE" ]; then key=$(<"$ENCRYPTION_KEY_FILE"); fi
if ! [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
  log "$BOOTSTRAP_TOKEN_FILE is not a kubeadm token ([a-z0-9]{6}.[a-z0-9]{16})"
  exit 1
fi
ip=$(imds local-ipv4)
install -d -m 0755 "$CONFIG_DIR"
for template in "$TEMPLATE_DIR"/*; do
  name=$(basename "$template")
  (umask 077 && sed -e "s/$TOKEN_PLACEHOLDER/$token/" -e "s|$ENCRYPTION_KEY_PLACEHOLDER|$key|" -e "s/: ${NODE_IP_PLACEHOLDER//./\\.}\$/: $ip/" \
    "$template" >"$CONFIG_DIR/$name.tmp")
  mv "$CONFIG_DIR/$name.tmp" "$CONFIG_DIR/$name"
done
