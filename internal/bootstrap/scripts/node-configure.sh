#!/usr/bin/env bash
# Fills the rendered templates with the cluster's secrets: the join token
# into the kubeadm configurations and, on control-plane nodes, the
# encryption key into the API server's EncryptionConfiguration. Neither is
# ever in user-data.
# shellcheck source=node-common.sh
. /usr/local/lib/kubeha/node-common.sh

token=$(<"$SECRETS_DIR/bootstrap-token")
key=
if [ -f "$SECRETS_DIR/encryption-key" ]; then key=$(<"$SECRETS_DIR/encryption-key"); fi
if ! [[ $token =~ ^[a-z0-9]{6}\.[a-z0-9]{16}$ ]]; then
  log "$SECRETS_DIR/bootstrap-token is not a kubeadm token ([a-z0-9]{6}.[a-z0-9]{16})"
  exit 1
fi
install -d -m 0755 "$CONFIG_DIR"
for template in "$TEMPLATE_DIR"/*; do
  name=$(basename "$template")
  (umask 077 && sed -e "s/$TOKEN_PLACEHOLDER/$token/" -e "s|$ENCRYPTION_KEY_PLACEHOLDER|$key|" \
    "$template" >"$CONFIG_DIR/$name.tmp")
  mv "$CONFIG_DIR/$name.tmp" "$CONFIG_DIR/$name"
done
