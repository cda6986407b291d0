# Sourced by kubeha's node scripts that read or keep current the node's
# credentials: the node's secret written out as files, the time left on
# its certificates, and failures counted for an alarm. Each script
# defines log first.
# shellcheck shell=bash

# write_secret_files SECRET_ID DIR [PREFIX PREFIX_DIR] writes each entry of
# the secret (a JSON object of files) to DIR/NAME, or, for a NAME starting
# with PREFIX, to PREFIX_DIR/NAME less PREFIX. Files are owner-only, and
# each is replaced in one rename and only when it changed: a process
# reading it at that moment (etcd, at every handshake) never sees half a
# file. Logs each file it changed.
write_secret_files() {
  local secret names name dest tmp
  secret=$(aws secretsmanager get-secret-value --secret-id "$1" --query SecretString --output text)
  names=$(jq -r 'keys[]' <<<"$secret")
  for name in $names; do
    dest=$2/$name
    if [ -n "${3:-}" ] && [[ $name == "$3"* ]]; then dest=$4/${name#"$3"}; fi
    install -d -m 0700 "$(dirname "$dest")"
    tmp=$(mktemp "$dest.XXXXXX")
    jq -ej --arg f "$name" '.[$f]' <<<"$secret" >"$tmp" || { rm -f "$tmp"; return 1; }
    if cmp -s "$tmp" "$dest"; then
      rm -f "$tmp"
    else
      mv -f "$tmp" "$dest"
      log "wrote $dest from the node's secret"
    fi
  done
}

# report_days_left SECONDS CERT... sends CERT_DAYS_LEFT_METRIC: the least
# of SECONDS and the time left on each CERT that exists, in days.
report_days_left() {
  local left=$1 cert end
  shift
  for cert in "$@"; do
    [ -f "$cert" ] || continue
    end=$(date -d "$(openssl x509 -in "$cert" -noout -enddate | cut -d= -f2)" +%s)
    left=$((end - $(date +%s) < left ? end - $(date +%s) : left))
  done
  aws cloudwatch put-metric-data --namespace "$BOOTSTRAP_METRIC_NAMESPACE" --metric-name "$CERT_DAYS_LEFT_METRIC" \
    --dimensions "$BOOTSTRAP_METRIC_DIMENSIONS" --value "$(awk -v s="$left" 'BEGIN { printf "%.4f", s / 86400 }')" --unit None
}

# count_failure, as an EXIT trap, counts metric $1 in CloudWatch when the
# script fails, for the alarm that watches it.
count_failure() {
  local rc=$?
  [ "$rc" -ne 0 ] || return 0
  log "$(basename "$0") failed (exit $rc)"
  aws cloudwatch put-metric-data --namespace "$BOOTSTRAP_METRIC_NAMESPACE" --metric-name "$1" \
    --dimensions "$BOOTSTRAP_METRIC_DIMENSIONS" --value 1 --unit Count || log "could not count $1"
}
