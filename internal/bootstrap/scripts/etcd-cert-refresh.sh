#!/usr/bin/env bash
# Re-reads this member's certificates from its secret, where `pulumi up`
# puts new ones ahead of expiry. etcd reads its certificate files at every
# TLS handshake, so a changed file takes effect with no restart. Every run
# reports the days left on the member's server and peer certificates as
# CERT_DAYS_LEFT_METRIC; a failed run counts CERT_RENEWAL_FAILED_METRIC.
# Both have alarms.
# shellcheck source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/etcd-common.sh"
. "$(dirname "${BASH_SOURCE[0]}")/credentials.sh"
trap 'count_failure "$CERT_RENEWAL_FAILED_METRIC"' EXIT

write_secret_files "$SECRET_ID" "$PKI_DIR"
# The server certificate is also etcdctl's.
report_days_left 999999999 "$ETCDCTL_CERT" "$PEER_CERT"
