#!/usr/bin/env bash
# Install what Tessera needs on a Debian 12 machine that has only Python 3.11.
# Idempotent: every step checks first, so a second run takes about a second.
#   scripts/bootstrap.sh          runtime needs (make run)
#   scripts/bootstrap.sh --test   runtime + test needs (make test)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

# Debian packages: command or file that proves the package is there -> package name.
declare -A runtime=(
  [/usr/lib/softhsm/libsofthsm2.so]=softhsm2
  [/usr/bin/pkcs11-tool]=opensc
  [/usr/bin/openssl]=openssl
  [/usr/sbin/slapd]=slapd
  [/usr/bin/ldapsearch]=ldap-utils
  # python-ldap (the directory client) builds from source against OpenLDAP's libldap and Cyrus SASL
  [/usr/include/ldap.h]=libldap-dev
  [/usr/include/sasl/sasl.h]=libsasl2-dev
  [/usr/bin/gcc]=gcc
  [/usr/include/python3.11/Python.h]=libpython3.11-dev  # for Debian's python3; a pyenv Python has its own
)
declare -A testing=(
  [/usr/lib/postgresql/15/bin/initdb]=postgresql
  [/usr/sbin/runuser]=util-linux
  [/usr/bin/chromium]=chromium
  [/usr/share/fonts/truetype/wqy/wqy-microhei.ttc]=fonts-wqy-microhei  # Chinese text in the browser tests' screenshots
  [/usr/bin/zbarimg]=zbar-tools  # reads the enrolment QR code in tests/test_browser.py
)
missing=()
for f in "${!runtime[@]}"; do [ -e "$f" ] || missing+=("${runtime[$f]}"); done
if [ "$want_test" = 1 ]; then
  for f in "${!testing[@]}"; do [ -e "$f" ] || missing+=("${testing[$f]}"); done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The virtualenv, re-synced only when the packaging metadata changed.
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
extras="."
[ "$want_test" = 1 ] && extras=".[test]"
stamp=".venv/.tessera-installed"
if [ "$want_test" = 1 ]; then stamp="$stamp-test"; fi
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e "$extras"
  touch "$stamp"
fi

# Translations (docs/i18n.md): the committed catalogues (.po) compiled to .mo, each only when its
# .mo is missing or older than its .po.
for po in idp/translations/*/LC_MESSAGES/messages.po; do
  mo="${po%.po}.mo"
  if [ ! -f "$mo" ] || [ "$po" -nt "$mo" ]; then
    .venv/bin/pybabel --quiet compile -i "$po" -o "$mo"
  fi
done
