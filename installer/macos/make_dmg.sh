#!/bin/sh
# Make the macOS disk image from the .app that installer/build.py wrote (run on a Mac):
#   python installer/build.py && sh installer/macos/make_dmg.sh [DIST]
# gives DIST/llasa-studio-<version>-macos.dmg: the app plus an Applications link to drag it onto.
# Unsigned builds open with right-click > Open the first time; with a Developer ID, sign and notarize
# before this step: codesign --deep --options runtime -s "Developer ID Application: …" "DIST/Llasa Studio.app"
# then xcrun notarytool submit … --wait and xcrun stapler staple on the .dmg.
set -eu
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DIST="${1:-$ROOT/dist}"
APP="$DIST/Llasa Studio.app"
VERSION="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$ROOT/pyproject.toml")"
[ -d "$APP" ] || { echo "no $APP: run python installer/build.py first" >&2; exit 2; }
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"
hdiutil create -volname "Llasa Studio" -srcfolder "$STAGE" -fs HFS+ -format UDZO -ov \
  "$DIST/llasa-studio-$VERSION-macos.dmg"
