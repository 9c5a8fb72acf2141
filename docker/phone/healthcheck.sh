#!/bin/bash
# Healthy when baresip reports its account registered (ctrl_tcp "reginfo" shows OK).
CTRL=${PHONE_CTRL:-127.0.0.1:4444}
json='{"command":"reginfo","params":"","token":"hc"}'
exec 3<>"/dev/tcp/${CTRL%:*}/${CTRL##*:}" || exit 1
printf '%d:%s,' "${#json}" "$json" >&3
reply=$(timeout 2 cat <&3)
# The reply lists each account with a (colour-coded) OK once registered.
if grep -q 'OK' <<<"$reply"; then echo registered; else echo "not registered"; exit 1; fi
