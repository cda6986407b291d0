# Sourced by the first-boot scripts: reads this instance's metadata over
# IMDSv2, which every node requires (a session token first).
# shellcheck shell=bash

imds() {
  local token
  token=$(curl -fsS -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 300" http://169.254.169.254/latest/api/token)
  curl -fsS -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}
