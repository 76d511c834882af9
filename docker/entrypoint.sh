#!/bin/sh
# Container entry point (under tini). A freshly mounted persistent disk is
# owned by root, so when started as root this gives DATA_DIR to the `app`
# user and then runs the command as `app` (never as root). Started as any
# other user, it just runs the command.
set -eu
if [ "$(id -u)" = "0" ]; then
  data_dir="${DATA_DIR:-/var/data}"
  if [ -d "$data_dir" ]; then
    # Only what is not already app's (cheap on a large, settled disk).
    find "$data_dir" -xdev \! -user app -exec chown app:app {} +
  fi
  exec setpriv --reuid=app --regid=app --init-groups --inh-caps=-all -- "$@"
fi
exec "$@"
