#!/usr/bin/env bash
# Fills the rendered templates with the cluster's secrets: the join token
# into the kubeadm configurations and, on control-plane nodes, the
# encryption key into the API server's EncryptionConfiguration. Neither is
# ever in user-data.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/node-common.sh"

token=$(<"$BOOTSTRAP_TOKEN_FILE")
key=
if [ -f "$ENCRYPTION_KEY_FILE" ]; then key=$(<"$ENCRYPTION_KEY_FILE"); fi
if ! [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
  log "$BOOTSTRAP_TOKEN_FILE is not a kubeadm token ([a-z0-9]{6}.[a-z0-9]{16})"
  exit 1
fi
install -d -m 0755 "$CONFIG_DIR"
for template in "$TEMPLATE_DIR"/*; do
  name=$(basename "$template")
  (umask 077 && sed -e "s/$TOKEN_PLACEHOLDER/$token/" -e "s|$ENCRYPTION_KEY_PLACEHOLDER|$key|" \
    "$template" >"$CONFIG_DIR/$name.tmp")
  mv "$CONFIG_DIR/$name.tmp" "$CONFIG_DIR/$name"
done
