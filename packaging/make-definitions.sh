#!/usr/bin/env bash
# make definitions: builds the signed definitions package shipped with the product.
#   make-definitions.sh SOURCE_DIR KEY_DIR OUT_DIR
# OUT_DIR/package/      manifest.json, manifest.sig (Ed25519 over manifest.json), *.zst
# OUT_DIR/trusted-keys/ the public half (hex of the raw 32-byte key): the product trusts it.
# The signing key stays in KEY_DIR (never shipped, never committed); a build makes one if
# it has none. Releases sign with the release key kept offline (MDATP_SIGNING_KEY).
set -euo pipefail
src=$1 keys=$2 out=$3
key=${MDATP_SIGNING_KEY:-$keys/definitions-signing.pem}
mkdir -p "$keys" "$out/trusted-keys"
if [ ! -f "$key" ]; then
  umask 077
  openssl genpkey -algorithm ed25519 -out "$key" 2>/dev/null
fi
openssl pkey -in "$key" -pubout -outform DER 2>/dev/null | tail -c 32 | od -An -tx1 | tr -d ' \n' > "$out/trusted-keys/definitions.pub"
version=$(tr -d ' \n' < "$src/VERSION")
stage=$(mktemp -d "$out/.package-XXXXXX")
files=""
for f in "$src"/*.hdb "$src"/*.hsb "$src"/*.fp "$src"/*.sfp "$src"/*.ndb "$src"/*.ldb "$src"/*.yar; do
  [ -f "$f" ] || continue
  name=$(basename "$f")
  zstd -q -19 -f "$f" -o "$stage/$name.zst"
  sum=$(sha256sum "$stage/$name.zst" | cut -d' ' -f1)
  size=$(stat -c %s "$stage/$name.zst")
  raw=$(stat -c %s "$f")
  files="$files${files:+,}{\"name\":\"$name.zst\",\"sha256\":\"$sum\",\"size\":$size,\"uncompressed_size\":$raw}"
done
printf '{"format":1,"version":"%s","created_unix":%s,"files":[%s]}' "$version" "${SOURCE_DATE_EPOCH:-$(date +%s)}" "$files" > "$stage/manifest.json"
openssl pkeyutl -sign -inkey "$key" -rawin -in "$stage/manifest.json" -out "$stage/manifest.sig"
rm -rf "$out/package"
mv "$stage" "$out/package"
chmod 755 "$out/package" "$out/trusted-keys"
chmod 644 "$out"/package/* "$out"/trusted-keys/*
echo "definitions: version $version, $(echo "$files" | grep -o '"name"' | wc -l) files, signed, in $out/package"
