#!/usr/bin/env bash
# Set up a township kiosk PC (Debian 12) and enrol it with a one-time code.
#
#   sudo deploy/kiosk/setup-kiosk.sh --server https://vwindow.example.gov.cn \
#        --kiosk kiosk-tx02 --code ABCD-EFGH-JKMN-PQRS [--source /path/to/vwindow]
#
# The county office makes the code with `vwindow enrolment create kiosk-tx02` (valid
# 24 h, once). This script installs Chromium, X and vwindow, creates the "kiosk" user,
# gives it the devices (udev rules), redeems the code for the kiosk's device key, writes
# /etc/vwindow/kiosk.env and starts the browser and the device agent. Safe to run again;
# running it again with a new code re-enrols the PC (the old key stops working).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
server="" kiosk="" code="" source="$(cd "$here/../.." && pwd)" devices="uvc"
while [ $# -gt 0 ]; do
    case "$1" in
        --server) server="$2"; shift 2 ;;
        --kiosk) kiosk="$2"; shift 2 ;;
        --code) code="$2"; shift 2 ;;
        --source) source="$2"; shift 2 ;;
        --devices) devices="$2"; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
if [ -z "$server" ] || [ -z "$kiosk" ] || [ -z "$code" ]; then
    echo "usage: $0 --server URL --kiosk KIOSK_CODE --code ENROLMENT_CODE [--source DIR]" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then echo "run as root" >&2; exit 2; fi
server="${server%/}"
origin="$(printf '%s' "$server" | sed -E 's|^(https?://[^/]+).*|\1|')"

echo "== packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    chromium xserver-xorg xinit x11-xserver-utils matchbox-window-manager \
    fonts-noto-cjk libzbar0 python3-venv python3-dev gcc libc6-dev linux-libc-dev \
    ca-certificates

echo "== users and groups"
getent group vwindow-dev >/dev/null || groupadd --system vwindow-dev
if ! id kiosk >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash kiosk
fi
usermod -aG vwindow-dev,video,audio,input,dialout kiosk

echo "== vwindow into /opt/vwindow"
[ -x /opt/vwindow/bin/python ] || python3 -m venv /opt/vwindow
/opt/vwindow/bin/pip install --quiet --upgrade pip
/opt/vwindow/bin/pip install --quiet "$source"

echo "== device permissions"
install -m 0644 "$here/70-vwindow-kiosk.rules" /etc/udev/rules.d/70-vwindow-kiosk.rules
udevadm control --reload
udevadm trigger
if grep -q 'CHANGE' /etc/udev/rules.d/70-vwindow-kiosk.rules; then
    echo "   NOTE: put the devices' vendor/product ids into /etc/udev/rules.d/70-vwindow-kiosk.rules"
fi

echo "== enrolment"
install -d -m 0750 -o root -g kiosk /etc/vwindow
key="$(VW_SERVER="$server" VW_KIOSK="$kiosk" VW_CODE="$code" /opt/vwindow/bin/python - <<'PY'
import json, os, sys, urllib.error, urllib.request
body = json.dumps({"kiosk_code": os.environ["VW_KIOSK"], "code": os.environ["VW_CODE"]})
req = urllib.request.Request(os.environ["VW_SERVER"] + "/api/v1/auth/kiosk/enrol",
                             data=body.encode(), method="POST",
                             headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(req, timeout=30) as r:
        print(json.load(r)["device_key"])
except urllib.error.HTTPError as err:
    try:
        message = json.load(err)["error"]["message"]
    except Exception:
        message = f"HTTP {err.code}"
    sys.exit(f"enrolment refused: {message}")
except OSError as err:
    sys.exit(f"cannot reach {os.environ['VW_SERVER']}: {err}")
PY
)"
umask 027
cat > /etc/vwindow/kiosk.env <<ENV
VWINDOW_KIOSK__SERVER=$server
VWINDOW_KIOSK__CODE=$kiosk
VWINDOW_KIOSK__KEY=$key
ENV
chown root:kiosk /etc/vwindow/kiosk.env
chmod 0640 /etc/vwindow/kiosk.env
umask 022
echo "   enrolled as $kiosk; the device key is in /etc/vwindow/kiosk.env"

echo "== browser"
install -d /etc/chromium/policies/managed /usr/local/lib/vwindow
sed "s|VWINDOW_ORIGIN|$origin|g" "$here/chromium-policy.json" \
    > /etc/chromium/policies/managed/vwindow.json
install -m 0755 "$here/kiosk-session" /usr/local/lib/vwindow/kiosk-session
# Xorg started from a service (not a console login) needs this on Debian.
printf 'allowed_users=anybody\nneeds_root_rights=auto\n' > /etc/X11/Xwrapper.config

echo "== services"
install -m 0644 "$here/vwindow-kiosk-browser.service" /etc/systemd/system/
install -m 0644 "$here/../systemd/vwindow-kiosk.service" /etc/systemd/system/
sed -i "s|--devices uvc|--devices $devices|" /etc/systemd/system/vwindow-kiosk.service
systemctl daemon-reload
systemctl set-default graphical.target
systemctl enable vwindow-kiosk-browser.service vwindow-kiosk.service
systemctl restart vwindow-kiosk-browser.service vwindow-kiosk.service
echo "done: Chromium shows $server/kiosk/ on tty1; logs: journalctl -u vwindow-kiosk"
