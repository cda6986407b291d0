# Sourced by node scripts whose timers run often but have a costly step
# (each AWS CLI start costs about a second of CPU) to take less often.
# shellcheck shell=bash

# due STAMP SECONDS succeeds, marking STAMP now, if STAMP was last marked
# SECONDS or more ago, or never; otherwise it fails and leaves it.
due() {
  if [ -e "$1" ] && [ $(($(date +%s) - $(stat -c %Y "$1"))) -lt "$2" ]; then
    return 1
  fi
  mkdir -p "$(dirname "$1")"
  touch "$1"
}
